"""Tests that kill the cyclic/1cycle mutants a mutation audit (91) found surviving: the momentum
defaults are torch's (OneCycleLR: base_momentum=0.85, max_momentum=0.95; CyclicLR:
base_momentum=0.8, max_momentum=0.9), read from torch's schedulers run side by side."""

import pytest
import torch

import schedulers as S


def _torch_momenta(make, steps):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    scheduler = make(opt)
    seen = []
    for _ in range(steps):
        seen.append(opt.param_groups[0]["momentum"])
        opt.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("ours", ["method", "class"])
def test_one_cycle_momentum_defaults_are_torchs(ours):
    """Y10 (one_cycle(...).momentum()), Y12 (one_cycle_momentum(...)): 0.95 -> 0.85 -> 0.95."""
    expected = _torch_momenta(
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10), 10
    )
    schedule = S.one_cycle(1.0, 10).momentum() if ours == "method" else S.one_cycle_momentum(10)
    assert [schedule(t) for t in range(10)] == pytest.approx(expected, rel=1e-12, abs=0)
    assert expected[0] == 0.95
    assert min(expected) == pytest.approx(0.85)


def test_cyclic_momentum_defaults_are_torchs():
    """Y11: cyclic(...).momentum() cycles 0.9 -> 0.8 -> 0.9 as CyclicLR's defaults."""
    expected = _torch_momenta(
        lambda opt: torch.optim.lr_scheduler.CyclicLR(opt, 0.1, 1.0, step_size_up=2), 5
    )
    schedule = S.cyclic(0.1, 1.0, step_size_up=2).momentum()
    assert [schedule(t) for t in range(5)] == pytest.approx(expected, rel=1e-12, abs=0)
    assert expected == pytest.approx([0.9, 0.85, 0.8, 0.85, 0.9])
