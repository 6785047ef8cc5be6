"""trainer.recipe.config: presets, JSON round trip, generated flags, strict keys and types."""
from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from core.errors import run_main
from trainer.augment.chain import AugmentConfig
from trainer.features.mel import MelConfig
from trainer.recipe import config
from trainer.recipe.config import ConfigError, TrainConfig
from trainer.training import train


def test_full_preset_keeps_the_seeds_sizes():
    full = config.preset_config("full")
    assert (full.window_seconds, full.mel.n_fft, full.mel.hop_length, full.mel.n_mels) == (10.0, 2048, 512, 128)
    assert (full.mel.fmin, full.mel.fmax, full.mel.sample_rate, full.num_classes) == (84.0, 15056.0, 48000, 24)
    assert (full.batch_size, full.dense_units) == (32, 1024)
    assert full.from_preset == "full"


def _input_area(cfg: TrainConfig) -> int:
    frames = 1 + int(round(cfg.window_seconds * cfg.mel.sample_rate)) // cfg.mel.hop_length
    return cfg.mel.n_mels * frames


def test_presets_record_their_name_and_shrink_from_full_to_cpu_to_tiny():
    presets = {name: config.preset_config(name) for name in ("full", "cpu", "tiny")}
    assert {name: cfg.from_preset for name, cfg in presets.items()} == {"full": "full", "cpu": "cpu", "tiny": "tiny"}
    assert _input_area(presets["tiny"]) < _input_area(presets["cpu"]) < _input_area(presets["full"])
    with pytest.raises(ConfigError, match="unknown preset 'auto'"):
        config.preset_config("auto")  # "auto" is resolved first (resolve_preset), never a preset itself


def test_auto_resolves_to_cpu_without_an_accelerator_with_one_log_line(caplog, tmp_path):
    assert config.resolve_preset("auto")[0] == "cpu"  # this machine has no GPU, and no --tpu is given
    assert config.resolve_preset("auto", tpu="local")[0] == "full"
    assert config.resolve_preset("tiny") == ("tiny", "asked for")
    with caplog.at_level("INFO", logger="trainer.recipe.config"):
        _, cfg = train.parse_args(["--shards_dir", "s", "--fold", "0", "--run_dir", "r", "--preset", "auto",
                                   "--epochs", "2"])
    lines = [r.getMessage() for r in caplog.records if r.name == "trainer.recipe.config"]
    assert len(lines) == 1 and "cpu" in lines[0] and "GPU" in lines[0], lines
    assert cfg == config.apply_overrides(config.preset_config("cpu"), {"epochs": 2})
    config.save_config(cfg, str(tmp_path / "config.json"))
    assert json.loads((tmp_path / "config.json").read_text())["from_preset"] == "cpu"
    assert train.build_parser().get_default("preset") == "auto"  # the default of train (and so of make train)


def test_json_round_trip(tmp_path):
    cfg = config.apply_overrides(config.preset_config("tiny"), {
        "loss": "softmax", "mixed_precision": True, "mel": {"fmin": 50.0, "scaling": "db"},
        "augment": {"pitch_shift_p": 0.5, "time_masks": 2, "mixup_p": 0.25}, "negative_fraction": 0.4,
        "unlabelled_weight": 0.2, "min_box_overlap": 0.75, "freq_channel": True, "band_norm": True,
        "monitor": "val_loss", "steps_per_epoch": 7})
    config.save_config(cfg, str(tmp_path / "config.json"))
    assert config.load_run_config(str(tmp_path)) == cfg
    # The saved file is the complete config: every field of every section is present.
    saved = json.loads((tmp_path / "config.json").read_text())
    assert set(saved) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(saved["mel"]) == {f.name for f in dataclasses.fields(MelConfig)}
    assert set(saved["augment"]) == {f.name for f in dataclasses.fields(AugmentConfig)}


