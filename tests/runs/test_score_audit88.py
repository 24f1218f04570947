"""``stepsize score`` audit 88: an optimizer whose ``step`` returns a float, refusals of ``score``'s
and ``Workload``'s inputs before anything trains, a table cell that reports one run, and the
docstrings' claims against what they describe (torch's signatures, the README's measured table,
AlgoPerf's trapezoid)."""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from runs import score_profiles as P
from runs.score_submissions import builtin_submissions
from runs.score_workloads import Workload, problem_of, train_to_target

INF = math.inf
README = Path(__file__).resolve().parents[2] / "README.md"


class FloatSGD(torch.optim.SGD):
    """torch's SGD whose ``step`` returns the closure's loss as a Python float."""

    def step(self, closure=None):
        loss = super().step(closure)
        return None if loss is None else float(loss.detach())


class NanSGD(torch.optim.SGD):
    """torch's SGD whose ``step`` reports a NaN loss as a Python float."""

    def step(self, closure=None):
        super().step(closure)
        return float("nan")


class DictSGD(torch.optim.SGD):
    """torch's SGD whose ``step`` returns something that is not a loss."""

    def step(self, closure=None):
        super().step(closure)
        return {"note": "not a loss"}


HERE = __name__


def _quadratic(**changes) -> Workload:
    fields = {"target": 1e-3, "budget": 200, "eval_every": 10}
    fields["options"] = {"dim": 10, "kappa": 10.0, "seed": 0}
    return Workload("q", "theory", "quadratic", "gap", **(fields | changes))


# ------------------------------------------------------------------------------------ F1
@pytest.mark.parametrize("cls", ["FloatSGD", "DictSGD"])
def test_a_step_that_returns_a_float_or_no_loss_trains_as_torch_sgd(cls):
    """The Optimizer API lets ``step`` return anything: a float (or a value that is not a loss)
    trains exactly as torch's SGD, which returns the closure's tensor. Before: AttributeError
    ``'float' object has no attribute 'detach'``."""
    workload = _quadratic()
    reference = train_to_target(workload, {"name": "torch.optim.SGD", "lr": 1.0}, {}, 200, 0)
    run = train_to_target(workload, {"name": f"{HERE}.{cls}", "lr": 1.0}, {}, 200, 0)
    assert reference["status"] == "reached"
    assert (run["status"], run["steps"], run["best"]) == (
        reference["status"],
        reference["steps"],
        reference["best"],
    )


def test_a_non_finite_float_returned_by_step_is_a_divergence():
    """A returned number is the loss the divergence check reads: NaN stops the run at the first
    check (the gap itself stays finite: plain SGD at this rate reaches the target)."""
    run = train_to_target(_quadratic(), {"name": f"{HERE}.NanSGD", "lr": 1.0}, {}, 200, 0)
    assert (run["status"], run["last_step"]) == ("diverged", 10)


@pytest.mark.parametrize(
    ("returned", "computed", "expected"),
    [
        (2.5, None, 2.5),
        (np.float32(3.0), torch.tensor(9.0), 3.0),
        (7, None, 7.0),
        (torch.tensor([4.0], requires_grad=True), None, 4.0),
        (None, torch.tensor(5.0), 5.0),
        ({"loss": 1.0}, torch.tensor(6.0), 6.0),
        (None, torch.tensor(float("nan")), "nan"),
        (None, None, None),
    ],
)
def test_step_loss_reads_a_number_or_falls_back_to_the_closures_loss(returned, computed, expected):
    from runs.score_workloads import step_loss

    value = step_loss(returned, computed)
    if expected == "nan":
        assert math.isnan(value)
    else:
        assert value == expected
        assert value is None or type(value) is float


