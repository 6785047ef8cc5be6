"""Shards -> tf.data, and the windows cut from recordings.

`discovery`: a fold's shard files from the manifest and the up-front checks; `records`: the one reader
of shard files (parse specs, PCM decode, corrupt-shard errors); `inputs`: the tf.data graphs (draw, crop,
targets, augment, log-mel, batch); `targets`: window labels and loss weights from boxes; `recordings`:
test recordings read whole (the window arithmetic is core.windows); `inspect_examples`: the examples grid (make inspect).
May import: core, pictures, augment, features, recipe.
"""
