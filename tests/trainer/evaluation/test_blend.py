"""trainer.evaluation.blend: within-recording ranks, the weight search, and the OOF alignment.

The blend-wins case is built by hand (tests/helpers/fake_oof.py: 3 species, two scorers each right on a
different half of the recordings, each wrong one ranking the true species second), every LWLRAP in it
worked out in that file's comments; the blend's scores are also checked against sklearn's label-ranking
AP (tests.helpers.common).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.helpers.common import sklearn_lwlrap
from tests.helpers.fake_oof import BASELINE, EXPECTED_BY_WEIGHT, MODEL, TRUTH, slices
from trainer.evaluation import blend


def test_recording_ranks_by_hand():
    ranks = blend.recording_ranks([[3.0, 1.0, 3.0, 2.0], [0.1, 0.4, 0.3, 0.2]])
    # Row 0: species 1 lowest (0), species 3 next (1/3), species 0 and 2 tied at ranks 2 and 3 -> 2.5 / 3 each.
    np.testing.assert_allclose(ranks, [[2.5 / 3, 0, 2.5 / 3, 1 / 3], [0, 1, 2 / 3, 1 / 3]])
    np.testing.assert_allclose(blend.recording_ranks([[7.0], [-1.0]]), [[0.5], [0.5]])


def test_a_blend_of_two_half_right_scorers_pays():
    result = blend.search_weight(TRUTH, MODEL, BASELINE)
    assert result.model_lwlrap == pytest.approx(0.75) and result.baseline_lwlrap == pytest.approx(0.75)
    assert result.weights == blend.GRID
    np.testing.assert_allclose(result.lwlrap_by_weight, EXPECTED_BY_WEIGHT, atol=1e-12)
    # 0.4, 0.5 and 0.6 tie at 1.0: the largest weight (the most model) is taken.
    assert result.best_weight == pytest.approx(0.6) and result.blend_lwlrap == pytest.approx(1.0)
    assert result.pays and result.weight == pytest.approx(0.6)
    assert result.finding.startswith("blend pays")
    mixed = blend.blend_scores(MODEL, BASELINE, 0.6)
    assert sklearn_lwlrap(TRUTH, mixed) == pytest.approx(1.0)
    np.testing.assert_allclose(mixed[0], [0.6 + 0.4 * 0.5, 0.4, 0.6 * 0.5])
    entry = result.to_dict()
    assert entry["pays"] is True and entry["weight"] == pytest.approx(0.6)
    assert [g["recording_lwlrap"] for g in entry["grid"]] == pytest.approx(EXPECTED_BY_WEIGHT)


def test_the_blend_only_depends_on_each_scorers_order_within_a_recording():
    # exp, a power and a shift keep each recording's order: the search must not move.
    squeezed = blend.search_weight(TRUTH, np.exp(5 * MODEL), BASELINE ** 3 + 100.0)
    plain = blend.search_weight(TRUTH, MODEL, BASELINE)
    assert squeezed.lwlrap_by_weight == pytest.approx(plain.lwlrap_by_weight)
    assert squeezed.best_weight == plain.best_weight


def test_a_gain_below_the_margin_does_not_pay():
    result = blend.search_weight(TRUTH, MODEL, BASELINE, margin=0.3)  # 1.0 < 0.75 + 0.3
    assert not result.pays and result.weight == 1.0 and result.best_weight == pytest.approx(0.6)
    assert "does not pay" in result.finding


def _perfect_and_noisy(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth [12, 5] with one species per recording, a perfect scorer and one ranking it below another."""
    rng = np.random.default_rng(seed)
    truth = np.eye(5)[rng.integers(0, 5, 12)]
    perfect = rng.random((12, 5)) * 0.5 + truth * 0.5
    wrong = rng.random((12, 5))
    wrong[np.arange(12), truth.argmax(axis=1)] = 0.0  # the true species scored lowest everywhere
    return truth, perfect, wrong


def test_a_perfect_model_gets_weight_1_and_no_blend():
    truth, perfect, wrong = _perfect_and_noisy(0)
    result = blend.search_weight(truth, perfect, wrong)
    assert result.model_lwlrap == pytest.approx(1.0) and result.baseline_lwlrap == pytest.approx(0.2)
    assert result.best_weight == 1.0 and not result.pays and result.weight == 1.0
    assert "baseline beats" not in result.finding


