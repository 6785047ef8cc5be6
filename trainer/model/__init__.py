"""The network and what trains it: a backbone (`backbones`: ResNet50 by default, a small CNN for CPUs) with the
input extras (`network`) and a head (`heads`), the
masked losses (`losses`), the tf.distribute strategy (`strategy`).

May import: core, augment, features, recipe, data, evaluation.
"""
