"""The guarantees of the learning-rate-free step sizes, certified with ``theory.certify`` on
problems with known answers, each with a run that breaks its assumption and fails."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import optim
from optim.polyak import SLS_SEARCHES_FROM
from theory import lr_free_bounds as B
from theory.certify import certify, numerical_floor, run
from theory.problems import (
    LeastAbsoluteDeviations,
    LeastSquares,
    LogisticRegression,
    Quadratic,
    ReddiCounterexample,
    Rosenbrock,
)
from theory.testing import logistic_problem

STRONGLY_CONVEX = Quadratic.from_spectrum([1.0, 3.0, 10.0, 30.0], seed=0)
CONVEX = Quadratic.from_spectrum([0.0, 1.0, 5.0, 20.0], seed=0)
DISTANCE = float((STRONGLY_CONVEX.x0 - STRONGLY_CONVEX.x_star).norm())


@pytest.mark.parametrize("name", ["Prodigy", "DAdaptSGD"])
@pytest.mark.parametrize("problem", [STRONGLY_CONVEX, CONVEX], ids=["kappa30", "convex"])
def test_d_adaptation_never_overestimates_the_distance(name, problem):
    bound = B.d_estimate_bound(problem, name)
    certificate = certify(problem, lambda ps: getattr(optim, name)(ps), 300, bound)
    assert certificate.held, certificate.summary()
    assert certificate.worst_ratio > 0.05, "the estimate never grew"


def test_d0_above_the_distance_breaks_the_lemma():
    bound = B.d_estimate_bound(STRONGLY_CONVEX, "Prodigy")
    make = lambda ps: optim.Prodigy(ps, d0=3 * DISTANCE)  # noqa: E731
    certificate = certify(STRONGLY_CONVEX, make, 50, bound)
    assert not certificate.held
    assert certificate.first_violation == 0


# The audit's problem (repro_dadaptadam_d_estimate.py): DAdaptAdam's d reaches 2.02 D.
AUDIT_QUADRATIC = Quadratic.from_spectrum([0.01, 1.0], seed=0, x_star=[0.0, 0.0], x0=[1.0, 1.0])


def test_dadaptadam_and_dadaptadagrad_are_not_certified_by_the_d_estimate_lemma():
    problem = AUDIT_QUADRATIC
    bound = B.d_estimate_bound(problem, "Prodigy")
    for name in ("DAdaptAdam", "DAdaptAdaGrad"):
        certificate = certify(problem, getattr(optim, name), 100, bound)
        assert certificate.status == "not applicable", certificate.summary()
        assert f"the run used {name}" in certificate.not_applicable
        with pytest.raises(ValueError, match=f"no lemma for method='{name}'"):
            B.d_estimate_bound(problem, name)
    # a DAdaptSGD bound does not take DAdaptAdam (no momentum setting, another class) either
    sgd = B.d_estimate_bound(problem, "DAdaptSGD")
    assert not certify(problem, lambda ps: optim.DAdaptAdam(ps), 10, sgd).applicable
    # DAdaptSGD's proof needs momentum 0: with momentum the run is not applicable
    with_momentum = certify(problem, lambda ps: optim.DAdaptSGD(ps, momentum=0.9), 10, sgd)
    assert "momentum" in with_momentum.not_applicable
    # why: d_k <= ||x0 - x*|| fails for both (DAdaptAdam 2.02 D here, DAdaptAdaGrad 1.026 D on
    # f(x) = |x|), so the old bound reported these correct runs as violated
    adam = run(problem, lambda ps: optim.DAdaptAdam(ps), 100, observe=B._observer(problem, "d"))
    distance = float((problem.x0 - problem.x_star).norm())
    assert adam.distance.max() > 2 * distance
    absolute = LeastAbsoluteDeviations(
        np.array([[1.0]]), np.array([0.0]), x0=np.array([1e-3]), batch_size=None
    )
    adagrad = run(
        absolute,
        lambda ps: optim.DAdaptAdaGrad(ps, d0=1e-8),
        200,
        observe=B._observer(absolute, "d"),
    )
    assert adagrad.distance.max() > 1.02 * 1e-3


def _logistic_problem() -> LogisticRegression:
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(60, 5, generator=generator, dtype=torch.float64)
    w = torch.randn(5, generator=generator, dtype=torch.float64)
    y = torch.where(X @ w + 0.3 * torch.randn(60, generator=generator, dtype=torch.float64) > 0,
                    1.0, -1.0)  # fmt: skip
    return LogisticRegression(X, y, 1e-3, seed=0)


@pytest.mark.parametrize(
    "problem", [STRONGLY_CONVEX, CONVEX, _logistic_problem()], ids=["kappa30", "convex", "logreg"]
)
def test_dog_iterates_stay_within_three_initial_distances(problem):
    bound = B.dog_iterate_bound(problem)
    certificate = certify(problem, lambda ps: optim.DoG(ps), 400, bound)
    assert certificate.held, certificate.summary()
    # DoG written from the paper's formulas (eta_t = rbar_t / sqrt(G_t), rbar_0 = r_eps =
    # 1e-6 (1 + ||x0||), G_t = sum_{i<=t} ||g_i||^2 + 1e-8): its largest move from x0
    x = start = problem.x0.to(torch.float64)
    rbar, G, moved = 1e-6 * (1 + float(start.norm())), 1e-8, 0.0
    for _ in range(400):
        g = problem.grad(x)
        G += float(g @ g)
        x = x - rbar / math.sqrt(G) * g
        moved = max(moved, float((x - start).norm()))
        rbar = max(rbar, moved)
    distance = float((problem.x0 - problem.x_star).norm())
    assert certificate.worst_ratio == pytest.approx(moved / (3 * distance), rel=1e-6)
    assert 0.2 < certificate.worst_ratio <= 1  # DoG did travel a good part of the way


def test_dog_bound_refuses_r_eps_above_its_condition():
    problem = STRONGLY_CONVEX
    bound = B.dog_iterate_bound(problem)
    scale = 1 + float(problem.x0.norm())  # r_eps = reps_rel (1 + ||x0||)
    # r_eps = 5 d0 > 3 d0: no bound is built for it ...
    reps_rel = 5 * DISTANCE / scale
    with pytest.raises(ValueError, match="fails at k = 1"):
        B.dog_iterate_bound(problem, reps_rel=reps_rel)
    # ... and the default bound (reps_rel = 1e-6) does not take the run
    make = lambda ps: optim.DoG(ps, reps_rel=reps_rel)  # noqa: E731
    refused = certify(problem, make, 50, bound)
    assert refused.status == "not applicable", refused.summary()
    assert "reps_rel" in refused.not_applicable
    # why the condition: the first update alone moves r_eps = 5 d0 > 3 d0
    moved = run(problem, make, 50, observe=B._moved_from_start(problem))
    assert moved.distance[1] == pytest.approx(5 * DISTANCE, rel=1e-9)
    # inside the condition (r_eps = 2.9 d0) the bound is built, and holds at every step, the
    # first update its worst
    inside = 2.9 * DISTANCE / scale
    near = B.dog_iterate_bound(problem, reps_rel=inside)
    certificate = certify(problem, lambda ps: optim.DoG(ps, reps_rel=inside), 400, near)
    assert certificate.held, certificate.summary()
    assert certificate.worst_ratio == pytest.approx(2.9 / 3, rel=1e-9)


def test_dog_bound_is_about_plain_dog_with_its_settings_and_can_fail():
    problem = STRONGLY_CONVEX
    bound = B.dog_iterate_bound(problem)
    # init_eta replaces r_eps (the group's reps_rel becomes 0): not the run the bound is about
    init_eta = certify(problem, lambda ps: optim.DoG(ps, init_eta=1e-3), 10, bound)
    assert "reps_rel" in init_eta.not_applicable
    # the paper's c = lr = 1 and no weight decay are assumed
    assert "lr" in certify(problem, lambda ps: optim.DoG(ps, lr=2.0), 10, bound).not_applicable
    decay = certify(problem, lambda ps: optim.DoG(ps, weight_decay=0.1), 10, bound)
    assert "weight_decay" in decay.not_applicable
    # another optimizer, even with the same settings, is not DoG
    sgd = certify(problem, lambda ps: torch.optim.SGD(ps, lr=1.0), 10, bound)
    assert "the bound is about DoG" in sgd.not_applicable
    # the default run moves about d0, so a bound of 0.9 d0 (factor 0.3) is broken
    shrunk = certify(problem, lambda ps: optim.DoG(ps), 400, bound.scaled(0.3))
    assert shrunk.applicable
    assert not shrunk.held


def test_dog_bound_needs_full_gradients():
    # only observed with exact gradients (the paper proves its stochastic guarantee for a
    # tamed variant): a sampled problem is refused
    sampled = LeastAbsoluteDeviations.synthetic(n=100, dim=5, seed=0)
    assert sampled.stochastic
    with pytest.raises(ValueError, match="full gradients"):
        B.dog_iterate_bound(sampled)
    # the same problem with full gradients (non-smooth) is taken, and DoG stays within 3 d0
    full = LeastAbsoluteDeviations.synthetic(n=100, dim=5, seed=0, batch_size=None)
    certificate = certify(full, lambda ps: optim.DoG(ps), 400, B.dog_iterate_bound(full))
    assert certificate.held, certificate.summary()


def test_sps_step_is_at_least_its_lemma_1_floor_and_not_more():
    problem = STRONGLY_CONVEX
    make = lambda ps: optim.SPS(ps, c=0.5, gamma_b=1.0, f_star=problem.f_star)  # noqa: E731
    bound = B.sps_step_bound(problem, c=0.5, gamma_b=1.0)
    assert certify(problem, make, 200, bound).held
    assert not certify(problem, make, 200, bound.scaled(3)).held  # a floor 3x too high fails
    other = lambda ps: optim.SPS(ps, c=0.5, gamma_b=1.0, f_star=-1.0)  # noqa: E731
    assert not certify(problem, other, 20, bound).applicable  # f* must be the true one


def test_sps_step_bound_holds_when_the_gap_reaches_rounding_level():
    # the audit's repro_sps_rounding.py: from step 52 f(x_k) - f* computes as 0, SPS's step
    # with it; the old certificate reported this correct run as violated at step 52
    problem = logistic_problem(20.0, seed=1)
    bound = B.sps_step_bound(problem, c=1.0, gamma_b=math.inf)
    certificate = certify(problem, lambda ps: optim.SPS(ps, **bound.hyperparameters), 300, bound)
    assert certificate.held, certificate.summary()
    # the raw steps fall to 0 once the computed gap does (the step where depends on the
    # summation order, so on the thread count: 52 with 2 threads, 119 with 1)
    assert min(_sps_steps(problem, bound.hyperparameters, 300)) == 0.0
    # a real shortfall while the gap is far above rounding is still reported: a floor 3x too
    # high fails at a step whose gap is far above tau (the allowance there is negligible)
    high = certify(problem, lambda ps: optim.SPS(ps, **bound.hyperparameters), 300, bound.scaled(3))
    assert not high.held
    k = high.first_violation
    assert high.trajectory.gap[k - 1] > 1e3 * numerical_floor(problem, "gap")
    # eps > 0 breaks the lemma near the minimum: the bound pins eps = 0
    eps = lambda ps: optim.SPS(ps, **{**bound.hyperparameters, "eps": 1e-3})  # noqa: E731
    assert not certify(problem, eps, 10, bound).applicable


def _sps_steps(problem, settings, steps):
    """SPS's step size after each of ``steps`` updates on ``problem``."""
    values = []

    def observe(param, optimizer):
        values.append(float(optimizer.param_groups[0]["step_size"]))
        return param.detach().clone()

    run(problem, lambda ps: optim.SPS(ps, **settings), steps, observe=observe)
    return values[1:]


