"""Shared pieces of the runner's tests: a tiny experiment and a cached MNIST-1D."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TINY = """
name = "tiny"
seeds = 2

[dataset]
name = "mnist1d"

[model]
name = "mlp"
hidden = 8

[train]
steps = 24
batch_size = 400
eval_every = 10

[logging]
flush_every = 7
stats_every = 5
checkpoint_every = 10

[optimizer]
name = "torch.sgd"
lr = 0.1

[[variants]]
name = "plain"

[[variants]]
name = "momentum"
optimizer = {momentum = 0.9}
"""


def write_toml(path: Path, text: str = TINY) -> Path:
    path.write_text(text)
    return path


def stepsize(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m runs ARGS`` in a subprocess (the environment, cache included, is inherited)."""
    return subprocess.run(
        [sys.executable, "-m", "runs", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )
