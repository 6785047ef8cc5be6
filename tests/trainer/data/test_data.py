"""trainer.data.discovery on hand-made v2 shards (tests/helpers/shard_factory.py): the fold split by slice kind, up-front checks.

The tf.data graphs over these files are tested in tests/trainer/data/test_inputs.py.
"""
from __future__ import annotations

import json
import os

import pytest
import tensorflow as tf

from core import schema
from core.errors import run_main
from tests.helpers import shard_factory as sf
from tests.helpers.recipe_config import RATE, as_config_file_content, small_config
from trainer.data import discovery
from trainer.training import train

SLICE = 32000  # 2 s


def test_prepare_fold_splits_files_by_fold_and_kind_and_counts_examples(shards):
    inputs = discovery.prepare_fold(shards, 0, small_config())
    # Fold 0 (validation): 4 tp in 2 files, 1 fp, 1 background slice; folds 1, 2: 4 tp, 2 fp, 2 background each.
    assert all("/fold-0/" in f for f in inputs.val_files) and len(inputs.val_files) == 4
    assert {os.path.basename(f).split("-")[0] for f in inputs.val_files} == {"tp", "fp", "background"}
    assert all("/fold-0/" not in f for f in inputs.train_files) and len(inputs.train_files) == 12
    assert (inputs.num_train, inputs.num_val) == (16, 6)
    assert inputs.num_train_by_kind == {"tp": 8, "fp": 4, "background": 4}
    for kind, files in inputs.train_files_by_kind.items():
        assert len(files) == 4 and all(os.path.basename(f).startswith(kind + "-") for f in files)
        assert all("/fold-0/" not in f for f in files)
    assert sorted(f for files in inputs.train_files_by_kind.values() for f in files) == sorted(inputs.train_files)


def _train_argv(shards_dir: str, run_dir: str, cfg_file: str, fold: int = 0, *extra: str) -> list[str]:
    return ["--shards_dir", shards_dir, "--fold", str(fold), "--run_dir", run_dir, "--preset", "tiny",
            "--config", cfg_file, *extra]


def _corrupt(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(30)
        f.write(b"\xff" * 8)  # inside the first record's payload: its CRC no longer matches


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)


def _bad_shards(kind: str, base: str) -> tuple[str, list[str], str]:
    """(shards dir, extra flags, expected message part) for one kind of bad input."""
    shards = os.path.join(base, "shards")
    if kind == "missing_dir":
        return shards, [], f"shards dir {shards} does not exist"
    if kind == "empty_dir":
        os.makedirs(shards)
        return shards, [], "has no manifest.json"
    folds = sf.three_kind_folds()
    if kind == "fold_without_shards":
        folds[2] = []
    if kind == "no_tp_outside_the_fold":
        folds = {k: [e for e in v if k == 0 or e["kind"] != schema.KIND_TP] for k, v in folds.items()}
    manifest_version = {"manifest_version": 99, "manifest_v1": 1}.get(kind, schema.SCHEMA_VERSION)
    sf.write_shards(shards, folds, sample_rate=RATE, slice_seconds=2.0, manifest_version=manifest_version)
    shard = os.path.join(shards, "train", "fold-1", "tp-00000-of-00001.tfrecord")
    if kind == "unknown_fold":
        return shards, ["--fold", "7"], "unknown fold 7"
    if kind == "fold_without_shards":
        return shards, ["--fold", "2"], ("no shard for fold 2 (no examples fell into it); "
                                         "folds with shards: 0 (6 examples), 1 (8 examples)")
    if kind == "no_tp_outside_the_fold":
        return shards, [], "has no tp slices outside fold 0"
    if kind == "manifest_version":
        return shards, [], "written with schema version 99"
    if kind == "manifest_v1":
        return shards, [], "manifest.json was written with schema version 1, this code reads version 2; re-run `make shards`"
    if kind == "record_v1":
        ex = sf.train_example("v", 1, species=1, t_min=0.2, t_max=0.4, audio=sf.ramp(SLICE), sample_rate=RATE,
                              version=1)
        sf.write_records(shard, [ex])
        return shards, [], f"shard {shard} was written with schema version 1, this code reads version 2; re-run `make shards`"
    if kind == "manifest_without_kinds":
        path = os.path.join(shards, "manifest.json")
        manifest = json.loads(open(path).read())
        del manifest["files"]["train_by_kind"]
        with open(path, "w") as f:
            json.dump(manifest, f)
        return shards, [], "has no files.train_by_kind; re-run `make shards`"
    if kind == "corrupt_record":
        _corrupt(shard)
        return shards, [], f"shard {shard} is corrupt"
    if kind == "truncated_file":
        _truncate(shard)
        return shards, [], f"shard {shard} is corrupt"
    if kind == "fewer_records_than_manifest":  # valid framing, one record gone: only the counts disagree
        val_shard = os.path.join(shards, "train", "fold-0", "tp-00000-of-00001.tfrecord")
        records = list(tf.data.TFRecordDataset(val_shard).as_numpy_iterator())
        with tf.io.TFRecordWriter(val_shard) as writer:
            for record in records[:-1]:
                writer.write(record)
        return shards, [], "do not hold the records manifest.json counts (Input dataset was expected to contain"
    if kind == "window_longer_than_slice":
        return shards, ["--window_seconds", "3"], "window_seconds=3.0 is longer than the 2.0 s slices"
    if kind == "sample_rate":
        return shards, ["--mel.sample_rate", "22050", "--mel.fmax", "8000"], "holds 16000 Hz audio"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing_dir", "empty_dir", "unknown_fold", "fold_without_shards",
                                  "no_tp_outside_the_fold", "manifest_version", "manifest_v1", "record_v1",
                                  "manifest_without_kinds", "corrupt_record", "truncated_file",
                                  "fewer_records_than_manifest",
                                  "window_longer_than_slice", "sample_rate"])
def test_bad_input_exits_2_with_one_clear_line(kind, tmp_path, capsys):
    shards, extra, expected = _bad_shards(kind, str(tmp_path))
    cfg_file = tmp_path / "small.json"
    cfg_file.write_text(json.dumps(as_config_file_content(small_config())))
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        run_main(train.main, _train_argv(shards, str(run_dir), str(cfg_file), 0, *extra))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    if kind not in ("truncated_file", "fewer_records_than_manifest"):
        assert not run_dir.exists()  # nothing is written before the inputs are checked
    # The up-front check reads only each file's first record; damage further in is found (and the
    # file named) when training reads the data.


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "must hold a JSON object"),
    (json.dumps({"schema_version": schema.SCHEMA_VERSION, "files": {}}), "lacks counts"),
])
def test_manifest_of_the_wrong_shape_is_a_shards_error(tmp_path, content, message):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(discovery.ShardsError, match=message):
        discovery.read_manifest(str(tmp_path))
