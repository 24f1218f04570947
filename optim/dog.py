"""DoG and LDoG: Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step
Size Schedule", ICML 2023 (arXiv:2302.12022), matched to the ``dog-optimizer`` 1.0.3 package."""

from __future__ import annotations

import collections
import functools
import sys
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import check_nonnegative
from optim._global import (
    Chunk,
    ReducingOptimizer,
    Work,
    check_positive,
    norms_of_differences,
    norms_per_tensor,
    room_for,
    squared_sums_per_tensor,
    sub_scaled_per_tensor_,
    with_coupled_decay,
)
from optim._paths import _USE_COUNT, OwnedState, _identical
from optim._state import HandedList, TrackedState


def dog_statistics(
    chunk: Chunk, *, first_step: bool, weight_decay: float, scratch: Tensor | None = None
) -> tuple[list[Tensor], Tensor | None, Tensor]:
    r"""What DoG measures on one chunk, per tensor (per part of a packed or flat chunk) as vectors
    in the parameters' dtype, the package's ``torch.norm(p - p0)`` and ``(p.grad ** 2).sum()``:
    the gradients g + weight_decay x, the norms of x - x_0 (None on the first step, where
    :meth:`DoG._update_group` takes the norms of x), and the sums of the squared gradients.

    ``scratch``: a reused flat buffer of the parameters' dtype, as large as the chunk's largest
    tensor, where x - x_0 and g * g are written before they are reduced, each as one tensor (the
    package's bits): a CPU pays page faults at every step for tensor-sized temporaries. Without
    it they are temporaries."""
    grads, squares = gradient_statistics(chunk, weight_decay, scratch)
    if first_step:
        return grads, None, squares
    return grads, distances_from_start(chunk, scratch), squares


def gradient_statistics(
    chunk: Chunk, weight_decay: float, scratch: Tensor | None = None
) -> tuple[list[Tensor], Tensor]:
    """The gradients g + weight_decay x of one chunk and their ``(g ** 2).sum()`` per tensor
    (see :func:`dog_statistics`)."""
    grads = chunk.grads
    if weight_decay > 0:
        grads = with_coupled_decay(grads, chunk.params, weight_decay)
    return grads, squared_sums_per_tensor(grads, chunk.segments, scratch)


def distances_from_start(chunk: Chunk, scratch: Tensor | None = None) -> Tensor:
    """``torch.norm(x - x_0)`` per tensor of one chunk (see :func:`dog_statistics`)."""
    params, x0 = chunk.params, chunk.state["init_buffer"]
    if chunk.segments is None:
        return norms_of_differences(params, x0, scratch)
    (x,), (start,) = params, x0
    room = room_for(scratch, x, start)
    moved = x - start if room is None else torch.sub(x, start, out=room)
    return norms_per_tensor([moved], chunk.segments)


def in_group_order(
    values: list[Tensor], chunks: list[Chunk], count: int, dtype: torch.dtype
) -> Tensor:
    """One value per parameter of a param group (``count`` of them), in its order and in
    ``dtype`` or the values' own wider dtype, as the package stacks them: the chunks'
    per-tensor ``values`` placed at their positions (a parameter without a gradient: 0).
    (After ``model.float()`` x_0 stays float64, and so do the package's ``||x - x_0||``.)"""
    joined = torch.cat(values) if len(values) > 1 else values[0]
    dtype = torch.promote_types(dtype, joined.dtype)
    index = _index([i for c in chunks for i in c.positions], joined.device)
    if index == slice(0, count):
        return joined.to(dtype)  # (every parameter, in order: the common case)
    placed = torch.zeros(count, dtype=dtype, device=joined.device)
    placed[index] = joined.to(dtype)
    return placed


