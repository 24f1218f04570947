"""Stop-91 mutation audit of runs.summary's averages over seeds (what stop 90 did not cover):
the sample std of the final metrics, the reach target and the "steps to" cells. Expected
values are derived by hand below."""

from __future__ import annotations

import math

import pytest

from runs.summary import markdown_table, reach_cell, steps_to_reach, variant_rows


def _run(variant, seed, accuracies, steps=(0, 10, 20), status="finished"):
    names = ("test_accuracy", "test_loss", "train_loss", "train_accuracy")
    final, diverged = dict.fromkeys(names), {"step": 5, "value": "nan"}
    if status == "finished":
        final = {"test_accuracy": accuracies[-1], "test_loss": 1.0 - accuracies[-1],
                 "train_loss": 0.5, "train_accuracy": 0.9}  # fmt: skip
        diverged = None
    return {
        "variant": variant, "seed": seed, "status": status, "final": final,
        "diverged": diverged, "wall_time_s": 1.0, "config": {},
        "history": {"eval": {"step": list(steps), "test_accuracy": list(accuracies)},
                    "train_loss": {"step": [], "value": []}},
    }  # fmt: skip


def test_two_seeds_give_the_sample_standard_deviation():
    """finals 0.8 and 0.9: mean 0.85, sample std sqrt(2 * 0.05**2 / (2 - 1)) = 0.0707107."""
    (row,) = variant_rows([_run("a", 0, [0.1, 0.5, 0.8]), _run("a", 1, [0.1, 0.5, 0.9])])
    stat = row["final"]["test_accuracy"]
    assert stat["mean"] == pytest.approx(0.85)
    assert stat["std"] == pytest.approx(math.sqrt(2 * 0.05**2), rel=1e-12)


def test_the_reach_variant_reaches_its_own_final_mean_at_its_last_step():
    """The target is the mean of the reach variant's finals; its own mean curve equals it at the
    last evaluation (>=), so its own cell is that step, 20 (it never exceeds it earlier)."""
    runs = [_run("a", 0, [0.1, 0.5, 0.7]), _run("a", 1, [0.2, 0.6, 0.9])]
    target = (0.7 + 0.9) / 2
    assert steps_to_reach(runs, target) == 20
    assert reach_cell(runs, target) == "20"


def test_a_variant_with_one_diverged_seed_of_two_is_marked_diverged():
    runs = [_run("a", 0, [0.1, 0.5, 0.9]), _run("a", 1, [0.1, None, None], status="diverged")]
    assert reach_cell(runs, 0.5) == "diverged (1 of 2 seeds)"


def test_the_reach_target_is_the_mean_of_the_reach_variants_finals():
    """finals 0.5, 0.6, 0.9: mean 2.0 / 3 = 66.67 % (the median would be 60.00 %)."""
    runs = [_run("a", s, [0.1, 0.3, f]) for s, f in enumerate((0.5, 0.6, 0.9))]
    table = markdown_table(runs, {"reach": "a"})
    assert "steps to 66.67% (a's final)" in table
