"""How predictions are scored and tabulated: LWLRAP in numpy and as a streaming Keras metric
(`lwlrap`), the column names of every prediction table (`columns`).

May import: core and the stages before it.
"""
