"""``optimizer.state`` that counts its own changes, so a step can trust a layout without a scan.

The packed and flat layouts keep state tensors as views into optimizer-owned buffers and must
notice when a user replaces one (``opt.state[p]["exp_avg"] = t``), removes an entry, or resets
the mapping. Checking every parameter's entries at every step costs about a microsecond per
parameter in Python. Instead, :class:`TrackedState` (a ``defaultdict(dict)``, as torch's) and its
entries (:class:`StateEntry`, a ``dict``) add one to :attr:`TrackedState.changes` on every
assignment or removal, so a layout is still valid while the mapping is the same object, its count
is the one the layout recorded, and every entry is tracked. Values modified in place (a tensor's
``add_``) are the views themselves and need no tracking.

An entry assigned from outside as a plain ``dict`` is kept as it is (the user may hold it) and
turns the shortcut off for good: later edits of that dict are not seen here, so every step then
checks the entries one by one, as it would without this class.

A layout must also notice a state tensor moved while staying in its entry (``t.data = u``,
``t.set_(u)``, ``t.t_()``): only code holding the tensor can do that, and code outside the
optimizer can get one only from an entry (or from ``state_dict()``, or by putting it there).
So every read or write of an entry's values from outside the optimizer's own code (a step, a
Schedule-Free switch: :meth:`TrackedState.enter`) adds one to
:attr:`TrackedState.exposures`, and a layout checks its views at every step while that count
differs from the one at which it last found no reference to them beyond its own (see
``RuleOptimizer._storage_holds``).
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from typing import Any

import torch
import torch.utils._pytree as pytree


class _Counted:
    """What :class:`StateEntry` (a ``dict``) and :class:`HandedList` (a ``list``) share: an
    :attr:`owner` (a :class:`TrackedState`) told of every value handed out, and the changes by
    item assignment, deletion, ``clear`` and ``pop`` counted (each class's ``_changed``)."""

    __slots__ = ()

    @property
    def owner(self) -> TrackedState | None:
        """The :class:`TrackedState` counting this container's changes and hand-outs (None:
        none, or one no longer alive), held by a weak reference. The state holds its entries,
        so a strong reference back would make a cycle: deleting the optimizer would leave its
        state tensors alive until Python's cycle collector ran, where torch's state is freed at
        once (found by torch's ``test_no_cyclic_references`` run on these classes)."""
        reference = getattr(self, "_owner", None)  # unset while unpickling
        return None if reference is None else reference()

    @owner.setter
    def owner(self, owner: TrackedState | None) -> None:
        self._owner = None if owner is None else weakref.ref(owner)

    def _changed(self) -> None:
        raise NotImplementedError

    def _handed(self) -> None:
        """A value read or written here, by code outside the optimizer's own unless this thread
        is inside it (:meth:`TrackedState.enter`; under ``torch.compile`` always counted)."""
        owner = self.owner
        if owner is not None:
            owner.handed_out()

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)  # type: ignore[misc]
        self._changed()

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)  # type: ignore[misc]
        self._changed()

    def clear(self) -> None:
        super().clear()  # type: ignore[misc]
        self._changed()

    def pop(self, *args: Any) -> Any:
        self._changed()
        return super().pop(*args)  # type: ignore[misc]

    def __copy__(self) -> Any:
        return self.copy()  # type: ignore[attr-defined]  # (a plain dict or list)


