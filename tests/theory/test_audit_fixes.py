"""The defects an audit of ``theory`` found (issue 13, section 3), one test each; every test here
fails on the code before the fix."""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import optim
import theory
from theory import bounds
from theory.problems import LeastSquares, Quadratic

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def problem():
    return Quadratic.from_condition_number(5, kappa=10.0, seed=1)


def _sgd(lr, **kwargs):
    return lambda params: optim.SGD(params, lr=lr, **kwargs)


def test_certify_calls_before_step(problem):
    seen = []
    lrs = [0.5 / problem.L / (t + 1) for t in range(6)]

    def before_step(optimizer, t):
        seen.append(t)
        optimizer.param_groups[0]["lr"] = lrs[t]

    loose = theory.Bound(name="loose", quantity="gap", values=lambda k: k * 0 + 1e9, formula="")
    certificate = theory.certify(problem, _sgd(123.0), 6, loose, before_step=before_step)
    assert seen == list(range(6))
    np.testing.assert_allclose(certificate.trajectory.hyperparameters["lr"], lrs)
    x = problem.x0.clone()
    for lr in lrs:
        x = x - lr * problem.A @ (x - problem.x_star)
    torch.testing.assert_close(certificate.trajectory.points[-1], x)


def test_a_run_at_another_step_size_is_not_applicable(problem):
    bound = theory.gd_bound(problem, 1 / problem.L)
    certificate = theory.certify(problem, _sgd(1.5 / problem.L), 50, bound)
    assert not certificate.applicable
    assert not certificate.held
    assert certificate.status == "not applicable"
    assert "lr=1.5" in certificate.not_applicable
    assert "not applicable" in certificate.summary()


def test_plain_gd_is_not_certified_by_the_heavy_ball_bound(problem):
    bound = theory.heavy_ball_bound(problem)
    lr = bound.hyperparameters["lr"]
    certificate = theory.certify(problem, _sgd(lr), 50, bound)
    assert not certificate.applicable
    assert "momentum=0" in certificate.not_applicable
    right = theory.certify(problem, _sgd(lr, momentum=bound.hyperparameters["momentum"]), 50, bound)
    assert right.held


def test_a_bound_built_for_one_problem_does_not_apply_to_another(problem):
    other = Quadratic.from_condition_number(5, kappa=10.0, seed=2)
    bound = theory.gd_bound(problem, 1 / problem.L)
    certificate = theory.certify(other, _sgd(1 / problem.L), 30, bound)
    assert not certificate.applicable
    assert "built for" in certificate.not_applicable
    twin = Quadratic.from_condition_number(5, kappa=10.0, seed=1)  # the same problem, rebuilt
    assert theory.certify(twin, _sgd(1 / problem.L), 30, bound).held


def test_an_optimizer_without_the_bounds_settings_is_not_applicable(problem):
    bound = theory.gd_bound(problem, 1 / problem.L)
    certificate = theory.certify(
        problem, lambda p: torch.optim.Adam(p, lr=1 / problem.L), 30, bound
    )
    assert not certificate.applicable
    assert "no 'momentum' setting" in certificate.not_applicable
    with pytest.raises(AssertionError, match="not applicable"):
        theory.assert_bound_holds(
            problem, lambda p: torch.optim.Adam(p, lr=1 / problem.L), 30, bound
        )


def test_a_stated_f_star_above_the_minimum_is_flagged():
    rng = np.random.default_rng(0)
    problem = LeastSquares(rng.standard_normal((20, 4)), rng.standard_normal(20))
    problem.f_star += 1e-3  # wrong: the loss reaches below it
    loose = theory.Bound(
        name="loose", quantity="distance", values=lambda k: k * 0 + 1e9, formula=""
    )
    certificate = theory.certify(problem, _sgd(1 / problem.L), 200, loose)
    assert certificate.negative_gap_step is not None
    assert not certificate.held
    assert "f* is above the true minimum" in certificate.violation_message()
    assert certificate.trajectory.gap[certificate.negative_gap_step] < 0


def test_a_float32_run_is_certified_with_float32_noise_floor(problem):
    lr = 1 / problem.L
    bound = theory.gd_strongly_convex_bound(problem, lr)
    certificate = theory.certify(problem, _sgd(lr), 100, bound, dtype=torch.float32)
    assert certificate.held, certificate.summary()
    assert certificate.atol == theory.numerical_floor(problem, "distance_sq", torch.float32)
    assert certificate.atol > 1e6 * theory.numerical_floor(problem, "distance_sq")
    assert certificate.trajectory.points.dtype == torch.float64  # measured in float64
    assert float(certificate.trajectory.points[0, 0]) == float(problem.x0[0].float())


def test_safe_step_docstring_says_descent_holds_below_two_over_L(problem):
    doc = inspect.getdoc(bounds.safe_step)
    assert "largest constant step for which gradient descent" not in doc
    assert "for *every* 0 < η < 2/L" in " ".join(doc.split())
    # and it is true: GD at 1.9/L decreases f at every step on a quadratic
    trajectory = theory.run(problem, _sgd(1.9 / problem.L), 100)
    assert np.all(np.diff(trajectory.gap) < 0)


def test_nesterov_bound_states_edition_and_theorem(problem):
    source = theory.nesterov_strongly_convex_bound(problem).source
    assert "2004" in source
    assert "1st" in source
    assert "Theorem 2.2.3" in source
    assert "gamma0 = mu" in source
    doc = inspect.getdoc(bounds.nesterov_strongly_convex_gap)
    assert "Kluwer 2004 (first English edition)" in doc
    assert "2018 second edition" in doc


def _train_mode_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.Tanh(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(8, 3),
    ).double()
    model.train()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=generator)
    return model, (x, y)


def test_smoothness_in_train_mode_restores_buffers_and_rng_and_is_deterministic():
    model, batch = _train_mode_model()
    loss_fn = torch.nn.functional.cross_entropy
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = theory.smoothness(model, loss_fn, batch, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG did not move
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name]), name  # running stats and counter restored
    torch.manual_seed(999)  # a different global state does not change the result
    second = theory.smoothness(model, loss_fn, batch, seed=5)
    assert second.eigenvalue == first.eigenvalue
    other = theory.smoothness(model, loss_fn, batch, seed=6)
    assert math.isfinite(other.eigenvalue)


def test_readme_testing_example_uses_assert_bound_holds():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Theory (`theory`)") : text.index("## Experiments")]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    assert "assert_bound_holds(" in code
    assert "from theory import" in code
    assert "assert_bound_holds" in code.split("\n", 1)[0] or "assert_bound_holds" in code
