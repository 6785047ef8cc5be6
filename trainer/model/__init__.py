"""The network and what trains it: ResNet50 with the input extras (`network`) and a head (`heads`), the
masked losses (`losses`), the tf.distribute strategy (`strategy`).

May import: core, augment, features, recipe, data, evaluation.
"""