@pytest.mark.parametrize("problem", [STRONGLY_CONVEX, CONVEX], ids=["kappa30", "convex"])
def test_deterministic_polyak_step_rates(problem):
    make = lambda ps: optim.SPS(ps, c=1.0, gamma_b=math.inf, f_star=problem.f_star)  # noqa: E731
    bound = B.polyak_bound(problem)
    assert bound.quantity == ("distance_sq" if problem.mu > 0 else "grad_sq_min")
    assert certify(problem, make, 300, bound).held
    assert not certify(problem, make, 300, bound.scaled(1e-3)).held


def test_armijo_backtracking_gap_bound():
    problem = CONVEX
    make = lambda ps: optim.SLS(ps, init_step_size=1.0, c=0.5, beta_b=0.5, reset_option=0)  # noqa: E731
    bound = B.armijo_bound(problem, 1.0, 0.5, 0.5)
    assert certify(problem, make, 200, bound).held
    assert not certify(problem, make, 200, bound.scaled(1e-3)).held
    with pytest.raises(ValueError, match="c in"):
        B.armijo_bound(problem, 1.0, 0.1, 0.5)  # the proof needs c >= 1/2


def test_armijo_bound_counts_the_eta_max_cap():
    # the audit's repro_armijo_eta_max.py: eta_0 = 100 > eta_max = 10 caps every step at 10,
    # below the old eta_min = min(100, 2 beta (1 - c) / L) = 90; the old bound failed at k = 2
    problem = Quadratic.from_spectrum([0.0, 1e-4, 0.01], seed=0)
    bound = B.armijo_bound(problem, init_step_size=100.0, c=0.5, beta_b=0.9)
    make = lambda ps: optim.SLS(ps, init_step_size=100.0, c=0.5, beta_b=0.9)  # noqa: E731
    certificate = certify(problem, make, 300, bound)
    assert certificate.held, certificate.summary()
    distance_sq = float((problem.x0 - problem.x_star).square().sum())
    assert bound(1) == pytest.approx(distance_sq / (2 * 10.0))  # eta_min = eta_max = 10
    # the old eta_min = 90 (bound 9x smaller) is violated by this correct run
    assert not certify(problem, make, 300, bound.scaled(10 / 90)).held
    # eta_max is pinned: a run with another cap is not applicable
    other = lambda ps: optim.SLS(ps, init_step_size=100.0, c=0.5, beta_b=0.9, eta_max=50.0)  # noqa: E731
    assert "eta_max" in certify(problem, other, 5, bound).not_applicable
    # too few backtracks to reach 2 (1 - c) / L: SLS may take an untested step
    with pytest.raises(ValueError, match="max_backtracks=2 is too few"):
        B.armijo_bound(problem, 1.0, 0.5, 0.5, eta_max=1e4, max_backtracks=2)


