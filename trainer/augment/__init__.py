"""Every training augmentation, declared as one ordered chain in one place (`chain`: AugmentConfig, whose
defaults are the recipe's, and build_augmentation, which orders the pieces).

`waveform`: the numpy waveform pieces run through tf.numpy_function (noise at an SNR, time shift, volume,
librosa pitch shift); `field`: numpy pieces that mimic the field, off by default (time stretch, reverb, random
EQ); `pitch_warp`: the mel-stage pitch shift as warped filter banks; `spec`: SpecAugment
masks on the log-mel and mixup inside a batch (TF ops). May import: core, numpy, scipy, librosa, colorednoise,
TensorFlow.
"""
