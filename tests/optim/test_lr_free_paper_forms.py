"""Prodigy and Schedule-Free beside the other formulations their packages ship.

``test_lr_free`` holds each class to its package's main class (``prodigyopt.Prodigy``,
``schedulefree.SGDScheduleFree``, ...), whose bits ours give. The packages ship the same
algorithms written a second way, which those classes were checked against by their authors:
``prodigyopt.prodigy_reference.ProdigyReference`` (the research paper's code, Mishchenko &
Defazio 2023, Algorithm 1 with Adam's moments), Schedule-Free's ``*Reference`` classes (the paper's
iterates y, z and x each kept, Defazio et al. 2024, eq. 1-3, where the main classes keep y and z
and recover x at ``eval()``) and ``*Closure`` classes (the parameters hold x, the closure is
evaluated at y). Matching the main class bit for bit could still share a mistake made in
reading it; these formulations round differently, so the check is to a tolerance: float64, two
param groups, 200 steps of a noisy non-convex loss, every execution path, the point a user
evaluates (Schedule-Free's x, in eval mode) after every step, to the issue's 1e-10 (normwise,
``relative_error``). Measured when written, the largest over the cases and paths: Prodigy equal
to its reference's bits; Schedule-Free within 4.2e-14 of the ``*Reference`` classes and 9.1e-15
of the ``*Closure`` classes; with one constant misread (r = 1 for 0), 6.0.
"""

from __future__ import annotations

import contextlib
import functools
import io

import pytest
import torch

import optim
from tests.optim.conftest import IMPLS, relative_error
from tests.optim.test_lr_free import STEPS, groups, make_params, noisy_loss

prodigyopt = pytest.importorskip("prodigyopt")
schedulefree = pytest.importorskip("schedulefree")
prodigy_reference = pytest.importorskip("prodigyopt.prodigy_reference")

TOLERANCE = 1e-10

PRODIGY_CASES = [
    ({}, {}),
    ({"weight_decay": 0.01}, {"weight_decay": 0.1}),  # (decoupled, the default)
    ({"weight_decay": 0.01, "decouple": False, "use_bias_correction": True}, {}),
    ({"betas": (0.5, 0.99), "beta3": 0.9, "safeguard_warmup": True}, {"eps": 1e-6}),
    ({"d_coef": 2.0, "growth_rate": 1.05, "d0": 1e-4}, {}),
]
SCHEDULE_FREE_CASES = [
    ("SGDScheduleFree", {"lr": 0.05}, {"weight_decay": 0.02}),
    ("SGDScheduleFree", {"lr": 0.05, "momentum": 0.5, "warmup_steps": 20}, {"lr": 0.02}),
    ("SGDScheduleFree", {"lr": 0.05, "r": 1.0, "weight_lr_power": 1.0}, {}),
    ("AdamWScheduleFree", {"lr": 0.01}, {"weight_decay": 0.02}),
    ("AdamWScheduleFree", {"lr": 0.01, "warmup_steps": 20, "weight_decay": 0.05}, {"eps": 1e-3}),
    ("AdamWScheduleFree", {"lr": 0.01, "betas": (0.5, 0.99), "r": 1.0}, {"lr": 0.003}),
]


def trajectory(make_optimizer, closure_style: bool = False) -> list[list[torch.Tensor]]:
    """The parameters after each of :data:`STEPS` steps on the noisy loss, at the point a user
    evaluates: a Schedule-Free optimizer with ``train()`` and ``eval()`` is switched to eval
    mode for the reading and back for the next step; a ``*Closure`` class computes its own
    gradient through ``step(closure)`` (its parameters hold x throughout)."""
    params = make_params()
    optimizer = make_optimizer(params)
    switches = hasattr(optimizer, "train")
    points = []
    with contextlib.redirect_stdout(io.StringIO()):  # (the Reference classes print each switch)
        for t in range(STEPS):
            if switches:
                optimizer.train()

            def closure(t=t):
                optimizer.zero_grad()
                with torch.enable_grad():
                    loss = noisy_loss(params, t)
                    loss.backward()
                return loss

            if closure_style:
                optimizer.step(closure)
            else:
                closure()
                optimizer.step()
            if switches:
                optimizer.eval()
            points.append([p.detach().clone() for p in params])
    return points


def largest_error(ours: list[list[torch.Tensor]], reference: list[list[torch.Tensor]]) -> float:
    return max(relative_error(a, b) for a, b in zip(ours, reference))


@functools.cache
def prodigy_reference_run(case_index: int) -> list[list[torch.Tensor]]:
    kwargs, second = PRODIGY_CASES[case_index]
    return trajectory(
        lambda params: prodigy_reference.ProdigyReference(groups(params, second), **kwargs)
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case_index", range(len(PRODIGY_CASES)))
def test_prodigy_follows_the_papers_reference_code(case_index, impl):
    """Prodigy, on every path, beside ``ProdigyReference``, the paper's code in the package."""
    kwargs, second = PRODIGY_CASES[case_index]
    ours = trajectory(lambda params: optim.Prodigy(groups(params, second), impl=impl, **kwargs))
    assert largest_error(ours, prodigy_reference_run(case_index)) <= TOLERANCE


@functools.cache
def schedule_free_run(case_index: int, form: str) -> list[list[torch.Tensor]]:
    name, kwargs, second = SCHEDULE_FREE_CASES[case_index]
    cls = getattr(schedulefree, name + form)
    return trajectory(lambda params: cls(groups(params, second), **kwargs), form == "Closure")


@pytest.mark.parametrize("form", ["Reference", "Closure"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case_index", range(len(SCHEDULE_FREE_CASES)))
def test_schedule_free_follows_the_packages_other_formulations(case_index, impl, form):
    """SGDScheduleFree and AdamWScheduleFree, on every path, beside the package's
    ``*Reference`` (y, z and x each kept) and ``*Closure`` (x kept, the gradient taken at y)
    classes: x after every step."""
    name, kwargs, second = SCHEDULE_FREE_CASES[case_index]
    cls = getattr(optim, name)
    ours = trajectory(lambda params: cls(groups(params, second), impl=impl, **kwargs))
    assert largest_error(ours, schedule_free_run(case_index, form)) <= TOLERANCE


def test_a_misread_formulation_is_caught():
    """The check can fail: Schedule-Free SGD with its averaging weights' power changed (r = 1
    against the reference's 0) lands far outside the tolerance."""
    _, kwargs, second = SCHEDULE_FREE_CASES[0]
    ours = trajectory(lambda params: optim.SGDScheduleFree(groups(params, second), r=1.0, **kwargs))
    assert largest_error(ours, schedule_free_run(0, "Reference")) > 1e3 * TOLERANCE
