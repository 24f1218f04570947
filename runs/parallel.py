"""Running many runs: one after another, in ``--jobs N`` worker processes, as Ray tasks
(``--backend ray``), or data-parallel under ``torchrun``.

Every run (variant x seed) is computed by :func:`execute` with the same number of intra-op
threads, whatever the number of jobs (``torch.set_num_threads(threads)``): CPU kernels reduce in
an order that depends on the thread count, so this is what makes ``--jobs N`` give exactly the
numbers of ``--jobs 1``. Workers are started with the ``spawn`` method (no state inherited from
the parent) and load the datasets themselves; each watches its parent and exits at once when the
parent dies (even by ``kill -9``), so no orphan keeps writing the run folders.

Ray (``--backend ray``, the optional extra ``stepsize[ray]``): every run is one Ray task that
calls the same :func:`execute`, at most ``--jobs`` of them at once (:func:`ray_session` says which
Ray: the cluster at ``--address``, else the one ``RAY_ADDRESS`` names, else a local instance
started for the command with ``--jobs`` x ``--threads`` CPUs, or the Ray this process is already
connected to). The connection is made, and ``--threads`` checked against the cluster's largest
node, before anything is written. The run folders are written by the tasks at absolute paths
(a relative ``--logdir`` or ``--data-dir`` is taken from the driver's working directory, and the
driver's ``STEPSIZE_CACHE`` goes with each task), so on a cluster ``--logdir`` must be a folder
every node sees at the same path (a shared file system), and every node needs this package and
the datasets. Registered models and datasets are put into Ray's object store once per command.
Results, resume and numbers are those of ``--jobs``.

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
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import ModuleType
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
    address: str | None = None  # a Ray cluster's address; None: see ray_session
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


def check_picklable(registered: dict | None, option: str, backend: str = "process") -> None:
    """Raises ``TypeError`` naming the model or dataset of ``registered`` that cannot be sent to
    where the runs train: the worker processes of ``option`` (``--jobs N``: ``pickle``) or, with
    ``backend="ray"``, the Ray tasks of ``option`` (``--backend ray``: Ray's ``cloudpickle``,
    which also takes lambdas and local functions); checked before anything is written. A
    dataset's tensors are left out of the check (tensors pickle; copying them would cost their
    memory)."""
    if backend == "ray":
        dumps = import_ray(option).cloudpickle.dumps
        verb, to, advice = "serialized", "the Ray tasks", f"or leave out {option}"
        where = "module"
    else:
        import pickle

        dumps = pickle.dumps
        verb, to, advice = "pickled", "the worker processes", "or run one job"
        where = "module (not as a lambda or a local function)"
    for kind, items in (registered or {}).items():
        for name, value in items.items():
            if isinstance(value, DatasetSplits):
                splits = ("train_x", "train_y", "test_x", "test_y")
                value = dataclasses.replace(value, **{f: getattr(value, f)[:0] for f in splits})
            try:
                dumps(value)
            except Exception as err:  # (PicklingError, AttributeError, TypeError, ...)
                what = "model" if kind == "models" else "dataset"
                raise TypeError(
                    f"{what} {name!r} cannot be {verb} to send it to {to} of {option} "
                    f"({type(err).__name__}: {err}); define it at the top level of a {where}, "
                    f"{advice}"
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
                if isinstance(err, BrokenProcessPool):
                    unfinished = [tasks[i] for i, r in enumerate(ordered) if r is None]
                    raise worker_died(unfinished, jobs) from None
                raise
        return ordered  # type: ignore[return-value]
    finally:
        if bar is not None:
            bar.close()


def worker_died(unfinished: Sequence[Task], jobs: int) -> ChildProcessError:
    """The error (one line, a ``ChildProcessError``: an ``OSError``, which the CLI reports as
    ``stepsize: error: ...``) for a pool whose worker process died without an exception (killed
    from outside: the out-of-memory killer, a ``kill -9``), which ``concurrent.futures``
    reports as ``BrokenProcessPool``: it names the runs that did not finish (one of them was in
    the worker that died; which one is not known), says that finished runs and checkpoints are
    kept and that running the same command again resumes, and suggests a smaller ``--jobs``
    (less memory at once)."""
    names = [f"{task.variant.name} seed {task.seed}" for task in unfinished]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return ChildProcessError(
        f"a --jobs {jobs} worker process died (killed by a signal, e.g. by the out-of-memory "
        f"killer) while training one of the unfinished runs ({shown or 'none'}); finished runs "
        "and checkpoints are kept: run the same command again to resume (a smaller --jobs "
        "needs less memory)"
    )


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
    """Each task as a Ray task of ``settings.threads`` CPUs, at most ``jobs`` submitted at once
    (the next one when one finishes, so ``jobs`` holds on a cluster or a Ray the caller started
    too, and a failed run stops the ones not submitted), in the Ray of :func:`ray_session`.

    What a task gets is made independent of the node's working directory and environment: its
    ``run_dir`` and ``settings.data_dir`` absolute (taken from this process's working
    directory), ``STEPSIZE_CACHE`` as set here (absolute), and the registered models and datasets
    as one object in Ray's object store (``ray.put`` once, installed once per worker process)."""
    with ray_session(settings.address, jobs=jobs, threads=settings.threads) as ray:
        remote = ray.remote(num_cpus=settings.threads, max_retries=0)(_execute_ray)
        data_dir = settings.data_dir
        worker_settings = dataclasses.replace(
            settings,
            quiet=True,
            registered=None,
            data_dir=None if data_dir is None else os.path.abspath(data_dir),
        )
        env = {}
        if cache := os.environ.get("STEPSIZE_CACHE"):
            env["STEPSIZE_CACHE"] = os.path.abspath(os.path.expanduser(cache))
        # (a list: Ray hands a task a nested reference as it is, to fetch once per worker)
        shared = [ray.put(settings.registered)] if settings.registered else []
        queue = iter(enumerate(tasks))
        refs: dict[Any, int] = {}

        def submit() -> None:
            for i, task in queue:
                task = dataclasses.replace(task, run_dir=os.path.abspath(task.run_dir))
                refs[remote.remote(task, worker_settings, env, shared)] = i
                return

        for _ in range(jobs):
            submit()
        ordered: list[dict[str, Any] | None] = [None] * len(tasks)
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            i = refs.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None  # the run's own exception, as --jobs raises it
                raise
            ordered[i] = result
            submit()
            done(result)
        return ordered  # type: ignore[return-value]


