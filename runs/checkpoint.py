"""The files of a run folder: written atomically, read back with checks, and locked.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (what the
weights-only unpickler accepts): model and optimizer state dicts, the schedule driver's state,
the RNG states, the step, the elapsed training time and the logged history.

Every file is written to a temporary name in its folder and renamed (:func:`atomic_write`, the
one atomic writer, :mod:`schedulers.files`), with the permissions an ordinary ``open`` would give
it (``0o666`` less the umask; a replaced file keeps its own). Reading a
checkpoint or a ``result.json`` that is truncated, foreign or lacks a key raises ``ValueError``
naming the file. :func:`folder_lock` keeps a second process from writing the same experiment
folder; the lock is released by the operating system when its holder exits, even by ``kill -9``,
and the next holder removes the temporary files that writes killed before their rename left.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from schedulers.files import TEMPORARY_NAME, nearest_existing

# the one atomic writer lives in schedulers.files (schedulers must not import runs)
from schedulers.files import atomic_write as atomic_write

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
LOCK = ".stepsize.lock"
CHECKPOINT_KEYS = (
    "fingerprint",
    "model",
    "optimizer",
    "driver",
    "rng",
    "step",
    "elapsed",
    "history",
)
RESULT_KEYS = ("variant", "seed", "status", "final", "fingerprint", "history")
_RESULT_TYPES = (
    ("variant", str, "a string"),
    ("seed", int, "an integer"),
    ("status", str, "a string"),
    ("final", dict, "an object of metrics"),
    ("fingerprint", str, "a string"),
)


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> None:
    """Saves ``state`` as ``run_dir/checkpoint.pt`` (temporary file, then ``os.replace``).

    First checks that :func:`load_checkpoint` will read it back: ``state`` with every tensor
    replaced by an empty one of its dtype (its structure and every other object, at no cost in
    memory) must pass ``torch.load(weights_only=True)``, the unpickler a resume uses. Its
    ``history``, the runner's own lists of Python numbers and the bulk of a long run's state, is
    left out of the check (with 40,000 values it took 48 ms a checkpoint, the save 7 ms).

    The checkpoint is serialised in memory, then written by :func:`atomic_write`.

    Raises:
        ValueError: naming the file and the first entry the weights-only unpickler refuses (a
            NumPy scalar or another object in an optimizer's state, say), before anything is
            written: the previous checkpoint stays.
        OSError: naming the file, when it cannot be written (``ENOSPC``: a full disk); the
            previous checkpoint stays.
    """
    path = Path(run_dir) / CHECKPOINT
    problem = unreadable_entry({key: value for key, value in state.items() if key != "history"})
    if problem is not None:
        raise ValueError(
            f"{path}: not written, as a resume could not read it back: "
            f"torch.load(weights_only=True) refuses {problem}; keep only tensors, Python "
            "numbers, strings, lists and dicts there (a NumPy scalar: .item()); the previous "
            "checkpoint, if any, is kept"
        )
    # serialised in memory first, then written: a write error (a full disk) then arrives as
    # the OSError naming the file (atomic_write), not as the RuntimeError torch's zip writer
    # replaces it with ("unexpected pos ...")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda file: file.write(buffer.getbuffer()))


_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.Size, torch.dtype, torch.device)


def unreadable_entry(state: Any) -> str | None:
    """What of ``state`` ``torch.load(weights_only=True)`` would refuse, or None: its structure
    saved with empty tensors (same dtypes) and loaded back in memory; the refused entry named by
    its path (``optimizer.param_groups[0].lr (a numpy.float64)``) when a walk finds an object of
    another type than tensors, dicts, lists, tuples and plain Python values, else the
    unpickler's message. A state whose :func:`_structure` was read back before in this process
    is not saved and loaded again (:data:`_READABLE_STRUCTURES`): a run's checkpoints after its
    first, and the runs of a search, cost a walk (0.08 ms for a LeNet's Adam state, where the
    round trip took 5 ms and ``torch.save`` of the checkpoint itself 1.4 ms)."""
    structure = _structure(state)
    if structure is not None and structure in _READABLE_STRUCTURES:
        return None
    buffer = io.BytesIO()
    torch.save(_skeleton(state), buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, map_location="cpu", weights_only=True)
    except Exception as err:  # (the unpickler's UnpicklingError, or what a rebuild raises)
        where = _foreign_entry(state, "")
        return where if where is not None else f"it ({_one_line(err)})"
    if structure is not None:
        if len(_READABLE_STRUCTURES) >= 64:  # (a few per experiment; each as large as its state)
            _READABLE_STRUCTURES.clear()
        _READABLE_STRUCTURES.add(structure)
    return None


_READABLE_STRUCTURES: set = set()
"""The :func:`_structure` of states whose skeleton the weights-only unpickler read back in this
process: a later state of the same structure pickles to the same opcodes and globals, so it is
read back too, and :func:`unreadable_entry` skips its round trip (6 ms of the 9 ms a small
model's checkpoint took, measured on a grid search's 151 short runs)."""


def _structure(value: Any) -> Any:
    """What of ``value`` decides whether the weights-only unpickler reads its :func:`_skeleton`
    back, as a hashable value, or None where that is not known without the round trip (any
    object outside plain strided tensors, dicts, ordered dicts, lists, tuples and
    :data:`_PLAIN`): each container's type with its keys' types and its items' structures, a
    tensor's dtype, a dtype's or device's value, a plain value's type; for an ``int``, also
    whether pickle writes it with ``LONG4`` (more than 255 bytes in two's complement), which the
    unpickler refuses where it reads ``LONG1`` (``2**2038`` is read back, ``2**2039`` not), and
    for a ``str`` or ``bytes`` whether its length needs 8 bytes."""
    kind = type(value)
    if kind is torch.Tensor:
        return ("tensor", value.dtype) if value.layout == torch.strided else None
    if kind in (dict, collections.OrderedDict):
        items = []
        for key, item in value.items():
            key_structure, item_structure = _structure(key), _structure(item)
            if key_structure is None or item_structure is None:
                return None
            items.append((key_structure, item_structure))
        return (kind, tuple(items))
    if kind in (list, tuple):
        items = []
        for item in value:
            item_structure = _structure(item)
            if item_structure is None:
                return None
            items.append(item_structure)
        return (kind, tuple(items))
    if kind in (torch.dtype, torch.device):
        return (kind, value)
    if kind is int:  # (encode_long only near the bound: it costs a pass over the digits)
        return (kind, value.bit_length() >= 8 * 254 and len(pickle.encode_long(value)) > 255)
    if kind in (str, bytes):
        return (kind, len(value) >= 2**32)
    return (kind,) if kind in _PLAIN else None


def _skeleton(value: Any) -> Any:
    """``value`` with each plain strided tensor replaced by an empty tensor of its dtype (inside
    dicts, ordered dicts, lists and tuples; anything else is kept whole)."""
    if type(value) is torch.Tensor and value.layout == torch.strided:
        return torch.empty(0, dtype=value.dtype)
    if type(value) in (dict, collections.OrderedDict):
        return type(value)((key, _skeleton(item)) for key, item in value.items())
    if type(value) in (list, tuple):
        return type(value)(_skeleton(item) for item in value)
    return value


def _foreign_entry(value: Any, where: str) -> str | None:
    """The path and type of the first value (depth first) of a type outside tensors, dicts,
    lists, tuples and :data:`_PLAIN` (exact types: a NumPy float is a ``float`` subclass)."""
    if isinstance(value, torch.Tensor):
        return None
    if type(value) in (dict, collections.OrderedDict):
        for key, item in value.items():
            if found := _foreign_entry(item, f"{where}.{key}" if where else str(key)):
                return found
        return None
    if type(value) in (list, tuple):
        for index, item in enumerate(value):
            if found := _foreign_entry(item, f"{where}[{index}]"):
                return found
        return None
    if type(value) in _PLAIN:
        return None
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return f"{where or 'the checkpoint'} (a {kind}: {value!r:.60})"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:160] if text else type(err).__name__


def load_checkpoint(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's checkpoint, or None when there is none; tensors are loaded on the CPU.

    Raises:
        ValueError: naming the file, when it is truncated, not a checkpoint of this runner (the
            weights-only unpickler refuses it) or lacks one of ``CHECKPOINT_KEYS``.
    """
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    fix = "delete it to restart this run from step 0"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, not a torch file at all
        raise ValueError(f"{path}: not a readable checkpoint ({_one_line(err)}); {fix}") from None
    if not isinstance(state, dict):
        raise ValueError(
            f"{path}: not a checkpoint of this runner (a {type(state).__name__}); {fix}"
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {', '.join(missing)}; {fix}")
    return state


def strict_json(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, +-inf: a diverged run's losses) replaced by
    ``None``, so that it is strict JSON (``null``), which every JSON reader accepts."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: strict_json(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [strict_json(value) for value in data]
    return data


def save_json(path: str | Path, data: Any) -> None:
    """Writes JSON atomically (``result.json``, ``summary.json``): strict JSON, a non-finite
    number written as ``null`` (:func:`strict_json`); readers take ``null`` as "no number"."""
    text = json.dumps(strict_json(data), indent=1, allow_nan=False, sort_keys=False).encode()
    atomic_write(Path(path), lambda file: file.write(text))


def save_text(path: str | Path, text: str) -> None:
    """Writes a text file atomically."""
    atomic_write(Path(path), lambda file: file.write(text.encode()))


def load_result(run_dir: str | Path) -> dict[str, Any] | None:
    """A finished run's ``result.json``, or None when the run has not finished.

    Raises:
        ValueError: naming the file, when it is not valid JSON (truncated), lacks one of
            ``RESULT_KEYS`` or its ``history`` lacks the series the report reads
            (:func:`history_problem`).
    """
    path = Path(run_dir) / RESULT
    if not path.is_file():
        return None
    fix = "delete it to run this run again"
    try:
        data = json.loads(path.read_bytes())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path}: not a valid result file ({_one_line(err)}); {fix}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a result file (a JSON {type(data).__name__}); {fix}")
    missing = [key for key in RESULT_KEYS if key not in data]
    if missing:
        raise ValueError(f"{path}: result lacks {', '.join(missing)}; {fix}")
    for key, kind, what in _RESULT_TYPES:
        value = data[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{path}: {key} must be {what}, got {value!r:.60}; {fix}")
    bad = [k for k, v in data["final"].items() if not isinstance(v, int | float | None)]
    if bad:
        value = data["final"][bad[0]]
        raise ValueError(f"{path}: final.{bad[0]} must be a number, got {value!r:.60}; {fix}")
    problem = history_problem(data["history"], data["final"])
    if problem is not None:
        raise ValueError(f"{path}: {problem}; {fix}")
    return data


def history_problem(history: Any, final: dict[str, Any]) -> str | None:
    """What a ``result.json``'s ``history`` lacks of what the report reads, or None: an object
    with ``eval`` (``step`` and each metric of ``final``, lists of one length), ``train_loss``
    (``step`` and ``value``, lists of one length) and ``hyper`` (an object)."""
    if not isinstance(history, dict):
        return f"history must be an object of series, got {history!r:.60}"
    for part, keys in (("eval", ("step", *final)), ("train_loss", ("step", "value"))):
        table = history.get(part)
        if not isinstance(table, dict):
            return f"history.{part} must be an object of lists, got {table!r:.60}"
        for key in keys:
            if not isinstance(table.get(key), list):
                return f"history.{part}.{key} must be a list, got {table.get(key)!r:.60}"
        if len({len(table[key]) for key in keys}) > 1:
            return f"history.{part}: its lists ({', '.join(keys)}) differ in length"
    if not isinstance(history.get("hyper"), dict):
        return f"history.hyper must be an object, got {history.get('hyper')!r:.60}"
    return None


def check_writable_folder(folder: str | Path, option: str) -> None:
    """Raises ``ValueError`` naming ``option`` unless ``folder`` is, or can be made as, a writable
    folder: its nearest existing ancestor must be a folder this process may write in (an empty
    path is refused: it is not the current folder by accident)."""
    if isinstance(folder, str) and not folder.strip():
        raise ValueError(f"{option}: an empty path {folder!r}; give a folder")
    path = nearest_existing(folder)
    if not path.is_dir():
        raise ValueError(f"{option}: {str(path)!r} is a file, not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: the folder {str(path)!r} is not writable")


@contextlib.contextmanager
def folder_lock(folder: str | Path, option: str = "--logdir") -> Iterator[None]:
    """Holds an exclusive lock on ``folder`` (made if needed) while the ``with`` block runs.

    The lock is ``folder/.stepsize.lock``, locked with ``flock`` (``msvcrt.locking`` on Windows)
    and holding the holder's process id; the operating system releases it when the holder exits,
    however it exits, so a killed run never leaves a stale lock.

    Once the lock is taken, the temporary files that writes killed in an earlier command left
    in ``folder``'s tree are removed (:func:`remove_leftover_temporaries`): no writer of the
    folder is alive while its lock is free.

    Raises:
        ValueError: another process holds the lock (the message names it and ``option``).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # (a folder check passes in /proc, where nothing can be made)
        raise ValueError(
            f"{option}: cannot make the folder {str(folder)!r}: {err.strerror or err}"
        ) from None
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _try_lock(fd):
            os.lseek(fd, 0, os.SEEK_SET)
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise ValueError(
                f"{folder} is being written by another stepsize process (pid {holder}); "
                f"wait for it to finish or choose another {option}"
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        remove_leftover_temporaries(folder)  # (no writer of the folder is alive now)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def remove_leftover_temporaries(folder: str | Path) -> list[Path]:
    """Removes the temporary files of :func:`atomic_write` (regular files whose names match
    ``schedulers.files.TEMPORARY_NAME``) in ``folder`` and its subfolders, which a write killed
    before its rename left (a whole checkpoint's size for a checkpoint); returns them. Call it
    only holding ``folder``'s lock (:func:`folder_lock`), when no writer is alive. Symbolic
    links are not followed, and a subfolder with its own lock file (another experiment folder,
    locked on its own) is left alone; nothing else is touched. A file that cannot be removed is
    left (the next command tries again)."""
    removed = []
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not (Path(directory, d) / LOCK).exists()]
        for name in files:
            path = Path(directory, name)
            if TEMPORARY_NAME.fullmatch(name) and path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def _try_lock(fd: int) -> bool:
    """Takes an exclusive, non-blocking lock on ``fd``; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
