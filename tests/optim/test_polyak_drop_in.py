"""SPS and SLS as drop-ins: the cases an ordinary training loop meets that the papers' equations
leave open (a zero gradient, a closure without ``backward()``, an interrupted line search, a
NumPy loss). Expected values are written here from the papers and the authors' code
(IssamLaradji/sps, IssamLaradji/sls), not read from the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import optim
from tests.optim.conftest import IMPLS

# --- SPS at a zero gradient (the authors' Sps: step 0, no update, where ||g|| < 1e-8) ------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("eps", [0.0, 1e-8])
def test_sps_plain_at_a_zero_gradient_does_not_move(impl, eps):
    """Plain SPS (gamma_b = inf) at the exact minimiser of f = ||w - 3||^2 + 1 (f > f* = 0, g = 0):
    the parameters stay (they became NaN: inf * 0), and the step size read is finite."""
    w = torch.nn.Parameter(torch.tensor([3.0, 3.0]))
    optimizer = optim.SPS([w], c=0.5, gamma_b=math.inf, eps=eps, impl=impl)

    def closure():
        optimizer.zero_grad()
        loss = ((w - 3) ** 2).sum() + 1.0
        loss.backward()
        return loss

    optimizer.step(closure)
    assert w.detach().tolist() == [3.0, 3.0]
    step_size = float(optimizer.param_groups[0]["step_size"])
    if eps == 0:
        assert step_size == 0.0  # an infinite step: none taken (the authors' skip)
    else:
        assert step_size == pytest.approx(1.0 / eps)  # (f - f*) / (c 0 + eps), finite


@pytest.mark.parametrize("impl", IMPLS)
def test_sps_plain_polyak_steps_stay_at_the_minimiser(impl):
    """Polyak's step with c = 1/2 from w = (1, -2) on ||w - 3||^2 lands on w* = (3, 3) (gamma =
    29 / (0.5 * 116) = 1/2, to rounding: a second step ends it); the steps at g = 0 stay there
    (they made w NaN)."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = optim.SPS([w], c=0.5, gamma_b=math.inf, impl=impl)

    def closure():
        optimizer.zero_grad()
        loss = ((w - 3) ** 2).sum()
        loss.backward()
        return loss

    for _ in range(4):
        optimizer.step(closure)
        assert w.detach().tolist() == pytest.approx([3.0, 3.0], abs=1e-14)
        assert math.isfinite(float(optimizer.param_groups[0]["step_size"]))
    assert w.detach().tolist() == [3.0, 3.0]
    assert w.grad.tolist() == [0.0, 0.0]
    assert float(optimizer.param_groups[0]["step_size"]) == 0.0


@pytest.mark.parametrize("impl", IMPLS)
def test_sps_capped_at_a_zero_gradient_reports_the_cap(impl):
    """With a finite cap the quotient's value at g = 0 (+inf where f > f*) is capped: gamma_b, as
    documented before; the parameters stay."""
    w = torch.nn.Parameter(torch.tensor([3.0, 3.0]))
    optimizer = optim.SPS([w], c=0.5, gamma_b=2.5, impl=impl)
    w.grad = torch.zeros(2)
    optimizer.step(loss=1.0)
    assert w.detach().tolist() == [3.0, 3.0]
    assert float(optimizer.param_groups[0]["step_size"]) == 2.5


def test_sps_step_size_is_finite_where_the_quotient_is_not():
    """``sps_step_size`` with gamma_b = inf: a zero denominator, or a quotient that overflows,
    gives 0; elsewhere the formula."""
    f64 = torch.float64
    zero, one = torch.tensor(0.0, dtype=f64), torch.tensor(1.0, dtype=f64)
    kw = {"c": 0.5, "gamma_b": math.inf, "f_star": 0.0}
    assert float(optim.polyak.sps_step_size(one, zero, eps=0.0, **kw)) == 0.0
    huge = torch.tensor(1e300, dtype=f64)
    assert float(optim.polyak.sps_step_size(huge, zero, eps=1e-300, **kw)) == 0.0
    four = torch.tensor(4.0, dtype=f64)
    assert float(optim.polyak.sps_step_size(one, four, eps=0.0, **kw)) == 0.5  # 1 / (0.5 * 4)