class StateEntry(_Counted, dict):
    """One parameter's state: a ``dict`` whose assignments and removals are counted, and whose
    values handed to or taken from code outside the optimizer are too (see the module's
    docstring)."""

    __slots__ = ("_owner",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # dict's own signature, so that code rebuilding a mapping as ``type(d)(items)`` (as
        # lightning_utilities' apply_to_collection and accelerate's recursively_apply do) gets
        # the items: an entry so made has no owner until a TrackedState adopts it
        super().__init__(*args, **kwargs)
        self.owner: TrackedState | None = None

    @classmethod
    def owned_by(cls, owner: TrackedState | None, items: Any = ()) -> StateEntry:
        """A new entry of ``items`` (a mapping or pairs) whose changes ``owner`` counts."""
        entry = cls(items)
        entry.owner = owner
        return entry

    def _changed(self) -> None:
        owner = self.owner
        if owner is not None:  # (what self._handed() does, the owner looked up once)
            owner.changes += 1
            owner.handed_out()

    def __getitem__(self, key: Any) -> Any:
        self._handed()
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._handed()
        return super().get(key, default)

    def values(self) -> Any:
        self._handed()
        return super().values()

    def items(self) -> Any:
        self._handed()
        return super().items()

    def __iter__(self) -> Iterator[Any]:
        # (the keys only; defined so that dict(entry), {**entry} and update(entry) read the
        # values through __getitem__, not straight from the table)
        return super().__iter__()

    def copy(self) -> dict:
        self._handed()
        return dict(dict.items(self))

    def __deepcopy__(self, memo: dict) -> dict:
        # a plain dict of copies, each state tensor's own elements alone (see _alone)
        for value in dict.values(self):
            if id(value) not in memo and _views_more(value):
                memo[id(value)] = _alone(value)
        return {copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in dict.items(self)}

    def __or__(self, other: Any) -> Any:
        self._handed()
        return super().__or__(other)

    def __ror__(self, other: Any) -> Any:
        self._handed()
        return super().__ror__(other)

    def popitem(self) -> tuple[Any, Any]:
        self._changed()
        return super().popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._changed()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._changed()

    def __ior__(self, other: Any) -> StateEntry:
        self.update(other)
        return self

    def __reduce__(self) -> tuple:
        """Pickles as a ``collections.OrderedDict`` of the same values, each state tensor's own
        elements alone (:func:`_alone`), so that ``torch.save(optimizer.state[p])`` writes this
        parameter's state, not the buffer a layout keeps every parameter's in, and ``torch.load``
        reads it back with its default ``weights_only=True``, as it reads torch's plain dict: a
        ``dict`` subclass cannot pickle as a plain dict (only as a call), and ``OrderedDict`` is
        the one mapping that unpickler calls. (A pickle is a copy: nothing handed out;
        ``copy.copy`` and ``copy.deepcopy`` take the methods above, and give plain dicts.)
        Pickling the whole state this way (``torch.save(optimizer)``) holds those copies until
        the pickle ends; ``optimizer.state_dict()`` copies nothing."""
        return OrderedDict, ({k: _alone(v) for k, v in dict.items(self)},)


def _views_more(value: Any) -> bool:
    """Whether ``value`` is a plain strided tensor whose storage holds more than its own
    elements: a state tensor laid out in a layout's buffer (or a view the caller put there)."""
    return (
        type(value) is torch.Tensor
        and value.layout == torch.strided
        and not value.requires_grad
        and value.untyped_storage().nbytes() > value.numel() * value.element_size()
    )


def _alone(value: Any) -> Any:
    """``value``, or where it views a larger storage (:func:`_views_more`) a copy of its own
    elements, with its strides where they fill its elements densely (``channels_last``): what
    ``torch.save`` and ``copy.deepcopy`` find in torch's state, where each state tensor has a
    storage of its own (they copy a view's whole storage)."""
    return value.clone(memory_format=torch.preserve_format) if _views_more(value) else value


class HandedList(_Counted, list):
    """A list of state tensors kept outside ``optimizer.state`` too (DoG's x_0 in
    ``group["init_buffer"]``, as its package keeps it), whose items read from outside the
    optimizer's own code are counted on ``owner`` (:meth:`TrackedState.handed_out`), as an
    entry's values are: ``[i]``, iteration (``for``, ``list()``, ``[*l]``, ``zip``),
    ``reversed``, ``copy``, ``+``, ``*``, ``pop``, pickling. Every change of its items counts
    too, and adds one to :attr:`mutations`, so the optimizer sees a replaced item without
    keeping a copy of the list (which would hold the tensors once more). A C function reading
    a list's items directly (a ``torch._foreach_*`` op given the list) is not counted; those
    change values in place, which the optimizer's views share, and move no tensor.
    Pickles and copies as a plain list."""

    __slots__ = ("_owner", "mutations")

    def __init__(self, items: Any = (), /) -> None:
        # list's own signature, so that ``type(l)(items)`` gets the items (see StateEntry)
        super().__init__(items)
        self.owner: TrackedState | None = None
        self.mutations = 0

    @classmethod
    def owned_by(cls, owner: TrackedState | None, items: Any = ()) -> HandedList:
        """A new list of ``items`` whose reads from outside ``owner`` counts."""
        handed = cls(items)
        handed.owner = owner
        return handed

    def _changed(self) -> None:
        self.mutations = getattr(self, "mutations", 0) + 1
        self._handed()

    def __getitem__(self, index: Any) -> Any:
        self._handed()
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[Any]:
        self._handed()
        return super().__iter__()

    def __reversed__(self) -> Iterator[Any]:
        self._handed()
        return super().__reversed__()

    def copy(self) -> list:
        self._handed()
        return list(super().__iter__())

    def __deepcopy__(self, memo: dict) -> list:
        return [copy.deepcopy(item, memo) for item in super().__iter__()]

    def __add__(self, other: Any) -> Any:
        self._handed()
        return super().__add__(other)

    def __radd__(self, other: Any) -> Any:
        self._handed()
        return list(other) + list(super().__iter__())

    def __mul__(self, count: Any) -> Any:
        self._handed()
        return super().__mul__(count)

    def __rmul__(self, count: Any) -> Any:
        self._handed()
        return super().__rmul__(count)

    def __iadd__(self, other: Any) -> HandedList:
        super().__iadd__(other)
        self._changed()
        return self

    def __imul__(self, count: Any) -> HandedList:
        super().__imul__(count)
        self._changed()
        return self

    def append(self, item: Any) -> None:
        super().append(item)
        self._changed()

    def extend(self, items: Any) -> None:
        super().extend(items)
        self._changed()

    def insert(self, index: Any, item: Any) -> None:
        super().insert(index, item)
        self._changed()

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._changed()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._changed()

    def reverse(self) -> None:
        super().reverse()
        self._changed()

    def __reduce_ex__(self, protocol: Any) -> tuple:
        # (a pickle is a copy, but copyreg would hand it the items: counted, as an iteration)
        self._handed()
        return list, (list(super().__iter__()),)


class TrackedState(defaultdict):
    """``optimizer.state``: a ``defaultdict(dict)`` that counts assignments and removals.

    Built as a ``defaultdict`` is, ``TrackedState(default_factory, entries)``, so that code
    that copies or rebuilds torch's state as ``type(state)(state.default_factory, items)``
    (``state.copy()``, ``copy.copy``, lightning_utilities' apply_to_collection) gets one. A
    missing key always gets a new empty entry, whatever the factory (torch's is ``dict``)."""

    def __init__(self, default_factory: Any = dict, /, *args: Any, **kwargs: Any) -> None:
        if default_factory is not None and not callable(default_factory):
            raise TypeError(  # (defaultdict's message, and what was given)
                "first argument must be callable or None (default_factory, as defaultdict's), "
                f"got a {type(default_factory).__name__}"
            )
        super().__init__(dict)
        entries = dict(*args, **kwargs)
        self.changes = 0
        self.all_tracked = True
        self.inside: int | None = None
        """The thread running the optimizer's own code on this state, if any (:meth:`enter`)."""
        self.counted_exposures = 1 if entries else 0
        self.exposed_in_trace = False
        """Whether a traced step (a user's ``torch.compile``) has read or written an entry's
        value since :attr:`exposures` was last read: a constant stored, where counting would
        read the count and guard the trace on it (the trace then recompiled at every step)."""
        for key, value in entries.items():
            super().__setitem__(key, StateEntry.owned_by(self, value))

    @property
    def exposures(self) -> int:
        """Values of entries read or written from outside the optimizer's own code so far (see
        the module's docstring), each traced step's reads counted once; entries given at
        construction (a loaded ``state_dict``, an unpickled optimizer) count as one: their
        tensors may be the caller's."""
        if self.exposed_in_trace:
            self.exposed_in_trace = False
            self.counted_exposures += 1
        return self.counted_exposures

    def handed_out(self) -> None:
        """Count an entry's value (or an entry) read or written, unless by this thread inside the
        optimizer's own code (:meth:`enter`); under ``torch.compile`` always."""
        if torch.compiler.is_compiling():
            self.exposed_in_trace = True
        elif self.inside != threading.get_ident():
            self.counted_exposures += 1

    def enter(self) -> int | None:
        """Mark this thread as inside the optimizer's own code (reads and writes of entries are
        then not counted as handed out) and return what :meth:`leave` restores; nothing under
        ``torch.compile``."""
        if torch.compiler.is_compiling():
            return None
        outer = self.inside
        self.inside = threading.get_ident()
        return outer

    def leave(self, outer: int | None) -> None:
        """Undo :meth:`enter`."""
        if not torch.compiler.is_compiling():
            self.inside = outer

    def __missing__(self, key: Any) -> StateEntry:
        entry = StateEntry.owned_by(self)
        super().__setitem__(key, entry)
        self.changes += 1
        return entry

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, StateEntry) and value.owner is None:
            value.owner = self  # (made outside as type(entry)(items): counted from now on)
        super().__setitem__(key, value)
        self.changes += 1
        if not (isinstance(value, StateEntry) and value.owner is self):
            self.all_tracked = False
        self.handed_out()

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self.changes += 1

    def clear(self) -> None:
        super().clear()
        self.changes += 1

    def pop(self, *args: Any) -> Any:
        self.changes += 1
        return super().pop(*args)

    def popitem(self) -> tuple[Any, Any]:
        self.changes += 1
        return super().popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> TrackedState:
        self.update(other)
        return self

    def copy(self) -> defaultdict:
        """A shallow copy as torch's state gives one: a ``defaultdict(dict)`` of the same
        entries (a change of an entry's items shows in both, as in torch's)."""
        return defaultdict(dict, dict.items(self))

    __copy__ = copy

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, dict):
            return NotImplemented
        merged = self.copy()  # (torch's: a defaultdict(dict) of the same entries, then other's)
        merged.update(other)
        return merged

    def __ror__(self, other: Any) -> Any:
        if not isinstance(other, dict):
            return NotImplemented
        merged = defaultdict(dict, other)
        merged.update(dict.items(self))
        return merged

    def __reduce__(self) -> tuple:
        return _plain_state, (dict(self),)  # pickles and deep-copies as torch's defaultdict(dict)

    def stamp(self) -> tuple[int, int] | None:
        """What a layout records; ``None`` when some entry is not tracked."""
        return (id(self), self.changes) if self.all_tracked else None


