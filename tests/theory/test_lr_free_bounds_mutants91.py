"""Tests that kill the surviving lr_free_bounds.py mutants of audit 91 (L02, L03, L07, L14).
Expected values: the dadaptation package's DAdaptSGD (d_hat = 2 * numerator / ||s||, so the
estimate is twice [DM23] Lemma 1's and the factor is 2), the dog-optimizer package
(r_eps = reps_rel * (1 + ||x0||)), SPS's step gamma = (f - f*) / (c ||g||^2) (an error tau in
f - f* moves it by tau / (c ||g||^2)), and optim.SLS's max_backtracks trials
eta_max beta^j, j = 0..max_backtracks - 1."""

import math

import pytest
import torch

from theory.certify import numerical_floor
from theory.lr_free_bounds import armijo_bound, d_estimate_bound, dog_iterate_bound, sps_step_bound
from theory.problems import Quadratic


def _problem(x_star=(0.0, 0.0), x0=(3.0, 4.0)):
    return Quadratic([[1.0, 0.0], [0.0, 0.5]], x_star=list(x_star), x0=list(x0))


def test_dadapt_sgd_factor_is_two():
    # L02: dadaptation's DAdaptSGD estimate is 2 r / ||s|| (twice the paper's): factor 2
    problem = _problem()  # ||x0 - x*|| = 5
    bound = d_estimate_bound(problem, "DAdaptSGD")
    assert bound([0, 7]).tolist() == [10.0, 10.0]
    assert d_estimate_bound(problem, "Prodigy")(3) == 5.0


def test_dog_r_eps_includes_one_plus_the_start_norm():
    # L03: r_eps = reps_rel (1 + ||x0||) (dog-optimizer): x0 = 0 still moves reps_rel on update 1,
    # so with 3 ||x0 - x*|| = 3e-7 < 1e-6 = r_eps the bound is refused
    problem = _problem(x_star=(1e-7, 0.0), x0=(0.0, 0.0))
    with pytest.raises(ValueError, match="r_eps"):
        dog_iterate_bound(problem, reps_rel=1e-6)
    dog_iterate_bound(problem, reps_rel=1e-7 / 2)  # r_eps = 5e-8 <= 3e-7: allowed


class _FakeSPS:
    """Just what the observe reads: param_groups[0]["step_size"]."""

    def __init__(self, step):
        self.param_groups = [{"step_size": step}]


def test_sps_rounding_allowance_divides_by_c():
    # L07: allowance = min(tau / (c ||g||^2), floor) for the step gamma = (f - f*)/(c ||g||^2)
    problem = _problem(x0=(1.0, 1.0))  # L = 1
    c = 0.5
    bound = sps_step_bound(problem, c=c, gamma_b=1.0)
    floor = min(1 / (2 * c * 1.0), 1.0)  # 1
    optimizer = _FakeSPS(0.25)
    tau = numerical_floor(problem, "gap", torch.float64)
    # a point whose gradient norm² is 4 tau: allowance tau / (c 4 tau) = 1/2 < floor
    point = torch.tensor([math.sqrt(4 * tau), 0.0], dtype=torch.float64)  # grad = (x0, 0)
    x_star0 = float(problem.x_star[0])
    first = bound.observe(point, optimizer)  # k = 0: no allowance yet
    assert float(first[0]) - x_star0 == pytest.approx(0.25, rel=1e-12)
    second = bound.observe(point, optimizer)  # the allowance of the step taken at `point`
    expected = 0.25 + min(1 / (4 * c), floor)  # 0.25 + 0.5
    assert float(second[0]) - x_star0 == pytest.approx(expected, rel=1e-9)


def test_armijo_needs_the_last_of_max_backtracks_trials_to_pass():
    # L14: the last trial is eta_max beta^(max_backtracks - 1); with L = 1, c = 1/2 every step
    # <= 2 (1 - c) / L = 1 passes. eta_max = 10, beta = 1/2: 4 trials end at 1.25 > 1 (refused),
    # 5 trials end at 0.625 <= 1 (accepted)
    problem = _problem(x0=(1.0, 1.0))
    with pytest.raises(ValueError, match="max_backtracks"):
        armijo_bound(problem, 1.0, 0.5, 0.5, eta_max=10.0, max_backtracks=4)
    bound = armijo_bound(problem, 1.0, 0.5, 0.5, eta_max=10.0, max_backtracks=5)
    # eta_min = min(1, 10, 0.5 * 1) = 0.5; ||x0 - x*||^2 = 2: bound(4) = 2 / (2 * 4 * 0.5)
    assert bound(4) == pytest.approx(0.5)
