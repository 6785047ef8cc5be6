"""TensorFlow trainer over the shards of pipeline.shards (see trainer.train, trainer.predict, trainer.cv)."""
