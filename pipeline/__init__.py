"""Apache Beam job: RFCX-layout recordings -> TFRecord shards (see pipeline.shards)."""
