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
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


class StateEntry(dict):
    """One parameter's state: a ``dict`` whose assignments and removals are counted."""

    __slots__ = ("owner",)

    def __init__(self, owner: TrackedState | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def _changed(self) -> None:
        owner = getattr(self, "owner", None)  # unset while unpickling
        if owner is not None:
            owner.changes += 1

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def pop(self, *args: Any) -> Any:
        self._changed()
        return super().pop(*args)

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
        return dict, (dict(self),)  # pickles and copies as a plain dict


class TrackedState(defaultdict):
    """``optimizer.state``: a ``defaultdict(dict)`` that counts assignments and removals."""

    def __init__(self, entries: Any = ()) -> None:
        super().__init__(None)
        self.changes = 0
        self.all_tracked = True
        for key, value in dict(entries).items():
            super().__setitem__(key, StateEntry(self, value))

    def __missing__(self, key: Any) -> StateEntry:
        entry = StateEntry(self)
        super().__setitem__(key, entry)
        self.changes += 1
        return entry

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.changes += 1
        if not (isinstance(value, StateEntry) and value.owner is self):
            self.all_tracked = False

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

    def __reduce__(self) -> tuple:
        return _plain_state, (dict(self),)  # pickles and copies as torch's defaultdict(dict)

    def stamp(self) -> tuple[int, int] | None:
        """What a layout records; ``None`` when some entry is not tracked."""
        return (id(self), self.changes) if self.all_tracked else None


def _plain_state(entries: dict) -> defaultdict:
    return defaultdict(dict, {key: dict(value) for key, value in entries.items()})
