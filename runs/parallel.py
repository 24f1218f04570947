"""Running many runs: one after another, in ``--jobs N`` worker processes, or data-parallel under
``torchrun``.

Every run (variant x seed) is computed by :func:`execute` with the same number of intra-op
threads, whatever the number of jobs (``torch.set_num_threads(threads)``): CPU kernels reduce in
an order that depends on the thread count, so this is what makes ``--jobs N`` give exactly the
numbers of ``--jobs 1``. Workers are started with the ``spawn`` method (no state inherited from
the parent) and load the datasets themselves.

Data-parallel training: when ``torchrun`` started this process (``WORLD_SIZE`` > 1 in the
environment), :func:`init_distributed` joins the process group (gloo on the CPU, nccl on CUDA) and
each run is trained by every rank on its share of each batch (see ``runs.trainer``).
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from runs.config import Variant
from runs.data import DatasetSplits, load_dataset
from runs.trainer import DistContext, train_run


@dataclasses.dataclass(frozen=True)
class Task:
    """One run to compute: a variant, a seed and where it logs."""

    variant: Variant
    seed: int
    run_dir: str


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every run of one invocation shares."""

    data_dir: str | None = None
    device: str = "cpu"
    threads: int = 1
    quiet: bool = True


@functools.lru_cache(maxsize=4)
def dataset_on(name: str, normalize: bool, data_dir: str | None, device: str) -> DatasetSplits:
    """A dataset loaded once per process and moved to ``device``."""
    data = load_dataset(name, data_dir=data_dir, normalize=normalize)
    if device == "cpu":
        return data
    move = {f: getattr(data, f).to(device) for f in ("train_x", "train_y", "test_x", "test_y")}
    return dataclasses.replace(data, **move)


def execute(task: Task, settings: Settings, dist: DistContext | None = None) -> dict[str, Any]:
    """Trains one run in this process."""
    torch.set_num_threads(settings.threads)
    dataset = task.variant.dataset
    data = dataset_on(dataset["name"], dataset["normalize"], settings.data_dir, settings.device)
    return train_run(
        task.variant,
        task.seed,
        data,
        task.run_dir,
        device=settings.device,
        quiet=settings.quiet,
        dist=dist,
    )


def run_all(
    tasks: Sequence[Task],
    settings: Settings,
    *,
    jobs: int = 1,
    dist: DistContext | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Computes every task, in order with ``jobs == 1`` (or under DDP), else in ``jobs`` spawned
    worker processes; returns the results in the order of ``tasks``."""
    results: list[dict[str, Any]] = []
    if jobs == 1 or dist is not None or len(tasks) <= 1:
        for task in tasks:
            results.append(execute(task, settings, dist))
            if on_done:
                on_done(results[-1])
        return results
    worker_settings = dataclasses.replace(settings, quiet=True)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(execute, task, worker_settings) for task in tasks]
        for future in futures:
            results.append(future.result())
            if on_done:
                on_done(results[-1])
    return results


def init_distributed(device: str) -> DistContext | None:
    """Joins the ``torchrun`` process group when there is one (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def barrier(ctx: DistContext | None) -> None:
    if ctx is not None:
        import torch.distributed as dist

        dist.barrier()


def run_dir_of(experiment_dir: str | Path, variant: str, seed: int) -> str:
    """Where one run logs: ``<experiment_dir>/<variant>/seed<seed>``."""
    return str(Path(experiment_dir) / variant / f"seed{seed}")
