"""Tests that kill the runs.tuning mutants a mutation audit (91) found surviving. Expected
values by hand from the documented rule (runs.tuning's module docstring): per variant the rate
with the best final metric (lowest loss, highest accuracy), ties to the smaller rate; diverged
runs and runs without a finite final metric never win; a chosen rate at an end of a grid of more
than one rate is flagged."""

import math
import types

import pytest

from runs import tuning


def _choose(monkeypatch, results, metric):
    """tuning._choose over a grid whose results are ``{rate: result}`` (read from memory)."""
    by_dir = {str(lr): result for lr, result in results.items()}
    monkeypatch.setattr(tuning.ckpt, "load_result", lambda run_dir: by_dir[run_dir])
    monkeypatch.setattr(tuning, "_check_candidate", lambda *args: None)
    search = types.SimpleNamespace(metric=metric)
    experiment = types.SimpleNamespace(search=search, variants=[types.SimpleNamespace(name="v")])
    grid = [(lr, types.SimpleNamespace(run_dir=str(lr))) for lr in sorted(results)]
    chosen, rows = tuning._choose(experiment, {"v": grid})
    return chosen["v"], tuning.grid_edges(rows, chosen)["v"]


def _run(value, metric="val_loss", status="finished"):
    return {"status": status, "final": {metric: value}}


def test_a_tie_goes_to_the_smaller_rate(monkeypatch):
    """T01: 0.1 and 0.3 both end at 0.5: the smaller rate, 0.1, is chosen."""
    results = {0.1: _run(0.5), 0.3: _run(0.5), 1.0: _run(0.9)}
    assert _choose(monkeypatch, results, "val_loss") == (0.1, "low")


def test_an_accuracy_is_maximised(monkeypatch):
    """T02: accuracies 0.6 at 0.1, 0.8 at 0.3, 0.7 at 1.0: the highest, at 0.3."""
    results = {lr: _run(a, "val_accuracy") for lr, a in ((0.1, 0.6), (0.3, 0.8), (1.0, 0.7))}
    assert _choose(monkeypatch, results, "val_accuracy") == (0.3, None)


def test_a_diverged_run_never_wins_even_with_a_finite_metric(monkeypatch):
    """T03: the run at 0.3 diverged (its last recorded loss 0.1 is finite): 0.1 is chosen."""
    results = {0.1: _run(0.5), 0.3: _run(0.1, status="diverged"), 1.0: _run(0.9)}
    assert _choose(monkeypatch, results, "val_loss") == (0.1, "low")


def test_a_nan_final_metric_never_wins(monkeypatch):
    """T12: a finished run whose final loss is nan scores +inf; 0.3 (loss 0.5) is chosen."""
    results = {0.1: _run(math.nan), 0.3: _run(0.5), 1.0: _run(0.9)}
    assert _choose(monkeypatch, results, "val_loss") == (0.3, None)


@pytest.mark.parametrize("rates", [[0.1]])
def test_a_one_rate_grid_is_at_no_edge(rates):
    """T04, T05: a grid of one rate has no end beyond which a better rate could lie."""
    grid = {"v": [{"lr": lr} for lr in rates]}
    assert tuning.grid_edges(grid, {"v": 0.1}) == {"v": None}
    grid = {"v": [{"lr": 0.1}, {"lr": 0.3}]}
    assert tuning.grid_edges(grid, {"v": 0.1}) == {"v": "low"}
    assert tuning.grid_edges(grid, {"v": 0.3}) == {"v": "high"}


@pytest.mark.parametrize(
    ("own", "search", "expected"),
    [
        ({"steps": 100}, {"epochs": 1}, {"steps": None, "epochs": 1}),
        ({"epochs": 3}, {"steps": 10}, {"steps": 10, "epochs": None}),
    ],
)
def test_a_search_budget_in_either_unit_replaces_the_variants_budget(own, search, expected):
    """T07: search_train's "a budget in steps or epochs replaces both": a variant trained for
    100 steps, searched with epochs = 1, trains its search runs for 1 epoch (no steps left)."""
    from runs.spec import Train

    train = tuning.search_train(Train.from_table({**own, "batch_size": 32}), search).to_table()
    assert {key: train.get(key) for key in ("steps", "epochs")} == expected


