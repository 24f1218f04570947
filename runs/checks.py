"""Small argument checks shared by the runner's modules.

- ``check_positive_int`` (with an optional maximum: :data:`MAX_JOBS`, :data:`MAX_THREADS`,
  :data:`MAX_UPDATES`, :data:`MAX_REPEATS`),
  ``check_non_negative_int``, ``check_seed``, ``check_seeds`` and ``check_registry_name`` raise
  at once (arguments of a function, options of a command); ``plain_int`` makes a NumPy integer
  of the Python API an ``int`` before they judge it;
- ``check_type`` raises a ``TypeError`` unless a value has its declared type (``runs.spec``'s
  classes check their fields with it when they are constructed; ``check_arguments`` checks a
  function's arguments against its annotations);
- the value checks (``positive_int``, ``one_of(...)``, ...) return ``None`` when a value is
  allowed, else the phrase saying what is allowed, so that a validator (``runs.load``) can
  collect every problem with its location in :class:`Problems` before raising once.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

# A check returns None when the value is allowed, else the phrase saying what is allowed.
Check = Callable[[Any], "str | None"]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z")  # names a folder (\Z: no newline after)

MAX_JOBS = 1024
"""The most worker processes ``--jobs`` may ask for (beyond it, process pools fail with an
``OverflowError`` or exhaust the machine)."""
MAX_THREADS = 1024
"""The most torch threads ``--threads`` may ask for (``torch.set_num_threads`` refuses values
beyond a C ``int`` and crashes with a segmentation fault for about 100000)."""
MAX_UPDATES = 10**9
"""The most updates a training budget may ask for (``train.steps``, ``train.epochs`` times the
updates of an epoch, ``bench runner --steps``): at this project's CPU scale a billion updates
take weeks, so a larger count is a typo, not an experiment (it would start and never end)."""
MAX_REPEATS = 10_000
"""The most timing rounds or timed repetitions a benchmark may ask for (``bench schedulers
--repeats``, ``bench runner --repeats``, ``bench optim --repeat``): medians settle after a few
dozen, and a larger count only keeps the command running."""
MAX_SEED_COUNT = 100_000
"""The most seeds a count ``N`` (the seeds 0..N-1: ``seeds = N``, ``--seeds N``) may ask for:
each is a run, and a larger count only exhausts memory while the runs are listed."""
SEED_LIMIT = 2**32
"""Seeds lie in ``0..SEED_LIMIT - 1``. ``torch.manual_seed`` takes any unsigned 64-bit integer,
but torch's CPU generator (mt19937) keeps only its low 32 bits: seeds ``s`` and ``s + 2**32``
would draw the same initial weights (and a negative seed would stand for another one), so a
larger or negative seed is refused rather than silently repeating a smaller one's run."""
SEED_WHY = (
    "torch's CPU generator keeps only a seed's low 32 bits, so a larger seed would repeat a "
    "smaller one's initial weights"
)


def is_positive_int(value: object) -> bool:
    """True for an ``int`` (not a ``bool``) >= 1."""
    return positive_int(value) is None


def plain_int(value: object) -> object:
    """``value`` as a Python ``int`` when it is an integer of another type (a NumPy integer such
    as ``y.max() + 1`` on an array: ``numbers.Integral``, not a ``bool``), else ``value`` unchanged
    for the checks here to judge. For the integer arguments of the Python API (``num_classes``,
    ``input_shape``); values that come from TOML are ``int`` already."""
    import numbers

    if isinstance(value, numbers.Integral) and not isinstance(value, bool | int):
        return int(value)
    return value


def check_positive_int(name: str, value: object, maximum: int | None = None) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a positive integer, at most
    ``maximum`` when one is given."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
    if maximum is not None and value > maximum:  # type: ignore[operator]
        raise ValueError(f"{name} must be at most {maximum}, got {name}={value!r}")


def check_seed(name: str, value: object) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a seed (:func:`seed`)."""
    if (allowed := seed(value)) is not None:
        raise ValueError(f"{name} must be {allowed}, got {name}={value!r}")


def check_non_negative_int(name: str, value: object) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= 0."""
    if non_negative_int(value) is not None:
        raise ValueError(f"{name} must be an integer >= 0, got {name}={value!r}")