# --- a closure that does not call backward() -----------------------------------------------


def _linear():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 1), torch.randn(16, 4), torch.randn(16, 1)


@pytest.mark.parametrize("cls", [optim.SPS, optim.SLS])
def test_closure_without_backward_is_refused(cls):
    """The authors' convention (their optimizer calls backward) given to ours moved nothing,
    silently, step after step: the closure must call loss.backward(), as for LBFGS."""
    model, x, y = _linear()
    optimizer = cls(model.parameters())
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        return torch.nn.functional.mse_loss(model(x), y)

    optimizer.zero_grad()
    with pytest.raises(ValueError, match=r"backward\(\)") as raised:
        optimizer.step(closure)
    assert "closure" in str(raised.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("cls", [optim.SPS, optim.SLS])
def test_closure_with_frozen_or_unused_parameters_is_taken(cls):
    """Some parameters without a gradient (frozen, or not in this loss) are not a missing
    backward(): the step runs on the others."""
    model, x, y = _linear()
    unused = torch.nn.Parameter(torch.ones(3))
    model.bias.requires_grad_(False)
    optimizer = cls([*model.parameters(), unused])
    weight = model.weight.detach().clone()

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    assert not torch.equal(model.weight.detach(), weight)
    assert unused.grad is None
    assert unused.detach().tolist() == [1.0, 1.0, 1.0]


def test_sps_closure_returning_a_number_after_backward_is_taken():
    model, x, y = _linear()
    optimizer = optim.SPS(model.parameters())
    weight = model.weight.detach().clone()

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss.item()

    optimizer.step(closure)
    assert not torch.equal(model.weight.detach(), weight)


# --- SLS: an exception inside the line search ----------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_sls_interrupted_search_restores_x_k(impl, error):
    """The closure raising at the first trial (x_k - 1 * g = (7, 13) on ||w - 3||^2 from (1, -2))
    left w at the rejected trial point; it is back at x_k, and the step not counted."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = optim.SLS([w], init_step_size=1.0, c=0.1, beta_b=0.5, reset_option=0, impl=impl)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:  # (the first trial)
            raise error("interrupted during the line search")
        optimizer.zero_grad()
        loss = ((w - 3) ** 2).sum()
        loss.backward()
        return loss

    with pytest.raises(error):
        optimizer.step(closure)
    assert w.detach().tolist() == [1.0, -2.0]
    assert optimizer.param_groups[0]["k"] == 0
    calls.extend([1, 1])  # the next step undisturbed: 1 fails (29 > 29 - 0.1 * 116), 0.5 passes
    optimizer.step(closure)
    assert w.detach().tolist() == [3.0, 3.0]
    assert optimizer.param_groups[0]["step_size"] == 0.5


# --- SPS.step(loss=...) with NumPy values --------------------------------------------------


@pytest.mark.parametrize(
    "loss",
    [np.float64(29.0), np.float32(29.0), np.int64(29), np.array(29.0), np.array([29.0], "f4"),
     29, 29.0],
    ids=repr,
)  # fmt: skip
def test_sps_takes_a_numpy_loss(loss):
    """f = 29, g = (-4, -10): gamma = 29 / (1 * 116) = 1/4 (the class docstring's example)."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = optim.SPS([w], c=1.0, gamma_b=10.0)
    w.grad = torch.tensor([-4.0, -10.0])
    optimizer.step(loss=loss)
    assert float(optimizer.param_groups[0]["step_size"]) == pytest.approx(0.25)
    assert w.detach().tolist() == pytest.approx([2.0, 0.5])


@pytest.mark.parametrize(
    "loss", [True, np.bool_(True), np.array([True]), np.array([1.0, 2.0]), "29", 29j], ids=repr
)
def test_sps_refuses_a_loss_that_is_not_one_real_number(loss):
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = optim.SPS([w])
    w.grad = torch.tensor([-4.0, -10.0])
    with pytest.raises(TypeError, match="loss"):
        optimizer.step(loss=loss)
    assert w.detach().tolist() == [1.0, -2.0]