def test_schedule_free_sgd_last_iterate_bound():
    problem = LeastAbsoluteDeviations.synthetic(n=100, dim=5, seed=0)
    steps = 200
    lr = float((problem.x0 - problem.x_star).norm()) / (problem.G * math.sqrt(steps))

    def make(params):
        optimizer = optim.SGDScheduleFree(params, lr=lr)
        optimizer.train()
        return optimizer

    bound = B.schedulefree_sgd_bound(problem, lr)
    assert certify(problem, make, steps, bound, seeds=(0, 1, 2)).held
    assert not certify(problem, make, steps, bound.scaled(0.05), seeds=(0, 1, 2)).held


def test_schedule_free_sgd_bound_holds_at_the_first_update():
    # the audit's repro_schedulefree_offbyone.py: f(x) = |x|, x0 = 0.01, lr = 1. The first
    # update has c = 1, so x_1 = z_1 = x0 - lr sign(x0) = -0.99 (gap 0.99), above the old
    # bound D^2/(2 lr) + lr G^2/2 = 0.50005; x_k averages z_1..z_k.
    problem = LeastAbsoluteDeviations(
        np.array([[1.0]]), np.array([0.0]), x0=np.array([0.01]), batch_size=None
    )

    def make(params):
        optimizer = optim.SGDScheduleFree(params, lr=1.0, momentum=0.9)
        optimizer.train()
        return optimizer

    bound = B.schedulefree_sgd_bound(problem, lr=1.0, momentum=0.9)
    certificate = certify(problem, make, 50, bound)
    assert certificate.held, certificate.summary()
    assert certificate.observed[1] == pytest.approx(0.99)
    assert bound(1) == pytest.approx((0.01**2 + 1.0) / 2 + 0.5)
    # the indexing: x after k updates is the mean of z_1..z_k (z_0 = x0 left out)
    z, zs = 0.01, []
    for _ in range(5):
        x = sum(zs) / len(zs) if zs else z
        y = 0.1 * z + 0.9 * x  # y = (1 - beta) z + beta x
        z = z - math.copysign(1.0, y) if y != 0 else z
        zs.append(z)
        assert certificate.observed[len(zs)] == pytest.approx(abs(sum(zs) / len(zs)), abs=1e-12)