def _held(group: dict, key: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``group[key]`` (``rbar``, ``G``) as the package holds it: a tensor on ``device`` in its
    own dtype (a checkpoint's moved back from the host, where the package's ``load_state_dict``
    puts it), a number as a tensor of ``dtype``."""
    value = group[key]
    if isinstance(value, Tensor):
        return value.detach().to(device)
    return torch.tensor(value, dtype=dtype, device=device)


def _index(positions: list[int], device: torch.device) -> slice | Tensor:
    """Positions in a param group as an index: a slice when they are consecutive (every
    parameter has a gradient, the common case), else an int64 tensor."""
    first, count = positions[0], len(positions)
    if positions[-1] - first == count - 1 and positions == list(range(first, first + count)):
        return slice(first, first + count)
    return torch.tensor(positions, device=device)


def _accumulated(group: dict, grad_sq: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """G + this step's sums of squared gradients: the package's ``G += ...``, so G keeps its
    own dtype."""
    G = _held(group, "G", device, dtype)
    return (G + grad_sq).to(G.dtype)


_STORAGE_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)
"""How many C++ holders share a storage (a private function: without it LDoG makes new ``eta``
tensors at every step, see :func:`eta_unobserved`)."""


def _eta_holders(listed: list[Tensor], vector: Tensor) -> tuple[int, ...]:
    """What holds LDoG's ``eta`` list, its 0-dim tensors (views of ``vector``) and ``vector``:
    Python references, weak references, C++ holders of each tensor and of their storage."""
    storage = vector.untyped_storage()
    return (
        sys.getrefcount(listed),
        sum(map(sys.getrefcount, listed)),
        sum(map(weakref.getweakrefcount, listed)) + weakref.getweakrefcount(vector),
        sum(map(_USE_COUNT, listed)),  # type: ignore[arg-type]
        sys.getrefcount(vector),
        _USE_COUNT(vector),  # type: ignore[misc]
        _STORAGE_USE_COUNT(storage._cdata),  # type: ignore[misc]
        sys.getrefcount(storage),
    )


def _kept_eta(count: int) -> tuple[dict, dict]:
    """A group dict holding an ``eta`` list of ``count`` views of a vector, and a record dict
    holding ``(list, vector)``, as :meth:`DoG._store` keeps them (no other reference)."""
    vector = torch.zeros(count)
    listed = list(vector.unbind())
    return {"eta": listed}, {0: (listed, vector)}


def _own_eta_holders() -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """:func:`_eta_holders` of a list of one tensor and of two held only as :meth:`DoG._store`
    keeps them, measured once: each count is linear in the list's length (None where torch
    lacks the private counts)."""
    if _USE_COUNT is None or _STORAGE_USE_COUNT is None:
        return None
    measured = []
    for count in (1, 2):
        group, record = _kept_eta(count)
        measured.append(_eta_holders(*record[0]))
        del group, record
    return measured[0], measured[1]


_OWN_ETA_HOLDERS = _own_eta_holders()


def eta_unobserved(kept: tuple[list[Tensor], Tensor]) -> bool:
    """Whether nothing but the group and the optimizer holds LDoG's last ``eta`` list, its
    tensors, the vector they view or its storage (``kept``: the optimizer's ``(list, vector)``),
    so that the next step's values can be copied into the vector instead of making one new
    0-dim tensor per parameter, with nothing outside able to tell: the package makes a new
    list of new tensors at every step, and a script that kept the old list, a tensor of it, a
    detached alias (``eta[0].detach()``, ``.numpy()``), a weak reference or the storage reads
    the old values there, so any of those keeps the new tensors. (Making them cost 1.9 ms a
    step on 2000 tensors, measured alone, and 4.3 ms in the bench's round-robin of
    ``stepsize bench optim --lr-free``: LDoG's step 18.5 against 14.2 ms, 2 threads.) Every
    count must be exactly what the group's and the optimizer's references give; a holder this
    does not know about makes one larger, and only costs the new tensors."""
    if _OWN_ETA_HOLDERS is None:
        return False
    one, two = _OWN_ETA_HOLDERS
    extra = len(kept[0]) - 1
    expected = tuple(a + (b - a) * extra for a, b in zip(one, two))
    return _eta_holders(*kept) == expected


def _accumulated_in_place(group: dict, G: Tensor) -> Tensor:
    """The new ``G`` as the package stores it: after the first step its ``group["G"] += ...``
    writes into the group's tensor, so a ``G`` a script kept from an earlier step (a monitor,
    a ``state_dict()`` not copied) reads the current one; the group's tensor, holding ``G``'s
    values, where it has ``G``'s shape, dtype and device, else ``G`` (the first step, or a
    number or another tensor put there). An inference tensor outside inference mode, where
    the package's ``+=`` raises, is replaced instead; so is the group's tensor while a user's
    ``torch.compile(optimizer.step)`` traces the step: torch 2.13's dynamo drops that in-place
    copy into a tensor it reads from the group (``G`` stayed at its first step's value, and
    ``eta`` left the package's from the third step on), so a ``G`` kept from an earlier step
    is not updated there."""
    held = group.get("G")
    if (
        group.get("rbar") is None
        or torch.compiler.is_compiling()
        or not isinstance(held, Tensor)
        or held.shape != G.shape
        or held.dtype != G.dtype
        or held.device != G.device
        or (held.is_inference() and not torch.is_inference_mode_enabled())
    ):
        return G
    held.copy_(G)
    return held


def dog_step_size(lr: float | Tensor, rbar: Tensor, G: Tensor) -> Tensor:
    """eta = lr rbar / sqrt(G) (Ivgi et al., 2023, eq. (2)), elementwise for LDoG's vectors."""
    return lr * rbar / torch.sqrt(G)


def _check_positive_sum(G: Tensor, per_tensor: bool) -> None:
    """The package's ``assert G > 0`` (every entry, for LDoG): a NaN or infinite gradient, or
    zero gradients with eps = 0, would divide by sqrt(G) into NaN parameters. Raised, as there,
    with the package's exception type, before anything is stored, whenever G is known without
    a device read (in host memory); on a device it is not read."""
    if G.device.type != "cpu" or torch.compiler.is_compiling() or bool((G > 0).all()):
        return
    name = "g2" if per_tensor else "G"
    raise AssertionError(
        f"DoG cannot work when {name} is not strictly positive (the sum of squared gradients "
        f"plus eps), got {G}: a gradient was NaN or infinite, or every gradient was zero with "
        "eps=0 (the dog package asserts the same)"
    )


def dog_update(chunk: Chunk, grads: list[Tensor], eta: Tensor) -> None:
    r"""x -= eta g: ``eta`` one 0-dim tensor (DoG), or LDoG's vector of one step size per tensor
    of the chunk."""
    if eta.dim() == 0:
        ops.add_scaled_(chunk.params, grads, -eta)
    else:
        sub_scaled_per_tensor_(chunk.params, grads, eta, chunk.segments)


class _ListedX0(NamedTuple):
    """A group's ``init_buffer`` list as DoG last set it, its count of changes then, and
    ``optimizer.state``'s stamp when the list was last compared with the state (None: a state
    that counts no changes)."""

    listed: HandedList
    mutations: int
    stamp: tuple[int, int] | None


def _adoptable_x0(x0: Any, p: Tensor, held: set[int]) -> bool:
    """Whether ``x0``, put in ``group["init_buffer"]`` for ``p``, can be ``p``'s state itself: a
    plain tensor of ``p``'s dtype, device and shape, not requiring a gradient, sharing no memory
    with ``p``, and not already a state's x_0 or a parameter (ids in ``held``): a layout moves a
    state tensor's data into its buffers, which would break such a tie."""
    return (
        type(x0) is Tensor
        and x0.layout == torch.strided
        and id(x0) not in held
        and not x0.requires_grad
        and (x0.dtype, x0.device, x0.shape) == (p.dtype, p.device, p.shape)
        and x0.untyped_storage().data_ptr() != p.untyped_storage().data_ptr()
    )


class DoG(ReducingOptimizer):
    r"""DoG, "distance over gradients" (Ivgi et al., 2023, Algorithm 1 / eq. (2)); drop-in for
    ``dog.DoG`` 1.0.3.

    .. math::
        \bar r_t = \max\bigl(r_\epsilon, \max_{i \le t} \|x_i - x_0\|\bigr), \qquad
        G_t = \sum_{i \le t} \|g_i\|^2 (+\,\epsilon), \qquad
        \eta_t = \mathrm{lr}\, \frac{\bar r_t}{\sqrt{G_t}}, \qquad x_{t+1} = x_t - \eta_t g_t

    with r_eps = reps_rel (1 + ||x_0||) (the first step's "distance") unless ``init_eta`` gives
    the first step size. One eta per param group, its parameters seen as one vector. A step in
    which no parameter has a gradient changes nothing, as in torch.optim (the package raises
    ``AttributeError`` there, and LDoG's ``TypeError``).

    Args (the package's, in its order):
        params: parameters or param-group dicts.
        reps_rel: relative initial distance > 0 (default 1e-6; 1e-4 with batch norm).
        lr: the paper's c > 0 (default 1.0, not meant to be changed).
        weight_decay: L2 penalty >= 0 added to the gradient (default 0), to a copy of it: the
            package adds it to ``p.grad`` in place, which a script reading ``p.grad`` after
            ``step()`` would see (the parameters are the same).
        eps: added to the sum of squared gradients (default 1e-8).
        init_eta: first step size > 0 instead of reps_rel (default None).
        foreach, impl: execution path (``"single"``, ``"foreach"``, ``"flat"``).

    Arithmetic (the package's, in its dtypes): each parameter's ``||x - x_0||`` (``||x_0||`` on
    the first step) and ``sum(g * g)`` in its dtype, stacked in the group's order and reduced
    in their promoted dtype; ``rbar``, ``G`` and ``eta`` are tensors in the dtypes the package's
    expressions give them: the parameters' dtype (bf16 parameters keep a bf16 ``G``, which
    stops growing once a step's sum is below its rounding, as in the package), float32 for a
    float32 tensor ``lr``, and ``G`` keeps its dtype after ``model.double()`` (the package's
    ``G += ...``) while ``rbar`` follows the new one. The one-tensor and default paths give the
    package's bits in every dtype (packed buffers reduce and update part by part, each part as
    its tensor); ``impl="flat"`` updates a whole buffer in one op, which in bfloat16 and float16
    rounds differently from the package's per-tensor ``add_`` (float32, float64: its bits).

    Group keys (the package's): ``rbar``, ``G`` (0-dim tensors on the device; LDoG: vectors),
    ``eta`` (one per parameter, as the package lists it), ``init_buffer`` (x_0, one per
    parameter, in a list whose reads count as the state's do, see
    :meth:`_views_also_held`); state per parameter: ``init_buffer`` (the same tensors). A
    tensor put in the group's list is that parameter's x_0 from the next step on, the tensor
    itself (a later change of it in place is seen), as in the package, and the list's tensors
    are x_0 after ``optimizer.state`` is reset; so is a tensor put in a parameter's state
    entry (``optimizer.state[p] = {...}`` with new tensors, or the whole state mapped to
    copies), which the group's list then holds, and a tensor taken from the list before is
    x_0 no more: torch's rule for every state tensor (the package keeps no state per
    parameter, so it has no such entry to replace);
    ``state_dict()["state"]["_first_step"]`` as the package's, so that a checkpoint moves
    either way. As in the package, ``rbar`` is a new tensor at every step and ``G`` is added
    into in place after the first (a kept ``G`` reads the current sum); ``eta`` reads as a new
    list of new tensors at every step (LDoG refills the last step's tensors only where
    nothing outside could tell, see :func:`eta_unobserved`). The package's ``assert G > 0`` is
    raised, as there, where G is in host memory (on a device it is not read back); the groups
    before the failing one are updated, as there, but the failing group keeps its G, so a later
    step with finite gradients trains on where the package's stored NaN fails every later
    step. Sparse
    gradients, which the package takes without weight decay, are refused with a
    ``RuntimeError`` naming the parameter. A parameter without a gradient in a step (frozen,
    unused) is skipped and adds nothing to G, as torch.optim skips it; the package raises on it
    (DoG ``AttributeError``, LDoG ``TypeError``). For best results the paper averages the iterates
    (``dog.PolynomialDecayAverager``).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.DoG([w])
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     ((w - 3) ** 2).sum().backward()
        ...     opt.step()
        >>> bool(((w - 3).norm() < 1).item())  # from 5.4, with no step size given
        True
    """

    _sparse_refusal = (
        "the dog package takes them without weight decay, this port does not; dense gradients: "
        "nn.Embedding(sparse=False)"
    )
    per_tensor = False
    _frozen_group_lr = True  # (the package checks lr > 0 as an argument only: a group at 0 stays)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        reps_rel: float = 1e-6,
        lr: float | Tensor = 1.0,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        init_eta: float | None = None,
        *,
        foreach: bool | None = None,
        impl: str | None = None,
    ) -> None:
        if init_eta is not None:
            reps_rel = 0  # (the package's: init_eta gives the first step, reps_rel is unused)
        defaults = {
            "reps_rel": reps_rel, "lr": lr, "weight_decay": weight_decay, "eps": eps,
            "init_eta": init_eta,
        }  # fmt: skip
        super().__init__(params, defaults, impl=impl, foreach=foreach)

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """The constructor's checks (see :meth:`RuleOptimizer._check_hyperparameters`):
        ``lr``, ``init_eta`` where given, else ``reps_rel``, ``weight_decay``, ``eps``."""
        check_positive(values["lr"], "lr", finite=True)
        if values["init_eta"] is not None:
            check_positive(values["init_eta"], "init_eta", finite=True)
        else:
            check_positive(values["reps_rel"], "reps_rel", finite=True)
        check_nonnegative(values["weight_decay"], "weight_decay")
        check_nonnegative(values["eps"], "eps")
        super()._check_hyperparameters(values)

    def _step_size(self, group: dict) -> Tensor | None:
        etas = group.get("eta")
        if not etas:
            return None
        if not self.per_tensor:
            return etas[0]
        held = self._eta_vectors.get(id(group))  # (the runner asks after every update: no stack)
        vector = held[1] if held is not None and held[0] is etas else torch.stack(etas)
        return vector.to(torch.promote_types(vector.dtype, torch.float32)).quantile(0.5)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("init_buffer",)

    def _new_state(self, group: dict, p: Tensor, key: str) -> Tensor:
        return p.detach().clone(memory_format=torch.preserve_format)

    def _ensure_state(self, group: dict, params: list[Tensor], states: list[dict]) -> list[bool]:
        """As the package, x_0 belongs to the group (``group["init_buffer"]``, one tensor per
        parameter, set on the first step): a parameter whose state lacks it (``optimizer.state``
        reset, or a checkpoint of the package loaded) takes its x_0 from there, not from its
        current value: the list's tensor itself, as the package reads it (see
        :meth:`_from_list`)."""
        saved = group.get("init_buffer")
        if saved is not None and len(saved) == len(group["params"]):
            positions: dict[int, int] | None = None
            held: set[int] | None = None
            for p, state in zip(params, states):
                if "init_buffer" not in state:
                    if positions is None or held is None:
                        positions = {id(q): i for i, q in enumerate(group["params"])}
                        held = self._held_x0()
                    state["init_buffer"] = self._from_list(saved[positions[id(p)]], p, held)
        return super()._ensure_state(group, params, states)

    def _held_x0(self) -> set[int]:
        """The ids of every parameter and of every x_0 held by a parameter's state."""
        every = [q for g in self.param_groups for q in g["params"]]
        held = {id(q) for q in every}
        held.update(
            id(e["init_buffer"]) for q in every if "init_buffer" in (e := self.state.get(q) or {})
        )
        return held

    @staticmethod
    def _from_list(x0: Any, p: Tensor, held: set[int]) -> Tensor:
        """``p``'s x_0 in its state for the tensor ``x0`` of the group's list: ``x0`` itself,
        so that a later change of it in place is seen, as the package reads it (a layout then
        lays its data into its buffer, the tensor a view there), or a copy where it cannot be
        the state's own (:func:`_adoptable_x0`); ``held`` gains its id."""
        if _adoptable_x0(x0, p, held):
            held.add(id(x0))
            return x0
        return x0.detach().to(p.device, p.dtype).clone(memory_format=torch.preserve_format)

    def _reset_caches(self) -> None:
        super()._reset_caches()  # (also after copy.deepcopy or unpickling)
        self._orders: dict[int, list[Tensor]] = {}
        """Each group's parameters as last stepped (see :meth:`_follow_reordering`)."""
        self._x0_lists: dict[int, _ListedX0] = {}
        """Each group's ``init_buffer`` list as last set, by the group's id (see
        :meth:`_follow_replaced_x0`, :meth:`_keep_x0_in_group`)."""
        self._eta_vectors: dict[int, tuple[list[Tensor], Tensor]] = {}
        """LDoG: each group's ``eta`` list as last set, and the vector its tensors are views of
        (see :meth:`_step_size`)."""

    def _chunks(self, index: int, group: dict) -> list[Chunk]:
        self._follow_replaced_x0(group)
        self._follow_reordering(index, group)
        return super()._chunks(index, group)

    def _follow_replaced_x0(self, group: dict) -> None:
        """``group["init_buffer"]`` is where the package keeps x_0: a tensor replaced there, or
        the whole list, since the last step is that parameter's x_0 from now on, as in the
        package, and becomes the state's ``init_buffer`` (:meth:`_from_list`). A tensor of the
        list changed in place is the state's own already."""
        kept, saved = self._x0_lists.get(id(group)), group.get("init_buffer")
        if kept is None or saved is None:
            return
        if saved is kept.listed and saved.mutations == kept.mutations:
            return  # (the common case: the list this optimizer made, unchanged)
        params = group["params"]
        if not isinstance(saved, list) or len(saved) != len(params):
            return  # (not one per parameter, as ZeroRedundancyOptimizer's load_state_dict leaves
            # rank 0's list on every rank: each parameter keeps its own x_0; rebuilt after the step)
        held = self._held_x0()
        for p, x0 in zip(params, saved):
            entry = self.state.get(p)
            if entry and "init_buffer" in entry and entry["init_buffer"] is not x0:
                entry["init_buffer"] = self._from_list(x0, p, held)

    def _follow_reordering(self, index: int, group: dict) -> None:
        """The group's per-parameter lists (``init_buffer``; LDoG's ``rbar``, ``G``, ``eta``)
        are kept by position, as the package keeps them: when ``group["params"]`` was reordered
        in place since the last step, they move with their parameters. (The package raises on a
        shape mismatch, or, for tensors of one shape, swaps their x_0 silently.)"""
        params, before = group["params"], self._orders.get(index)
        if before is not None and _identical(params, before):
            return  # (the common case: nothing to copy)
        self._orders[index] = list(params)
        if before is None or len(before) != len(params):
            return
        old = {id(p): i for i, p in enumerate(before)}
        if len(old) != len(params) or not all(id(p) in old for p in params):
            return  # other parameters, not the same ones reordered
        where = [old[id(p)] for p in params]
        for key in ("init_buffer", "eta"):
            values = group.get(key)
            if isinstance(values, list) and len(values) == len(where):
                group[key] = [values[i] for i in where]
        for key in ("rbar", "G"):
            value = group.get(key)
            if isinstance(value, Tensor) and value.dim() == 1 and len(value) == len(where):
                group[key] = value[torch.tensor(where, device=value.device)]

    def _add_package_entries(self, saved: dict[str, Any]) -> None:
        """torch's ``state_dict`` plus the package's ``state["_first_step"]`` flag (True until
        a group has stepped), which the package's ``load_state_dict`` reads: a checkpoint of
        ours loads into ``dog.DoG`` / ``dog.LDoG``. Added, as the package adds it, after
        torch's ``state_dict`` and its post-hooks: a hook does not see it, and the dict a hook
        returns gets it (where that dict has no ``state`` table, the package's raises
        ``KeyError``; this adds nothing, as torch's contract lets a hook return any dict)."""
        if isinstance(saved.get("state"), dict):
            saved["state"]["_first_step"] = all(g.get("rbar") is None for g in self.param_groups)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``; a checkpoint of the package loads too (its
        ``state["_first_step"]`` flag, not a parameter's state, is implied here by the group's
        ``rbar``; its x_0 is the groups' ``init_buffer``, see :meth:`_ensure_state`)."""
        state = state_dict.get("state", {})
        if "_first_step" in state:
            rest = {key: value for key, value in state.items() if key != "_first_step"}
            state_dict = {**state_dict, "state": rest}
        super().load_state_dict(state_dict)
        self._orders.clear()  # (the loaded lists follow the groups' current order)
        self._x0_lists.clear()

    def _keep_x0_in_group(self, group: dict, chunks: list[Chunk]) -> None:
        """``group["init_buffer"]``: x_0 of every parameter of the group, as the package keeps
        it, the state's own tensors (x_0 held once; a parameter without state yet keeps its
        value at the group's first step), in a :class:`~optim._state.HandedList`, whose reads
        from outside count as the state's do (see :meth:`_views_also_held`). Rebuilt when a
        layout moved the state (probed at the first parameter of each chunk: a layout replaces
        all of its views at once) and once after a list was put there (a loaded checkpoint's:
        the same tensors; a script still holding that list holds them, which
        :meth:`_views_also_held` sees). Every parameter's is compared when ``optimizer.state``
        changed since the last step (a script's ``optimizer.state[p] = ...``: the state's new
        tensor is x_0, and the list shows it), else only those probes."""
        params, saved = group["params"], group.get("init_buffer")
        stamp = self.state.stamp() if isinstance(self.state, TrackedState) else None
        kept = self._x0_lists.get(id(group))
        if stamp is None or kept is None or stamp != kept.stamp:
            probed: Iterable[int] = range(len(params))
        else:
            probed = (c.positions[0] for c in chunks)
        if not (
            isinstance(saved, HandedList)
            and saved.owner is self.state
            and len(saved) == len(params)
            and all(self._x0_listed(saved[i], params[i]) for i in probed)
        ):
            owner = self.state if isinstance(self.state, TrackedState) else None
            group["init_buffer"] = HandedList.owned_by(owner, self._x0_of(params, saved))
        listed = group["init_buffer"]
        self._x0_lists[id(group)] = _ListedX0(
            listed, listed.mutations, None if stamp is None else self.state.stamp()
        )

    def _x0_listed(self, listed: Tensor, p: Tensor) -> bool:
        """Whether ``listed`` is ``p``'s x_0 in its state (a parameter without one yet: True)."""
        entry = self.state.get(p)
        return not entry or "init_buffer" not in entry or listed is entry["init_buffer"]

    def _views_also_held(self, layout: OwnedState, group: dict) -> int | None:
        """The group's x_0 list holds each of the layout's x_0 views once more (the package's
        ``group["init_buffer"]``): counted while that list is this optimizer's
        :class:`~optim._state.HandedList`, unchanged since this optimizer set it and holding
        each of them exactly once; else None (the layout is checked at every step)."""
        listed = group.get("init_buffer")
        kept = self._x0_lists.get(id(group))
        views = layout.views.get("init_buffer")
        if (
            views is None
            or kept is None
            or listed is not kept.listed
            or listed.mutations != kept.mutations
            or listed.owner is not self.state
        ):
            return None
        held = collections.Counter(map(id, list.__iter__(listed)))  # (not a hand-out)
        if any(held[id(view)] != 1 for view in views):
            return None
        return len(views)

    def _x0_of(self, params: list[Tensor], saved: list | None) -> list[Tensor]:
        """x_0 of each parameter: its state's, else the group's saved one, else its value."""
        return [
            entry["init_buffer"]
            if (entry := self.state.get(p)) and "init_buffer" in entry
            else (
                saved[i] if saved is not None and len(saved) == len(params) else p.detach().clone()
            )
            for i, p in enumerate(params)
        ]

    def _update(self, work: list[Work]) -> None:
        for item in work:
            if item.chunks:
                self._update_group(item)

    def _update_group(self, item: Work) -> None:
        """The package's arithmetic, in its dtypes: the per-tensor norms and sums in the
        parameters' dtype, stacked in the group's order and reduced in their promoted dtype
        (``torch.stack([...]).norm()``, ``.sum()``); ``rbar``, ``G`` and ``eta`` in the dtypes
        the package's expressions give them (``G`` keeps its dtype, as its ``+=``; a tensor
        ``lr`` enters as a tensor)."""
        group, chunks = item
        device = chunks[0].params[0].device
        dtype = functools.reduce(torch.promote_types, {c.params[0].dtype for c in chunks})
        first_step = group.get("rbar") is None
        lr = group["lr"].detach() if isinstance(group["lr"], Tensor) else group["lr"]
        if self.unfilled(chunks):  # (LDoG's steady packed path, see _late_params)
            self._update_rounds(group, chunks, lr, dtype)
            return
        parts = [  # per chunk: the gradients, and ||x - x0||, sum(g * g) per tensor
            dog_statistics(
                c,
                first_step=first_step,
                weight_decay=group["weight_decay"],
                scratch=self.whole_scratch(c),
            )
            for c in chunks
        ]
        params = group["params"]
        count = len(params)
        if first_step:  # ||x_0|| of every parameter, as the package's [p.norm() for p in params]
            moved = torch.stack(torch._foreach_norm([p.detach() for p in params])).to(dtype)
        else:
            moved = in_group_order([m for _, m, _ in parts], chunks, count, dtype)
        grad_sq = in_group_order([g for _, _, g in parts], chunks, count, dtype)
        if not self.per_tensor:
            moved, grad_sq = moved.norm(), grad_sq.sum()
        if first_step:
            rbar = group["reps_rel"] * (1 + moved)
            G = grad_sq + group["eps"]
        else:
            rbar = torch.maximum(_held(group, "rbar", device, dtype), moved)
            G = _accumulated(group, grad_sq, device, dtype)
        eta = dog_step_size(lr, rbar, G)
        _check_positive_sum(G, self.per_tensor)
        if first_step and group["init_eta"] is not None:
            eta = eta * 0 + group["init_eta"]
        self._store(group, chunks, rbar, G, eta)
        for chunk, (grads, _, _) in zip(chunks, parts):
            if self.per_tensor:
                dog_update(chunk, grads, eta[_index(chunk.positions, device)])
            else:
                dog_update(chunk, grads, eta)
            self.updated(chunk)

    def _late_params(self, group: dict) -> bool:
        """LDoG's steps after the first, without weight decay or sharding: each tensor's step
        size needs only its own distance, so the parameters are gathered a round at a time by
        :meth:`_update_rounds`."""
        return (
            self.per_tensor
            and group.get("rbar") is not None
            and not group["weight_decay"]
            and not self.sharded()
        )

    def _update_rounds(self, group: dict, chunks: list[Chunk], lr: Any, dtype: torch.dtype) -> None:
        """LDoG over packed chunks whose parameters are gathered here, a round at a time
        (:meth:`ReducingOptimizer.fill`), each used while in cache: the sums of squared gradients
        of every round first, so that ``G > 0`` is checked before any parameter moves (as the
        package asserts it), then each round's distances from x_0, ``rbar``, ``eta`` and update,
        then its copy back. The values are :meth:`_update_group`'s element by element: the
        per-tensor expressions on slices of the group's vectors. A gather of the whole model
        before the step had left it in memory by the time the distances read it: on this
        project's 2-core CPU, 2000 tensors of 1k elements, ``stepsize bench optim --lr-free``
        measured 2.43-2.50x the package's speed before, 2.59-2.70x after."""
        device = chunks[0].params[0].device
        count = len(group["params"])
        parts = [gradient_statistics(c, 0, self.whole_scratch(c)) for c in chunks]
        grad_sq = in_group_order([squares for _, squares in parts], chunks, count, dtype)
        G = _accumulated(group, grad_sq, device, dtype)
        _check_positive_sum(G, True)
        rbar_before = _held(group, "rbar", device, dtype)
        rbars, etas = [], []
        for chunk, (grads, _) in zip(chunks, parts):
            self.fill(chunk)
            where = _index(chunk.positions, device)
            moved = distances_from_start(chunk, self.whole_scratch(chunk))
            moved = moved.to(torch.promote_types(dtype, moved.dtype))  # (see in_group_order)
            rbar = torch.maximum(rbar_before[where], moved)
            eta = dog_step_size(lr, rbar, G[where])
            dog_update(chunk, grads, eta)
            self.updated(chunk)
            rbars.append(rbar)
            etas.append(eta)
        self._store(group, chunks, torch.cat(rbars), G, torch.cat(etas))

    def _store(
        self, group: dict, chunks: list[Chunk], rbar: Tensor, G: Tensor, eta: Tensor
    ) -> None:
        """The group's ``rbar``, ``G`` and ``eta`` as the package keeps them (LDoG: ``eta`` a
        list of the vector's 0-dim views, one per parameter; DoG: the one tensor, repeated),
        and x_0 in ``group["init_buffer"]``."""
        count = len(group["params"])
        if not self.per_tensor:
            etas = [eta] * count
        elif self._refill_eta(group, eta):
            etas = group["eta"]
        else:
            etas = list(eta.unbind())
            self._eta_vectors[id(group)] = (etas, eta)
        group.setdefault("init_buffer", None)  # (the package's key order: x_0 before rbar)
        group.update(rbar=rbar, G=_accumulated_in_place(group, G), eta=etas)
        self._keep_x0_in_group(group, chunks)

    def _refill_eta(self, group: dict, eta: Tensor) -> bool:
        """LDoG: ``eta`` copied into the vector that the group's ``eta`` list views, where that
        list is still the one this optimizer set, of this vector's length, dtype and device, and
        nothing outside holds it or its tensors (:func:`eta_unobserved`); else False."""
        kept = self._eta_vectors.get(id(group))
        if kept is None or group.get("eta") is not kept[0]:
            return False
        if (
            kept[1].shape != eta.shape
            or kept[1].dtype != eta.dtype
            or kept[1].device != eta.device
            or not eta_unobserved(kept)  # (no local reference to the vector before this)
        ):
            return False
        kept[1].copy_(eta)
        return True


class LDoG(DoG):
    r"""Layer-wise DoG (Ivgi et al., 2023, section 3.3 / Algorithm 1 applied per tensor); drop-in
    for ``dog.LDoG`` 1.0.3: the DoG step size of :class:`DoG` computed for every parameter tensor
    on its own (``rbar``, ``G`` are vectors over the group's parameters, ``eta`` one per tensor).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.LDoG([w])
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     ((w - 3) ** 2).sum().backward()
        ...     opt.step()
        >>> len(opt.param_groups[0]["eta"]), bool(((w - 3).norm() < 1).item())
        (1, True)
    """

    per_tensor = True
