"""The learning-rate-free optimizers' kept lists (``optim._global.KeptChunks``): a param group of
a few tensors (not packed) reuses last step's chunks while nothing they hold changed, and
rebuilds them when something did, with the numbers of a step that rebuilds them every time."""

from __future__ import annotations

import pytest
import torch

import optim
from optim._global import ReducingOptimizer
from tests.optim.test_lr_free import CASES, FIRST_OF_EACH, SHAPES, make_params, noisy_loss

REDUCING = [c for c in FIRST_OF_EACH if issubclass(getattr(optim, c[0]), ReducingOptimizer)]
IMPLS = ["foreach", "single"]


def _case_id(case) -> str:
    return case[0]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", REDUCING, ids=_case_id)
def test_a_steady_step_of_a_few_tensors_reads_no_state_entry(case, impl, monkeypatch):
    """After a first step, a step whose group is unchanged reuses its chunks: no state entry is
    looked up or checked (``_ensure_state``, which every step called before); a state tensor
    assigned since makes the next step read the state again."""
    name, _, kwargs, _ = case
    params = make_params()
    optimizer = getattr(optim, name)(params, impl=impl, **kwargs)
    for t in range(3):
        optimizer.zero_grad()
        noisy_loss(params, t).backward()
        optimizer.step()
    calls = []
    original = type(optimizer)._ensure_state

    def counted(self, *args):
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(type(optimizer), "_ensure_state", counted)
    optimizer.zero_grad()
    noisy_loss(params, 3).backward()
    optimizer.step()
    assert calls == []
    entry = optimizer.state[params[0]]
    key = next(k for k, v in entry.items() if torch.is_tensor(v) and v.dim() > 0)
    entry[key] = entry[key].clone()  # (an assignment: read again)
    optimizer.zero_grad()
    noisy_loss(params, 4).backward()
    optimizer.step()
    assert calls


def _events(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], t: int) -> None:
    """What a script may do between steps, each at its own step, to both runs alike."""
    group = optimizer.param_groups[0]
    if t == 5:
        params[1].grad = None  # (skipped this step)
    if t in (8, 18):
        entry = optimizer.state[group["params"][2]]
        key = sorted(k for k, v in entry.items() if torch.is_tensor(v) and v.dim() > 0)[0]
        if t == 8:
            entry[key] = entry[key] * 0.5  # a new tensor with other values
        else:
            entry[key].data = entry[key].data * 2.0  # the same tensor, other data
    if t == 12:
        params[3].data = params[3].data.clone()  # new storage, the same values
    if t == 15:
        group["params"].reverse()  # reordered in place
    if t == 21:
        del optimizer.state[group["params"][0]]  # its state made again
    if t == 24:
        optimizer.load_state_dict(optimizer.state_dict())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", [c for c in CASES if c[0] in {r[0] for r in REDUCING}],
                         ids=_case_id)  # fmt: skip
def test_kept_lists_give_the_bits_of_lists_built_every_step(case, impl, monkeypatch):
    """30 steps over a few tensors with :func:`_events` between them: the parameters and the
    state after every step are bit for bit those of the same optimizer building its chunks
    afresh at every step (as it did before it kept them; that path is the one the package
    parity tests check), and the kept chunks were used."""
    name, _, kwargs, _ = case
    assert len(SHAPES) < optim._paths.PACK_AT_LEAST  # (lists, not packed)

    def run(kept: bool) -> list[list[torch.Tensor]]:
        params = make_params(seed=5)
        optimizer = getattr(optim, name)(params, impl=impl, **kwargs)
        reused = 0
        original = ReducingOptimizer._kept_chunks

        def counting(self, index, group):
            nonlocal reused
            chunks = original(self, index, group) if kept else None
            reused += chunks is not None
            return chunks

        monkeypatch.setattr(ReducingOptimizer, "_kept_chunks", counting)
        after = []
        for t in range(30):
            optimizer.zero_grad()
            noisy_loss(params, t).backward()
            _events(optimizer, params, t)
            optimizer.step()
            state = [v for p in params for v in optimizer.state[p].values() if torch.is_tensor(v)]
            after.append([p.detach().clone() for p in params] + [v.clone() for v in state])
        monkeypatch.undo()
        assert (reused > 10) == kept, reused
        return after

    rebuilt, kept = run(kept=False), run(kept=True)
    for t, (ours, expected) in enumerate(zip(kept, rebuilt)):
        assert len(ours) == len(expected), t
        for a, b in zip(ours, expected):
            assert torch.equal(a, b), t
            assert torch.equal(a.signbit(), b.signbit()), t


