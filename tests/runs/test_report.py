"""The results table and the band statistics, against numbers computed here."""

from __future__ import annotations

import numpy as np

from runs.report import _series_band, markdown_table, variant_rows


def _result(variant, seed, accuracy, loss, status="finished", steps=(0, 10), values=(1.0, 0.5)):
    final = {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "train_loss": loss,
        "train_accuracy": accuracy,
    }
    return {
        "variant": variant,
        "seed": seed,
        "status": status,
        "diverged": {"step": 7, "value": float("nan")} if status == "diverged" else None,
        "final": final,
        "wall_time_s": 2.0,
        "history": {"eval": {"step": list(steps), "test_loss": list(values)}},
    }


def test_table_mean_and_sample_std_over_finished_seeds():
    results = [
        _result("a", 0, 0.50, 1.0),
        _result("a", 1, 0.70, 2.0),
        _result("a", 2, 0.10, float("nan"), status="diverged"),
        _result("b", 0, 0.25, 0.5),
    ]
    table = markdown_table(results)
    mean, std = 100 * np.mean([0.5, 0.7]), 100 * np.std([0.5, 0.7], ddof=1)
    assert (
        f"| a | 3 | {mean:.2f} ± {std:.2f} | 1.5000 ± {np.std([1.0, 2.0], ddof=1):.4f} |" in table
    )
    assert "seed 2 at step 7 (loss nan)" in table
    assert "| b | 1 | 25.00 | 0.5000 |" in table  # one seed: no spread shown
    rows = variant_rows(results)
    assert [r["finished"] for r in rows] == [2, 1]


def test_band_aligns_on_steps_and_ignores_non_finite_values():
    runs = [
        _result("a", 0, 0, 0, steps=(0, 10, 20), values=(3.0, 2.0, 1.0)),
        _result("a", 1, 0, 0, steps=(0, 10), values=(1.0, float("inf"))),
    ]
    steps, mean, std = _series_band(
        runs, lambda r: (r["history"]["eval"]["step"], r["history"]["eval"]["test_loss"])
    )
    assert steps.tolist() == [0, 10, 20]
    np.testing.assert_allclose(mean, [2.0, 2.0, 1.0])
    np.testing.assert_allclose(std, [np.std([3.0, 1.0], ddof=1), 0.0, 0.0])