def check_registry_name(where: str, name: object) -> None:
    """Raise ``TypeError`` unless ``name`` is a string, ``ValueError`` unless it is a folder name
    (:data:`NAME`: letters, digits and - _ . +), each message starting with ``where``."""
    if not isinstance(name, str):
        raise TypeError(
            f"{where}: name must be a string of letters, digits and - _ . +, "
            f"got name={name!r} ({type(name).__name__})"
        )
    if not NAME.match(name):
        raise ValueError(f"{where}: name must be letters, digits and - _ . +, got name={name!r}")


def check_seeds(seeds: object, option: str = "seeds") -> None:
    """Raises ``ValueError`` naming ``option`` unless ``seeds`` (a seed-count override) is None
    or a positive integer (at most :data:`MAX_SEED_COUNT`)."""
    if seeds is not None and positive_int(seeds) is not None:
        raise ValueError(f"{option} must be a positive integer (the seeds 0..N-1), got {seeds!r}")
    if seeds is not None and seeds > MAX_SEED_COUNT:  # type: ignore[operator]
        raise ValueError(
            f"{option} must be at most {MAX_SEED_COUNT} (one run per seed), got {seeds!r}"
        )


def type_allows(hint: Any, value: Any) -> bool:
    """Whether ``value`` has the type ``hint`` (a resolved annotation: a class, ``A | B``,
    ``dict[K, V]``, ``Mapping[K, V]``, ``list[T]``, ``tuple[T, ...]``, ``Any``), element by element.
    A bool is not an int, an int is a float, and a list and a tuple stand for each other (TOML
    has arrays only)."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(type_allows(arg, value) for arg in args)
    kind = origin or hint
    if kind in (list, tuple):
        items = args[0] if args else Any
        return isinstance(value, list | tuple) and all(type_allows(items, v) for v in value)
    if kind in (dict, Mapping):
        key, item = args or (Any, Any)
        pairs = value.items() if isinstance(value, Mapping) else None
        return pairs is not None and all(
            type_allows(key, k) and type_allows(item, v) for k, v in pairs
        )
    if kind is float:
        return _number(value)
    if kind is int:
        return _integer(value)
    return isinstance(value, kind)


def check_type(owner: str, name: str, value: Any, hint: Any, declared: str) -> None:
    """Raises ``TypeError`` naming ``owner``, ``name``, the value and ``declared`` (the annotation
    as written) unless ``value`` has the type ``hint``."""
    if not type_allows(hint, value):
        lists = " (a list or a tuple)" if re.search(r"\b(list|tuple)\[", declared) else ""
        raise TypeError(
            f"{owner}: {name} must be {declared}{lists}, got {value!r:.80} ({type(value).__name__})"
        )


@functools.cache
def type_hints(owner: Any) -> dict[str, Any]:
    """The resolved annotations of a class or function (``typing.get_type_hints``), cached."""
    return typing.get_type_hints(owner)


def check_arguments(function: Callable, arguments: Mapping[str, Any]) -> None:
    """Raises ``TypeError`` for the first of ``arguments`` (``locals()`` at the start of
    ``function``) whose value does not have the type ``function`` declares for it."""
    hints = type_hints(function)
    for name, parameter in inspect.signature(function).parameters.items():
        if name in hints:
            declared = str(parameter.annotation)
            check_type(function.__name__, name, arguments[name], hints[name], declared)


class Problems:
    """Collects every problem found, each as ``location: message``, once: a problem of a common
    table that every variant inherits is found for each of them, at the same location, and is
    listed (and counted) once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, location: str, message: str) -> None:
        item = f"{location}: {message}" if location else message
        if item not in self.items:
            self.items.append(item)

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


def sweep_length(value: Any) -> str | None:
    """A range test's ``num_iter``: 2 to ``schedulers.range_test.MAX_NUM_ITER``."""
    from schedulers.range_test import MAX_NUM_ITER

    ok = _integer(value) and 2 <= value <= MAX_NUM_ITER
    return None if ok else f"an integer in [2, {MAX_NUM_ITER}]"


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


def non_negative_number(value: Any) -> str | None:
    """A finite number >= 0 (an ``int`` or a ``float``; a bool is not a number here)."""
    ok = _number(value) and 0 <= value < math.inf
    return None if ok else "a finite number >= 0"


