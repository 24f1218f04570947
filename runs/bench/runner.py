"""``stepsize bench runner``: the runner with all logging on against a bare PyTorch loop.

Both train the same model (the MNIST-1D CNN by default) with the same optimizer on the same
mini-batches for the same number of updates, and evaluate once before and once after training.
The runner additionally does everything ``stepsize run`` does at its default cadence: the loss of
every update, the hyperparameters, the gradient norm and update-to-weight ratio every 10 updates,
TensorBoard event files, checkpoints every 500 updates, the progress bar's bookkeeping and the
result file. The two are measured alternately in this process; the command prints the median
steps per second of each and the ratio (target: the runner at least 0.95 of the bare loop).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from runs.build import make_optimizer
from runs.checks import MAX_REPEATS, MAX_THREADS, MAX_UPDATES, check_positive_int
from runs.data import DatasetSplits, known_shape
from runs.experiment import model_problem
from runs.models import build_model
from runs.parallel import dataset_on
from runs.spec import Dataset, Model, Optimizer, Train, Variant
from runs.trainer import epoch_batches, eval_metrics, total_steps, train_run


def bench_variant(model: str, steps: int, batch_size: int) -> Variant:
    return Variant(
        name="bench",
        dataset=Dataset("mnist1d"),
        model=Model(model),
        train=Train(steps=steps, batch_size=batch_size, eval_every=steps),
        optimizer=Optimizer("torch.sgd", {"lr": 0.05, "momentum": 0.9}),
    )


def bare_loop(variant: Variant, data: DatasetSplits, seed: int) -> float:
    """The same work without the runner: returns the wall time of the training updates."""
    torch.manual_seed(seed)
    model = build_model(variant.model.name, data.input_shape, data.num_classes)
    optimizer = make_optimizer(variant.optimizer, model.parameters())
    steps, _ = total_steps(variant.train, len(data.train_x))
    started = time.perf_counter()
    eval_metrics(model, data, variant.train)
    step, epoch = 0, 0
    while step < steps:
        for xb, yb in epoch_batches(data, variant.train, seed, epoch):
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
        epoch += 1
    eval_metrics(model, data, variant.train)
    return time.perf_counter() - started


def runner_loop(variant: Variant, data: DatasetSplits, seed: int) -> float:
    with tempfile.TemporaryDirectory(prefix="stepsize-bench-") as run_dir:
        started = time.perf_counter()
        train_run(variant, seed, data, run_dir, quiet=True)
        return time.perf_counter() - started


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="mnist1d-cnn", help="model name (default mnist1d-cnn)")
    parser.add_argument("--steps", type=int, default=500, help="updates per measurement")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="measurements of each (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def run(args: argparse.Namespace) -> int:
    check_positive_int("--steps", args.steps, MAX_UPDATES)
    check_positive_int("--batch-size", args.batch_size)
    check_positive_int("--repeats", args.repeats, MAX_REPEATS)
    check_positive_int("--threads", args.threads, MAX_THREADS)
    variant = bench_variant(args.model, args.steps, args.batch_size)
    if (problem := model_problem(variant, *known_shape("mnist1d"))) is not None:
        raise ValueError(f"--model {args.model}: {problem}")  # before MNIST-1D is generated
    torch.set_num_threads(args.threads)
    data = dataset_on({"name": "mnist1d", "normalize": True}, None, "cpu")
    bare_loop(variant, data, 0), runner_loop(variant, data, 0)  # warm-up
    bare, runner = [], []
    for repeat in range(args.repeats):
        bare.append(args.steps / bare_loop(variant, data, repeat))
        runner.append(args.steps / runner_loop(variant, data, repeat))
    bare_median, runner_median = statistics.median(bare), statistics.median(runner)
    print(f"model {args.model}, batch {args.batch_size}, {args.steps} updates, ", end="")
    print(f"{args.threads} thread(s)")
    print(f"bare loop        {bare_median:10.1f} steps/s (median of {args.repeats})")
    print(f"runner, logging  {runner_median:10.1f} steps/s (median of {args.repeats})")
    print(f"ratio runner / bare = {runner_median / bare_median:.3f} (target >= 0.95)")
    return 0
