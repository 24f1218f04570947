"""Tests killing optim/_state.py mutants of audit 91b, each against torch.optim side by side.
S16: ``optimizer.state.copy()`` is what torch's gives: a ``defaultdict(dict)`` holding the SAME
entry dicts (a change of an entry's items shows in both)."""

from collections import defaultdict

import pytest
import torch

import optim


def _stepped_torch_and_ours(impl: str):
    """(parameter, optimizer) after one Adam step: torch's, then ours on ``impl``."""
    kwargs = {} if impl == "default" else {"impl": impl}
    for make in (torch.optim.Adam, lambda ps: optim.Adam(ps, **kwargs)):
        p = torch.nn.Parameter(torch.ones(3))
        optimizer = make([p])
        p.grad = torch.ones_like(p)
        optimizer.step()
        yield p, optimizer


@pytest.mark.parametrize("impl", ["default", "single", "foreach", "flat"])
def test_state_copy_is_a_defaultdict_of_the_same_entries_as_torchs(impl):
    results = []
    for p, optimizer in _stepped_torch_and_ours(impl):
        copied = optimizer.state.copy()
        same_entry = dict.__getitem__(copied, p) is dict.__getitem__(optimizer.state, p)
        copied[p]["note"] = 1  # seen through the optimizer's state, as in torch's
        results.append((type(copied), same_entry, "note" in optimizer.state[p]))
    assert results[0] == (defaultdict, True, True)
    assert results[1] == results[0]


@pytest.mark.parametrize("impl", ["default", "single", "foreach", "flat"])
def test_state_union_takes_the_right_operands_entries_as_torchs(impl):
    """S17, S18: ``state | other`` and ``other | state`` are dict unions (PEP 584): on a key in
    both, the right operand's value wins, as with torch's ``defaultdict(dict)`` state."""
    results = []
    for p, optimizer in _stepped_torch_and_ours(impl):
        other = {p: {"other": True}}
        right = optimizer.state | other
        left = other | optimizer.state
        results.append(
            (type(right), sorted(right[p]), type(left), sorted(left[p]), len(right), len(left))
        )
    assert results[0] == (
        defaultdict,
        ["other"],
        defaultdict,
        ["exp_avg", "exp_avg_sq", "step"],
        1,
        1,
    )
    assert results[1] == results[0]


@pytest.mark.parametrize("impl", ["default", "flat"])
def test_pytree_sees_the_states_tensors_as_in_torchs(impl):
    """S20: ``torch.utils._pytree`` flattens ``optimizer.state`` into the same leaves as torch's
    ``defaultdict(dict)`` and rebuilds it as plain containers (the classes are registered as
    the containers they stand for; unregistered, the state was one leaf)."""
    import torch.utils._pytree as pytree

    results = []
    kwargs = {} if impl == "default" else {"impl": impl}
    for make in (torch.optim.Adam, lambda ps: optim.Adam(ps, **kwargs)):
        params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))]
        optimizer = make(params)
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()
        leaves, _ = pytree.tree_flatten(optimizer.state)
        zeroed = pytree.tree_map_only(torch.Tensor, torch.zeros_like, optimizer.state)
        results.append(
            (
                len(leaves),
                type(zeroed),
                [type(zeroed[p]) for p in params],
                all(float(t.abs().sum()) == 0 for t in pytree.tree_leaves(zeroed)),
            )
        )
    assert results[0] == (6, defaultdict, [dict, dict], True)
    assert results[1] == results[0]