def unit_interval(value: Any) -> str | None:
    return None if _number(value) and 0 <= value < 1 else "a number in [0, 1)"


def above_one(value: Any) -> str | None:
    return None if _number(value) and 1 < value < math.inf else "a finite number > 1"


def _distinct_items(value: Any, item: Check) -> bool:
    """Whether ``value`` is a non-empty list (or tuple) whose items each pass ``item`` and are
    distinct. The items are checked first, so that an array or a table among them (valid TOML)
    is refused rather than crashing the duplicate test with an unhashable ``TypeError``."""
    if not isinstance(value, list | tuple) or not value:
        return False
    return all(item(v) is None for v in value) and len(set(value)) == len(value)


def lr_grid(value: Any) -> str | None:
    ok = _distinct_items(value, positive_number)
    return None if ok else "a non-empty list of distinct positive learning rates"


def names(value: Any) -> str | None:
    ok = isinstance(value, list | tuple) and value and all(isinstance(v, str) and v for v in value)
    return None if ok else "a non-empty list of names"


def positive_int_or_epoch(value: Any) -> str | None:
    ok = value == "epoch" or positive_int(value) is None
    return None if ok else 'a positive integer or "epoch"'


def seed(value: Any) -> str | None:
    """A seed torch's CPU generator takes as itself: an integer in ``0..SEED_LIMIT - 1`` (the
    phrase says why a larger one is refused, :data:`SEED_LIMIT`)."""
    if _integer(value) and 0 <= value < SEED_LIMIT:
        return None
    why = f" ({SEED_WHY})" if _integer(value) and value >= SEED_LIMIT else ""
    return f"an integer in 0..{SEED_LIMIT - 1}{why}"


def seeds(value: Any) -> str | None:
    """The ``seeds`` of an experiment: a count N (the seeds 0..N-1, at most
    :data:`MAX_SEED_COUNT`) or a list of distinct seeds (:func:`seed`); the phrase names a seed
    beyond the range and says why it is refused."""
    if positive_int(value) is None and value <= MAX_SEED_COUNT:
        return None
    if _distinct_items(value, seed):
        return None
    allowed = (
        f"a positive integer N <= {MAX_SEED_COUNT} (seeds 0..N-1) or a list of distinct seeds "
        f"in 0..{SEED_LIMIT - 1}"
    )
    if isinstance(value, list | tuple):
        large = [s for s in value if _integer(s) and s >= SEED_LIMIT]
        if large:
            allowed += f" (seed {large[0]} is not: {SEED_WHY})"
    return allowed


def folder_name(value: Any) -> str | None:
    ok = isinstance(value, str) and NAME.match(value)
    return None if ok else "a name of letters, digits and - _ . + (it names a folder)"


def experiment_folder_entries() -> tuple[str, ...]:
    """What an experiment's folder holds besides its variants' folders (``<variant>/seed<N>``):
    ``experiment.json`` (``runs.experiment``), ``summary.json`` and ``summary.md``
    (``runs.summary``), ``figures``, the range test's and the search's records
    (``runs.tuning.RANGE_TEST_FILE``, ``SEARCH_FILE``), the search runs' folder
    (``runs.tuning.SEARCH_DIR``) and the lock (``runs.checkpoint.LOCK``). A variant cannot be
    named so: its runs would be written into one of them, or it into theirs. (The last two do
    not match :data:`NAME` anyway; they are listed so that this is the whole list.)"""
    from runs import checkpoint, tuning

    return (
        "experiment.json",
        "summary.json",
        "summary.md",
        "figures",
        tuning.RANGE_TEST_FILE,
        tuning.SEARCH_FILE,
        tuning.SEARCH_DIR,
        checkpoint.LOCK,
    )


def variant_name(value: Any) -> str | None:
    """A variant's name: a folder name (:func:`folder_name`) that is none of the experiment
    folder's own entries (:func:`experiment_folder_entries`), compared without case, since a
    file system may not tell ``Summary.json`` from ``summary.json``."""
    if (allowed := folder_name(value)) is not None:
        return allowed
    entries = experiment_folder_entries()
    if value.casefold() in {entry.casefold() for entry in entries}:
        return (
            "a name of letters, digits and - _ . + other than the experiment folder's own "
            f"entries ({', '.join(entries)})"
        )
    return None
