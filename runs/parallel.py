"""Running many runs: one after another, in ``--jobs N`` worker processes, as Ray tasks
(``--backend ray``), or data-parallel under ``torchrun``.

Every run (variant x seed) is computed by :func:`execute` with the same number of intra-op
threads, whatever the number of jobs (``torch.set_num_threads(threads)``): CPU kernels reduce in
an order that depends on the thread count, so this is what makes ``--jobs N`` give exactly the
numbers of ``--jobs 1``. Workers are started with the ``spawn`` method (no state inherited from
the parent) and load the datasets themselves; each watches its parent and exits at once when the
parent dies (even by ``kill -9``), so no orphan keeps writing the run folders.

Ray (``--backend ray``, the optional extra ``stepsize[ray]``): every run is one Ray task that
calls the same :func:`execute`, on a local Ray instance started for the command (``--jobs``
tasks at a time) or on the cluster at ``--address``. The run folders are written by the tasks,
so on a cluster ``--logdir`` must be a folder every node sees at the same path (a shared file
system), and every node needs this package and the datasets. Results, resume and numbers are
those of ``--jobs``.

Data-parallel training: when ``torchrun`` started this process (``WORLD_SIZE`` > 1 in the
environment), :func:`init_distributed` joins the process group (gloo on the CPU, nccl on CUDA) and
each run is trained by every rank on its share of each batch (see ``runs.trainer``).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from runs.data import DatasetSplits, load_dataset
from runs.spec import Variant
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
    backend: str = "process"  # "process" (--jobs worker processes) or "ray"
    address: str | None = None  # a Ray cluster's address; None starts a local instance
    # User-registered models and datasets ({"models": {name: factory}, "datasets": {name:
    # DatasetSplits}}), registered again in each worker process (a spawned worker starts empty).
    registered: dict | None = None
    # The type of each HParams column (runs.tensorboard.hparam_types over the experiment's
    # variants), so that every run's session types its values as the configuration does.
    hparam_types: dict[str, str] | None = None


BACKENDS = ("process", "ray")


def dataset_on(dataset: Mapping[str, Any], data_dir: str | None, device: str) -> DatasetSplits:
    """The dataset of a variant's ``dataset`` table (``name`` and ``load_dataset``'s options),
    loaded once per process and moved to ``device`` (a registered one is keyed by its object too,
    so registering another under the same name is seen)."""
    from runs.data import registered_datasets

    registered = registered_datasets().get(dataset["name"])
    return _dataset_on(tuple(sorted(dataset.items())), data_dir, device, registered)


@functools.lru_cache(maxsize=4)
def _dataset_on(
    dataset: tuple[tuple[str, Any], ...], data_dir: str | None, device: str, registered: object
) -> DatasetSplits:
    del registered  # part of the cache key only
    options = dict(dataset)
    data = load_dataset(options.pop("name"), data_dir=data_dir, **options)
    if device == "cpu":
        return data
    move = {f: getattr(data, f).to(device) for f in ("train_x", "train_y", "test_x", "test_y")}
    return dataclasses.replace(data, **move)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count is ``threads`` while the block runs; the caller's count comes
    back afterwards, however the block ends (``runs.run`` in a notebook leaves the notebook's
    own computations their threads)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def execute(task: Task, settings: Settings, dist: DistContext | None = None) -> dict[str, Any]:
    """Trains one run in this process, with ``settings.threads`` torch threads (the caller's
    thread count is restored afterwards: :func:`torch_threads`)."""
    with torch_threads(settings.threads):
        if settings.registered:
            install_registered(settings.registered)
        data = dataset_on(task.variant.dataset.to_table(), settings.data_dir, settings.device)
        return train_run(
            task.variant,
            task.seed,
            data,
            task.run_dir,
            device=settings.device,
            quiet=settings.quiet,
            dist=dist,
            hparam_types=settings.hparam_types,
        )


def current_registered() -> dict | None:
    """The user's registered models and datasets, for :attr:`Settings.registered` (None: none)."""
    from runs.data import registered_datasets
    from runs.models import registered_models

    found = {"models": registered_models(), "datasets": registered_datasets()}
    return found if any(found.values()) else None


