"""The floor every trained model must beat: log-mel band statistics + logistic regression.

`config`: BaselineConfig (nesting the trainer's MelConfig); `band_features`: windows and band statistics
read from the shards; `classifier`: the one-vs-rest fit and its cross-validated metrics; `run`: the CLI
(make baseline). May import: every stage before it.
"""
