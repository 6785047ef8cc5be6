"""trainer.data.inspect_examples: the examples are the trainer's, and each box lands on its sound.

Slices are hand-made (tests/helpers/shard_factory.py) around a tone made by the demo generator
(pipeline.demo_data.synthesize_call) in a known band and time; the box of each slice is exactly that
band and time. The plain box -> pixel mapping must then put the image's energy maximum inside the
box, for windows the trainer's seeded crop placed anywhere around the event.
"""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.demo_data import synthesize_call
from tests.helpers.shard_factory import train_example, write_shards
from trainer.data import discovery, inspect_examples
from trainer.recipe import config as config_lib

RATE = 16000
SLICE_SECONDS = 2.0
# (recording id, fold, band Hz, event seconds in the slice)
TONES = [("low", 0, (1000.0, 1200.0), (0.3, 0.6)), ("high", 0, (3000.0, 3400.0), (1.2, 1.6)),
         ("mid", 1, (2000.0, 2300.0), (0.7, 1.0))]


def tone_slice(band: tuple[float, float], event: tuple[float, float], seed: int) -> np.ndarray:
    """int16 [2 s]: quiet noise with a steady tone at the band's centre during the event."""
    rng = np.random.default_rng(seed)
    audio = 0.003 * rng.standard_normal(int(SLICE_SECONDS * RATE))
    start = int(event[0] * RATE)
    audio[start:start + int((event[1] - event[0]) * RATE)] += 0.5 * synthesize_call(
        "tone", band[0], band[1], event[1] - event[0], 1.0, RATE)
    return np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)


def cfg_for_tones(**changes):
    base = {"window_seconds": 1.0, "negative_fraction": 0.0, "min_box_overlap": 1.0, "shuffle_buffer": 4,
            "augment": {"noise_p": 1.0},
            "mel": {"sample_rate": RATE, "fmax": 8000.0, "n_fft": 1024, "hop_length": 256, "n_mels": 32}}
    base.update(changes)
    return config_lib.apply_overrides(config_lib.preset_config("tiny"), base)


@pytest.fixture(scope="module")
def tone_shards(tmp_path_factory) -> str:
    by_fold: dict[int, list] = {0: [], 1: []}
    for i, (rid, fold, band, event) in enumerate(TONES):
        ex = train_example(rid, fold, species=i, t_min=event[0], t_max=event[1],
                           audio=tone_slice(band, event, i), sample_rate=RATE)
        ex["boxes/f_min"], ex["boxes/f_max"] = [band[0]], [band[1]]
        by_fold[fold].append(ex)
    return write_shards(str(tmp_path_factory.mktemp("tones")), by_fold, sample_rate=RATE,
                        slice_seconds=SLICE_SECONDS)


def test_box_pixel_region_holds_the_energy_maximum(tone_shards):
    cfg = cfg_for_tones()
    files = discovery.prepare_fold(tone_shards, 1, cfg).train_files_by_kind  # trains on fold 0: "low", "high"
    examples = inspect_examples.draw_examples(files, cfg, n=6, augmented=False)
    assert {ex.recording_id for ex in examples} == {"low", "high"}
    bands = {rid: band for rid, _, band, _ in TONES}
    offsets = set()
    for ex in examples:
        assert len(ex.boxes) == 1 and ex.boxes[0].is_tp
        box = ex.boxes[0]
        assert (box.f_min, box.f_max) == bands[ex.recording_id]
        frames = ex.image.shape[1]
        f_lo, f_hi, b_lo, b_hi = inspect_examples.box_pixels(box, cfg.mel, frames)
        band, frame = np.unravel_index(np.argmax(ex.image), ex.image.shape)
        assert f_lo <= frame <= f_hi and b_lo <= band <= b_hi, (ex.recording_id, (band, frame), (f_lo, f_hi, b_lo, b_hi))
        # The box is a small part of the image, so landing in it is not a given.
        assert (f_hi - f_lo) * (b_hi - b_lo) < 0.15 * frames * ex.image.shape[0]
        offsets.add(round(box.t_min, 4))
    assert len(offsets) > 1  # the crop moved the window: the mapping followed it


def test_mel_bin_mapping_is_monotonic_and_spans_the_bands():
    mel_cfg = cfg_for_tones().mel
    bins = inspect_examples.mel_bin_of(np.array([mel_cfg.fmin, 1000.0, 4000.0, mel_cfg.fmax]), mel_cfg)
    assert np.all(np.diff(bins) > 0)
    assert bins[0] == pytest.approx(-1.0) and bins[-1] == pytest.approx(mel_cfg.n_mels)
    # Each band's centre frequency maps onto the band's own index.
    centres = inspect_examples.band_centres_hz(mel_cfg)
    np.testing.assert_allclose(inspect_examples.mel_bin_of(centres, mel_cfg), np.arange(mel_cfg.n_mels), atol=1e-6)


def test_window_boxes_keeps_overlapping_boxes_relative_to_the_window():
    boxes = {"species_id": np.array([1, 2, 3]), "t_min": np.array([0.1, 1.5, 2.5]),
             "t_max": np.array([0.4, 2.2, 3.0]), "f_min": np.array([100.0, 200.0, 300.0]),
             "f_max": np.array([150.0, 250.0, 350.0]), "is_tp": np.array([1, 0, 1])}
    kept = inspect_examples.window_boxes(boxes, window_start=1.0, window_seconds=1.0)
    assert [(b.species_id, b.is_tp) for b in kept] == [(2, False)]
    assert kept[0].t_min == pytest.approx(0.5) and kept[0].t_max == pytest.approx(1.2)


def test_unaugmented_copy_is_the_same_window_as_the_plain_draw(tone_shards):
    cfg = cfg_for_tones()
    files = discovery.prepare_fold(tone_shards, 1, cfg).train_files_by_kind
    both = inspect_examples.draw_examples(files, cfg, n=3, augmented=True, unaugmented_beside=True)
    plain = inspect_examples.draw_examples(files, cfg, n=3, augmented=False)
    for a, p in zip(both, plain):
        assert a.recording_id == p.recording_id and a.boxes == p.boxes
        np.testing.assert_array_equal(a.plain, p.image)
        assert not np.allclose(a.image, p.image)  # noise_p 1: the fed image is augmented


def test_cli_writes_the_grid(tiny_shards, tmp_path, capsys):
    out = tmp_path / "inspect"
    path = inspect_examples.main(["--shards_dir", tiny_shards, "--preset", "tiny", "--n", "3", "--unaugmented_beside",
                         "--out_dir", str(out)])
    assert path == str(out / "examples.png")
    assert (out / "examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "3 examples" in capsys.readouterr().out


def test_cli_unknown_fold_is_one_error_line(tiny_shards, tmp_path, capsys):
    from core.errors import run_main

    with pytest.raises(SystemExit) as info:
        run_main(inspect_examples.main, ["--shards_dir", tiny_shards, "--preset", "tiny", "--fold", "7",
                                "--out_dir", str(tmp_path)])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: unknown fold 7")


def test_cli_refuses_a_preset_beside_a_run_dir(tiny_shards, tmp_path):
    from core.errors import UserError

    with pytest.raises(UserError, match="--run_dir uses that run's config.json"):
        inspect_examples.main(["--shards_dir", tiny_shards, "--run_dir", str(tmp_path), "--preset", "tiny"])
