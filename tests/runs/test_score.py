"""``stepsize score``: the profile arithmetic against hand-computed values, the tuning rules, the
search space sampling, a real property of time to target, a smoke test of the command, and the
refusal of bad submissions."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from runs import score_profiles as P
from runs.cli import main
from runs.score import plan, summarize
from runs.score_submissions import Submission, load_submissions, sample_points
from runs.score_workloads import WORKLOADS, Workload, problem_of, train_to_target

INF = math.inf


# ------------------------------------------------------------------------------ the arithmetic
def test_rho_and_score_on_a_hand_computed_example():
    times = {
        "a": {"w1": 100, "w2": 200, "w3": INF},
        "b": {"w1": 200, "w2": 100, "w3": 300},
        "c": {"w1": 400, "w2": INF, "w3": 150},
    }
    # the best times are 100, 100, 150, so the ratios are
    # a: 1, 2, inf;  b: 2, 1, 2;  c: 4, inf, 1
    ratios = P.performance_ratios(times)
    assert ratios == {
        "a": {"w1": 1.0, "w2": 2.0, "w3": INF},
        "b": {"w1": 2.0, "w2": 1.0, "w3": 2.0},
        "c": {"w1": 4.0, "w2": INF, "w3": 1.0},
    }
    a, b, c = (list(ratios[s].values()) for s in "abc")
    assert [P.rho(a, tau) for tau in (1, 1.5, 2, 4, 100)] == [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3]
    assert [P.rho(b, tau) for tau in (1, 1.99, 2)] == [1 / 3, 1 / 3, 1.0]
    assert [P.rho(c, tau) for tau in (1, 3.99, 4)] == [1 / 3, 1 / 3, 2 / 3]
    # area over [1, 4] divided by 3, from the step functions above:
    # a: 1/3 on [1, 2) + 2/3 on [2, 4] = 1/3 + 4/3;  b: 1/3 + 1 * 2;  c: 1/3 * 3
    assert P.profile_score(a) == pytest.approx((1 / 3 + 4 / 3) / 3)
    assert P.profile_score(b) == pytest.approx((1 / 3 + 2) / 3)
    assert P.profile_score(c) == pytest.approx(1 / 3)
    # and the same by a Riemann sum of rho over a fine grid (midpoints)
    grid = 1 + (np.arange(30000) + 0.5) * 3 / 30000
    for r in (a, b, c):
        riemann = np.mean([P.rho(r, tau) for tau in grid[::10]])
        assert riemann == pytest.approx(P.profile_score(r), abs=2e-3)


def test_a_target_not_reached_is_an_infinite_ratio_that_never_counts():
    ratios = P.performance_ratios({"a": {"w": INF, "v": 10}, "b": {"w": INF, "v": 20}})
    assert ratios == {"a": {"w": INF, "v": 1.0}, "b": {"w": INF, "v": 2.0}}
    assert P.rho(ratios["a"].values(), 1e12) == 0.5
    assert P.profile_score([INF, INF]) == 0.0
    with pytest.raises(ValueError, match="positive or inf"):
        P.performance_ratios({"a": {"w": 0}})
    with pytest.raises(ValueError, match="every workload"):
        P.performance_ratios({"a": {"w": 1}, "b": {"v": 1}})


def _result(study, trial, steps, ruleset="external", submission="s", workload="w"):
    reached = steps is not None
    return {
        "submission": submission, "ruleset": ruleset, "workload": workload, "study": study,
        "trial": trial, "point": {"lr": trial}, "steps": steps,
        "seconds": steps / 1000 if reached else None,
        "status": "reached" if reached else "not reached",
    }  # fmt: skip


def test_a_workload_time_is_the_median_over_studies_of_the_fastest_trial():
    w = Workload("w", "theory", "quadratic", "gap", 1e-3, budget=100, eval_every=10)
    results = [
        # study 0: fastest reaching trial 30; study 1: 50; study 2: none reaches
        _result(0, 0, 80), _result(0, 1, None), _result(0, 2, 30),
        _result(1, 0, 50), _result(1, 1, 90), _result(1, 2, None),
        _result(2, 0, None), _result(2, 1, None), _result(2, 2, None),
    ]  # fmt: skip
    entry = summarize(results, [w], ["external"])["external"]["times"]["s"]["w"]
    assert [s["steps"] for s in entry["studies"]] == [30, 50, INF]
    assert [s["point"] for s in entry["studies"]] == [{"lr": 2}, {"lr": 0}, None]
    assert entry["steps"] == 50  # median of 30, 50, inf
    assert entry["seconds"] == pytest.approx(0.05)
    assert P.median_time([30, INF, INF]) == INF  # most studies missed: not reached


# --------------------------------------------------------------------------- the search space
SPACE = {
    "lr": {"log_uniform": [1e-4, 1.0]},
    "momentum": {"uniform": [0.8, 0.99]},
    "nesterov": {"choice": [True, False]},
}


def test_sampling_is_deterministic_given_the_seed_and_stays_inside_the_space():
    points = sample_points(SPACE, 16, seed=3, study=1, name="sgd")
    assert points == sample_points(SPACE, 16, seed=3, study=1, name="sgd")
    assert points != sample_points(SPACE, 16, seed=4, study=1, name="sgd")
    assert points != sample_points(SPACE, 16, seed=3, study=2, name="sgd")
    for point in points:
        assert 1e-4 <= point["lr"] <= 1.0
        assert 0.8 <= point["momentum"] <= 0.99
        assert point["nesterov"] in (True, False)
    # quasi-random: 16 log-uniform points cover every decade of [1e-4, 1]
    decades = {math.floor(math.log10(p["lr"])) for p in points}
    assert decades == {-4, -3, -2, -1}


def test_the_plan_uses_those_points_and_substitutes_the_budget():
    sub = Submission(
        "sgd",
        {"name": "sgd", "lr": "$lr", "momentum": "$momentum", "nesterov": "$nesterov"},
        {"lr": {"name": "cosine_decay", "learning_rate": "$lr", "decay_steps": "$budget"}},
        {"lr": 0.1, "momentum": 0.9, "nesterov": False},
        SPACE,
    )
    w = Workload("w", "theory", "quadratic", "gap", 1e-3, budget=50, eval_every=10)
    trials = plan([sub], [w], ["external", "self"], studies=2, trials=3, seed=7)
    external = [t for t in trials if t.ruleset == "external"]
    assert [t.point for t in external if t.study == 1] == sample_points(
        SPACE, 3, seed=7, study=1, name="sgd"
    )
    assert all(t.optimizer["lr"] == t.point["lr"] for t in external)
    assert {t.schedules["lr"]["decay_steps"] for t in external} == {50}
    self_tuning = [t for t in trials if t.ruleset == "self"]
    assert len(self_tuning) == 2
    assert all(t.budget == 150 and t.optimizer["lr"] == 0.1 for t in self_tuning)


# ------------------------------------------------------------------------- a real property
def test_gradient_descent_reaches_the_gap_target_at_the_step_theory_predicts():
    """GD with lr = 1/L on a quadratic: x_k - x* = (I - A/L)^k (x0 - x*), so the gap
    f_k - f* = 1/2 sum_i lambda_i (1 - lambda_i/L)^(2k) c_i^2 lies between its slowest mode,
    1/2 mu (1 - mu/L)^(2k) c_min^2, and (1 - mu/L)^(2k) (f_0 - f*). The first k with a gap
    <= eps is therefore between the two k those curves give."""
    targets = (1e-4, 1e-6, 1e-8)
    steps = []
    for eps in targets:
        w = Workload(
            "q", "theory", "quadratic", "gap", eps, budget=2000, eval_every=1,
            options={"dim": 20, "kappa": 10.0, "seed": 1},
        )  # fmt: skip
        problem = problem_of(w)
        run = train_to_target(w, {"name": "sgd", "lr": 1 / problem.L}, {}, w.budget, seed=0)
        assert run["status"] == "reached"
        steps.append(run["steps"])
        rate = math.log(1 - problem.mu / problem.L)  # per step, of ||x - x*||
        gap0 = problem.gap(problem.x0)
        c_min = float(problem.eigenvectors[:, 0] @ (problem.x0 - problem.x_star))
        upper = math.ceil(math.log(eps / gap0) / (2 * rate))
        lower = math.ceil(math.log(eps / (0.5 * problem.mu * c_min**2)) / (2 * rate))
        assert lower <= run["steps"] <= upper, (eps, lower, run["steps"], upper)
        assert upper <= 2 * max(lower, 1) + 20
    assert steps == sorted(steps)
    assert steps[0] < steps[-1]


# ------------------------------------------------------------------------------ the command
def test_quick_score_writes_json_table_and_figure(tmp_path, capsys):
    """Smoke test: `stepsize score --quick` on the two convex workloads writes its three files
    and the README section, and scores every submission under both rulesets."""
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\n<!-- score:begin -->\nstale\n<!-- score:end -->\n\nafter\n")
    code = main(["score", "--quick", "--workloads", "quadratic,logistic",
                 "--logdir", str(tmp_path), "--readme", str(readme)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "score-quick"
    data = json.loads((folder / "score.json").read_text())
    assert (folder / "figures" / "performance_profile.png").stat().st_size > 0
    table = (folder / "score.md").read_text()
    assert "| submission | quadratic | logistic | score (steps) | score (s) |" in table
    external, self_tuning = data["rulesets"]["external"], data["rulesets"]["self"]
    assert "sgd-momentum-cosine" in external["submissions"]
    assert "prodigy-cosine" in self_tuning["submissions"]
    assert "prodigy-cosine" not in external["submissions"]  # no search space
    for entry in (external, self_tuning):
        assert max(entry["score_steps"].values()) > 0  # someone reaches some target
        for scores in entry["score_steps"].values():
            assert 0 <= scores <= 1
    assert len(data["trials"]) == 3 * 2 * 2 + 8 * 2  # 1 study x 2 trials; 1 self run each
    text = readme.read_text()
    assert "stale" not in text
    assert text.startswith("# title")
    assert text.rstrip().endswith("after")
    assert table.strip() in text
    software = data["software"]  # (the CPU changes the numbers: the *Run:* line names it)
    assert f"CPU: {software['cpu']} (torch's {software['cpu_kernels']} kernels)." in text
    assert (tmp_path / "docs" / "results" / "score.png").is_file()


BAD_KEY = """
[[submissions]]
name = "mine"
optimizer = {name = "sgd", lr = 0.1}
lrr = 3
"""
BAD_RANGE = """
[[submissions]]
name = "mine"
optimizer = {name = "sgd", lr = "$lr"}
hyperparameters = {lr = 0.1}
search = {lr = {log_uniform = [0, 1]}}
"""
BAD_REFERENCE = """
[[submissions]]
name = "mine"
optimizer = {name = "sgd", lr = "$lrr"}
hyperparameters = {lr = 0.1}
"""
BAD_OPTIMIZER_ARGUMENT = """
[[submissions]]
name = "mine"
optimizer = {name = "adam", momentum = 0.9}
"""


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (BAD_KEY, "lrr"),
        (BAD_RANGE, "search.lr.log_uniform"),
        (BAD_REFERENCE, "$lrr"),
        (BAD_OPTIMIZER_ARGUMENT, "momentum"),
    ],
)
def test_a_bad_submissions_file_exits_2_with_one_line_naming_the_key(tmp_path, capsys, text, named):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    code = main(["score", "--submissions", str(path), "--logdir", str(tmp_path / "logs")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("stepsize: error: ")
    assert named in err
    assert "mine.toml" in err
    assert not (tmp_path / "logs").exists()  # refused before anything was written


def test_a_good_submissions_file_loads(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(BAD_RANGE.replace("[0, 1]", "[1e-3, 1]"))
    (sub,) = load_submissions(path)
    assert sub.name == "mine"
    assert sub.externally_tunable


def test_workload_and_submission_errors_name_the_field_and_what_is_allowed():
    with pytest.raises(ValueError, match=r"metric='error'; allowed for source 'theory': gap"):
        Workload("w", "theory", "quadratic", "error", 1e-3, budget=100, eval_every=10)
    with pytest.raises(ValueError, match=r"eval_every=200 exceeds the budget"):
        Workload("w", "theory", "quadratic", "gap", 1e-3, budget=100, eval_every=200)
    with pytest.raises(ValueError, match=r"hyperparameters\.momentum is never used"):
        Submission("s", {"name": "sgd"}, hyperparameters={"momentum": 0.9})
    with pytest.raises(ValueError, match=r"search\.lr has no value in hyperparameters"):
        Submission("s", {"name": "sgd"}, search={"lr": {"uniform": [0.1, 1]}})


def test_submission_and_workload_names_are_folder_names():
    """A name becomes a folder: anything but letters, digits and - _ . + is refused, naming it."""
    with pytest.raises(ValueError, match=r"Submission\.name must be .*got name='bad name'"):
        Submission(name="bad name", optimizer={"name": "sgd"})
    with pytest.raises(ValueError, match=r"Workload\.name must be .*got name='a/b'"):
        dataclasses.replace(WORKLOADS[0], name="a/b")


def test_a_schedule_free_trial_evaluates_a_batch_norm_model_with_statistics_of_its_average():
    """As in the trainer: each check of the target evaluates the averaged point x with running
    statistics recomputed there (collected in training at y, they belong to another point), and
    the trial trains on as if no check had happened. Before, it evaluated x with y's."""
    import torch
    import torch.nn.functional as F

    import optim
    from runs import models as runs_models
    from runs.data import load_dataset
    from runs.spec import Train
    from runs.trainer import epoch_batches
    from tests.runs.helpers import batch_norm_mlp, statistics_recomputed_at

    batch, seed = 100, 1
    saved = dict(runs_models._REGISTERED)
    runs_models.register_model("score-batch-norm-mlp", batch_norm_mlp)
    try:
        workload = Workload("bn", "mnist1d", "score-batch-norm-mlp", "test_loss", 1e-9, 6, 3, batch)
        run = train_to_target(workload, {"name": "optim.SGDScheduleFree", "lr": 0.5}, {}, 6, seed)
    finally:
        runs_models._REGISTERED.clear()
        runs_models._REGISTERED.update(saved)

    data = load_dataset("mnist1d")
    torch.manual_seed(seed)
    model = batch_norm_mlp(data.input_shape, data.num_classes)
    optimizer = optim.SGDScheduleFree(model.parameters(), lr=0.5)
    optimizer.train()
    model.train()
    losses, stale = [], []
    for k, (xb, yb) in enumerate(epoch_batches(data, Train(batch_size=batch, steps=6), seed, 0)):
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
        if (k + 1) % 3 == 0:
            optimizer.eval()
            with torch.no_grad():
                probe = statistics_recomputed_at(model, data, batch, seed=seed)
                losses.append(F.cross_entropy(probe(data.test_x), data.test_y).item())
                model.eval()
                stale.append(F.cross_entropy(model(data.test_x), data.test_y).item())
            model.train()
            optimizer.train()
        if k + 1 == 6:
            break

    assert run["status"] == "not reached"
    assert run["last_step"] == 6
    assert run["best"] == pytest.approx(min(losses), rel=1e-5)
    assert min(stale) != pytest.approx(min(losses), rel=1e-4)  # (the statistics matter here)