def test_a_run_config_written_before_jit_compile_existed_loads_with_keras_rule(tmp_path):
    saved = config.config_to_dict(config.preset_config("cpu"))
    del saved["jit_compile"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = config.load_run_config(str(tmp_path))
    assert loaded.jit_compile == "auto" and loaded == config.preset_config("cpu")
    # A resumed run may change it: it changes how the steps run, not what they compute.
    assert "jit_compile" in config.RESUMABLE_FIELDS


def test_a_run_config_written_before_backbones_existed_loads_as_the_resnet50_it_trained(tmp_path):
    # A cpu-preset run of an earlier version trained ResNet50, whatever the cpu preset's backbone is now.
    saved = config.config_to_dict(config.preset_config("cpu"))
    for key in ("backbone", "cnn_width", "cnn_blocks", "cnn_convs"):
        del saved[key]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = config.load_run_config(str(tmp_path))
    assert loaded.from_preset == "cpu" and loaded.backbone == "resnet50"


def test_every_field_has_a_flag_and_flags_beat_file_beat_preset(tmp_path):
    parser = train.build_parser()
    flags = {a for action in parser._actions for a in action.option_strings}
    for name in config.flatten(TrainConfig()):
        assert f"--{name}" in flags, name
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"epochs": 7, "batch_size": 3, "mel": {"n_mels": 40}}))
    args, cfg = train.parse_args(["--shards_dir", "s", "--fold", "1", "--run_dir", "r", "--preset", "tiny",
                                  "--config", str(cfg_file), "--epochs", "5", "--mel.hop_length", "256",
                                  "--augment.pitch_shift_max_steps", "3", "--no-augment.pink_noise",
                                  "--mixed_precision", "--loss", "softmax"])
    assert (args.shards_dir, args.fold, args.run_dir) == ("s", 1, "r")
    assert cfg.epochs == 5  # flag over file
    assert cfg.batch_size == 3 and cfg.mel.n_mels == 40  # file over preset
    tiny = config.preset_config("tiny")
    assert (cfg.window_seconds, cfg.mel.n_fft) == (tiny.window_seconds, tiny.mel.n_fft)  # preset where nothing else says
    assert cfg.mel.hop_length == 256 and cfg.augment.pitch_shift_max_steps == 3
    assert cfg.augment.pink_noise is False and cfg.mixed_precision is True and cfg.loss == "softmax"


@pytest.mark.parametrize("overrides, message", [
    ({"epochz": 3}, "unknown config key(s) epochz"),
    ({"mel": {"n_melz": 3}}, "unknown config key(s) mel.n_melz"),
    ({"augment": {"bogus": 1}}, "augment.bogus"),
    ({"epochs": "ten"}, "epochs must be of type int"),
    ({"learning_rate": True}, "learning_rate must be of type float"),
    ({"loss": "hinge"}, "loss='hinge' is not one of"),
    ({"mel": 5}, "config section mel must be a JSON object"),
    ({"batch_size": 0}, "batch_size=0 (must be > 0)"),
    ({"mel": {"fmax": 30000.0}}, "fmax"),
    ({"augment": {"noise_p": 2.0}}, "noise_p"),
    ({"negative_fraction": 1.0}, "negative_fraction=1.0"),
    ({"unlabelled_weight": -0.1}, "unlabelled_weight=-0.1 (must be in [0, 1])"),
    ({"min_box_overlap": 0.0}, "min_box_overlap=0.0 (must be in (0, 1])"),
    ({"band_norm": True, "mel": {"scaling": "minmax"}}, "band_norm needs mel.scaling 'db' or 'pcen'"),
    ({"monitor": "lwlrap"}, "monitor='lwlrap' is not one of"),
    ({"mel": {"scaling": "log"}}, "scaling"),
    ({"augment": {"time_masks": -1}}, "time_masks"),
    ({"augment": {"mixup_alpha": 0.0}}, "mixup_alpha"),
    ({"steps_per_epoch": -1}, "steps_per_epoch=-1 (must be >= 0)"),
    ({"head": "transformer"}, "head='transformer' is not one of ['gap', 'attention', 'max_avg']"),
    ({"head": "attention", "loss": "softmax"}, "head='attention' needs loss='sigmoid'"),
    ({"head": "max_avg", "loss": "softmax"}, "head='max_avg' needs loss='sigmoid'"),
])
def test_bad_overrides_raise_config_error(overrides, message):
    with pytest.raises(ConfigError) as e:
        config.apply_overrides(TrainConfig(), overrides)
    assert message in str(e.value)


