"""Mutation-testing audit 90: tests that kill runs-statistics mutants the suite let survive.

Expected values are computed by hand (arithmetic written out here), not by the code under test."""

import math

import numpy as np

from runs.results import series_band


def _run(steps, values):
    return {"history": {"eval": {"step": list(steps), "test_accuracy": list(values)}}}


def test_series_band_is_the_mean_and_sample_std_over_three_or_more_runs():
    # three runs with values 1, 2, 6 at step 10: mean 3 (the median would be 2), sample std
    # sqrt(((1-3)^2 + (2-3)^2 + (6-3)^2) / 2) = sqrt(7); at step 20 only two finite values
    # 0.5 and 1.5 (the NaN is ignored): mean 1, std sqrt(0.5); step 30 one run: std 0.
    runs = [
        _run([10, 20, 30], [1.0, 0.5, 4.0]),
        _run([10, 20], [2.0, 1.5]),
        _run([10, 20], [6.0, float("nan")]),
    ]

    def get(r):
        return (r["history"]["eval"]["step"], r["history"]["eval"]["test_accuracy"])

    steps, mean, std = series_band(runs, get)
    np.testing.assert_array_equal(steps, [10, 20, 30])
    np.testing.assert_allclose(mean, [3.0, 1.0, 4.0], rtol=1e-15)
    np.testing.assert_allclose(std, [math.sqrt(7.0), math.sqrt(0.5), 0.0], rtol=1e-15)


def _loss_run(steps, values, *, wall=1.0):
    return {"history": {"train_loss": {"step": list(steps), "value": list(values)}}}


def test_early_max_loss_is_the_mean_over_runs_of_each_runs_peak_before_early_steps():
    from runs.summary import early_max_loss

    # run A: losses at steps 0..4 = 3, 5, 4, 9, 1; the first 3 updates are steps 0, 1, 2
    # (s < early_steps = 3): peak 5 (step 3's 9 is outside). run B: 2, 1, 7, 8: peak 7.
    # mean of the peaks: (5 + 7) / 2 = 6 (not the max 7, not the mean of minima 1.5).
    runs = [
        _loss_run(range(5), [3.0, 5.0, 4.0, 9.0, 1.0]),
        _loss_run(range(4), [2.0, 1.0, 7.0, 8.0]),
    ]
    assert early_max_loss(runs, 3) == 6.0
    # a non-finite loss inside the window makes that run's peak (and the mean) infinite
    runs.append(_loss_run(range(3), [1.0, float("nan"), 1.0]))
    assert early_max_loss(runs, 3) == math.inf


def test_variant_rows_wall_time_is_the_mean_over_the_variants_runs():
    from runs.summary import TABLE_METRICS, variant_rows

    def run(seed, wall):
        return {
            "variant": "v", "seed": seed, "status": "finished", "diverged": None,
            "final": {m: 0.5 for m in TABLE_METRICS}, "wall_time_s": wall,
        }  # fmt: skip

    rows = variant_rows([run(0, 1.0), run(1, 2.0), run(2, 6.0)])
    assert rows[0]["wall_time_s"] == 3.0  # (1 + 2 + 6) / 3


def test_tied_holds_for_two_exact_zeros():
    # |x - y| <= TIE_RTOL * max(|x|, |y|, scale): 0 <= 0 for x = y = 0 (e.g. two zero losses or
    # two curves with zero roughness on an all-zero scale): a tie, not a strict "no"
    from runs.claims import _compare, tied

    assert tied(0.0, 0.0)
    assert tied(0.0, 0.0, 0.0)
    assert _compare(True, 0.0, 0.0) == "tie"


def test_claims_scale_is_the_magnitude_of_the_curves():
    # tied()'s scale is "the magnitude of the curves they come from": max |value|, so a curve of
    # negative values (e.g. a log-likelihood-style loss) still has a positive scale
    from runs.claims import _scale

    assert _scale(np.array([-3.0, 1.0]), np.array([2.0])) == 3.0
    assert _scale(np.array([-5.0, -4.0])) == 5.0
    assert _scale() == 0.0
