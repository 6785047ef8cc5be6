"""The Beam detection job: an exported model (core.export_layout) over a folder or bucket of recordings.

Entry point: `python -m detect.run` (`make detect`). Workers run the SavedModel, so this package needs
TensorFlow (the `detect` extra); it imports core and pipeline, never the trainer.
"""
