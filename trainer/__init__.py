"""The TensorFlow trainer over the shards of pipeline.shards, one sub-package per stage.

Stages, lowest first; a module imports `core`, its own stage and the stages before it, never a later
one and never `pipeline` (tests/test_architecture.py):

    pictures    drawing helpers and pictures made from arrays (matplotlib)
    augment     every augmentation: the numpy waveform chain, the mel pitch warp, SpecAugment, mixup
    features    the log-mel front end (TF, equal to librosa's)
    recipe      the settings of a run (TrainConfig) and its presets
    data        shards -> tf.data: discovery and checks, the one shard reader, crops, targets, windows
    evaluation  LWLRAP and the prediction tables' columns
    model       the network, losses, distribution strategy
    training    fit loop, callbacks, run dir, resume, validation, cross-validation and its report
    pretrain    contrastive pretraining of the backbone on unlabelled audio (the folds' --init_from)
    inference   predict, serving model, Kaggle submission, detection timelines
    pseudo      pseudo-label rounds: out-of-fold soft targets, then a cross-validation trained on them
    baseline    the band-statistics + logistic-regression floor every model must beat

Entry points: python -m trainer.training.train | trainer.training.cv | trainer.pretrain |
trainer.inference.predict | trainer.pseudo | trainer.baseline.run | trainer.data.inspect_examples (the Makefile's
train, cv, pretrain, predict, pseudo, baseline, inspect).
"""