# ------------------------------------------------------------------------ F2, F5: score()
@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if ``score`` gets as far as training a trial."""
    import runs.score as S

    def trained(*args, **kwargs):
        raise AssertionError("a trial was trained before the refusal")

    monkeypatch.setattr(S, "run_trials", trained)
    return S.score


def _sgd():
    return [s for s in builtin_submissions() if s.name == "sgd-momentum-cosine"]


def test_two_workloads_with_one_name_are_refused_before_training(no_training):
    """Before: both trained, then merged into one column (the easy target's times)."""
    easy = _quadratic(target=1e-1)
    with pytest.raises(ValueError, match=r"workloads: two workloads are named 'q'"):
        no_training(_sgd(), [easy, dataclasses.replace(easy, target=1e-12)], rulesets=("self",))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("SGD", []), {}, r"workloads=\[\]; allowed: one or more Workload"),
        (([], None), {}, r"submissions=\[\]; allowed: one or more Submission"),
        (
            ("SGD", "Q"),
            {"rulesets": ("self", "self")},
            r"rulesets=\('self', 'self'\) gives 'self' twice",
        ),
        (("SGD", "Q"), {"rulesets": "self"}, r"rulesets='self' is a string.*\('self',\)"),
        (("SGD", "Q"), {"rulesets": "external"}, r"rulesets='external' is a string"),
        (("SGD", "Q"), {"rulesets": ()}, r"rulesets=\(\); allowed: one or more of external, self"),
    ],
)
def test_empty_inputs_and_repeated_or_string_rulesets_are_refused(
    no_training, args, kwargs, message
):
    submissions, workloads = args
    submissions = _sgd() if submissions == "SGD" else submissions
    workloads = [_quadratic()] if workloads == "Q" else workloads
    with pytest.raises(ValueError, match=message):
        no_training(submissions, workloads, **kwargs)


# ----------------------------------------------------------------------- F3, F4: Workload
@pytest.mark.parametrize(
    ("model", "options", "named", "allowed"),
    [
        ("logistic", {"N": 5000, "dimension": 3, "L2": 1.0}, "'N', 'dimension', 'L2'",
         "n, dim, l2, noise, seed"),
        ("quadratic", {"kapa": 10.0}, "'kapa'", "dim, kappa, seed, spacing"),
        ("quadratic", {"dim": 5, "x0": 1.0}, "'x0'", "dim, kappa, seed, spacing"),
    ],
)  # fmt: skip
def test_a_theory_workload_refuses_an_unknown_option_naming_it(model, options, named, allowed):
    """Before: the logistic problem ignored them (n = 200, dim 20 trained instead), the quadratic
    failed inside the trial with a bare TypeError."""
    with pytest.raises(ValueError, match=r"^workload 'w': options=") as err:
        Workload("w", "theory", model, "gap", 1e-3, budget=30, eval_every=10, options=options)
    text = str(err.value)
    assert f"unknown key(s) {named}" in text
    assert text.endswith(f"allowed: {allowed}")


def test_the_logistic_options_build_the_declared_problem():
    w = Workload("lg", "theory", "logistic", "gap", 1e-6, budget=30, eval_every=10,
                 options={"n": 37, "dim": 3, "l2": 0.5, "noise": 0.0, "seed": 1})  # fmt: skip
    problem = problem_of(w)
    assert (problem.n, problem.x0.numel()) == (37, 3)
    assert problem.mu == pytest.approx(0.5)  # mu = l2 (theory.LogisticRegression)


@pytest.mark.parametrize(
    ("model", "options", "named"),
    [("mlp", {"hiden": 10}, "hiden"), ("mnist1d-cnn", {"hidden": 10}, "hidden"),
     ("logistic", {"hidden": 10}, "hidden")],
)  # fmt: skip
def test_an_mnist1d_workload_refuses_an_option_its_model_does_not_take(model, options, named):
    with pytest.raises(ValueError, match=rf"workload 'm': options=.*unknown option\(s\) {named}"):
        Workload("m", "mnist1d", model, "test_accuracy", 0.5, budget=20, eval_every=10,
                 options=options)  # fmt: skip


def test_an_mnist1d_workload_with_good_options_builds_without_drawing_random_numbers():
    state = torch.get_rng_state()
    Workload("m", "mnist1d", "mlp", "test_accuracy", 0.5, budget=20, eval_every=10,
             options={"hidden": 7})  # fmt: skip
    assert torch.equal(state, torch.get_rng_state())


def test_a_theory_option_value_the_problem_refuses_stops_score_before_training(no_training):
    bad = _quadratic(options={"dim": 5, "kappa": 0.5})
    with pytest.raises(ValueError, match=r"workload 'q': options=.*kappa must be >= 1"):
        no_training(_sgd(), [bad], rulesets=("self",))


@pytest.mark.parametrize(
    ("metric", "field", "value", "allowed"),
    [
        ("test_accuracy", "target", 1.5, r"an accuracy in \(0, 1\]"),
        ("test_accuracy", "target", 0.0, r"an accuracy in \(0, 1\]"),
        ("test_accuracy", "quick_target", -0.1, r"an accuracy in \(0, 1\]"),
        ("test_loss", "target", -1.0, r"a cross-entropy loss > 0"),
        ("test_loss", "quick_target", 0.0, r"a cross-entropy loss > 0"),
    ],
)
def test_a_target_the_metric_cannot_reach_or_meets_at_once_is_refused(
    metric, field, value, allowed
):
    fields = {"target": 0.5, field: value}
    with pytest.raises(ValueError, match=rf"workload 'm': {field}={value!r}; allowed: {allowed}"):
        Workload("m", "mnist1d", "logistic", metric, budget=20, eval_every=10, **fields)