_SHARED_INSTALLED: str | None = None  # (in a Ray worker: the object of the registry it installed)


def _execute_ray(
    task: Task, settings: Settings, env: Mapping[str, str], shared: Sequence[Any]
) -> dict[str, Any]:
    """A Ray task: :func:`execute` with ``env`` set in the environment while it runs, after the
    registered models and datasets of ``shared`` (``[ObjectRef]`` or ``[]``) are installed in
    this worker process, once per object (a reused worker keeps them, and the dataset cache)."""
    global _SHARED_INSTALLED
    if shared:
        import ray

        key = shared[0].hex()
        if key != _SHARED_INSTALLED:
            install_registered(ray.get(shared[0]))
            _SHARED_INSTALLED = key
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return execute(task, settings)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_ray(option: str = "--backend ray") -> ModuleType:
    """The ``ray`` module, or a ``ValueError`` naming ``option`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            f"{option} needs Ray: pip install 'stepsize[ray]' (or pip install ray)"
        ) from None
    return ray


ADDRESS_FORMS = "HOST:PORT, ray://HOST:PORT or auto"
CONNECT_TIMEOUT_S = 10.0  # how long a cluster's address is given to accept a connection
_ADDRESS = re.compile(
    r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?):([0-9]{1,5})\Z"
)
_CONNECTED: str | None = None  # what ray_session connected this process to, while it is


def flag_name(name: str, value: Any = None) -> str:
    """``name`` as a command-line flag (``--address``), with ``value`` when given."""
    flag = "--" + name.replace("_", "-")
    return flag if value is None else f"{flag} {value}"


def address_host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` or ``ray://HOST:PORT`` address (an IPv6 host in
    brackets, ``[::1]:6379``; the port in 1..65535); None for any other string."""
    match = _ADDRESS.match(address)
    if match is None or not 1 <= int(match[2]) <= 65535:
        return None
    return match[1].strip("[]"), int(match[2])


def check_address(address: str, option: str) -> None:
    """Refuses, with a ``ValueError`` naming ``option`` (``--address``), the value and the
    forms allowed, an address that is not ``HOST:PORT`` (a cluster's head), ``ray://HOST:PORT``
    (Ray Client) or ``auto`` (the cluster ``RAY_ADDRESS`` names, else the one ``ray start``
    began on this machine), the empty string included."""
    if address != "auto" and address_host_port(address) is None:
        raise ValueError(f"{option}: {address!r} is not a Ray address (allowed: {ADDRESS_FORMS})")


