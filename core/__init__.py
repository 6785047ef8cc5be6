"""The contract the Beam job and the trainer share, owned by neither: what a shard holds and where it lies.

Owns: the TFRecord schema (`schema`), the shards dir layout and its typed manifest (`manifest`), the
crop rule every window is cut by (`crop`), the sliding windows over whole recordings (`windows`), an
exported model's dir (`export_layout`), the one filesystem layer for every user path (`fs`, local
and gs://), the one config mechanism (`settings`, `choices`), user errors and flag checks (`errors`,
`checks`), progress lines (`progress`) and the output-dir lock (`outlock`).
May import: the standard library, numpy, pandas and Apache Beam's FileSystems only: a Dataflow worker
installs and imports this package, so no TensorFlow, Keras or matplotlib (tests/test_architecture.py).
"""
