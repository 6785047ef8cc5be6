"""How predictions are scored and tabulated: LWLRAP in numpy and as a streaming Keras metric
(`lwlrap`), the column names of every prediction table (`columns`), whether a blend of the model with the
baseline pays out of fold (`blend`).

May import: core and the stages before it.
"""