def probe_address(address: str, label: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raises a ``ValueError`` starting with ``label`` when nothing accepts a TCP connection at
    ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) within ``timeout`` seconds: ``ray.init``
    itself would wait for such a cluster without end. An address of another form (as Ray may
    resolve ``auto``) is left to ``ray.init``."""
    parsed = address_host_port(address)
    if parsed is None:
        return
    host, port = parsed
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise ValueError(
            f"{label}: no Ray cluster answers at {host}:{port} within {timeout:g} s "
            f"({type(err).__name__}: {err})"
        ) from None


@contextlib.contextmanager
def ray_session(
    address: str | None,
    *,
    jobs: int,
    threads: int,
    name: Callable[..., str] = flag_name,
) -> Iterator[Any]:
    """Yields the ``ray`` module connected to the Ray the runs use, and disconnects at the end
    if it connected. ``name(option, value=None)`` names an option in a message, as the caller
    wrote it (``--address``, or ``address`` from Python). Which Ray, by Ray's own rules:

    - this process's, when ``ray.init`` was called already (a notebook): used as it is; an
      ``address`` must then be the one it is connected to (else a ``ValueError``);
    - the cluster at ``address`` (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``: see
      :func:`check_address`), or, without one, the cluster ``RAY_ADDRESS`` names (as
      ``ray job submit`` sets it); its nodes keep their own CPUs. The address must accept a
      connection within :data:`CONNECT_TIMEOUT_S` (else a ``ValueError``: ``ray.init`` would
      wait without end);
    - else a new local instance with ``jobs * threads`` CPUs.

    Every run needs ``threads`` CPUs on one node: more than the largest live node has is a
    ``ValueError`` naming ``threads`` (Ray would keep such a task waiting forever). A nested
    call inside the one that connected uses that connection."""
    global _CONNECTED
    ray = import_ray(name("backend", "ray"))
    if ray.is_initialized():
        if address is not None and address != _CONNECTED:
            connected = ray.get_runtime_context().gcs_address
            if address != connected:
                raise ValueError(
                    f"{name('address', address)}: this process is already connected to the Ray "
                    f"cluster at {connected} (ray.init was called); leave {name('address')} out "
                    "to use that one, or call ray.shutdown() first"
                )
        check_threads_fit(ray, threads, name)
        yield ray
        return
    env = os.environ.get("RAY_ADDRESS") or None
    label = name("address", address)
    if address is None and env is not None:
        address, label = env, f"RAY_ADDRESS={env}"
        check_address(env, "RAY_ADDRESS")
    elif address is not None:
        check_address(address, name("address"))
    target = address  # (what must answer: "auto" is RAY_ADDRESS, else the machine's cluster)
    if address == "auto" and env not in (None, "auto"):
        check_address(env, "RAY_ADDRESS")
        target, label = env, f"{label} (RAY_ADDRESS={env})"
    elif address == "auto":
        target = _auto_address(label)
    if target is not None:
        probe_address(target, label)
    options: dict[str, Any] = {"log_to_driver": False}
    if address is None:  # ("local": a new instance even if a cluster runs on this machine)
        options.update(address="local", num_cpus=jobs * threads, include_dashboard=False)
    else:  # (a running cluster's CPUs are its nodes': Ray refuses num_cpus then)
        options["address"] = address
    ray.init(**options)
    _CONNECTED = address
    try:
        check_threads_fit(ray, threads, name)
        yield ray
    finally:
        _CONNECTED = None
        ray.shutdown()


def _auto_address(label: str) -> str | None:
    """The ``HOST:PORT`` that ``ray.init(address="auto")`` would connect to (``RAY_ADDRESS``,
    else the cluster ``ray start`` began on this machine), as Ray finds it; a ``ValueError``
    starting with ``label`` when there is none; None where this Ray's finder is not where it
    was (Ray 2.x: ``ray._private.services``), leaving the search to ``ray.init``."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:
        raise ValueError(
            f"{label}: no running Ray cluster found on this machine (start one with "
            "`ray start --head`, or give its HOST:PORT)"
        ) from None


def check_threads_fit(ray: Any, threads: int, name: Callable[..., str] = flag_name) -> None:
    """A ``ValueError`` naming ``threads`` when no live node of the connected Ray has that many
    CPUs: every run is a task of ``threads`` CPUs, which Ray would keep waiting forever."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cpus = max((node.get("Resources", {}).get("CPU", 0) for node in nodes), default=0)
    if threads > cpus:
        raise ValueError(
            f"{name('threads', threads)}: the largest node of the Ray cluster has {cpus:g} "
            f"CPUs, and each run needs its {name('threads')} on one node"
        )


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
