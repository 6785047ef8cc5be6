"""The log-mel front end (`mel`): MelConfig, a TensorFlow log-mel equal to librosa's, the LogMel layer.

May import: core, augment (the pitch warp's banks), TensorFlow, Keras, librosa (filter constants).
"""