def test_a_perfect_baseline_gets_weight_0_the_model_is_kept_and_the_finding_says_so():
    truth, perfect, wrong = _perfect_and_noisy(1)
    result = blend.search_weight(truth, wrong, perfect)
    assert result.baseline_lwlrap == pytest.approx(1.0) and result.model_lwlrap == pytest.approx(0.2)
    assert result.best_weight == 0.0 and result.blend_lwlrap == pytest.approx(1.0)
    assert not result.pays and result.weight == 1.0  # a blend is used only when it beats both
    assert "the baseline beats the model out of fold (1.0000 vs 0.2000)" in result.finding


# ---- OOF slices: alignment, then max per recording ----

def other_fold(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(fold=7, recording_id="other-" + table["recording_id"])


def test_oof_blend_matches_the_search_on_recording_scores():
    model_oof = slices(MODEL, 0).assign(offset=0, **{f"w{c}": 1.0 for c in range(3)})  # val_predictions' extras
    baseline_oof = pd.concat([slices(BASELINE, 1), other_fold(slices(BASELINE, 2))])
    model_rows, baseline_rows = blend.align_oof(model_oof, baseline_oof)  # fold 7 is not the model's: left out
    assert len(model_rows) == len(baseline_rows) == 8
    assert model_rows["recording_id"].tolist() == baseline_rows["recording_id"].tolist()
    assert model_rows["slice_start"].tolist() == baseline_rows["slice_start"].tolist()
    truth, model, base = blend.recording_scores(model_rows, baseline_rows)
    np.testing.assert_array_equal(truth, TRUTH)
    np.testing.assert_allclose(model, MODEL)
    np.testing.assert_allclose(base, BASELINE)
    result = blend.oof_blend(model_oof, baseline_oof)
    assert result.num_recordings == 4 and result.best_weight == pytest.approx(0.6) and result.pays


def test_slices_that_do_not_match_are_refused_with_the_reason():
    model_oof, baseline_oof = slices(MODEL, 0), slices(BASELINE, 1)
    with pytest.raises(blend.BlendError, match="1 only in the model's, 0 only in the baseline's"):
        blend.align_oof(model_oof, baseline_oof.iloc[1:])
    moved = baseline_oof.copy()
    moved.loc[0, "slice_start"] += 1
    with pytest.raises(blend.BlendError, match="OOF slices differ.*slice_start="):
        blend.align_oof(model_oof, moved)
    relabelled = baseline_oof.copy()
    tp = relabelled.index[relabelled["kind"] == "tp"][0]
    relabelled.loc[tp, ["y0", "y1", "y2"]] = 1.0 - relabelled.loc[tp, ["y0", "y1", "y2"]]
    with pytest.raises(blend.BlendError, match="give some recordings different species"):
        blend.align_oof(model_oof, relabelled)
    # A slice labelled otherwise by the baseline's window, its recording's species unchanged: accepted.
    edge = baseline_oof.copy()
    rec = edge.loc[tp, "recording_id"]
    other = edge.index[(edge["recording_id"] == rec) & (edge.index != tp)][0]
    species = [c for c in ("y0", "y1", "y2") if edge.loc[tp, c] == 1.0][0]
    assert edge.loc[other, species] == 0.0
    edge.loc[other, species] = 1.0
    model_rows, baseline_rows = blend.align_oof(model_oof, edge)
    assert len(model_rows) == len(baseline_rows) == len(model_oof)
    with pytest.raises(blend.BlendError, match="more than once"):
        blend.align_oof(model_oof, pd.concat([baseline_oof, baseline_oof.iloc[[0]]]))
    with pytest.raises(blend.BlendError, match="no row_index, slice_start"):
        blend.align_oof(model_oof.drop(columns=["row_index", "slice_start"]), baseline_oof)
    with pytest.raises(blend.BlendError, match="model scores 3 classes, the baseline 2"):
        blend.align_oof(model_oof, baseline_oof.drop(columns=["y2", "s2"]))