def test_targets_at_the_edge_of_the_range_are_accepted():
    Workload("m", "mnist1d", "logistic", "test_accuracy", 1.0, budget=20, eval_every=10)
    Workload("m", "mnist1d", "logistic", "test_loss", 1e-9, budget=20, eval_every=10)


# ------------------------------------------------------------------------------ F6: a cell
def _trial(study, index, steps, seconds, submission="s"):
    reached = steps is not None
    return {
        "submission": submission, "ruleset": "external", "workload": "q", "study": study,
        "trial": index, "point": {"lr": 0.1 * (index + 1)}, "steps": steps, "seconds": seconds,
        "status": "reached" if reached else "not reached",
    }  # fmt: skip


def test_a_cell_reports_the_steps_and_seconds_of_one_run():
    """Trial 0: 100 steps in 0.50 s; trial 1: 120 steps in 0.30 s. Before: '100 (0.30 s)', a run
    that did not happen."""
    from runs.score import summarize
    from runs.score_report import _cell

    results = [_trial(0, 0, 100, 0.50), _trial(0, 1, 120, 0.30)]
    entry = summarize(results, [_quadratic()], ["external"])["external"]["times"]["s"]["q"]
    (study,) = entry["studies"]
    assert (study["steps"], study["seconds"], study["trial"]) == (100, 0.50, 0)
    assert study["point"] == {"lr": 0.1}
    assert study["fastest_seconds"] == 0.30
    assert _cell(entry) == "100 (0.50 s)"


def test_the_cell_is_the_fastest_trial_of_the_median_study_and_the_seconds_score_is_unchanged():
    from runs.score import summarize
    from runs.score_report import _cell

    results = [
        # submission s, study 0: fastest in steps trial 1 (30 steps, 0.9 s), in seconds trial 0
        _trial(0, 0, 80, 0.2), _trial(0, 1, 30, 0.9),
        # study 1: trial 0 fastest in both (50 steps, 0.4 s); study 2: none reaches
        _trial(1, 0, 50, 0.4), _trial(1, 1, 90, 0.6),
        _trial(2, 0, None, None), _trial(2, 1, None, None),
        # submission t: one study time per study in both measures
        _trial(0, 0, 60, 0.1, "t"), _trial(1, 0, 60, 0.1, "t"), _trial(2, 0, 60, 0.1, "t"),
    ]  # fmt: skip
    out = summarize(results, [_quadratic()], ["external"])["external"]
    entry = out["times"]["s"]["q"]
    # studies' steps 30, 50, inf: the median study is study 1, its fastest trial is trial 0
    assert entry["steps"] == 50
    assert entry["seconds"] == 0.4
    assert entry["point"] == {"lr": 0.1}
    assert _cell(entry) == "50 (0.40 s)"
    # the seconds score: each study's fastest in seconds, 0.2, 0.4, inf -> median 0.4; t: 0.1;
    # ratio 4 -> 0 credit; t is best everywhere -> 1 (by hand, as before this change)
    assert entry["fastest_seconds"] == 0.4
    assert out["score_seconds"] == {"s": 0.0, "t": 1.0}
    # the steps score: s 50, t 60 -> s 1, t ratio 1.2 -> (4 - 1.2) / 3
    assert out["score_steps"]["s"] == 1.0
    assert out["score_steps"]["t"] == pytest.approx(2.8 / 3)


def test_with_an_even_count_of_studies_the_cell_is_the_mean_of_the_two_middle_runs():
    from runs.score import summarize

    results = [_trial(0, 0, 30, 0.3), _trial(1, 0, 50, 0.7)]
    entry = summarize(results, [_quadratic()], ["external"])["external"]["times"]["s"]["q"]
    assert entry["steps"] == 40
    assert entry["seconds"] == pytest.approx(0.5)
    assert entry["point"] is None


