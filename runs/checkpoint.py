"""Checkpoints of a run: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (what the
weights-only unpickler accepts): model and optimizer state dicts, the schedule driver's state,
the RNG states, the step, the elapsed training time and the logged history.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


def atomic_write(path: Path, write) -> None:
    """Writes through ``write(file)`` to a temporary file in ``path``'s folder, then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> None:
    """Saves ``state`` as ``run_dir/checkpoint.pt`` (temporary file, then ``os.replace``)."""
    atomic_write(Path(run_dir) / CHECKPOINT, lambda file: torch.save(state, file))


def load_checkpoint(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's checkpoint, or None when there is none; tensors are loaded on the CPU."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def save_json(path: str | Path, data: Any) -> None:
    """Writes JSON atomically (``result.json``, ``summary.json``)."""
    text = json.dumps(data, indent=1, allow_nan=True, sort_keys=False).encode()
    atomic_write(Path(path), lambda file: file.write(text))


def save_text(path: str | Path, text: str) -> None:
    """Writes a text file atomically."""
    atomic_write(Path(path), lambda file: file.write(text.encode()))


def load_result(run_dir: str | Path) -> dict[str, Any] | None:
    """A finished run's ``result.json``, or None when the run has not finished."""
    path = Path(run_dir) / RESULT
    return json.loads(path.read_text()) if path.is_file() else None