def _register_as_torchs_containers() -> None:
    """Make ``torch.utils._pytree`` (``tree_map``, ``tree_flatten``, ``tree_map_only``, which
    torch's own utilities and user code run over optimizer state) see the state, its entries
    and a handed-out list as the ``defaultdict``, ``dict`` and ``list`` they stand in for: the
    same leaves, and rebuilt as those plain types, as torch's state is. Unregistered, a subclass
    is one leaf: a ``tree_map_only(Tensor, fn, optimizer.state)`` returned the state itself,
    ``fn`` applied to nothing. (Flattening an entry reads its values through ``values()``:
    counted as handed out.)"""
    nodes = pytree.SUPPORTED_NODES
    for ours, theirs in ((StateEntry, dict), (HandedList, list), (TrackedState, defaultdict)):
        if ours in nodes:  # (a module reloaded in the same process)
            continue
        node = nodes[theirs]
        pytree.register_pytree_node(
            ours,
            node.flatten_fn,
            node.unflatten_fn,
            serialized_type_name=f"{ours.__module__}.{ours.__qualname__}",
            flatten_with_keys_fn=node.flatten_with_keys_fn,
        )


def _plain_state(entries: dict) -> defaultdict:
    return defaultdict(dict, {key: dict(dict.items(value)) for key, value in entries.items()})


_register_as_torchs_containers()
