"""The runner from Python: run a comparison on your own model and data.

- :func:`run` runs an experiment: a :class:`runs.spec.Experiment` built in Python (``Experiment``,
  ``Variant``, ``Dataset``, ``Model``, ``Train``, ``Optimizer``, ...), a dict in the TOML layout,
  or a TOML file or bundled name; validated exactly as ``stepsize run`` validates a file; it
  writes what the command writes (run folders, ``experiment.json``, TensorBoard files,
  ``summary.json``, ``summary.md``, figures) and returns the content of ``summary.json``.
- :func:`register_model` (``runs.models``): ``factory(input_shape, num_classes, **options)``.
- :func:`register_dataset` / :func:`dataset_from` (``runs.data``): tensors, NumPy arrays or
  map-style torch ``Dataset`` objects.
- Optimizers need no registry: ``optimizer = {name = "torch.optim.NAdam"}`` or
  ``"my_module:MyOptimizer"`` names any ``torch.optim.Optimizer`` subclass by import path.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from runs.data import DatasetSplits, dataset_from, register_dataset
from runs.models import register_model
from runs.spec import (
    Dataset,
    Experiment,
    Logging,
    Model,
    Optimizer,
    RangeTest,
    Report,
    Search,
    Train,
    Variant,
)

__all__ = [
    "Dataset",
    "DatasetSplits",
    "Experiment",
    "Logging",
    "Model",
    "Optimizer",
    "RangeTest",
    "Report",
    "Search",
    "Train",
    "Variant",
    "dataset_from",
    "register_dataset",
    "register_model",
    "run",
]


def run(
    experiment: Experiment | Mapping[str, Any] | str | os.PathLike,
    *,
    logdir: str | os.PathLike = "stepsize-logs",
    jobs: int = 1,
    quick: bool = False,
    seeds: int | None = None,
    variants: str | list[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    threads: int = 1,
    quiet: bool = True,
    backend: str = "process",
    address: str | None = None,
    models: Mapping[str, Any] | None = None,
    datasets: Mapping[str, DatasetSplits] | None = None,
) -> dict[str, Any]:
    """Runs an experiment as ``stepsize run`` does and returns its results.

    Args:
        experiment: a :class:`runs.spec.Experiment`, a dict in the layout of a TOML experiment
            file (``name`` is required; tuples may stand for TOML arrays), or a ``.toml`` path,
            or a bundled experiment's name. An ``Experiment`` that ``runs.load`` resolved from a
            file or dict (``load_experiment``) trains what ``stepsize run`` trains for that file:
            its range-test references take the range test's numbers, its ``[quick]`` layer and
            grids count (``runs.load.resolve``).
        logdir, jobs, quick, seeds, data_dir, device, threads, quiet, backend, address: the options
            of ``stepsize run`` (``--logdir`` ...); ``variants`` may also be a list of names.
            ``quick`` applies the ``[quick]`` layer and writes to ``<name>-quick``: an
            ``Experiment`` built in Python has none, so ``quick=True`` is refused for it (build
            the quick configuration in Python); one that ``runs.load`` resolved takes the
            ``quick`` and ``data_dir`` it was resolved with (others that change it are refused).
        models: ``{name: factory}`` registered with :func:`register_model` first (after the
            options are checked; a call that raises leaves the registries as they were).
        datasets: ``{name: DatasetSplits}`` registered with :func:`register_dataset` first
            (likewise).

    Returns:
        The content of ``<logdir>/<name>/summary.json`` (``<name>-quick`` with ``quick``): the
        experiment, software versions, per-variant aggregates and every run.

    The caller's torch thread count and torch random state (CPU, and CUDA's when ``device`` is a
    CUDA device or CUDA is initialised) are as they were when it returns or raises.

    Raises:
        TypeError: an argument of another type than its annotation's, named with its value.
        ValueError: the options or the experiment are invalid (every problem, with its location),
            as the command reports them, naming the keyword arguments; nothing is written then.

    >>> import shutil, tempfile, torch
    >>> x = torch.arange(8.0)[:, None]; y = (x[:, 0] >= 4).long()  # 8 points on a line, 2 classes
    >>> def variant(name, lr):  # 4 updates of 4 examples, evaluated at steps 0, 2 and 4
    ...     return Variant(name, Dataset("doc-points"), Model("doc-logistic"),
    ...                    Train(steps=4, batch_size=4, eval_every=2), Optimizer("sgd", {"lr": lr}))
    >>> folder = tempfile.mkdtemp()
    >>> summary = run(
    ...     Experiment("doc-run", (variant("slow", 0.01), variant("fast", 0.1))),
    ...     logdir=folder, datasets={"doc-points": dataset_from(x, y, x, y)},
    ...     models={"doc-logistic": lambda shape, classes: torch.nn.Linear(shape[0], classes)},
    ... )  # prints each run as it ends, then the summary table
    [1/2] slow seed 0: finished...
    >>> [(r["variant"], r["status"], r["steps"]) for r in summary["runs"]]
    [('slow', 'finished', 4), ('fast', 'finished', 4)]
    >>> shutil.rmtree(folder)
    """
    from runs import experiment as command
    from runs.checks import check_arguments

    check_arguments(run, locals())

    if isinstance(variants, list | tuple):
        variants = ",".join(variants)
    args = argparse.Namespace(
        experiment=None, quick=quick, seeds=seeds, jobs=jobs, threads=threads,
        logdir=str(logdir), data_dir=None if data_dir is None else str(data_dir), device=device,
        variants=variants, quiet=quiet, backend=backend, address=address, python=True,
    )  # fmt: skip
    if backend not in command.parallel_backends():
        allowed = ", ".join(command.parallel_backends())
        raise ValueError(f"backend must be one of {allowed}, got {backend!r}")
    command.check_options(args)
    with _registered_unless_refused(models, datasets), _caller_rng_kept(device):
        return _run(experiment, args, quick, seeds)


def _rng_devices(device: str) -> list[int]:
    """The CUDA devices whose generators :func:`run` saves and puts back: every one when
    ``device`` is a CUDA device or CUDA is initialised already; none otherwise (reading a CUDA
    generator's state would start CUDA in a CPU-only session)."""
    import torch

    if not torch.cuda.is_available():
        return []
    if torch.device(device).type == "cuda" or torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    return []


@contextlib.contextmanager
def _caller_rng_kept(device: str) -> Iterator[None]:
    """The caller's torch random state (the CPU generator's, and each CUDA generator's of
    :func:`_rng_devices`) is put back after the ``with`` block, however it ends: the runs seed
    torch's global generator (``torch.manual_seed(seed)`` before building a model) in this
    process when ``jobs=1``, and the caller's later draws must not depend on that (nor on
    ``jobs``). NumPy's and Python's generators are not seeded by the runner."""
    import torch

    with torch.random.fork_rng(devices=_rng_devices(device)):
        yield


@contextlib.contextmanager
def _registered_unless_refused(
    models: Mapping[str, Any] | None, datasets: Mapping[str, DatasetSplits] | None
) -> Iterator[None]:
    """Registers ``models`` and ``datasets`` for the ``with`` block; when it raises (a refused
    experiment, a failed run), the registries are put back as they were, so that a refused call
    leaves nothing registered."""
    from runs import data as runs_data
    from runs import models as runs_models

    registries = (runs_models._REGISTERED, runs_data._REGISTERED, runs_data._DIGESTS)
    saved = [dict(registry) for registry in registries]
    try:
        for name, factory in (models or {}).items():
            register_model(name, factory)
        for name, data in (datasets or {}).items():
            register_dataset(name, data)
        yield
    except BaseException:
        for registry, content in zip(registries, saved):
            registry.clear()
            registry.update(content)
        raise


def _run(experiment, args: argparse.Namespace, quick: bool, seeds: int | None) -> dict[str, Any]:
    """:func:`run` once its options are checked and its models and datasets registered."""
    from runs import experiment as command
    from runs.catalog import find_experiment
    from runs.load import as_toml_values, load_experiment, parse_experiment, resolve

    options = {"quick": quick, "seeds": seeds, "data_dir": args.data_dir}
    if isinstance(experiment, Experiment):
        load = functools.partial(resolve, experiment, **options)
        args.command = f"runs.run(<Experiment {experiment.name!r}>)"
    elif isinstance(experiment, Mapping):
        raw = as_toml_values(experiment)
        load = functools.partial(parse_experiment, raw, "<experiment dict>", **options)
        args.command = "runs.run(<experiment dict>)"
    else:
        args.experiment = os.fspath(experiment)
        if find_experiment(args.experiment).suffix != ".toml":
            raise ValueError(
                f"{args.experiment!r} is not a training experiment; run it with `stepsize run`"
            )
        load = functools.partial(load_experiment, args.experiment, **options)
        args.command = f"runs.run({args.experiment!r})"
    root = command.run_experiment(args, load)
    return json.loads((root / "summary.json").read_text(encoding="utf-8"))
