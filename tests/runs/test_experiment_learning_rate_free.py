"""The `learning-rate-free` study: learning-rate-free methods beside grid-searched baselines.

References are independent of the study's code: the grids are read from the ``optimizers``
experiment's TOML file, the search runs are compared with ``runs.trainer.train_run`` (the loop
``stepsize run optimizers`` trains with), the convex baseline with a hand-written heavy-ball
loop, SPS's step with the paper's formula, 1/L with the problem's eigenvalues.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import tomllib

import numpy as np
import pytest
import torch

from runs.catalog import EXPERIMENTS_DIR, describe
from runs.data import load_dataset
from runs.experiments import learning_rate_free as lrf
from runs.load import load_experiment
from runs.trainer import train_run
from runs.tuning import search_variant
from theory import Quadratic

SEED = 0


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread, as ``stepsize run`` uses: on shared cores, intra-op threads on these
    small tensors make the runs many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def results(_one_thread) -> dict:
    return lrf.compute(quick=True, seeds=(SEED,))


def _row(results: dict, problem: str, method: str) -> dict:
    (row,) = [r for r in results["rows"] if r["problem"] == problem and r["method"] == method]
    return row


def _non_finite(value, path="results"):
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{path}[{i}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    return []


def test_every_number_is_finite_and_every_pair_is_reported(results):
    assert _non_finite(results) == []
    json.dumps(results, allow_nan=False)
    pairs = {(r["problem"], r["method"]) for r in results["rows"]}
    problems = ("logreg", "mlp", "cnn", "quadratic", "logistic")
    assert pairs == {(p, m.key) for p in problems for m in lrf.METHODS}
    methods = {m.key for m in lrf.METHODS}
    assert {"prodigy", "dadapt_sgd", "dadapt_adam", "dadapt_adagrad", "dog", "ldog"} <= methods
    assert {"sgd_sf", "adamw_sf", "sps", "sls", "adam", "momentum"} <= methods


def test_grids_are_the_optimizers_experiments_and_the_lowest_loss_wins(results):
    raw = tomllib.loads((EXPERIMENTS_DIR / "optimizers.toml").read_text())
    grids = {v["name"]: v["search"]["lr"] for v in raw["variants"]}
    for panel in ("logreg", "mlp", "cnn"):
        for key in ("adam", "momentum"):
            found = results["search"][panel][key]
            assert [row["lr"] for row in found["grid"]] == grids[f"{panel}.{key}"]
            finished = [row for row in found["grid"] if row["value"] is not None]
            assert found["chosen"] == min(finished, key=lambda r: (r["value"], r["lr"]))["lr"]
            assert _row(results, panel, key)["per_seed"][0]["lr"] == found["chosen"]
    assert results["search"]["logreg"]["seed"] == raw["search"]["seed"]
    for name in ("quadratic", "logistic"):
        for key in ("adam", "momentum"):
            found, base = results["search"][name][key], grids[f"logreg.{key}"]
            rates = [r["lr"] for r in found["grid"]]
            # the logreg grid, extended past at most one end, in its own 1-3-10 steps
            assert set(base) <= set(rates)
            assert rates == sorted(rates)
            above = [lr for lr in rates if lr > max(base)]
            below = [lr for lr in rates if lr < min(base)][::-1]
            assert not (above and below)
            for chain in ([max(base), *above], [min(base), *below]):
                ratios = [max(a, b) / min(a, b) for a, b in itertools.pairwise(chain)]
                assert all(round(r, 9) in (3.0, round(10 / 3, 9)) for r in ratios), chain
            finished = [row for row in found["grid"] if row["value"] is not None]
            assert found["chosen"] == min(finished, key=lambda r: (r["value"], r["lr"]))["lr"]
            # bracketed: the best lies inside, or the extension stopped at its limit
            extended = len(above) + len(below)
            inside = min(rates) < found["chosen"] < max(rates)
            assert inside or extended == lrf.EXTEND_AT_MOST or found["chosen"] in base[1:-1]


def test_convex_search_extends_its_grid_until_the_best_rate_is_bracketed(monkeypatch):
    """On a made-up problem whose final gap is (ln lr - ln 2)^2 (best rate 2) and which diverges
    from lr = 10 on, the SGD grid [0.003, ..., 0.3] goes on to 1 (better: 0.480), 3 (better:
    0.164) and 10 (diverged, so worse), and stops; 3 is chosen. The Adam grid [0.0003, ...,
    0.03] goes on the same way through 0.1, 0.3, 1, 3 and 10. With its best at the bottom
    (gap (ln lr - ln 0.002)^2), a grid [0.01, 0.03] goes down to 0.003 (better: 0.164) and
    0.001 (worse: 0.480), and stops."""

    def fake_run(method, problem, steps, lr, best=2.0):
        if lr >= 10:
            return {"status": "diverged", "final": None}
        return {"status": "finished", "final": {"gap": (math.log(lr) - math.log(best)) ** 2}}

    monkeypatch.setattr(lrf, "train_convex", fake_run)
    grids = {"adam": [0.0003, 0.001, 0.003, 0.01, 0.03], "momentum": [0.003, 0.01, 0.03, 0.1, 0.3]}
    found = lrf.search_convex(None, grids, 10)
    rates = [r["lr"] for r in found["momentum"]["grid"]]
    assert rates == [0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10]
    assert found["momentum"]["chosen"] == 3
    assert found["momentum"]["grid"][-1]["status"] == "diverged"
    assert [r["lr"] for r in found["adam"]["grid"]][5:] == [0.1, 0.3, 1, 3, 10]
    assert found["adam"]["chosen"] == 3
    monkeypatch.setattr(lrf, "train_convex", lambda *args, lr: fake_run(*args, lr=lr, best=0.002))
    found = lrf.search_convex(None, {"adam": [0.01, 0.03], "momentum": [0.01, 0.03]}, 10)
    assert [r["lr"] for r in found["adam"]["grid"]] == [0.001, 0.003, 0.01, 0.03]
    assert found["adam"]["chosen"] == 0.003


def test_search_runs_equal_the_training_loop_of_stepsize_run(results, tmp_path):
    """A search run of the study gives the final training loss ``runs.trainer.train_run`` gives
    for the same variant, rate and seed, so the study picks the rate `optimizers` picks."""
    experiment = load_experiment("optimizers", quick=True)
    (variant,) = [v for v in experiment.variants if v.name == "mlp.adam"]
    search = results["setup"]["mnist1d"]["search_train"]
    row = results["search"]["mlp"]["adam"]["grid"][1]
    candidate = search_variant(variant, row["lr"], {"steps": search["steps"]})
    data = load_dataset("mnist1d", normalize=variant.dataset.normalize)
    seed = results["setup"]["mnist1d"]["search_seed"]
    reference = train_run(candidate, seed, data, tmp_path / "run")
    assert reference["final"]["train_loss"] == pytest.approx(row["value"], rel=1e-6)


def test_convex_momentum_baseline_matches_a_heavy_ball_loop(results):
    problem = lrf.convex_problem("quadratic", SEED, quick=True)
    A = problem.A.numpy()
    x_star = problem.x_star.numpy()
    lr = results["search"]["quadratic"]["momentum"]["chosen"]
    row = _row(results, "quadratic", "momentum")
    steps = row["per_seed"][0]["reached_floor_step"] or results["setup"]["convex"]["steps"]
    x, buffer = problem.x0.numpy().copy(), np.zeros_like(x_star)
    for _ in range(steps):  # torch.optim.SGD's momentum form
        buffer = 0.9 * buffer + A @ (x - x_star)
        x = x - lr * buffer
    gap = 0.5 * float((x - x_star) @ A @ (x - x_star))
    floor = row["gap_floor"]["mean"]
    assert row["final"]["mean"] == pytest.approx(max(gap, floor), rel=1e-6)
    eigenvalues = np.linalg.eigvalsh(A)
    assert row["inverse_L"]["mean"] == pytest.approx(1 / eigenvalues[-1], rel=1e-9)


def test_convex_runs_stop_at_the_noise_floor_and_report_it():
    problem = Quadratic.from_spectrum([0.5, 1.0], seed=0)  # f* = 0, L = 1, x* exact
    eps = float(torch.finfo(torch.float64).eps)
    # theory's float64 floor of the gap: 1e4 eps f(x0) + L d^2 / 2 with
    # d = 1e4 eps (||x*|| + ||x0 - x*||)
    d = 1e4 * eps * (float(problem.x_star.norm()) + float((problem.x0 - problem.x_star).norm()))
    floor = 1e4 * eps * float(problem.loss(problem.x0)) + d * d / 2
    run = lrf.train_convex(lrf.BY_KEY["momentum"], problem, 1000, lr=0.5)
    assert run["reached_floor_step"] is not None
    assert run["reached_floor_step"] < 1000
    assert len(run["step_sizes"]) == run["reached_floor_step"]
    assert run["final"]["at_floor"] is True
    assert run["final"]["gap"] == pytest.approx(floor, rel=1e-9)
    short = lrf.train_convex(lrf.BY_KEY["momentum"], problem, 3, lr=0.5)
    assert short["reached_floor_step"] is None
    assert short["final"]["at_floor"] is False
    assert short["final"]["gap"] > floor


def test_effective_step_size_is_the_methods_own():
    problem = lrf.convex_problem("logistic", SEED, quick=True)
    x = problem.parameter()
    sps = lrf.BY_KEY["sps"]
    optimizer = sps.make([x], None, 1)
    loss = problem.loss(x.detach())
    grad = problem.grad(x.detach())

    def closure():
        optimizer.zero_grad()
        value = problem.loss(x)
        value.backward()
        return value

    optimizer.step(closure)
    expected = min(float(loss) / (0.5 * float(grad @ grad)), 1.0)  # SPS_max, c = 1/2, gamma_b = 1
    assert lrf.effective_step_size(optimizer) == pytest.approx(expected, rel=1e-12)
    prodigy = lrf.BY_KEY["prodigy"]
    w = torch.nn.Parameter(torch.ones(3))
    optimizer = prodigy.make([w], None, 1)
    assert lrf.effective_step_size(optimizer) == pytest.approx(1e-6)  # d0 * lr


def test_distance_from_the_tuned_baseline(results):
    for panel in ("logreg", "mlp", "cnn"):
        rows = [r for r in results["rows"] if r["problem"] == panel]
        best = max(r["final"]["mean"] for r in rows if r["baseline"])
        for r in rows:
            if r["final"] is not None:
                expected = r["final"]["mean"] - best
                assert r["vs_tuned"]["accuracy_points"] == pytest.approx(expected, abs=1e-12)
    for name in ("quadratic", "logistic"):
        rows = [r for r in results["rows"] if r["problem"] == name]
        best = min(r["final"]["mean"] for r in rows if r["baseline"])
        for r in rows:
            if r["final"] is not None:
                assert r["vs_tuned"]["gap_ratio"] == pytest.approx(r["final"]["mean"] / best)


def test_step_sizes_are_compared_with_the_baseline_in_the_same_units(results):
    for r in results["rows"]:
        reference = {"adam": "adam", "sgd": "momentum", "adagrad": None}[r["family"]]
        if reference is None:
            assert r["step_over_grid_best"] is None
            continue
        found = results["search"][r["problem"]][reference]
        # each seed's own search's rate (a convex problem's seeds are instances of their own)
        per_seed = found.get("chosen_per_seed") or [found["chosen"]] * len(r["per_seed"])
        assert r["grid_best_lr"] == per_seed
        ratios = [
            record["settled_step_size"] / best
            for record, best in zip(r["per_seed"], per_seed)
            if record["final"] is not None and record["settled_step_size"] is not None
        ]
        if ratios:
            assert r["step_over_grid_best"] == pytest.approx(sum(ratios) / len(ratios), rel=1e-12)
    # Schedule-Free's step is its default lr (no warmup); the baselines' their grid rate
    assert _row(results, "logreg", "sgd_sf")["settled_step_size"]["mean"] == pytest.approx(1.0)
    assert _row(results, "mlp", "adamw_sf")["settled_step_size"]["mean"] == pytest.approx(0.0025)
    adam = _row(results, "cnn", "adam")
    assert adam["settled_step_size"]["mean"] == results["search"]["cnn"]["adam"]["chosen"]


def test_report_writes_a_table_and_a_png_from_json(results, tmp_path):
    markdown, figures = lrf.report(json.loads(json.dumps(results)), tmp_path / "figures")
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(rows) == (1 + 5 * len(lrf.METHODS)) + (1 + 5)  # two tables with headers
    assert "|---" in markdown
    (figure,) = figures
    header = figure.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (15 * 110, 8 * 110)


def test_stepsize_list_shows_it_with_its_time():
    (row,) = [r for r in describe() if r[0] == "learning-rate-free"]
    assert row[1]
    assert "not yet" not in row[1]
    assert "Prodigy" in row[2]


def test_unknown_convex_problem_is_refused():
    with pytest.raises(ValueError, match="name must be one of"):
        lrf.convex_problem("rosenbrock", 0, quick=True)


# --- failures: at chance or diverged, and what the reference package does from the same seed ---


def test_a_run_at_chance_is_marked_only_near_one_over_classes():
    assert lrf.collapsed({"train_accuracy": 0.1027}, 10)  # the cnn runs that predict one class
    assert lrf.collapsed({"train_accuracy": 0.12}, 10)
    assert not lrf.collapsed({"train_accuracy": 0.1201}, 10)
    assert not lrf.collapsed({"train_accuracy": 0.2857}, 10)  # SLS on logreg: a high loss only
    assert lrf.collapsed({"train_accuracy": 0.51}, 2)  # two classes: chance is 1/2
    assert not lrf.collapsed({"train_accuracy": 0.53}, 2)
    assert lrf.collapsed(None, 10) is False  # diverged: reported as such, not as at chance


def test_every_failed_run_is_rerun_with_its_package_and_fails_the_same_way(results):
    """In the quick run (24 updates) many MNIST-1D runs are still at chance: each one of a
    method with a reference package was rerun with the package's class, and the package ended
    the same way, with the same final metrics as ours to float32 rounding."""
    checked = 0
    for row in results["rows"]:
        if row["kind"] != "mnist1d":
            continue
        for record in row["per_seed"]:
            final = record["final"]
            at_chance = final is not None and final["train_accuracy"] <= 0.1 + 0.02
            assert record["collapsed"] is at_chance
            failed = at_chance or final is None
            expected = failed and row["method"] in lrf.PACKAGES and not row["baseline"]
            assert ("package_check" in record) is expected, (row["problem"], row["method"])
            if expected:
                check = record["package_check"]
                module, name = lrf.PACKAGES[row["method"]]
                assert check["package"] == f"{module}.{name}"
                assert check["installed"]
                assert check["same_outcome"]
                assert check["max_difference"] < 1e-5
                checked += 1
        assert row["collapsed_seeds"] == [
            r["seed"] for r in row["per_seed"] if r["final"] and r["collapsed"]
        ]
    assert checked >= 3  # (the quick cnn runs of DAdaptSGD, DAdaptAdaGrad, DoG, LDoG at least)


def _quick_mnist1d():
    settings = lrf.optimizers_settings(True)
    data = load_dataset(settings["dataset"]["name"], normalize=settings["dataset"]["normalize"])
    return settings["panels"]["logreg"]["model"], data, settings["train"]


def test_package_check_tells_a_different_optimizer_and_a_missing_package(monkeypatch):
    model, data, train = _quick_mnist1d()
    method = lrf.BY_KEY["dadapt_adam"]
    ours = lrf.train_mnist1d(method, model, data, train, SEED)
    same = lrf.package_check(method, ours, model, data, train, SEED)
    assert same["package"] == "dadaptation.DAdaptAdam"
    assert same["same_outcome"] is True
    assert same["max_difference"] == 0.0  # DAdaptAdam gives its package's float32 bits
    # a run the package did not reproduce: another class in the package's place
    monkeypatch.setitem(lrf.PACKAGES, "dadapt_adam", ("prodigyopt", "Prodigy"))
    other = lrf.package_check(method, ours, model, data, train, SEED)
    assert other["package"] == "prodigyopt.Prodigy"
    assert other["max_difference"] > 1e-3
    # ours diverged, the package did not: not the same outcome, no difference of metrics
    diverged = {"status": "diverged", "diverged_step": 3, "final": None}
    verdict = lrf.package_check(method, diverged, model, data, train, SEED)
    assert verdict["same_outcome"] is False
    assert verdict["max_difference"] is None
    monkeypatch.setitem(lrf.PACKAGES, "dadapt_adam", ("no_such_package_here", "DAdaptAdam"))
    missing = lrf.package_check(method, ours, model, data, train, SEED)
    assert missing == {"package": "no_such_package_here.DAdaptAdam", "installed": False}


def _failed_row(label, problem, collapsed, diverged, checks):
    return {
        "kind": "mnist1d",
        "baseline": False,
        "label": label,
        "problem": problem,
        "collapsed_seeds": collapsed,
        "diverged_seeds": diverged,
        "package_checks": checks,
        "final": {"mean": 0.1, "std": 0.0},
        "per_seed": [],
    }


def test_report_names_the_failed_runs_and_what_the_packages_did():
    same = {"installed": True, "same_outcome": True, "status": "finished"}
    rows = [
        _failed_row(
            "DAdaptAdam",
            "cnn",
            [0, 2],
            [],
            [
                {"seed": 0, "package": "dadaptation.DAdaptAdam", "max_difference": 0.0, **same},
                {"seed": 2, "package": "dadaptation.DAdaptAdam", "max_difference": 2e-7, **same},
            ],
        ),
        _failed_row("SPS", "mlp", [], [1], []),
    ]
    text = lrf._failures(rows)
    assert "DAdaptAdam on cnn (seeds 0, 2); SPS on mlp (seed 1)" in text
    assert "(dadaptation.DAdaptAdam)" in text
    assert "every one failed the same way (largest difference in a final metric: 2e-07)" in text
    assert "Not rerun" not in text
    assert "(at chance: seeds [0, 2])" in lrf._final(rows[0])
    rows[0]["package_checks"][1] = {
        "seed": 2,
        "package": "dadaptation.DAdaptAdam",
        "installed": True,
        "same_outcome": False,
        "status": "finished",
        "max_difference": 0.5,
    }
    rows[1]["package_checks"] = [{"seed": 1, "package": "x.SPS", "installed": False}]
    text = lrf._failures(rows)
    assert "some ended otherwise: DAdaptAdam on cnn seed 2: finished." in text
    assert "Not rerun (package not installed): x.SPS." in text
    assert lrf._failures([{**rows[0], "collapsed_seeds": [], "diverged_seeds": []}]) == ""
    # every rerun diverged as ours did: no metrics to compare, the same outcome all the same
    both_diverged = {"installed": True, "same_outcome": True, "status": "diverged"}
    check = {"seed": 1, "package": "dog.DoG", "max_difference": None, **both_diverged}
    text = lrf._failures([_failed_row("DoG", "cnn", [], [1], [check])])
    assert "DoG on cnn (seed 1)" in text
    assert "every one failed the same way: these failures are the methods'" in text


def test_each_seed_is_compared_with_its_own_searchs_rate():
    """The convex seeds are instances of their own, and their searches may pick different
    rates (a full run picked 1, 10, 1 for SGD with momentum on logistic): each seed's settled
    step is divided by its own best rate, and the ratios averaged (2/1 and 3/3: 1.5), where the
    first seed's rate divided the mean step (2.5)."""
    records = [
        {"seed": s, "final": {"gap": 1e-3}, "settled_step_size": step, "lr": None}
        for s, step in ((0, 2.0), (1, 3.0))
    ]
    searches = [{"momentum": {"chosen": 1.0}}, {"momentum": {"chosen": 3.0}}]
    row = lrf._row("logistic", "convex", lrf.BY_KEY["dog"], records, searches, [1.0, 1.0])
    assert row["grid_best_lr"] == [1.0, 3.0]
    assert row["step_over_grid_best"] == pytest.approx(1.5, rel=1e-15)
