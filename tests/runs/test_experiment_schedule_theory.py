"""The `schedule-theory` study (--quick): every certificate held, γ* and the predicted transfer
ratio recomputed independently (the constant schedule's closed form, a grid over the bound
written literally), the measured gaps recomputed by a numpy subgradient loop on the same oracle,
the report's table and figures written from JSON alone, and `stepsize plot --bound`."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

import theory
from runs.cli import main
from runs.experiments import schedule_theory as st

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def results(mnist1d_cache):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `stepsize run` does; two threads fight on a shared machine
    try:
        return st.compute(quick=True, seeds=SEEDS)
    finally:
        torch.set_num_threads(threads)


def _numbers(value, path="results"):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}[{index}]")
    elif isinstance(value, float):
        yield path, value


def test_results_are_finite_and_json_ready(results):
    assert [p for p, v in _numbers(results) if not math.isfinite(v)] == []
    json.dumps(results, allow_nan=False)
    assert [r["schedule"] for r in results["schedules"]["rows"]] == list(st.SCHEDULES)


def test_every_schedule_is_certified_at_its_optimal_rate(results):
    for row in results["schedules"]["rows"]:
        assert row["applicable"], row["schedule"]
        assert row["held"], row["schedule"]
        assert 0 < row["worst_ratio"] <= 1
        assert row["band_final"][0] <= row["measured_final"]["mean"] <= row["band_final"][1]


def test_constant_rate_is_the_closed_form_and_measured_gaps_are_recomputed(results):
    setup = results["setup"]
    T, D, G = setup["steps"], setup["D"], setup["G"]
    (row,) = [r for r in results["schedules"]["rows"] if r["schedule"] == "constant"]
    harmonic = sum(1 / j for j in range(1, T))
    assert row["gamma"] == pytest.approx(D / (G * math.sqrt(T * (1 + harmonic))), rel=1e-12)
    assert row["bound_final"] == pytest.approx(
        theory.constant_closed_form_bound(T, D, G), rel=1e-12
    )
    # SGD on f(w) = mean |x_i w - y_i| in numpy, one sampled row per update, same oracle
    problem = st.convex_problem()
    X, y = problem.X_data, problem.y_data
    finals = []
    for seed in SEEDS:
        oracle = problem.reseeded(seed)
        w = problem.x0.numpy().copy()
        for t in range(row["final_step"]):
            (i,) = oracle.batch(t)
            w = w - row["gamma"] * np.sign(X[i] @ w - y[i]) * X[i]
        finals.append(np.mean(np.abs(X @ w - y)) - problem.f_star)
    assert row["measured_final"]["mean"] == pytest.approx(np.mean(finals), rel=1e-9)


def test_ranking_and_transfer_are_consistent_with_the_rows(results):
    rows = results["schedules"]["rows"]
    ranking = results["schedules"]["ranking"]
    by_bound = sorted(rows, key=lambda r: r["bound_final"])
    assert ranking["by_bound"] == [r["schedule"] for r in by_bound]
    ranks_b = np.argsort(np.argsort([r["bound_final"] for r in rows]))
    ranks_m = np.argsort(np.argsort([r["measured_final"]["mean"] for r in rows]))
    assert ranking["spearman"] == pytest.approx(np.corrcoef(ranks_b, ranks_m)[0, 1], abs=1e-12)
    # the predicted ratio depends on the shapes only: recompute it by a grid over the bound
    # written literally, at other D and G
    steps = results["setup"]["steps"]
    gammas = {}
    for name in ("cosine", "wsd-1-sqrt"):
        eta, horizon = st.bounded_horizon(st.schedule_shape(name, steps), steps)
        grid = np.geomspace(1e-3, 10, 4000)
        values = [_literal(g * eta[:horizon], D=3.0, G=2.0) for g in grid[::10]]
        gammas[name] = grid[::10][int(np.argmin(values))]
    predicted = results["transfer"]["predicted_ratio"]
    assert gammas["wsd-1-sqrt"] / gammas["cosine"] == pytest.approx(predicted, rel=0.03)
    assert results["mnist1d"]["predicted_ratio"] != pytest.approx(1.0, abs=0.05)


def _literal(eta, D, G):
    T = len(eta)
    value = (D**2 + G**2 * np.sum(eta**2)) / (2 * eta.sum())
    suffix = np.cumsum(eta[::-1])[::-1]
    squares = np.cumsum((eta**2)[::-1])[::-1] * G**2
    for k in range(T - 1):
        value += 0.5 * eta[k] / suffix[k + 1] * squares[k] / suffix[k]
    return value


def test_report_writes_tables_findings_and_three_figures(results, tmp_path):
    markdown, figures = st.report(json.loads(json.dumps(results)), tmp_path / "figures")
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) >= 1 + len(st.SCHEDULES)
    assert "Spearman ρ" in markdown
    assert "6 of 6 last-iterate bounds held" in markdown
    assert [f.name for f in figures] == [
        "schedule-theory.png",
        "schedule-certificates.png",
        "lr-transfer.png",
    ]
    for figure in figures:
        header = figure.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", header[16:24])
        assert width > 1000
        assert height > 300


def test_compute_needs_two_seeds():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        st.compute(quick=True, seeds=(0,))
    with pytest.raises(ValueError, match="name must be one of"):
        st.schedule_shape("step", 10)


def test_stepsize_plot_draws_schedules_beside_their_bounds(tmp_path, capsys):
    out = tmp_path / "bound.png"
    spec = '{"name": "cosine_decay", "learning_rate": 1.0, "decay_steps": 100}'
    assert (
        main(["plot", spec, "--steps", "100", "--bound", "1,1", "--tuned", "--out", str(out)]) == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "beside their bounds" in capsys.readouterr().out
    assert main(["plot", spec, "--tuned", "--out", str(out)]) == 2
    assert "--tuned needs --bound" in capsys.readouterr().err
    plain = tmp_path / "plain.png"
    assert main(["plot", spec, "--out", str(plain)]) == 0  # unchanged without --bound
