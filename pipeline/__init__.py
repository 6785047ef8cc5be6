"""The Apache Beam job: RFCX-layout recordings -> TFRecord shards (entry point: `python -m pipeline.shards`).

Owns: reading the CSVs and listings (`labels`, `listing`), decoding FLAC (`audio`, `flac_stream`), building
examples and dead letters (`examples`, `transforms`), folds (`folds`), the TFRecord sink, the manifest it
writes (`manifest_writer`), the job's settings (`config`) and the demo dataset generator (`demo_data`).
May import: `core` only (never `trainer`), and no TensorFlow, Keras or matplotlib: its workers do not
install them.
"""