def registered_for(variants: Sequence[Variant]) -> dict | None:
    """The registered models and datasets that ``variants`` name (:func:`current_registered`
    limited to them: only those go to the worker processes). None: none."""
    found = current_registered()
    if found is None:
        return None
    models = {v.model.name for v in variants}
    datasets = {v.dataset.name for v in variants}
    used = {
        "models": {k: f for k, f in found["models"].items() if k in models},
        "datasets": {k: d for k, d in found["datasets"].items() if k in datasets},
    }
    return used if any(used.values()) else None


def check_picklable(registered: dict | None, option: str) -> None:
    """Raises ``TypeError`` naming the model or dataset of ``registered`` that cannot be pickled,
    as the worker processes of ``option`` (``--jobs N``) need: checked before anything is written
    (a lambda or local function as a model factory). A dataset's tensors are left out of the
    check (tensors pickle; copying them would cost their memory)."""
    import pickle

    for kind, items in (registered or {}).items():
        for name, value in items.items():
            if isinstance(value, DatasetSplits):
                splits = ("train_x", "train_y", "test_x", "test_y")
                value = dataclasses.replace(value, **{f: getattr(value, f)[:0] for f in splits})
            try:
                pickle.dumps(value)
            except Exception as err:  # (PicklingError, AttributeError, TypeError, ...)
                what = "model" if kind == "models" else "dataset"
                raise TypeError(
                    f"{what} {name!r} cannot be pickled to send it to the worker processes of "
                    f"{option} ({type(err).__name__}: {err}); define it at the top level of a "
                    "module (not as a lambda or a local function), or run one job"
                ) from None


def install_registered(registered: dict) -> None:
    """Registers in this process what :func:`current_registered` found in the parent."""
    from runs.data import register_dataset, registered_datasets
    from runs.models import register_model, registered_models

    for name, factory in registered.get("models", {}).items():
        if registered_models().get(name) is not factory:
            register_model(name, factory, replace=True)
    for name, data in registered.get("datasets", {}).items():
        if registered_datasets().get(name) is not data:
            register_dataset(name, data, replace=True)


def run_all(
    tasks: Sequence[Task],
    settings: Settings,
    *,
    jobs: int = 1,
    dist: DistContext | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    progress: str | None = None,
) -> list[dict[str, Any]]:
    """Computes every task, in order with ``jobs == 1`` (or under DDP), else in ``jobs`` spawned
    worker processes or as Ray tasks (``settings.backend``); returns the results in the order of
    ``tasks``. ``on_done`` sees each result as it arrives; ``progress`` names one aggregate
    progress bar over the runs (none when None or ``settings.quiet``), which replaces the
    per-run bars."""
    if not tasks:
        return []
    bar = None
    if progress is not None and not settings.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc=progress, unit="run", dynamic_ncols=True)
    if progress is not None:
        settings = dataclasses.replace(settings, quiet=True)

    def done(result: dict[str, Any]) -> None:
        if bar is not None:
            bar.update(1)
        if on_done:
            on_done(result)

    try:
        if settings.backend == "ray" and dist is None:
            return _run_ray(tasks, settings, jobs, done)
        if jobs == 1 or dist is not None or len(tasks) <= 1:
            results: list[dict[str, Any]] = []
            for task in tasks:
                results.append(execute(task, settings, dist))
                done(results[-1])
            return results
        # The registered models and datasets go to each worker once, not with every task.
        worker_settings = dataclasses.replace(settings, quiet=True, registered=None)
        context = multiprocessing.get_context("spawn")
        by_future = {}
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(tasks)),
            mp_context=context,
            initializer=_start_worker,
            initargs=(settings.registered,),
        ) as pool:
            for i, task in enumerate(tasks):
                by_future[pool.submit(execute, task, worker_settings)] = i
            ordered: list[dict[str, Any] | None] = [None] * len(tasks)
            try:
                for future in as_completed(by_future):
                    ordered[by_future[future]] = result = future.result()
                    done(result)
            except BaseException as err:
                stop_pool(pool, err)  # a failed run stops the rest
                raise
        return ordered  # type: ignore[return-value]
    finally:
        if bar is not None:
            bar.close()


