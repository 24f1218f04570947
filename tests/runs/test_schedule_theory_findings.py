"""`schedule-theory`'s findings are computed from its numbers: fed numbers that contradict
Schaipp et al. (a violated certificate, no cooldown drop, a best rate at a grid's end, a network
whose loss is not close to 0 before the cooldown, a re-tuned cooldown sweep with an interior
optimum), the text says so instead of agreeing; and the cooldown sweep at fixed base rates is the
one of the authors' code, its bound recomputed from the formula written literally."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from runs.experiments import schedule_theory as st
from tests.runs.test_experiment_schedule_theory import _literal

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def results(mnist1d_cache):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return json.loads(json.dumps(st.compute(quick=True, seeds=SEEDS)))
    finally:
        torch.set_num_threads(threads)


def _line(text: str, start: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"- {start}")]
    return line


def _rows(results) -> dict:
    return {r["schedule"]: r for r in results["schedules"]["rows"]}


# ------------------------------------------------------------------------------ certificates
def test_held_certificates_say_how_loose_from_the_worst_ratio(results):
    line = _line(st._findings(results), "Certificates")
    worst = max(r["worst_ratio"] for r in results["schedules"]["rows"])
    assert "6 of 6 last-iterate bounds held" in line
    assert "valid here" in line
    assert f"{1 / worst:.1f}x or more above the measured mean gap" in line


def test_a_violated_certificate_is_named_and_the_bound_not_called_valid(results):
    bad = copy.deepcopy(results)
    row = _rows(bad)["constant"]
    row.update(held=False, first_violation=5, worst_ratio=3.0)
    line = _line(st._findings(bad), "Certificates")
    assert "5 of 6 last-iterate bounds held" in line
    assert "valid" not in line.replace("not valid", "")
    assert "violated: constant (first at k = 5, worst observed/bound 3.00)" in line
    assert "loose" not in line


# ----------------------------------------------------------------------------- cooldown drop
def _set_fall(row: dict, key: str, factor: float, steps: int) -> None:
    """Make ``row``'s curve ``key`` flat before WSD's cooldown and fall by ``factor`` over it."""
    k = np.asarray(row["curve"]["k"])
    start = round((1 - st.COOLDOWN) * steps)
    level = row["curve"][key][0]
    row["curve"][key] = [
        level if kk < start else level / factor ** ((kk - start + 1) / (k[-1] - start + 1))
        for kk in k
    ]


@pytest.mark.parametrize(
    ("measured", "bound", "expected"),
    [
        (1.0, 1.0, "neither drops"),
        (3.0, 1.0, "the measurement drops but the bound does not"),
        (1.0, 3.0, "the bound drops but the measurement does not"),
        (3.0, 2.0, "both drop, so the bound reproduces the sudden drop in shape"),
    ],
)
def test_the_cooldown_drop_sentence_follows_the_curves(results, measured, bound, expected):
    changed = copy.deepcopy(results)
    steps = changed["setup"]["steps"]
    wsd = _rows(changed)["wsd-1-sqrt"]
    _set_fall(wsd, "mean", measured, steps)
    _set_fall(wsd, "bound", bound, steps)
    line = _line(st._findings(changed), "Cooldown drop")
    assert expected in line
    assert f"the measured mean gap falls by {measured:.2f}x and the bound by {bound:.2f}x" in line
    if expected != "both drop, so the bound reproduces the sudden drop in shape":
        assert "reproduces" not in line


def test_a_drop_needs_more_than_the_threshold_and_more_than_cosine():
    assert st.is_drop(2.0, 1.1)
    assert not st.is_drop(1.4, 1.0)  # below DROP
    assert not st.is_drop(2.0, 2.5)  # cosine falls more over the same steps


# --------------------------------------------------------------------------- transfer grids
def test_the_grid_spacing_is_read_from_the_rates(results):
    line = _line(st._findings(results), "Base-rate transfer")
    lrs = [g["lr"] for g in results["transfer"]["schedules"]["cosine"]["grid"]]
    assert lrs[1] / lrs[0] == pytest.approx(2.0)  # the --quick grid: exponents -1, 0, 1
    assert "spacing 2," in line
    assert "√2" not in line
    finer = copy.deepcopy(results)
    for entry in finer["transfer"]["schedules"].values():
        for j, g in enumerate(entry["grid"]):
            g["lr"] = lrs[0] * math.sqrt(2) ** j
    assert "spacing √2," in _line(st._findings(finer), "Base-rate transfer")


def test_a_best_rate_at_the_end_of_its_grid_is_said(results):
    changed = copy.deepcopy(results)
    for name, best in (("cosine", -1), ("wsd-1-sqrt", 1)):
        grid = changed["transfer"]["schedules"][name]["grid"]
        for j, g in enumerate(grid):
            g["measured_final"]["mean"] = 1.0 if j != best % len(grid) else 0.5
    line = _line(st._findings(changed), "Base-rate transfer")
    assert "cosine's at the top end" in line
    assert "the measured ratio is only an upper bound" in line
    for entry in changed["transfer"]["schedules"].values():  # both inside their grid
        for j, g in enumerate(entry["grid"]):
            g["measured_final"]["mean"] = 0.5 if j == 1 else 1.0
    assert "end of their grid" not in _line(st._findings(changed), "Base-rate transfer")


def test_grid_end():
    assert st.grid_end([1, 2, 3], [3.0, 2.0, 1.0]) == "top"
    assert st.grid_end([1, 2, 3], [1.0, 2.0, 3.0]) == "bottom"
    assert st.grid_end([1, 2, 3], [2.0, 1.0, 3.0]) is None


# --------------------------------------------------------------------------------- MNIST-1D
def _set_mnist_losses(results, before: float, after: float) -> dict:
    changed = copy.deepcopy(results)
    mnist = changed["mnist1d"]
    for entry in mnist["schedules"].values():
        best = next(g for g in entry["grid"] if g["lr"] == entry["best_grid_lr"])
        k = np.asarray(best["curve"]["k"])
        start = (1 - st.COOLDOWN) * mnist["steps"]
        best["curve"]["loss"] = [2.3 if kk == 0 else before if kk <= start else after for kk in k]
    return changed


def test_the_near_zero_explanation_needs_a_loss_near_zero(results):
    line = _line(st._findings(_set_mnist_losses(results, 1.0, 0.9)), "MNIST-1D MLP")
    assert "no clear cooldown drop" in line
    assert "close to 0 long before" not in line
    assert "WSD's training loss is 1 when its cooldown starts (2.3 at step 0), not close to 0" in (
        line
    )
    line = _line(st._findings(_set_mnist_losses(results, 0.001, 0.0009)), "MNIST-1D MLP")
    assert "close to 0 long before the cooldown" in line
    line = _line(st._findings(_set_mnist_losses(results, 0.3, 0.1)), "MNIST-1D MLP")
    assert "the cooldown drop the bound predicts appears on the network" not in line  # cosine too


def test_mnist_best_rates_at_the_grids_top_are_said(results):
    line = _line(st._findings(results), "MNIST-1D MLP")
    ends = []
    for key in ("cosine", "wsd-1-sqrt"):
        finite = [g for g in results["mnist1d"]["schedules"][key]["grid"] if not g["diverged"]]
        ends.append(int(np.argmin([g["final"]["mean"] for g in finite])) == len(finite) - 1)
    assert ("end of their grid" in line) == any(ends)


# ------------------------------------------------------------------------- cooldown length
def test_the_re_tuned_sweep_says_what_its_shape_is(results):
    line = _line(st._findings(results), "Cooldown length, re-tuned")
    bounds = [r["bound_final"] for r in results["cooldown"]["rows"]]
    assert all(np.diff(bounds) < 0)  # at each fraction's own γ*, longer is better by the bound
    assert "the bound falls at every longer cooldown" in line
    assert "never worse by the bound" in line
    changed = copy.deepcopy(results)
    for row, value in zip(changed["cooldown"]["rows"], (0.7, 0.6, 0.65)):
        row["bound_final"] = value
    changed["cooldown"]["best_by_bound"] = changed["cooldown"]["rows"][1]["fraction"]
    line = _line(st._findings(changed), "Cooldown length, re-tuned")
    assert "smallest at a cooldown fraction of 0.4 (inside the sweep)" in line
    assert "the bound is not monotone in the cooldown" in line
    assert "never worse" not in line


def test_the_fixed_rate_sweep_is_the_authors_and_its_bound_is_recomputed(results):
    fixed = results["cooldown"]["fixed"]
    steps = results["setup"]["steps"]
    D, G = results["setup"]["D"], results["setup"]["G"]
    eta, horizon = st.bounded_horizon(st.schedule_shape("wsd-linear", steps, st.COOLDOWN), steps)
    grid = np.geomspace(1e-3, 10, 2000)
    values = [_literal(g * eta[:horizon], D, G) for g in grid]
    assert fixed["reference_gamma"] == pytest.approx(grid[int(np.argmin(values))], rel=0.01)
    assert [r["factor"] for r in fixed["rates"]] == list(st.COOLDOWN_FIXED_FACTORS)
    for rate in fixed["rates"]:
        assert rate["gamma"] == pytest.approx(rate["factor"] * fixed["reference_gamma"])
        for row in rate["rows"]:
            shape = st.schedule_shape("wsd-linear", steps, row["fraction"])
            eta, horizon = st.bounded_horizon(shape, steps)
            literal = _literal(rate["gamma"] * eta[:horizon], D, G)
            assert row["bound_final"] == pytest.approx(literal, rel=1e-9)
        best = min(rate["rows"], key=lambda r: r["bound_final"])["fraction"]
        assert rate["best_by_bound"] == best


def test_the_fixed_rate_sentence_follows_the_numbers(results):
    line = _line(st._findings(results), "Cooldown length at fixed base rates")
    fixed = results["cooldown"]["fixed"]
    assert "fractions " + ", ".join(f"{r['best_by_bound']:g}" for r in fixed["rates"]) in line
    changed = copy.deepcopy(results)
    fractions = [r["fraction"] for r in changed["cooldown"]["rows"]]
    for rate in changed["cooldown"]["fixed"]["rates"]:  # every optimum inside the sweep
        rate["best_by_bound"] = fractions[1]
    line = _line(st._findings(changed), "Cooldown length at fixed base rates")
    assert f"inside the sweep at {len(fixed['rates'])} of {len(fixed['rates'])} rates" in line
    assert "lies inside the sweep at every fixed rate" in line
    for rate, fraction in zip(changed["cooldown"]["fixed"]["rates"], fractions[::-1]):
        rate["best_by_bound"] = fraction  # 1, 0.4, 0.1: at the ends, falling with γ
    line = _line(st._findings(changed), "Cooldown length at fixed base rates")
    assert "its best fraction does not grow with the rate" in line
    assert "is not inside the sweep at every fixed rate" in line


def test_the_report_has_the_fixed_rate_table(results, tmp_path):
    markdown, _ = st.report(results, tmp_path)
    assert "The same sweep at fixed base rates" in markdown
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| cooldown fraction |"))
    assert header.count("γ =") == 0  # the re-tuned table comes first
    fixed_header = [line for line in lines if "γ = " in line and "bound" in line]
    assert fixed_header
    assert fixed_header[0].count(": bound |") == len(st.COOLDOWN_FIXED_FACTORS)


def test_a_setting_with_a_diverged_seed_never_wins_on_its_survivors():
    """A diverged seed's gap is recorded as inf so that its setting is never chosen; since
    ``mean_std`` leaves non-finite values out (d9a3300), the choices read ``ranked_mean``, which
    is inf for such a setting. Before, a cooldown fraction at [0.10, inf, inf] beat one at
    [0.50, 0.52, 0.51], and a row whose every seed diverged raised TypeError."""
    from runs.study import mean_std, ranked_mean

    finished = {"fraction": 0.1, "bound_final": 1.0, "measured_final": mean_std([0.5, 0.52, 0.51])}
    for diverged_gaps in ([0.10, math.inf, math.inf], [math.inf] * 3):
        partly = {"fraction": 0.2, "bound_final": 2.0, "measured_final": mean_std(diverged_gaps)}
        assert st._best_fractions([finished, partly])["best_by_measurement"] == 0.1
        assert ranked_mean(partly["measured_final"]) == math.inf
    assert ranked_mean(finished["measured_final"]) == pytest.approx(0.51)
