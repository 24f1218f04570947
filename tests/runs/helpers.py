"""Shared pieces of the runner's tests: a tiny experiment and a cached MNIST-1D."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LOGGING = """
[logging]
flush_every = 7
stats_every = 5
checkpoint_every = 10
"""


def mlp_experiment(
    name: str, steps: int = 24, eval_every: int = 10, *, seeds: int = 1, logging: bool = False
) -> str:
    """A tiny MLP experiment on MNIST-1D with SGD at lr 0.1 ([optimizer] last: append more of its
    keys, then the variants); ``logging``: flush, stats and checkpoints every few updates."""
    return f"""
name = "{name}"
seeds = {seeds}

[dataset]
name = "mnist1d"

[model]
name = "mlp"
hidden = 8

[train]
steps = {steps}
batch_size = 400
eval_every = {eval_every}
{LOGGING if logging else ""}
[optimizer]
name = "torch.sgd"
lr = 0.1
"""


# The fastest valid experiment: 5 updates of a logistic regression on 200 MNIST-1D examples
# (FASTEST_TABLES: its tables without variants, to add other top-level tables and variants to).
FASTEST_TABLES = """
name = "tiny"
seeds = 1
[dataset]
name = "mnist1d"
train_examples = 200
test_examples = 100
[model]
name = "logistic"
[train]
steps = 5
batch_size = 50
eval_every = 5
[optimizer]
name = "sgd"
lr = 0.1
"""
# A short LR range test (30 updates, no curvature estimate), to add to FASTEST's tables.
SHORT_RANGE_TEST = """
[range_test]
num_iter = 30
start_lr = 1e-3
end_lr = 10.0
curvature_batches = 0
"""
FASTEST = (
    FASTEST_TABLES
    + """[[variants]]
name = "a"
"""
)

TINY = (
    mlp_experiment("tiny", seeds=2, logging=True)
    + """
[[variants]]
name = "plain"

[[variants]]
name = "momentum"
optimizer = {momentum = 0.9}
"""
)


def write_toml(path: Path, text: str = TINY) -> Path:
    path.write_text(text)
    return path


def stepsize(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m runs ARGS`` in a subprocess (the environment, cache included, is inherited)."""
    return subprocess.run(
        [sys.executable, "-m", "runs", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def batch_norm_mlp(input_shape, num_classes):
    """A model factory with batch norm (and dropout) for the Schedule-Free evaluation tests."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(input_shape[0], 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(16, num_classes),
    )


def statistics_recomputed_at(model, data, batch_size: int, batches: int = 50, seed=None):
    """The ``schedulefree`` README's fix, written here on a copy of ``model``: running statistics
    reset, then the plain average (``momentum=None``) over train-mode forward passes of the first
    ``batches`` training mini-batches of ``batch_size`` (whole ones), without gradients, dropout
    drawing from a fork of the random state (the training's own draws must not move). The
    batches are those of the training split in order when ``seed`` is None, else of the shuffled
    order the runner documents for the run ``seed``: ``torch.randperm`` from a generator seeded
    by ``SeedSequence([seed, 0])``'s first word (the first epoch's order)."""
    import copy

    import numpy as np
    import torch

    probe = copy.deepcopy(model)
    for norm in probe.modules():
        if isinstance(norm, torch.nn.BatchNorm1d):
            norm.reset_running_stats()
            norm.momentum = None
    probe.train()
    n = len(data.train_x)
    order = torch.arange(n)
    if seed is not None:
        word = int(np.random.SeedSequence([seed, 0]).generate_state(1)[0])
        order = torch.randperm(n, generator=torch.Generator().manual_seed(word))
    whole = n // batch_size * batch_size
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        for start in range(0, min(batches * batch_size, whole), batch_size):
            probe(data.train_x[order[start : start + batch_size]])
    probe.eval()
    return probe


def copy_finished(finished: Path, to: Path) -> Path:
    """A copy of the finished experiment folder ``finished`` at ``to``, without its lock."""
    import shutil

    shutil.copytree(finished, to)
    (to / ".stepsize.lock").unlink(missing_ok=True)
    return to


def one_error_line(capsys) -> str:
    """The one error line a ``stepsize`` command printed (checked to be one line, the parser's
    ``PROG: error: ...``, no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err
    assert err.endswith("\n"), err
    assert ": error: " in err, err
    return err


def refused(capsys, *argv: str) -> str:
    """The error line of ``stepsize ARGV``, which must exit with status 2."""
    from runs.cli import main

    assert main(list(argv)) == 2
    return one_error_line(capsys)