def test_the_clr_references_are_the_lower_and_the_upper_bound():
    """T06: "$clr_base_lr" is the lower CLR bound and "$clr_max_lr" the upper (Smith 2017,
    section 3.3: base_lr where the loss starts to fall, max_lr where it stops), so a range test
    whose clr_bounds are (0.01, 0.1) gives clr_base_lr = 0.01 and clr_max_lr = 0.1."""
    from schedulers.range_test import RangeTestResult, Suggestion

    result = RangeTestResult(
        lrs=[0.001, 0.01, 0.1, 1.0],
        losses=[1.0, 0.9, 0.5, 2.0],
        smoothed=[1.0, 0.9, 0.5, 2.0],
        accuracies=None,
        diverged_lr=None,
        suggestions={"min/10": Suggestion("min/10", 0.01, "")},
        clr_bounds=(0.01, 0.1),
        curvature=None,
    )
    values = tuning.derived_values(result)
    assert (values["clr_base_lr"], values["clr_max_lr"]) == (0.01, 0.1)
    assert values["min/10"] == 0.01
    assert values["steepest"] is None
    assert values["safe_step"] is None


def test_a_saved_range_test_with_curvature_that_reads_alike_gets_no_note(tmp_path):
    """T08: the note compares only what the curve decides (suggestions, CLR bounds); 1/L and 2/L
    come from the Hessian estimate, which re-reading the curve does not redo. A record whose
    curve reads alike but which measured L = 2 (safe_step 0.5, edge_step 1) gets no note."""
    import json

    import numpy as np

    from schedulers.range_test import RangeTestResult, read_curve, smooth

    lrs = [float(x) for x in np.geomspace(1e-4, 1.0, 40)]
    losses = [2.0 - 1.5 * float(np.exp(-((np.log10(lr) + 1.5) ** 2))) for lr in lrs]
    smoothed = smooth(losses, 0.9)
    suggestions, bounds = read_curve(lrs, losses, smoothed, None, 40, smoothing=0.9)
    result = RangeTestResult(lrs, losses, smoothed, None, None, suggestions, bounds, None)
    values = {**tuning.derived_values(result), "safe_step": 0.5, "edge_step": 1.0}
    record = {"settings": {"num_iter": 40, "smoothing": 0.9}, "values": values, "lrs": lrs,
              "losses": losses, "smoothed": smoothed, "diverged_lr": None}  # fmt: skip
    (tmp_path / tuning.RANGE_TEST_FILE).write_text(json.dumps(record))
    assert tuning.earlier_rules_note(tmp_path) is None
    values["steepest"] = (values["steepest"] or 1.0) * 2  # an earlier rule's number: noted
    (tmp_path / tuning.RANGE_TEST_FILE).write_text(json.dumps(record))
    assert "steepest" in tuning.earlier_rules_note(tmp_path)


def test_the_range_test_sweeps_the_batches_of_the_first_epoch(monkeypatch):
    """T09: range_test_on_variant uses "the batches of its first epoch, exactly as training
    would build them": the trainer's first update (step 0) reads epoch divmod(0, n)[0] = 0."""
    import torch

    import schedulers.range_test as range_test

    seen = {}

    def batches(data, train, seed, epoch):
        seen["epoch"] = epoch
        return iter([])

    monkeypatch.setattr(tuning, "epoch_batches", batches)
    monkeypatch.setattr(tuning, "build_model", lambda *args, **kwargs: torch.nn.Linear(1, 1))
    monkeypatch.setattr(tuning, "make_optimizer", lambda spec, p: torch.optim.SGD(p, lr=0.1))
    monkeypatch.setattr(range_test, "lr_range_test", lambda *args, **kwargs: "swept")
    variant = types.SimpleNamespace(
        model=types.SimpleNamespace(name="m", options={}), optimizer=None, train=None
    )
    data = types.SimpleNamespace(input_shape=(1,), num_classes=2)
    assert tuning.range_test_on_variant(variant, data, 0) == "swept"
    assert seen["epoch"] == 0
