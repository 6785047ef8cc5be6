"""trainer.augment.background on known signals: the mix hits the asked-for SNR; off or silent leaves the window."""
from __future__ import annotations

import numpy as np
import pytest

from trainer.augment import chain
from trainer.augment.background import BackgroundMix, mix_at_snr
from trainer.augment.waveform import AugmentError

RATE = 16000


def _call_and_background(n: int = RATE) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n) / RATE
    call = (0.3 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)  # power 0.045
    background = np.random.default_rng(7).normal(0.0, 0.05, n).astype(np.float32)
    return call, background


def _snr_db(signal: np.ndarray, added: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(signal.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2)))


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.5, 20.0])
def test_mix_hits_the_requested_snr(snr_db):
    call, background = _call_and_background()
    mixed = mix_at_snr(call, background, snr_db)
    added = mixed - call
    assert abs(_snr_db(call, added) - snr_db) < 0.01
    # what was added is the background, scaled (correlation 1)
    assert np.corrcoef(added, background)[0, 1] > 0.9999
    assert mixed.dtype == np.float32 and mixed.shape == call.shape


def test_silent_background_or_window_leaves_the_window_as_it_is():
    call, background = _call_and_background()
    np.testing.assert_array_equal(mix_at_snr(call, np.zeros_like(call), 0.0), call)
    silent = np.zeros_like(call)
    np.testing.assert_array_equal(mix_at_snr(silent, background, 0.0), silent)
    with pytest.raises(AugmentError, match="must match"):
        mix_at_snr(call, background[:-1], 0.0)


def test_probability_zero_leaves_the_input_untouched_and_draws_nothing():
    call, background = _call_and_background()
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    out = BackgroundMix(p=0.0)(call, background, rng)
    np.testing.assert_array_equal(out, call)
    assert rng.bit_generator.state == state


def test_probability_one_always_mixes_within_the_snr_range():
    call, background = _call_and_background()
    mix = BackgroundMix(p=1.0, min_snr_db=2.0, max_snr_db=6.0)
    snrs = [_snr_db(call, mix(call, background, np.random.default_rng(i)) - call) for i in range(20)]
    assert all(2.0 - 0.01 <= s <= 6.0 + 0.01 for s in snrs)
    assert max(snrs) - min(snrs) > 1.0  # drawn, not fixed
    with pytest.raises(AugmentError):
        BackgroundMix(p=1.5)
    with pytest.raises(AugmentError):
        BackgroundMix(min_snr_db=5.0, max_snr_db=1.0)


def test_the_chain_mixes_first_only_when_configured():
    call, background = _call_and_background()
    only_mix = chain.AugmentConfig(noise_p=0.0, time_shift_p=0.0, volume_p=0.0, background_mix_p=1.0,
                                   background_snr_db_min=3.0, background_snr_db_max=3.0)
    out, steps = chain.augment_with_seed(chain.build_augmentation(only_mix, RATE), call, 11, background=background)
    assert abs(_snr_db(call, out - call) - 3.0) < 0.01 and steps == 0
    # default config: no background mixing, and a background passed changes nothing
    default = chain.build_augmentation(chain.AugmentConfig(), RATE)
    assert default.background is None
    np.testing.assert_array_equal(chain.augment_with_seed(default, call, 5, background=background)[0],
                                  chain.augment_with_seed(default, call, 5)[0])
    with pytest.raises(AugmentError, match="background_snr_db_min"):
        chain.AugmentConfig(background_snr_db_min=4.0, background_snr_db_max=1.0)