@pytest.mark.parametrize("shapes", [SHAPES, [(5, 3), (130, 130), (4,)]], ids=["small", "large"])
@pytest.mark.parametrize("case", REDUCING, ids=_case_id)
def test_a_parameter_made_float32_after_kept_steps_is_as_when_rebuilt(case, shapes, monkeypatch):
    """``p.data`` and ``p.grad`` of one float64 parameter made float32 after four kept steps: the
    same error as a step that rebuilds its chunks (the D-Adaptation and Prodigy sums' ``dot``
    over a float32 gradient and a float64 state), or the same numbers and state (a chunk of
    float64 tensors would have reduced the float32 one of 16,900 elements through a float64
    scratch buffer: not the bits of a float32 sum)."""
    name, _, kwargs, _ = case
    original = ReducingOptimizer._kept_chunks

    def run(kept: bool) -> str | list[torch.Tensor]:
        chunks = original if kept else lambda self, index, group: None
        monkeypatch.setattr(ReducingOptimizer, "_kept_chunks", chunks)
        generator = torch.Generator().manual_seed(2)
        params = [
            torch.randn(s, dtype=torch.float64, generator=generator).requires_grad_()
            for s in shapes
        ]
        optimizer = getattr(optim, name)(params, **kwargs)
        for t in range(6):
            optimizer.zero_grad()
            noisy_loss(params, t).backward()
            if t == 4:
                params[1].data = params[1].data.float()
                params[1].grad = params[1].grad.float()
            try:
                optimizer.step()
            except RuntimeError as err:
                return str(err)
        state = [v for p in params for v in optimizer.state[p].values() if torch.is_tensor(v)]
        return [p.detach().clone() for p in params] + state

    expected, ours = run(kept=False), run(kept=True)
    if isinstance(expected, str):
        assert ours == expected
        return
    assert not isinstance(ours, str), ours
    for a, b in zip(ours, expected, strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(a, b)


def test_the_flat_path_lays_out_a_group_once_what_kept_it_on_lists_is_gone():
    """``impl="flat"`` runs a group on lists while a parameter's memory is also held elsewhere
    (here a view of it; an autograd graph still alive counts alike), and lays it out flat at
    the first step after that is gone: its lists are not kept from step to step, or the group
    would stay on them."""
    params = make_params()
    optimizer = optim.DAdaptSGD(params, impl="flat")
    held = params[0].detach()[:1]  # (another tensor on the parameter's memory)
    for t in range(3):
        optimizer.zero_grad()
        noisy_loss(params, t).backward()
        optimizer.step()
    assert not optimizer._layouts, "on lists while the view is held"
    del held
    optimizer.zero_grad()
    noisy_loss(params, 3).backward()
    optimizer.step()
    assert optimizer._layouts, "laid out flat once it is gone"


@pytest.mark.parametrize("case", REDUCING, ids=_case_id)
def test_a_group_the_default_path_may_pack_is_packed_once_it_can_be(case):
    """20 small tensors, one of whose gradients is not contiguous at the first step: that step
    runs them as lists (a packed buffer needs contiguous tensors), and the next, whose
    gradients are contiguous, packs them, as every step after a change chooses again: the lists
    of a group that may be packed are not kept, or it would stay on them."""
    name, _, kwargs, _ = case
    generator = torch.Generator().manual_seed(3)
    params = [
        torch.randn(2, 3, dtype=torch.float64, generator=generator).requires_grad_()
        for _ in range(optim._paths.PACK_AT_LEAST + 4)
    ]
    optimizer = getattr(optim, name)(params, **kwargs)
    for t in range(3):
        optimizer.zero_grad()
        noisy_loss(params, t).backward()
        if t == 0:
            params[4].grad = params[4].grad.t().contiguous().t()  # (the same values)
            assert not params[4].grad.is_contiguous()
        optimizer.step()
        assert bool(optimizer._packed) == (t > 0), t


@pytest.fixture
def largest(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The largest tensor of each step's chunks, step by step (what the step ran whole)."""
    sizes: list[int] = []
    original = ReducingOptimizer._chunks

    def recorded(self, index, group):
        chunks = original(self, index, group)
        sizes.append(max(t.numel() for chunk in chunks for t in chunk.params))
        return chunks

    monkeypatch.setattr(ReducingOptimizer, "_chunks", recorded)
    return sizes


def test_sps_takes_a_large_tensor_in_blocks_once_it_can_again(largest):
    """SPS runs a tensor of more than ``BLOCK`` elements as blocks where it and its gradient are
    contiguous (no temporary larger than a block), else whole: a first step with a gradient that
    is not contiguous runs it whole, and the next steps in blocks again (the lists of a group
    with such a tensor are not kept, or it would stay whole)."""
    size = optim._paths.BLOCK + 5000
    generator = torch.Generator().manual_seed(4)
    params = [torch.randn(n, generator=generator).requires_grad_() for n in (size, 50)]
    targets = [torch.randn(p.shape, generator=generator) for p in params]
    optimizer = optim.SPS(params, c=0.5)

    def closure(strided: bool) -> torch.Tensor:
        optimizer.zero_grad()
        loss = sum(((p - y) ** 2).mean() for p, y in zip(params, targets, strict=True))
        loss.backward()
        if strided:  # (the same values, every other element of a buffer)
            params[0].grad = torch.empty(2 * size)[::2].copy_(params[0].grad)
            assert not params[0].grad.is_contiguous()
        return loss

    for t in range(3):
        optimizer.step(lambda t=t: closure(strided=t == 0))
    assert largest == [size, optim._paths.BLOCK, optim._paths.BLOCK]


def test_a_parameter_given_more_elements_is_chosen_for_again(largest):
    """Two small SPS parameters run as kept lists; then one is given ``.data`` (and a gradient)
    of more than ``BLOCK`` elements: the next step runs it in blocks, as a step choosing afresh
    does (the kept chunks compare each parameter's size)."""
    size = optim._paths.BLOCK + 5000
    params = [torch.randn(n).requires_grad_() for n in (50, 60)]
    optimizer = optim.SPS(params, c=0.5)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = sum((p**2).mean() for p in params)
        loss.backward()
        return loss

    for t in range(4):
        if t == 2:
            params[0].data = torch.randn(size)
        optimizer.step(closure)
    assert largest == [60, 60, optim._paths.BLOCK, optim._paths.BLOCK]
