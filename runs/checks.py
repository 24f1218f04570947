"""Small argument checks shared by the runner's modules.

- ``check_positive_int`` and ``check_non_negative_int`` raise at once (arguments of a function,
  options of a command);
- the value checks (``positive_int``, ``one_of(...)``, ...) return ``None`` when a value is
  allowed, else the phrase saying what is allowed, so that a validator (``runs.load``) can
  collect every problem with its location in :class:`Problems` before raising once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

# A check returns None when the value is allowed, else the phrase saying what is allowed.
Check = Callable[[Any], "str | None"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # names a folder


def is_positive_int(value: object) -> bool:
    """True for an ``int`` (not a ``bool``) >= 1."""
    return positive_int(value) is None


def check_positive_int(name: str, value: object) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a positive integer."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")


def check_non_negative_int(name: str, value: object) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= 0."""
    if non_negative_int(value) is not None:
        raise ValueError(f"{name} must be an integer >= 0, got {name}={value!r}")


class Problems:
    """Collects every problem found, each as ``location: message``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, location: str, message: str) -> None:
        self.items.append(f"{location}: {message}" if location else message)

    def raise_if_any(self, source: str) -> None:
        if self.items:
            lines = "; ".join(self.items)
            raise ValueError(f"{source}: {len(self.items)} problem(s): {lines}")


def join(location: str, key: str) -> str:
    """``location.key`` (``key`` alone at the top level, ``location`` alone for the table
    itself, ``key == ""``)."""
    return f"{location}.{key}" if location and key else location or key


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any) -> str | None:
    return None if _integer(value) and value > 0 else "a positive integer"


def non_negative_int(value: Any) -> str | None:
    return None if _integer(value) and value >= 0 else "an integer >= 0"


def at_least_two(value: Any) -> str | None:
    return None if _integer(value) and value >= 2 else "an integer >= 2"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def table(value: Any) -> str | None:
    return None if isinstance(value, dict) else "a table"


def one_of(*allowed: str) -> Check:
    return lambda value: None if value in allowed else "one of " + ", ".join(map(repr, allowed))


def positive_number(value: Any) -> str | None:
    ok = _number(value) and 0 < value < math.inf
    return None if ok else "a positive finite number"


def unit_interval(value: Any) -> str | None:
    return None if _number(value) and 0 <= value < 1 else "a number in [0, 1)"


def above_one(value: Any) -> str | None:
    return None if _number(value) and 1 < value < math.inf else "a finite number > 1"


def lr_grid(value: Any) -> str | None:
    ok = isinstance(value, list | tuple) and value and all(not positive_number(v) for v in value)
    ok = ok and len(set(value)) == len(value)
    return None if ok else "a non-empty list of distinct positive learning rates"


def names(value: Any) -> str | None:
    ok = isinstance(value, list | tuple) and value and all(isinstance(v, str) and v for v in value)
    return None if ok else "a non-empty list of names"


def positive_int_or_epoch(value: Any) -> str | None:
    ok = value == "epoch" or positive_int(value) is None
    return None if ok else 'a positive integer or "epoch"'


def seeds(value: Any) -> str | None:
    if positive_int(value) is None:
        return None
    ok = isinstance(value, list | tuple) and value and len(set(value)) == len(value)
    ok = ok and all(non_negative_int(s) is None for s in value)
    return None if ok else "a positive integer N (seeds 0..N-1) or a list of distinct seeds >= 0"


def folder_name(value: Any) -> str | None:
    ok = isinstance(value, str) and NAME.match(value)
    return None if ok else "a name of letters, digits and - _ . + (it names a folder)"
