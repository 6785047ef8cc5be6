"""The network and what trains it: ResNet50 with the seed's head and the input extras (`network`), the
masked losses (`losses`), the tf.distribute strategy (`strategy`).

May import: core, augment, features, recipe, data, evaluation.
"""
