"""Self-supervised pretraining of the backbone on unlabelled audio, for the folds to fine-tune from.

config (PretrainConfig), contrastive (the loss), views (pairs of augmented views of one window, tf.data),
encoder (backbone + projection, the pair model), run (`python -m trainer.pretrain`, `make pretrain`).
A fold starts from the result with `--init_from DIR` (trainer.model.transfer copies the backbone's weights).

May import: every stage before it (pictures ... training).
"""