# ------------------------------------------------------------------- F7, F8, F10: docstrings
def _readme_external_cells() -> dict[str, dict[str, float]]:
    """The steps of the README's generated external-tuning table, per submission and workload."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("<!-- score:begin -->") : text.index("<!-- score:end -->")]
    table = section[section.index("**external tuning") :].split("\n\n")[1].splitlines()
    names = [c.strip() for c in table[0].strip("|").split("|")][1:-2]
    cells = {}
    for row in table[2:]:
        parts = [c.strip() for c in row.strip("|").split("|")]
        cells[parts[0]] = {
            w: INF if c == "not reached" else float(c.split()[0])
            for w, c in zip(names, parts[1:-2])
        }
    return cells


def test_the_score_docstring_states_the_measured_fractions_of_the_budget():
    """Before: "the tuned classic submissions reach each in about half to three quarters of the
    budget" (tuned Adam and AdamW miss both convex problems)."""
    import runs.score as S
    from runs.score_workloads import BY_NAME

    doc = " ".join(S.__doc__.split())
    cells = _readme_external_cells()
    fractions = {
        sub: {w: steps / BY_NAME[w].budget for w, steps in row.items()}
        for sub, row in cells.items()
    }
    low, high = map(float, re.search(r"SGD .*?\((\d\.\d+)-(\d\.\d+) of it", doc).groups())
    sgd = fractions["sgd-momentum-cosine"].values()
    assert round(min(sgd), 2) == low
    assert round(max(sgd), 2) == high
    low, high = map(
        float, re.search(r"Adam and AdamW reach .*? in (\d\.\d+)-(\d\.\d+)", doc).groups()
    )
    adams = [fractions[s] for s in ("adam-warmup-cosine", "adamw-warmup-cosine")]
    mnist = [f[w] for f in adams for w in f if w.startswith("mnist1d")]
    assert round(min(mnist), 2) == low
    assert round(max(mnist), 2) == high
    assert "miss the two convex problems" in doc
    assert all(f[w] == INF for f in adams for w in ("quadratic", "logistic"))
    assert "three quarters" not in doc


def test_the_builtin_submissions_docstring_says_which_hyperparameters_are_torchs_defaults():
    """Before: "their hyperparameters are torch's defaults"; SGD self-tunes at lr 0.1, momentum
    0.9 (torch: lr 1e-3, momentum 0)."""
    doc = " ".join(builtin_submissions.__doc__.split())
    subs = {s.name: s for s in builtin_submissions()}
    classes = {"sgd-momentum-cosine": torch.optim.SGD, "adam-warmup-cosine": torch.optim.Adam,
               "adamw-warmup-cosine": torch.optim.AdamW}  # fmt: skip
    for name, cls in classes.items():
        sub = subs[name]
        defaults = inspect.signature(cls).parameters
        values = {k: v for k, v in sub.optimizer.items() if k != "name"}
        values = {k: sub.hyperparameters[v[1:]] if isinstance(v, str) else v
                  for k, v in values.items()}  # fmt: skip
        is_default = all(defaults[k].default == v for k, v in values.items())
        assert is_default == (name != "sgd-momentum-cosine"), (name, values)
    assert "torch's defaults for Adam and AdamW" in doc
    assert "SGD at ``lr = 0.1`` with momentum 0.9" in doc


def test_the_score_docstring_dates_algoperfs_numbers():
    """Before: "AlgoPerf: 5 studies x 5 trials" and "AlgoPerf: 3" for the self-tuning budget, with
    no date; the current rules have 3 studies and 1.5x."""
    import runs.score as S

    doc = " ".join(S.__doc__.split())
    assert "AlgoPerf: 5 studies x 5 trials" not in doc
    assert "3 x 5 in the current rules" in doc
    assert "the current rules give 1.5" in doc
    assert "fewer than 3 of its trials" in doc
    assert "scoring/performance_profile.py" in doc


# --------------------------------------------------------------------------- F9: trapezoid
def test_the_exact_score_is_within_1_198_of_algoperfs_trapezoid():
    """The docstring's bound, against AlgoPerf's ``np.trapezoid`` on ``linspace(1, 4, 100)``."""
    grid = np.linspace(1.0, 4.0, 100)

    def trapezoid(ratios):
        rho = [np.mean([r <= tau for r in ratios]) for tau in grid]
        return np.trapezoid(rho, grid) / 3

    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(200):
        ratios = list(1 + 3.5 * rng.random(rng.integers(1, 6)))
        worst = max(worst, abs(trapezoid(ratios) - P.profile_score(ratios)))
    assert worst <= 1 / 198 + 1e-12
    assert trapezoid([4.0]) - P.profile_score([4.0]) == pytest.approx(1 / 198)