def stop_pool(pool: ProcessPoolExecutor, err: BaseException) -> None:
    """Stops ``pool`` after ``err``: the tasks not started are cancelled, and on an interrupt
    (``KeyboardInterrupt``: a SIGINT to this process alone, as ``timeout -s INT``, a scheduler
    or a notebook's interrupt send it) the runs in flight get the SIGINT too and end where their
    last checkpoint left them (each written atomically), as a Ctrl-C to the whole process group
    ends them; leaving the pool would wait for them to finish. After any other error the runs
    in flight finish."""
    if isinstance(err, KeyboardInterrupt):
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)  # (as a Ctrl-C to the process group)
        pool.shutdown(wait=True, cancel_futures=True)
    else:
        pool.shutdown(wait=False, cancel_futures=True)


def _start_worker(registered: dict | None) -> None:
    """A worker process's start: watch the parent, register the user's models and datasets."""
    exit_with_parent()
    if registered:
        install_registered(registered)


def exit_with_parent() -> None:
    """In a worker process: exits the process as soon as its parent process ends.

    A thread waits on the parent's sentinel (``multiprocessing.parent_process()``), which becomes
    ready when the parent exits for any reason; the worker then ends with ``os._exit`` (its runs
    are checkpointed atomically, so nothing half-written is left)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_ray(
    tasks: Sequence[Task], settings: Settings, jobs: int, done: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Each task as a Ray task (``settings.threads`` CPUs each); a local instance gets ``jobs x
    threads`` CPUs, so at most ``jobs`` runs train at once."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if settings.address is None:
            options["num_cpus"] = jobs * settings.threads
        ray.init(address=settings.address, **options)
    try:
        remote = ray.remote(num_cpus=settings.threads, max_retries=0)(execute)
        worker_settings = dataclasses.replace(settings, quiet=True)
        refs = {remote.remote(task, worker_settings): i for i, task in enumerate(tasks)}
        ordered: list[dict[str, Any] | None] = [None] * len(tasks)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None  # the run's own exception, as --jobs raises it
                raise
            ordered[refs[ready[0]]] = result
            done(result)
        return ordered  # type: ignore[return-value]
    finally:
        if started_here:
            ray.shutdown()


def import_ray(option: str = "--backend ray"):
    """The ``ray`` module, or a ``ValueError`` naming ``option`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            f"{option} needs Ray: pip install 'stepsize[ray]' (or pip install ray)"
        ) from None
    return ray


def init_distributed(device: str) -> DistContext | None:
    """Joins the ``torchrun`` process group when there is one (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(_leave_at_exit)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def _leave_at_exit() -> None:
    """Destroys the process group :func:`init_distributed` created, as the interpreter exits.

    Left to the interpreter's own teardown, a gloo group aborted its process now and then: a
    rank that had finished while rank 0 still wrote exited with its group's threads running
    (``terminate called without an active exception``, SIGABRT), and ``torchrun`` then stopped
    rank 0 and failed the command (seen once in CI, in the two-process test of
    ``tests/runs/test_trainer.py``). Measured with two ranks, rank 0 three seconds behind: 2 of
    67 exits aborted without the destroy, none of 66 with it (at exit, or at the end of the
    script); PyTorch's documentation asks for the destroy too. The group is kept until then, not
    destroyed at the end of each command: ``runs.run`` called again in the same process uses it
    again (a group made anew after a destroy failed to connect its ranks now and then)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext | None) -> None:
    if ctx is not None:
        import torch.distributed as dist

        dist.barrier()


def run_dir_of(experiment_dir: str | Path, variant: str, seed: int) -> str:
    """Where one run logs: ``<experiment_dir>/<variant>/seed<seed>``."""
    return str(Path(experiment_dir) / variant / f"seed{seed}")
