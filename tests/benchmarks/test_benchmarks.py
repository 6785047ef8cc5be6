"""benchmarks/: the arithmetic and choices behind the figures (never the timings themselves), and one
smoke run of each benchmark's measuring code on hand-made tiny shards, so a change of the trainer's
API breaks a test rather than `make bench`.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from benchmarks import bench_input, bench_train, common
from core import choices, schema
from tests.helpers.shard_factory import train_example, write_shards
from trainer.data import discovery
from trainer.recipe import config

CPUINFO = """processor\t: 0
model name\t: Example CPU @ 2.00GHz
flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_tile
processor\t: 1
model name\t: Example CPU @ 2.00GHz
flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_tile
"""


def test_cpu_features_reads_the_bf16_flags_as_whole_words():
    features = common.cpu_features(CPUINFO)
    assert features == {"model": "Example CPU @ 2.00GHz", "avx512f": True, "avx512_bf16": True,
                        "amx_tile": True, "amx_bf16": False}
    # amx_bf16 must not be taken from a longer flag that contains it.
    assert not common.cpu_features(CPUINFO.replace("amx_tile", "amx_bf16x"))["amx_bf16"]
    assert not any(v for k, v in common.cpu_features("").items() if k != "model")


def test_window_rates_skip_the_warmup_and_drop_an_incomplete_window():
    # Readings before step 1 and after each of 6 steps: step 1 (warm-up, tracing) takes 10 s, steps 2-3
    # 2 s together, steps 4-5 3 s together, step 6 alone is an incomplete window.
    wall = [0.0, 10.0, 11.0, 12.0, 14.0, 15.0, 17.0]
    cpu = [0.0, 5.0, 6.0, 7.0, 10.0, 11.0, 12.0]
    windows = bench_train.window_rates(wall, cpu, warmup=1, window_steps=2, examples_per_step=4)
    assert len(windows) == 2
    assert windows[0] == pytest.approx({"steps_per_s": 1.0, "examples_per_s": 4.0, "seconds_per_step": 1.0,
                                        "cores_used": 1.0})
    assert windows[1] == pytest.approx({"steps_per_s": 2 / 3, "examples_per_s": 8 / 3, "seconds_per_step": 1.5,
                                        "cores_used": 4 / 3})
    assert common.median_by(windows, "steps_per_s") is windows[1]  # lower middle of two
    with pytest.raises(ValueError):
        bench_train.window_rates(wall, cpu[:-1], 1, 2, 4)


def test_mixed_speedup_is_per_preset_and_source_against_float32():
    def case(preset, precision, **rates):
        return {"preset": preset, "precision": precision,
                "sources": {s: {"median": {"steps_per_s": r}} for s, r in rates.items()}}

    cases = [case("cpu", "float32", fixed=2.0, pipeline=1.0), case("cpu", "mixed", fixed=3.0, pipeline=1.5),
             case("full", "mixed", fixed=0.5),  # no float32 to compare with
             {"preset": "full", "precision": "float32", "error": "timed out"}]
    assert bench_train.mixed_speedups(cases) == {"cpu": {"fixed": 1.5, "pipeline": 1.5}}
    # Each placement of the log-mel against its own float32.
    on_model = [{**case("cpu", "float32", fixed=2.0, pipeline=1.0), "mel_device": "model"},
                {**case("cpu", "mixed", fixed=4.0, pipeline=1.5), "mel_device": "model"}]
    assert bench_train.mixed_speedups(cases + on_model) == {
        "cpu": {"fixed": 1.5, "pipeline": 1.5, "fixed mel on model": 2.0, "pipeline mel on model": 1.5}}


def test_avx2_path_and_xla_speedups_compare_cases_equal_in_every_other_axis():
    def case(precision, isa, xla, fixed):
        return {"preset": "cpu", "precision": precision, "mel_device": "host", "isa": isa, "xla": xla,
                "sources": {"fixed": {"median": {"steps_per_s": fixed}}}}

    cases = [case("float32", "native", False, 2.0), case("float32", "avx2", False, 1.0),
             case("mixed", "native", False, 4.0), case("mixed", "avx2", False, 0.5),
             case("float32", "native", True, 3.0)]
    assert bench_train.speedups(cases, "isa", "native", "avx2") == {"cpu": {"fixed": 0.5, "fixed mixed": 0.125}}
    assert bench_train.speedups(cases, "xla", False, True) == {"cpu": {"fixed": 1.5}}
    assert bench_train.mixed_speedups(cases) == {"cpu": {"fixed": 2.0, "fixed on avx2": 0.5}}


def test_avx2_cases_limit_onednn_and_xla_and_run_for_the_variant_presets_only():
    env = bench_train.isa_environment("avx2", {"XLA_FLAGS": "--xla_dump_to=/tmp/x", "HOME": "/h"})
    assert env == {"ONEDNN_MAX_CPU_ISA": "AVX2", "XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX2",
                   "HOME": "/h"}
    assert bench_train.isa_environment("avx2", {})["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX2"
    assert bench_train.isa_environment("native", {"HOME": "/h"}) == {"HOME": "/h"}
    assert bench_train.JIT_COMPILE == choices.of(config.JitCompile)
    args = bench_train.parse_args(["--precisions", "float32", "--isas", "native", "avx2",
                                   "--jit_compile_cases", "auto", "on"])
    cases = bench_train.case_list(args)
    assert [(c["preset"], c["isa"], c["jit_compile"]) for c in cases] == [
        ("cpu", "native", "auto"), ("cpu", "native", "on"), ("cpu", "avx2", "auto"), ("cpu", "avx2", "on"),
        ("full", "native", "auto")]
    assert bench_train.parse_args([]).isas == ["native"]  # no AVX2 path unless asked (make bench asks)


def test_only_the_first_source_warms_up_long():
    args = bench_train.parse_args(["--windows", "4"])
    plans = bench_train.case_plans("cpu", ["fixed", "pipeline"], args)
    warmup, window_steps = bench_train.DEFAULT_STEPS["cpu"]
    assert plans["fixed"] == bench_train.Plan(warmup, window_steps, 4)
    assert plans["pipeline"] == bench_train.Plan(1, window_steps, 4)
    assert plans["fixed"].steps == warmup + 4 * window_steps
    quick = bench_train.case_plans("full", ["pipeline"], bench_train.parse_args(["--quick"]))
    assert quick == {"pipeline": bench_train.Plan(1, 1, 2)}


def _recipe(**augment):
    return config.apply_overrides(config.preset_config("full"), {"augment": augment})


def test_input_variants_follow_the_recipe():
    variants, skipped = bench_input.pipeline_variants(
        _recipe(noise_p=0.5, noise_bank_seconds=60.0, pitch_shift_p=0.5, pitch_shift_method="mel"))
    assert set(variants) == {"pipeline_ceiling", "pipeline_augmented", "pipeline_augmented_fresh_noise",
                             "pipeline_augmented_waveform_pitch", "pipeline_ceiling_mel_on_model",
                             "pipeline_augmented_mel_on_model"} and not skipped
    assert not variants["pipeline_ceiling"].augment.enabled
    # Both placements of the log-mel, the rest of the recipe the same.
    assert {name: c.mel.device for name, c in variants.items()} == {
        name: "model" if name.endswith("mel_on_model") else "host" for name in variants}
    assert variants["pipeline_augmented_mel_on_model"].augment == variants["pipeline_augmented"].augment
    assert not variants["pipeline_ceiling_mel_on_model"].augment.enabled
    assert variants["pipeline_augmented_fresh_noise"].augment.noise_bank_seconds == 0.0
    assert variants["pipeline_augmented_waveform_pitch"].augment.pitch_shift_method == "librosa"
    assert variants["pipeline_augmented_waveform_pitch"].augment.noise_p == 0.5  # the rest of the recipe kept

    _, skipped = bench_input.pipeline_variants(_recipe(pitch_shift_p=0.0, noise_bank_seconds=0.0))
    assert set(skipped) == {"pipeline_augmented_fresh_noise", "pipeline_augmented_waveform_pitch"}
    _, skipped = bench_input.pipeline_variants(_recipe(gaussian_noise=False, pink_noise=False,
                                                       pitch_shift_method="librosa"))
    assert set(skipped) == {"pipeline_augmented_fresh_noise", "pipeline_augmented_waveform_pitch"}
    variants, skipped = bench_input.pipeline_variants(_recipe(enabled=False))
    assert set(variants) == {"pipeline_ceiling", "pipeline_ceiling_mel_on_model"}
    assert set(skipped) == {"pipeline_augmented", "pipeline_augmented_mel_on_model"}


def test_bench_input_needs_the_data_dir_of_other_shards():
    from core.errors import UserError

    with pytest.raises(UserError, match="--data_dir"):
        bench_input.parse_args(["--shards_dir", "elsewhere"])
    assert bench_input.parse_args([]).data_dir == common.DEFAULT_DATA


# ---- smoke runs on hand-made shards (tiny preset: 2 s windows at 48 kHz) ----

RATE = 48000


@pytest.fixture(scope="module")
def tiny_v2_shards(tmp_path_factory):
    rng = np.random.default_rng(0)
    audio = lambda: rng.integers(-3000, 3000, 2 * RATE, dtype=np.int16)
    by_fold = {}
    for fold in range(2):
        slices = [train_example(f"r{fold}{i}", fold, species=i % 3, t_min=0.5, t_max=1.0, audio=audio(),
                                sample_rate=RATE) for i in range(4)]
        slices.append(train_example(f"r{fold}9", fold, species=1, t_min=0.2, t_max=0.8, audio=audio(),
                                    sample_rate=RATE, kind=schema.KIND_FP))
        by_fold[fold] = slices
    return write_shards(str(tmp_path_factory.mktemp("bench_shards")), by_fold, sample_rate=RATE, slice_seconds=2.0)


def test_input_measurements_run_on_the_current_pipeline(tiny_v2_shards):
    cfg = config.preset_config("tiny")
    fold = discovery.prepare_fold(tiny_v2_shards, 0, cfg)
    rate = bench_input.time_pipeline(fold, cfg, batch_size=2, batches=1, warmup=1)
    assert rate["samples_per_s"] > 0 and rate["cpu_ms_per_sample"] >= 0
    # Batches of waveforms and the draws of the log-mel augmentations.
    model_cfg = dataclasses.replace(cfg, mel=dataclasses.replace(cfg.mel, device="model"))
    on_model = bench_input.time_pipeline(fold, model_cfg, batch_size=2, batches=1, warmup=1)
    assert on_model["samples_per_s"] > 0
    with_masks = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, time_masks=1, mixup_p=0.5))
    costs = bench_input.time_costs(fold.train_files_by_kind["tp"], with_masks, batch_size=2, calls=1)
    assert {"log_mel_tf", "recipe_chain_numpy", "spec_augment_masks_tf", "mixup_tf", "block_shuffle"} <= set(costs)


@pytest.mark.parametrize("mel_device", ["host", "model"])
def test_a_training_case_times_every_source_of_the_real_model(tiny_v2_shards, mel_device):
    plans = {"fixed": bench_train.Plan(1, 1, 1), "pipeline": bench_train.Plan(1, 1, 1)}
    result = bench_train.run_case(tiny_v2_shards, 0, "tiny", "float32", ["fixed", "pipeline"], plans, batch_size=2,
                                  mel_device=mel_device)
    assert result["policy"] == "float32" and result["global_batch"] == 2 and result["mel_device"] == mel_device
    assert tuple(result["input_shape"]) == discovery.input_shape(config.preset_config("tiny"))
    for source in ("fixed", "pipeline"):
        timed = result["sources"][source]
        assert len(timed["windows"]) == 1 and timed["median"]["examples_per_s"] > 0
        assert math.isfinite(timed["last_loss"])