def test_a_run_config_saved_before_the_head_setting_loads_with_the_seeds_head(tmp_path):
    cfg = config.apply_overrides(config.preset_config("tiny"), {"epochs": 3})
    config.save_config(cfg, str(tmp_path / "config.json"))
    old = json.loads((tmp_path / "config.json").read_text())
    del old["head"]  # as written by runs that predate the setting
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = config.load_run_config(str(tmp_path))
    assert loaded.head == "gap" and loaded == cfg


def test_unknown_key_in_config_file_exits_2_with_message(tmp_path, capsys):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"mel": {"n_mels": 64, "nmels": 64}}))
    with pytest.raises(SystemExit) as e:
        run_main(train.main, ["--shards_dir", str(tmp_path), "--fold", "0", "--run_dir", str(tmp_path / "r"),
                              "--config", str(cfg_file)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown config key(s) mel.nmels" in err and "n_mels" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_config_differences_lists_dotted_keys():
    a = config.apply_overrides(TrainConfig(), {"epochs": 4, "mel": {"n_mels": 100}, "verbose": 1})
    b = config.apply_overrides(a, {"epochs": 3, "mel": {"n_mels": 64}, "verbose": 0})
    assert config.config_differences(a, b, ignore=frozenset({"verbose"})) == [
        "mel.n_mels: 100 -> 64", "epochs: 4 -> 3"]


def test_config_file_that_is_a_directory_or_not_text_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        config.read_config_file(str(tmp_path))
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81 not utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        config.read_config_file(str(binary))


def _literal_fields() -> dict[str, tuple]:
    """{dotted flag name: choices} of every Literal-typed config field, read from the annotations."""
    hints = {"": typing.get_type_hints(TrainConfig), "mel.": typing.get_type_hints(MelConfig),
             "augment.": typing.get_type_hints(AugmentConfig)}
    return {prefix + name: typing.get_args(tp) for prefix, types in hints.items() for name, tp in types.items()
            if typing.get_origin(tp) is typing.Literal}


def test_choice_fields_are_literals_whose_values_are_the_flag_choices():
    fields = _literal_fields()
    # The settings with a fixed set of values are all Literal fields (so checked in one place).
    assert {"loss", "head", "monitor", "optimizer", "lr_schedule", "strategy", "from_preset", "verbose", "jit_compile",
            "mel.scaling",
            "augment.noise_snr_reference", "augment.pitch_shift_method", "augment.time_shift_padding",
            "augment.volume_mode"} <= set(fields)
    actions = {a.dest: a for a in train.build_parser()._actions}
    for name, values in fields.items():
        assert tuple(actions[name].choices) == values, name
    assert config.PRESET_CHOICES == ("auto", *fields["from_preset"])
    assert set(config.PRESETS) == set(fields["from_preset"])


@pytest.mark.parametrize("flag, value", [("--monitor", "lwlrap"), ("--mel.scaling", "log"), ("--verbose", "3"),
                                         ("--augment.volume_mode", "square"), ("--strategy", "gpu"),
                                         ("--augment.pitch_shift_method", "vocoder"), ("--head", "sed")])
def test_a_bad_choice_flag_is_one_error_line_naming_the_choices(capsys, tmp_path, flag, value):
    with pytest.raises(SystemExit) as e:
        run_main(train.main, ["--shards_dir", str(tmp_path), "--fold", "0", "--run_dir", str(tmp_path / "r"),
                              flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "invalid choice" in lines[0] and value in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("section, key, value", [("", "verbose", 3), ("", "strategy", "gpu"), ("mel", "scaling", "log"),
                                                 ("augment", "time_shift_padding", "reflect")])
def test_a_bad_choice_in_a_config_file_names_the_field_and_its_choices(section, key, value):
    overrides = {section: {key: value}} if section else {key: value}
    with pytest.raises(ConfigError) as e:
        config.apply_overrides(TrainConfig(), overrides)
    assert f"{key}={value!r} is not one of [" in str(e.value)