def _sampled_least_squares(batch_size):
    """A least-squares problem started 1e-3 from x*, sampled one row at a time (or full)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((30, 6))
    y = X @ rng.standard_normal(6) + 0.5 * rng.standard_normal(30)
    x_star = LeastSquares(X, y).x_star.numpy()
    x0 = x_star + 1e-3 * np.ones(6) / math.sqrt(6)
    return LeastSquares(X, y, x0=x0, batch_size=batch_size, oracle_seed=1)


def test_bounds_on_the_full_loss_refuse_a_sampled_problem():
    """The D-Adaptation lemma needs each g_i a subgradient of f at x_i, the Polyak step f*
    exact, the Armijo test f itself: on a sampled problem they say nothing. They were built
    anyway, and certify reported correct runs as violated (here Prodigy's d reaches 1.3 D and
    DAdaptSGD's 21 D, against 1 D and 2 D), where sps_step_bound and dog_iterate_bound refused."""
    sampled = _sampled_least_squares(batch_size=1)
    distance = float((sampled.x0 - sampled.x_star).norm())
    for name, factor in (("Prodigy", 1.0), ("DAdaptSGD", 2.0)):
        trajectory_d = []

        def observe(param, optimizer, trajectory_d=trajectory_d):
            trajectory_d.append(float(optimizer.param_groups[0]["d"]))
            return param.detach().clone()

        run(sampled, lambda ps, name=name: getattr(optim, name)(ps, d0=1e-8), 300, observe=observe)
        assert max(trajectory_d) > factor * distance  # (the lemma's premise is what fails)
        with pytest.raises(ValueError, match="d_estimate_bound needs the full loss"):
            B.d_estimate_bound(sampled, name)
    for build in (B.polyak_bound, lambda p: B.armijo_bound(p, 1.0, 0.5, 0.5)):
        with pytest.raises(ValueError, match=r"needs the full loss.*stochastic=True"):
            build(sampled)
    full = _sampled_least_squares(batch_size=None)
    bound = B.d_estimate_bound(full, "Prodigy")
    assert certify(full, lambda ps: optim.Prodigy(ps, d0=1e-8), 300, bound).held


def test_bounds_from_smoothness_refuse_a_local_or_infinite_l():
    """SPS's floor 1 / (2 c L), the Polyak rates and the Armijo steps need f L-smooth
    everywhere. On Rosenbrock (L the Hessian's at x*, 1001.6; from x0 the lemma needs 1120.4)
    sps_step_bound reported a correct SPS run as violated at step 1; on a non-smooth problem
    (L = inf) its floor was 0, so a run that never moves held, and armijo_bound raised
    'math domain error'."""
    rosenbrock = Rosenbrock()
    assert not rosenbrock.L_is_global
    non_smooth = LeastAbsoluteDeviations.synthetic(n=50, dim=3, seed=0, batch_size=None)
    assert math.isinf(non_smooth.L)
    builders = {
        "sps_step_bound": lambda p: B.sps_step_bound(p, c=0.5, gamma_b=10.0),
        "polyak_bound": B.polyak_bound,
        "armijo_bound": lambda p: B.armijo_bound(p, 1.0, 0.5, 0.5),
    }
    for name, build in builders.items():
        with pytest.raises(ValueError, match=rf"{name} needs f L-smooth everywhere.*not smooth"):
            build(non_smooth)
    with pytest.raises(ValueError, match="smoothness at x\\* only"):
        builders["sps_step_bound"](rosenbrock)


def test_a_run_with_an_infinite_setting_is_not_the_bounds_run():
    """certify compared the pinned settings only where the run's were finite: an SLS run with
    eta_max = inf passed as the bound's eta_max = 10 and was reported violated; with 1e300 it
    was not applicable. Now both are not applicable."""
    problem = Quadratic.from_condition_number(10, 10.0, seed=1)
    bound = B.armijo_bound(problem, 1.0, 0.5, 0.9, eta_max=10.0, max_backtracks=100)
    for eta_max in (1e300, math.inf):
        make = lambda ps, eta_max=eta_max: optim.SLS(  # noqa: E731
            ps, init_step_size=1.0, c=0.5, beta_b=0.9, eta_max=eta_max
        )
        certificate = certify(problem, make, 20, bound)
        assert certificate.status == "not applicable", certificate.summary()
        assert "eta_max" in certificate.not_applicable


def test_armijo_bound_holds_where_sls_stops_searching():
    """SLS leaves x where ||g|| < 1e-8 (the authors' code), which the bound's sum of steps did
    not count: a quadratic of curvature 1e-6 started where ||g|| = 5e-9 never moves, and the
    bound D^2 / (2 k eta_min) fell below its gap (2.5e-9) from step 223. The gap there is at most
    1e-8 ||x0 - x*|| (convexity), the bound's floor now; a floor 10x lower still fails."""
    problem = Quadratic(np.diag([5e-9, 1e-6]), x_star=np.zeros(2), x0=np.array([1.0, 0.0]))
    assert float(problem.grad(problem.x0).norm()) < SLS_SEARCHES_FROM
    settings = {"init_step_size": 1e6, "c": 0.5, "beta_b": 0.9, "eta_max": 1e6}
    bound = B.armijo_bound(problem, **settings)
    assert bound.formula.endswith(f"{SLS_SEARCHES_FROM:g} ||x0 - x*||)")  # (optim.SLS's)
    make = lambda ps: optim.SLS(ps, **settings)  # noqa: E731
    certificate = certify(problem, make, 400, bound)
    assert certificate.held, certificate.summary()
    lower = B.armijo_bound(problem, **settings, searches_from=SLS_SEARCHES_FROM / 10)
    assert not certify(problem, make, 400, lower).held


def test_sps_and_sls_refuse_settings_that_never_step():
    """SPS with c = inf (every step 0), SLS with an infinite first trial (every search falls
    back to 1e-6) and a bool reset_option were accepted."""
    w = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match="c must be a finite number"):
        optim.SPS(w, c=math.inf)
    with pytest.raises(ValueError, match="init_step_size must be a finite number"):
        optim.SLS(w, init_step_size=math.inf)
    with pytest.raises(ValueError, match="reset_option must be 0, 1 or 2"):
        optim.SLS(w, reset_option=True)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="factor"):
        B.d_estimate_bound(STRONGLY_CONVEX, "Prodigy", -1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        B.d_estimate_bound(STRONGLY_CONVEX, "Adam")
    with pytest.raises(ValueError, match="beta_b"):
        B.armijo_bound(CONVEX, 1.0, 0.5, 1.5)
    with pytest.raises(ValueError, match="G"):
        B.schedulefree_sgd_bound(STRONGLY_CONVEX, 0.1)


# ------------------------------------------------------------- online, projected problems
def test_bounds_on_the_full_loss_refuse_an_online_projected_problem():
    """Reddi et al.'s problem is deterministic but online (update t is given f_t(x) = c_t x, not
    f) and projected onto [-1, 1]: the D-Adaptation lemma's g_i is no subgradient of f at x_i
    (and x_i != x0 - s_i after a clip). Before, the bounds were built and a correct Prodigy run
    was reported violated; now they are refused, naming the problem and why."""
    problem = ReddiCounterexample(stochastic=False, x0=[-0.9])  # x* = -1, D = 0.1
    distance = float((problem.x0 - problem.x_star).norm())
    # the lemma's premise fails on it: Prodigy's d grows far past D from d0 = D/2 < D
    seen = []

    def observe(param, optimizer):
        seen.append(float(optimizer.param_groups[0]["d"]))
        return param.detach().clone()

    run(problem, lambda ps: optim.Prodigy(ps, d0=0.05), 200, observe=observe)
    assert max(seen) > 2 * distance
    builders = [
        ("d_estimate_bound", lambda p: B.d_estimate_bound(p, "Prodigy")),
        ("d_estimate_bound", lambda p: B.d_estimate_bound(p, "DAdaptSGD")),
        ("dog_iterate_bound", B.dog_iterate_bound),
    ]
    for stochastic in (False, True):
        online = ReddiCounterexample(stochastic=stochastic, x0=[-0.9])
        for name, build in builders:
            with pytest.raises(ValueError, match="needs the full loss") as error:
                build(online)
            message = str(error.value)
            assert message.startswith(f"{name} needs the full loss"), message
            assert "ReddiCounterexample" in message
            assert "online" in message
            assert "projection onto [-1, 1]" in message
            assert ("stochastic=True" in message) == stochastic


def test_why_not_full_loss_is_empty_exactly_for_full_loss_unconstrained_problems():
    assert STRONGLY_CONVEX.why_not_full_loss == ""
    assert _sampled_least_squares(batch_size=None).why_not_full_loss == ""
    assert "stochastic=True" in _sampled_least_squares(batch_size=1).why_not_full_loss
    assert "online" in ReddiCounterexample().why_not_full_loss
    with pytest.raises(TypeError, match=r"needs a theory\.problems\.Problem"):
        B.sps_step_bound(None)


# ----------------------------------------------------------------- Schedule-Free's momentum
@pytest.mark.parametrize("momentum", [0, 0.0, 1.0, -3.0, 7.0, math.nan, math.inf])
def test_schedulefree_bound_refuses_a_momentum_outside_0_1(momentum):
    # before: a bound was built for any float(momentum), NaN included
    problem = LeastAbsoluteDeviations.synthetic(n=20, dim=3, seed=0)
    with pytest.raises(ValueError, match=r"^momentum must be") as error:
        B.schedulefree_sgd_bound(problem, 0.1, momentum)
    assert f"momentum={float(momentum)!r}" in str(error.value)


@pytest.mark.parametrize("momentum", [True, "0.9", None, [0.9]])
def test_schedulefree_bound_refuses_a_momentum_that_is_not_a_number(momentum):
    problem = LeastAbsoluteDeviations.synthetic(n=20, dim=3, seed=0)
    with pytest.raises(TypeError, match=r"momentum must be a real number"):
        B.schedulefree_sgd_bound(problem, 0.1, momentum)


def test_schedulefree_bound_takes_a_momentum_inside_0_1():
    problem = LeastAbsoluteDeviations.synthetic(n=20, dim=3, seed=0)
    for momentum in (1e-9, 0.5, np.float32(0.9), 1 - 1e-12):
        bound = B.schedulefree_sgd_bound(problem, 0.1, momentum)
        assert bound.hyperparameters["momentum"] == float(momentum)
