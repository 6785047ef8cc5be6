"""What a training run is made of: TrainConfig (nesting MelConfig and AugmentConfig), its presets
(full, cpu, tiny, auto), config files and generated flags through core.settings (`config`).

May import: core, augment, features.
"""
