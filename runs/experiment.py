"""``stepsize run``: run an experiment's variants x seeds, then write its table and figures.

Order of work: check the options (``--device``, ``--logdir``, ``--backend``), read and validate
the experiment (all problems reported together; ``[fallback]`` applies only when no ``--data-dir``
was given), load its datasets and build each variant's model once (missing files and bad model
options are reported before anything is written); with ``--backend ray``, connect to Ray
(``runs.parallel.ray_session``: a malformed or unreachable ``--address`` and a ``--threads`` that
no node has are refused here); take the experiment folder's lock and check its
existing run folders (a changed configuration, an unfinished run trained under other
``--threads`` or another ``--device`` type, an unreadable checkpoint or result; with a
``[search]`` whose choice is not on disk yet, an existing comparison run that is at none of its
variant's grid rates). Then the stages of ``runs.tuning`` run: the ``[range_test]`` (its numbers
replace the ``"$NAME"`` references, and the file is validated again with them) and the
``[search]`` of each variant's learning rate (its runs train under ``_search/``, each run folder
checked like any other). Then check that existing run folders hold the configuration the stages
decided; only once that passed is the folder's record written: ``experiment.json``, the
TensorBoard layout and HParams configuration, ``range_test.json`` and its figure, and
``search.json`` (so a refused command leaves them as they were, never describing a configuration
its runs did not use). Then train every run that has not finished (finished runs are read back,
interrupted ones resume from their checkpoint), and write ``summary.json``, ``summary.md`` and the
figures. Experiments that are not training runs (Python modules, ``runs.study``) are computed and
reported in one go.

Output: ``<logdir>/<experiment>/`` (``<experiment>-quick`` with ``--quick``, so a quick run never
resumes into a full one), with one folder per run, ``<variant>/seed<k>/``, and the search runs
under ``_search/``. The ``wall_time_s`` of ``experiment.json`` (and of ``summary.json``) is the
experiment's: the wall time of every command that trained something in the folder, summed
(:func:`recorded_wall_time`); a command that finds everything finished adds nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runs import checkpoint as ckpt
from runs import tuning
from runs.build import optimizer_class
from runs.catalog import DEFAULT_EXPERIMENT, find_experiment
from runs.checks import MAX_JOBS, MAX_THREADS, check_positive_int, check_seeds
from runs.load import load_experiment
from runs.spec import Experiment, Variant
from schedulers.driver import KEY_ALIASES

if TYPE_CHECKING:  # (torch and the data are imported where a run needs them)
    import torch

    from runs.data import DatasetSplits

DEFAULT_LOGDIR = "stepsize-logs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "experiment",
        nargs="?",
        default=DEFAULT_EXPERIMENT,
        metavar="NAME|PATH.toml",
        help=f"bundled experiment (`stepsize list`) or TOML file (default: {DEFAULT_EXPERIMENT})",
    )
    parser.add_argument("--quick", action="store_true", help="the experiment's [quick] settings")
    parser.add_argument("--seeds", type=int, metavar="N", help="run seeds 0..N-1")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="runs at once: worker processes, or Ray tasks with --backend ray (default 1)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="T",
        help="torch threads per run (default 1); the numbers depend on it, not on --jobs",
    )
    parser.add_argument(
        "--logdir", default=DEFAULT_LOGDIR, help=f"output root (default {DEFAULT_LOGDIR})"
    )
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--variants", metavar="A,B", help="only these variants (comma-separated)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--backend",
        choices=parallel_backends(),
        default="process",
        help="process: --jobs worker processes (default); ray: each run a Ray task "
        "(pip install 'stepsize[ray]')",
    )
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="with --backend ray: the Ray cluster to use, HOST:PORT, ray://HOST:PORT or auto "
        "(default: the cluster RAY_ADDRESS names, else a local instance); the --logdir must then "
        "be on a file system every node shares; --jobs runs train at a time",
    )


def option_name(args: argparse.Namespace, name: str, value: Any = None) -> str:
    """Option ``name`` (with ``value``) as the caller wrote it, for a message: ``--data-dir``,
    ``--backend ray`` on the command line; ``data_dir``, ``backend='ray'`` from Python
    (``runs.run`` sets ``args.python``)."""
    if getattr(args, "python", False):
        return name if value is None else f"{name}={value!r}"
    flag = "--" + name.replace("_", "-")
    return flag if value is None else f"{flag} {value}"


def parallel_backends() -> tuple[str, ...]:
    from runs.parallel import BACKENDS

    return BACKENDS


def run_study_command(args: argparse.Namespace) -> int:
    """``stepsize run`` of an experiment that is not a training run (``runs.study``)."""
    from runs.study import load_study, run_study

    load_study(args.experiment)  # (the seeds were checked with the other options)
    for name in ("variants", "data_dir", "address"):
        if getattr(args, name):
            raise ValueError(f"{option_name(args, name)} does not apply to {args.experiment}")
    if args.jobs != 1:  # (a study computes in this process: --threads sets its torch threads)
        raise ValueError(f"{option_name(args, 'jobs')} does not apply to {args.experiment}")
    if args.backend != "process":
        raise ValueError(
            f"{option_name(args, 'backend', args.backend)} does not apply to {args.experiment}"
        )
    folder = Path(args.logdir) / (args.experiment + ("-quick" if args.quick else ""))
    ckpt.check_writable_folder(folder, option_name(args, "logdir"))
    with ckpt.folder_lock(folder, option_name(args, "logdir")):
        root = run_study(
            args.experiment, quick=args.quick, seeds=args.seeds, logdir=args.logdir,
            threads=args.threads,
        )  # fmt: skip
    print((root / "summary.md").read_text())
    print(f"results: {root / 'summary.md'}, {root / 'summary.json'}, figures in {root / 'figures'}")
    return 0


def select_variants(
    experiment: Experiment, names: str | None, option: str = "--variants"
) -> Experiment:
    """The experiment restricted to the comma-separated variant ``names`` (None: every variant).

    Raises:
        ValueError: naming ``option``, when ``names`` names no variant or an unknown one.
    """
    if names is None:
        return experiment
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = [v.name for v in experiment.variants]
    if not wanted:
        raise ValueError(
            f"{option}: no variant named in {names!r}; {experiment.name} has: {', '.join(known)}"
        )
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(
            f"{option}: unknown variant(s) {', '.join(unknown)}; "
            f"{experiment.name} has: {', '.join(known)}"
        )
    chosen = tuple(v for v in experiment.variants if v.name in wanted)
    return dataclasses.replace(experiment, variants=chosen)


def model_problem(variant: Variant, input_shape: tuple[int, ...], num_classes: int) -> str | None:
    """What is wrong with building ``variant``'s model for these shapes, or None
    (``runs.models.build_problem``, named by the variant)."""
    from runs.models import build_problem

    problem = build_problem(variant.model.name, input_shape, num_classes, variant.model.options)
    return None if problem is None else f"variant {variant.name!r}, model: {problem}"


PREFLIGHT_EXAMPLES = 2  # the examples of the preflight's forward pass


def training_problem(variant: Variant, data: DatasetSplits, *, update: bool = True) -> str | None:
    """What stops ``variant`` from training on ``data``, found before anything is written, or None.

    On models built here for the check (twice, on the CPU, inside ``torch.random.fork_rng``: the
    runs' random streams and numbers are not changed), it checks: that the factory returns a new
    model at each call (one shared instance would make the seeds share weights), whose
    parameters and buffers share no storage with the other build's (:func:`shared_problem`: a
    module closed over by the factory would be trained in place by every run); one forward pass
    on the first ``PREFLIGHT_EXAMPLES`` training examples in eval mode without gradients, whose
    output must be ``(batch, num_classes)`` floating-point logits (the cross-entropy's input); that
    the model has trainable parameters; that the optimizer and schedules build on them; one
    training step's forward, loss and backward pass in train mode (:func:`training_step_error`:
    a detached output, a model failing only in train mode); one update of the optimizer, as the
    runner makes it (:func:`update_error`: a hyperparameter the update cannot apply, such as an
    ``lr`` beyond the range of the parameters' dtype, ``1e308`` for float32; only with
    ``update``, which the command gives for runs on the CPU, where this check's update is the
    runs' own: an optimizer may need the device the runs use, CUDA for ``capturable=True`` or a
    CUDA-only class, and is not stepped on the CPU for them); and, when
    an epoch ends with a mini-batch of one example, a train-mode forward pass on one example (it
    fails for BatchNorm over a single value per channel). Before any model is built, the budget:
    ``epochs`` times the updates of an epoch at most :data:`runs.checks.MAX_UPDATES`.
    """
    import torch

    from runs.batches import batches_per_epoch
    from runs.build import attach_schedules, make_optimizer
    from runs.checks import MAX_UPDATES
    from runs.models import build_model

    where = f"variant {variant.name!r}"
    n, size = len(data.train_x), variant.train.batch_size
    per_epoch = batches_per_epoch(n, size)
    steps = variant.train.steps or variant.train.epochs * per_epoch
    if steps > MAX_UPDATES:  # (steps alone is bounded with the file: runs.load)
        return (
            f"{where}, train: epochs = {variant.train.epochs} of {per_epoch} updates each "
            f"({n} training examples, batch_size {size}) make {steps} updates; allowed: at most "
            f"{MAX_UPDATES} (runs.checks.MAX_UPDATES: a larger budget would run for months)"
        )
    build = functools.partial(
        build_model, variant.model.name, data.input_shape, data.num_classes,
        **variant.model.options,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model, again = build(), build()
        except Exception as err:  # a user's factory may raise anything
            return f"{where}, model: {type(err).__name__}: {err}"
        if model is again:
            return (
                f"{where}, model {variant.model.name!r}: its factory returned the same "
                f"{type(model).__name__} object twice; it must build a new model at each call "
                "(every seed and run trains its own weights), e.g. return Net(...) inside it"
            )
        if (problem := shared_problem(variant, model, again)) is not None:
            return problem
        batch = data.train_x[:PREFLIGHT_EXAMPLES]
        shape = (len(batch), data.num_classes)
        model.eval()
        try:
            with torch.no_grad():
                logits = model(batch)
        except Exception as err:
            return (
                f"{where}, model {variant.model.name!r}: a forward pass on {len(batch)} training "
                f"examples of shape {tuple(data.input_shape)} (input {tuple(batch.shape)}) "
                f"failed: {type(err).__name__}: {err}"
            )
        if (problem := shared_problem(variant, model, again)) is not None:
            return problem  # (a lazy module shared by both, materialised by the forward pass)
        if not isinstance(logits, torch.Tensor):
            return (
                f"{where}, model {variant.model.name!r}: its output must be a tensor of logits "
                f"of shape (batch, num_classes) = {shape}, got {type(logits).__name__}"
            )
        if tuple(logits.shape) != shape or not logits.dtype.is_floating_point:
            return (
                f"{where}, model {variant.model.name!r}: its output must be floating-point "
                f"logits of shape (batch, num_classes) = {shape} for {variant.train.loss}, got "
                f"shape {tuple(logits.shape)} and dtype {logits.dtype}"
            )
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            return (
                f"{where}, model {variant.model.name!r}: it has no trainable parameters "
                "(none with requires_grad=True); the optimizer would have nothing to train"
            )
        try:
            optimizer = make_optimizer(variant.optimizer, params)
            attach_schedules(optimizer, variant.schedules)
        except Exception as err:
            return f"{where}, optimizer {variant.optimizer.name!r}: {type(err).__name__}: {err}"
        failed = training_step_error(model, batch, data.train_y[:PREFLIGHT_EXAMPLES])
        if failed is not None:
            return (
                f"{where}, model {variant.model.name!r}: a training step (a train-mode forward "
                f"pass, the {variant.train.loss} loss and its backward pass on {len(batch)} "
                f"training examples) failed: {type(failed).__name__}: {failed}"
            )
        labels = data.train_y[:PREFLIGHT_EXAMPLES]
        # (capturable=True: CUDA graphs' step counters, which torch.optim's update refuses on
        # the CPU this check runs on; such an optimizer is not stepped here)
        capturable = any(group.get("capturable") for group in optimizer.param_groups)
        stepped = update and not capturable
        failed = update_error(model, optimizer, batch, labels) if stepped else None
        if failed is not None:
            dtype = str(params[0].dtype).removeprefix("torch.")
            hint = (
                f"; the parameters are {dtype}, whose largest value is "
                f"{torch.finfo(params[0].dtype).max:.6g}: a hyperparameter beyond it (such as "
                "lr) cannot be applied to them"
                if "overflow" in str(failed) and params[0].dtype.is_floating_point
                else ""
            )
            return (
                f"{where}, optimizer {variant.optimizer.name!r}: one update (optimizer.step on "
                f"{len(batch)} training examples) failed: {type(failed).__name__}: {failed}{hint}"
            )
        if n % size == 1 and steps >= per_epoch:
            model.train()
            try:
                with torch.no_grad():
                    model(data.train_x[:1])
            except Exception as err:
                return (
                    f"{where}, model {variant.model.name!r}: the last mini-batch of each epoch "
                    f"has 1 example ({n} training examples, batch_size {size}), and the model "
                    f"fails in train mode on one example ({type(err).__name__}: {err}); "
                    "BatchNorm needs more than one value per channel: choose a batch_size that "
                    "does not leave one example over"
                )
    return None


@contextlib.contextmanager
def _model_restored(model) -> Iterator[None]:
    """Puts ``model`` back as it was after the ``with`` block, however it ends: its parameters
    and buffers (BatchNorm's running statistics) copied back, its gradients and its mode; the
    gradients are None inside the block (a backward pass would accumulate into the caller's)."""
    import torch

    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    saved = [t.detach().clone() for t in tensors]
    grads = [(p, p.grad) for p in model.parameters()]
    training = model.training
    for p, _ in grads:
        p.grad = None
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, value in zip(tensors, saved):
                tensor.copy_(value)
        for p, grad in grads:
            p.grad = grad
        model.train(training)


def update_error(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> Exception | None:
    """What one update of ``optimizer`` raises, or None: a train-mode forward pass and loss
    (``runs.trainer.mini_batch_loss``), its backward pass and ``optimizer.step(closure)``, as the
    runner makes it (the closure's first call returns that loss, a later one evaluates the loss
    again at the current parameters). The model is put back afterwards
    (:func:`_model_restored`); the optimizer, built for the check, is meant to be discarded (its
    state has changed); the caller forks the random state (dropout's draws)."""
    from runs.trainer import mini_batch_loss

    calls = 0

    def closure():
        nonlocal calls
        calls += 1
        if calls == 1:
            return loss
        optimizer.zero_grad(set_to_none=True)
        again = mini_batch_loss(model, x, y, 1)
        again.backward()
        return again

    with _model_restored(model):
        try:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss = mini_batch_loss(model, x, y, 1)
            loss.backward()
            optimizer.step(closure)
        except Exception as err:  # a user's optimizer may raise anything
            return err
    return None


def shared_problem(variant: Variant, model: torch.nn.Module, again: torch.nn.Module) -> str | None:
    """The refusal of a factory whose two builds ``model`` and ``again`` share the storage of a
    parameter or buffer (a pretrained backbone closed over by the factory, a module-level
    tensor registered as a buffer), naming the factory and the first shared tensor, or None.
    Every run would train that one tensor in place: the runs would not start from the same
    weights (seed 1 would start where seed 0 ended), the numbers would depend on the order of
    the runs and on ``jobs``, and the caller's module would be changed. Tensors without storage
    (a lazy module's parameter before its first forward pass, an empty buffer) are not compared.
    """
    from torch.nn.parameter import is_lazy

    from runs.models import registered_models

    def storages(module) -> dict[int, str]:
        named = itertools.chain(
            (("parameter", n, t) for n, t in module.named_parameters(remove_duplicate=False)),
            (("buffer", n, t) for n, t in module.named_buffers(remove_duplicate=False)),
        )
        out: dict[int, str] = {}
        for kind, name, tensor in named:
            if is_lazy(tensor):
                continue
            storage = tensor.untyped_storage()
            if storage.nbytes() > 0:
                out.setdefault(storage.data_ptr(), f"{kind} {name!r}")
        return out

    others = storages(again)
    shared = next((what for ptr, what in storages(model).items() if ptr in others), None)
    if shared is None:
        return None
    factory = registered_models().get(variant.model.name)
    called = getattr(factory, "__qualname__", None) or repr(factory)
    return (
        f"variant {variant.name!r}, model {variant.model.name!r}: two models built by its "
        f"factory {called} share the storage of {shared}, so every seed and run would train "
        "that one tensor in place (they would not start from the same weights, and the module "
        "you passed in would be changed); build fresh modules inside the factory, or copy a "
        "shared one there: copy.deepcopy(backbone) (tensor.clone() for a tensor)"
    )


def training_step_error(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> Exception | None:
    """What one train-mode forward pass, loss (``runs.trainer.mini_batch_loss``) and backward pass
    of ``model`` on ``x``, ``y`` raises, or None. The model is left as it was
    (:func:`_model_restored`: parameters, buffers such as BatchNorm's running statistics,
    gradients and mode), so a module its factory shares between models is not changed either;
    the caller forks the random state (dropout's draws)."""
    from runs.trainer import mini_batch_loss

    with _model_restored(model):
        try:
            model.train()
            mini_batch_loss(model, x, y, 1).backward()
        except Exception as err:  # a user's model may raise anything
            return err
    return None


def preflight(experiment: Experiment, data_dir: str | None, device: str = "cpu") -> None:
    """Builds every variant's model once and loads every dataset, so that bad model options and
    missing files stop the command before anything is written. Models whose dataset's shape is
    known beforehand (``runs.data.known_shape``) are built first, before any dataset is
    generated (and cached) or read. Then every variant is checked on its data
    (:func:`training_problem`: a forward pass, the output's shape, the optimizer; and
    :func:`cadence_problem`: a reduce-on-plateau on the epoch clock needs an evaluation at every
    epoch end); and every variant's fingerprint is computed once (:func:`fingerprint_problem`).
    The checks run on the CPU; the optimizer's update is checked only when the runs' ``device``
    is the CPU too (``training_problem(..., update=...)``)."""
    from runs.data import known_shape
    from runs.parallel import dataset_on

    problems = []
    for variant in experiment.variants:
        known = known_shape(variant.dataset.name)
        if known is not None and (problem := model_problem(variant, *known)) is not None:
            problems.append(problem)
    if not problems:
        for variant in experiment.variants:
            data = dataset_on(variant.dataset.to_table(), data_dir, "cpu")
            problem = None
            if known_shape(variant.dataset.name) is None:
                problem = model_problem(variant, data.input_shape, data.num_classes)
            if problem is None:
                on_cpu = device == "cpu" or device.startswith("cpu:")
                problem = training_problem(variant, data, update=on_cpu)
            if problem is None:
                problem = cadence_problem(experiment, variant, len(data.train_x))
            if problem is None:
                problem = fingerprint_problem(variant, experiment.seeds)
            if problem is not None:
                problems.append(problem)
    if problems:
        raise ValueError(f"{experiment.source}: " + "; ".join(problems))


def fingerprint_problem(variant: Variant, seeds: Sequence[int] | int) -> str | None:
    """What stops ``variant``'s fingerprint from being computed (it builds a registered model
    to describe it: ``runs.models.registered_model_digest``), or None; computed here once, so
    that it fails before anything is written rather than at a run's first checkpoint (and is
    cached for the runs)."""
    seed = 0 if isinstance(seeds, int) or not seeds else seeds[0]  # (a count N: seeds 0..N-1)
    try:
        variant.fingerprint(seed)
    except Exception as err:  # a user's factory may raise anything
        return (
            f"variant {variant.name!r}, model {variant.model.name!r}: describing the model for "
            f"the run's fingerprint failed: {type(err).__name__}: {err}"
        )
    return None


def cadence_problem(experiment: Experiment, variant: Variant, num_examples: int) -> str | None:
    """``runs.trainer.plateau_cadence_problem`` of ``variant`` and of its search runs (their
    ``[search] train`` may set another ``eval_every``, ``batch_size`` or clock), or None."""
    from runs.trainer import plateau_cadence_problem

    problem = plateau_cadence_problem(variant, num_examples)
    search = experiment.search
    grid = (search.grids or {}).get(variant.name) if search is not None else None
    if problem is None and search is not None and grid:
        candidate = tuning.search_variant(variant, grid[0], search.train)
        problem = plateau_cadence_problem(candidate, num_examples)
        if problem is not None:
            problem = f"its [search] runs: {problem}"
    return problem


def check_device(device: str, option: str = "--device") -> None:
    """Raises ``ValueError`` naming ``option`` unless ``device`` is one this machine has:
    ``cpu``, ``cuda`` / ``cuda:N`` with CUDA available and N below the device count, or ``mps``
    where available."""
    import torch

    allowed = "cpu, cuda or cuda:N"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{option}: unknown device {device!r}; use {allowed}") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{option} {device}: CUDA is not available here (torch {torch.__version__}); "
                "use cpu"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"{option} {device}: this machine has {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}"
            )
        return
    if parsed.type == "mps" and torch.backends.mps.is_available():
        return
    raise ValueError(f"{option}: {device!r} is not available here; use {allowed}")


DATA_DIR_HELP = (
    "an existing folder holding MNIST / Fashion-MNIST / CIFAR-10 files (refused for variants "
    "that read none: MNIST-1D is generated)"
)


def check_data_dir(data_dir: str, option: str = "--data-dir") -> None:
    """Raises ``ValueError`` naming ``option`` unless ``data_dir`` is an existing folder: an
    empty path is refused (it is not the current folder by accident, as an empty ``--logdir`` is
    not), and so are a file and a path that does not exist (the dataset files are read from
    there: a slip is said now, not as files missing, or not at all for a dataset that reads
    none)."""
    if not data_dir.strip():
        raise ValueError(f"{option}: an empty path {data_dir!r}; give a folder")
    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{option} {data_dir!r} is a file, not a folder; give the folder holding the "
            "dataset files"
        )
    if not path.is_dir():
        raise ValueError(
            f"{option} {data_dir!r} does not exist; give the folder holding the dataset files"
        )


def reads_data_dir(dataset: str) -> bool:
    """Whether dataset ``dataset`` is read from files in a data folder (MNIST, Fashion-MNIST,
    CIFAR-10), not generated (MNIST-1D) or registered from Python (``runs.register_dataset``)."""
    from runs.data import DATASETS, registered_datasets

    return dataset in DATASETS and dataset != "mnist1d" and dataset not in registered_datasets()


def check_data_dir_applies(
    name: str, datasets: Sequence[str], data_dir: str | None, option: str
) -> None:
    """Raises ``ValueError`` naming ``option`` when ``data_dir`` is given but none of the
    ``datasets`` of experiment ``name`` (those of the variants that run) is read from files
    (:func:`reads_data_dir`): the option would be ignored silently."""
    if data_dir is None or any(reads_data_dir(dataset) for dataset in datasets):
        return
    raise ValueError(
        f"{option} does not apply to {name}: its dataset ({', '.join(sorted(set(datasets)))}) "
        f"is not read from files (MNIST-1D is generated); leave {option} out"
    )


def check_options(args: argparse.Namespace) -> None:
    """The checks of the options that need no experiment (nothing is written yet), each refusal
    naming the option as the caller wrote it (:func:`option_name`)."""
    for name, maximum in (("jobs", MAX_JOBS), ("threads", MAX_THREADS)):
        check_positive_int(option_name(args, name), getattr(args, name), maximum)
    check_seeds(getattr(args, "seeds", None), option_name(args, "seeds"))
    if getattr(args, "data_dir", None) is not None:
        check_data_dir(args.data_dir, option_name(args, "data_dir"))
    backend = getattr(args, "backend", "process")
    address = getattr(args, "address", None)
    if address is not None and backend != "ray":  # (the empty string too)
        raise ValueError(
            f"{option_name(args, 'address')} needs {option_name(args, 'backend', 'ray')}"
        )
    if backend == "ray":
        from runs.parallel import check_address, import_ray

        if address is not None:
            check_address(address, option_name(args, "address"))
        import_ray(option_name(args, "backend", "ray"))
    check_device(args.device, option_name(args, "device"))
    ckpt.check_writable_folder(args.logdir, option_name(args, "logdir"))


def final_tasks(experiment: Experiment, root: Path) -> list:
    """Every run of the comparison: each variant x seed, in that order."""
    from runs import parallel

    return [
        parallel.Task(variant, seed, parallel.run_dir_of(root, variant.name, seed))
        for variant in experiment.variants
        for seed in experiment.seeds
    ]


def with_chosen_rates(experiment: Experiment, chosen: dict[str, float]) -> Experiment:
    """The experiment with each searched variant's learning rate replaced by the search's
    choice (a variant whose optimizer takes no lr is not searched)."""
    variants = tuple(
        dataclasses.replace(v, optimizer=v.optimizer.with_values(lr=chosen[v.name]))
        if v.name in chosen
        else v
        for v in experiment.variants
    )
    return dataclasses.replace(experiment, variants=variants)


def check_writable_paths(experiment: Experiment, root: Path, option: str = "--logdir") -> None:
    """Raises ``ValueError`` naming ``option`` unless every folder the experiment will write
    (its own, ``figures``, each run's and each search run's) is, or can be made as, a writable
    folder, and no file it will write (the figures included) is a folder: checked before
    anything is written."""
    from runs.figures import check_figure_files

    files = ["experiment.json", "summary.json", "summary.md", tuning.RANGE_TEST_FILE]
    files.append(tuning.SEARCH_FILE)
    for name in files:
        if (root / name).is_dir():
            raise ValueError(f"{option}: {str(root / name)!r} is a folder, not a file; remove it")
    check_figure_files(root / "figures", option)
    folders = [root / "figures", *(Path(task.run_dir) for task in final_tasks(experiment, root))]
    if experiment.search is not None:
        rows = tuning.search_tasks(experiment, root).values()
        folders += [Path(task.run_dir) for pairs in rows for _, task in pairs]
    for folder in folders:
        ckpt.check_writable_folder(folder, option)


def check_candidates(experiment: Experiment, root: Path, option: str = "--logdir") -> None:
    """Before a search whose choice is not on disk yet: refuses an existing comparison run that
    holds none of the configurations the search can choose for its variant (the variant at any
    rate of its grid; a variant that is not searched, as it is), naming ``option``."""
    from runs import parallel

    search = experiment.search
    assert search is not None
    assert search.grids is not None
    for variant in experiment.variants:
        rates = search.grids.get(variant.name)
        candidates = [
            dataclasses.replace(variant, optimizer=variant.optimizer.with_values(lr=lr))
            for lr in rates or ()
        ] or [variant]
        for seed in experiment.seeds:
            run_dir = parallel.run_dir_of(root, variant.name, seed)
            result = ckpt.load_result(run_dir)
            state = None if result else ckpt.load_checkpoint(run_dir)
            found = (result or state or {}).get("fingerprint")
            if found is not None and found not in {c.fingerprint(seed) for c in candidates}:
                what = "at none of the rates of its [search] grid" if rates else "as configured"
                raise ValueError(
                    f"{run_dir} holds a run of another configuration of {variant.name!r} "
                    f"(model {variant.model.name!r}, dataset {variant.dataset.name!r}): it is "
                    f"{what} (the grid, another setting or the seed differs); delete that "
                    f"folder or choose another {option}"
                )


def check_folder(
    experiment: Experiment, root: Path, load: Callable[..., Experiment], args: argparse.Namespace
) -> dict | None:
    """Every check of the existing run folders that can be made before anything is written.

    The search's runs are always checked. The comparison's runs are checked when their
    configuration is known already: without a range test or search, or when the saved range
    test and finished search runs decide it (read from disk, not recomputed; a finished search
    whose every rate of a variant diverged is refused here). When only the search's choice is
    unknown, a comparison run at none of its grid's rates is refused (:func:`check_candidates`).
    Returns what :func:`~runs.tuning.check_task_dirs` returns for the comparison's runs, or None
    when they can only be checked after the stages ran."""
    if experiment.range_test is not None:
        derived = tuning.saved_range_test(experiment, root)
        if derived is None:
            return None
        experiment = select_variants(
            load(derived=derived), args.variants, option_name(args, "variants")
        )
    logdir, session = option_name(args, "logdir"), session_of(args)
    if experiment.search is not None:
        pairs = tuning.search_tasks(experiment, root).values()
        check_task_dirs([task for rows in pairs for _, task in rows], logdir, session)
        chosen = tuning.saved_choice(experiment, root)
        if chosen is None:
            check_candidates(experiment, root, logdir)
            return None
        experiment = with_chosen_rates(experiment, chosen)
    return check_task_dirs(final_tasks(experiment, root), logdir, session)


def check_task_dirs(tasks: Sequence[Any], option: str, session: tuning.Session) -> dict[str, int]:
    """``runs.tuning.check_task_dirs``, after :func:`check_earlier_fingerprints`."""
    check_earlier_fingerprints(tasks, option)
    return tuning.check_task_dirs(tasks, option, session)


def check_earlier_fingerprints(tasks: Sequence[Any], option: str = "--logdir") -> None:
    """Refuses, saying why, a run folder whose result or checkpoint holds the fingerprint an
    earlier stepsize gave the same run (``Variant.legacy_fingerprint``: before a registered
    model's initial values and the per-feature standardisation of registered vectors were part
    of it), rather than as a run of another configuration; and, saying why, a folder holding
    another fingerprint for a registered model whose factory builds other initial values at
    the same seed (``runs.models.registered_model_is_reproducible``: its fingerprint changes at
    every command). Only runs of a registered model or dataset are read (the others'
    fingerprints did not change)."""
    earlier = []
    for task in tasks:
        legacy = task.variant.legacy_fingerprint(task.seed)
        if legacy is None:
            continue
        result = ckpt.load_result(task.run_dir)
        state = None if result else ckpt.load_checkpoint(task.run_dir)
        found = (result or state or {}).get("fingerprint")
        current = task.variant.fingerprint(task.seed)
        if found not in (None, legacy, current) and not _reproducible_model(task.variant):
            model = task.variant.model.name
            raise ValueError(
                f"{task.run_dir} holds a run of {task.variant.name!r} that cannot be told apart "
                f"from another configuration: model {model!r}'s factory builds other initial "
                "weights at every call with the same seed (randomness torch.manual_seed does not "
                "set, such as an unseeded np.random.default_rng() or os.urandom), so its "
                "fingerprint changes at every command; draw from torch's generator in the "
                "factory (or seed yours from torch.initial_seed()), then delete that folder or "
                f"choose another {option}"
            )
        if found == legacy:
            earlier.append(task)
    if earlier:  # (every such folder at once: they are deleted together)
        first = earlier[0]
        listed = ", ".join(str(task.run_dir) for task in earlier[:3])
        more = f" and {len(earlier) - 3} more" if len(earlier) > 3 else ""
        raise ValueError(
            f"{len(earlier)} run folder(s) of this experiment ({listed}{more}; first: "
            f"{first.variant.name!r}, model {first.variant.model.name!r}, dataset "
            f"{first.variant.dataset.name!r}) hold runs written by an earlier version of "
            "stepsize, whose fingerprint did not cover a registered model's initial weights "
            "(nor standardised a registered dataset's vectors per feature), so it cannot tell "
            f"whether those runs are these; delete them or choose another {option}"
        )


def _reproducible_model(variant: Variant) -> bool:
    """``runs.models.registered_model_is_reproducible`` for ``variant``'s model on its data."""
    from runs.data import known_shape
    from runs.models import registered_model_is_reproducible

    shape = known_shape(variant.dataset.name)
    if shape is None:
        return True
    return registered_model_is_reproducible(variant.model.name, *shape, variant.model.options)


def session_of(args: argparse.Namespace) -> tuning.Session:
    """This command's threads and device type, which an unfinished run must have been trained
    with to resume (``runs.tuning.session_problem``), named as the caller wrote the options."""
    import torch

    device = torch.device(args.device).type  # (checked by check_device)
    return tuning.Session(args.threads, device, functools.partial(option_name, args))


def run(args: argparse.Namespace) -> int:
    check_options(args)
    if find_experiment(args.experiment).suffix == ".py":
        return run_study_command(args)
    load = functools.partial(
        load_experiment, args.experiment, quick=args.quick, seeds=args.seeds, data_dir=args.data_dir
    )
    run_experiment(args, load)
    return 0


def run_experiment(args: argparse.Namespace, load: Callable[..., Experiment]) -> Path:
    """Everything ``stepsize run`` does for a training experiment once its options are checked:
    ``load(derived=None)`` gives the validated :class:`Experiment` (from a TOML file, or from a
    dict for ``runs.run``). Returns the experiment's folder."""
    from runs import parallel
    from runs.models import forget_model_digests

    started = time.perf_counter()
    logdir = option_name(args, "logdir")
    forget_model_digests()  # (a factory may build another model than at the last command)
    experiment = select_variants(load(), args.variants, option_name(args, "variants"))
    datasets = [v.dataset.name for v in experiment.variants]
    check_data_dir_applies(experiment.name, datasets, args.data_dir, option_name(args, "data_dir"))
    preflight(experiment, args.data_dir, args.device)
    root = Path(args.logdir) / (experiment.name + ("-quick" if args.quick else ""))
    ckpt.check_writable_folder(root, logdir)
    check_writable_paths(experiment, root, logdir)

    registered = parallel.registered_for(experiment.variants)
    if args.backend == "ray":  # (sent to the Ray tasks whatever --jobs is)
        ray_option = option_name(args, "backend", "ray")
        parallel.check_picklable(registered, ray_option, backend="ray")
    elif args.jobs > 1:
        parallel.check_picklable(registered, option_name(args, "jobs", args.jobs))

    dist = parallel.init_distributed(args.device)
    device = args.device
    if dist is not None and device.startswith("cuda"):
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    if dist is not None and (args.jobs != 1 or args.backend != "process"):
        jobs, backend = option_name(args, "jobs", 1), option_name(args, "backend", "process")
        raise ValueError(f"torchrun needs {jobs} and {backend} (each rank trains every run)")
    rank0 = dist is None or dist.rank == 0
    # Only rank 0 writes; it holds the folder's lock for the whole command.
    lock = ckpt.folder_lock(root, logdir) if rank0 else contextlib.nullcontext()
    ray = contextlib.nullcontext()
    if args.backend == "ray":  # connected (and --threads checked) before anything is written
        name = functools.partial(option_name, args)
        ray = parallel.ray_session(args.address, jobs=args.jobs, threads=args.threads, name=name)
    with ray, lock:
        resumed = check_folder(experiment, root, load, args)
        settings = parallel.Settings(
            data_dir=args.data_dir, device=device, threads=args.threads, quiet=args.quiet,
            backend=args.backend, address=args.address,
            registered=registered,
        )  # fmt: skip
        _run_checked(args, experiment, root, load, settings, dist, resumed, started)
    # (every rank returns after rank 0 wrote the report, which runs.run reads on every rank)
    parallel.barrier(dist)
    return root


def _run_checked(args, experiment, root, load, settings, dist, resumed, started) -> int:
    """The writing part of ``stepsize run``, once every check passed and the lock is held."""
    from runs import parallel, tensorboard
    from runs.results import software_versions
    from runs.summary import write_report

    rank0 = dist is None or dist.rank == 0
    if rank0 and experiment.fallback_used:
        print(
            f"{experiment.name}: no {option_name(args, 'data_dir')} given, so the [fallback] runs: "
            f"{experiment.variants[0].dataset.name}, "
            f"{experiment.variants[0].model.name}"
        )
    meta: dict[str, Any] = {}
    if rank0:  # (written once the stages ran and the comparison's folders are accepted)
        if getattr(args, "python", False):  # (runs.run: the call, as runs.api records it)
            command = args.command
        else:  # the command line as given to runs.cli.main (argv), else this process's
            command = shlex.join(["stepsize", *getattr(args, "argv", sys.argv[1:])])
        meta = {**experiment.to_dict(), "command": command, "threads": args.threads}
        meta["jobs"] = args.jobs
        meta["backend"] = args.backend
        meta["world_size"] = dist.world_size if dist else 1
        # What the README's Results refuse (runs.readme: full runs only): --quick, --variants.
        meta["quick"] = bool(args.quick)
        ran = {v.name for v in experiment.variants}
        meta["variants_left_out"] = [v.name for v in load().variants if v.name not in ran]
        meta["software"] = software_versions()  # (this machine's: a later report keeps them)
        if (earlier := recorded_wall_time(root)) is not None:
            meta["wall_time_s"] = earlier  # (this command adds its own time at the end)

    trained = False  # whether this command trains anything (its time then counts)
    range_test = None  # a range test computed now, written once the checks passed
    search_record = None
    if experiment.range_test is not None:
        derived = tuning.saved_range_test(experiment, root)
        if derived is None:
            trained = True
            with parallel.torch_threads(settings.threads):  # (as the runs: numbers depend on it)
                range_test = tuning.compute_range_test(
                    experiment, args.data_dir, settings.device, quiet=args.quiet or not rank0
                )
            derived = range_test.values
        elif rank0 and (note := tuning.earlier_rules_note(root)) is not None:
            print(note)
        experiment = select_variants(
            load(derived=derived), args.variants, option_name(args, "variants")
        )
        if rank0:
            print(
                f"LR range test on {experiment.range_test.variant}: "
                + ", ".join(
                    f"{name} = {value:.4g}" for name, value in derived.items() if value is not None
                )
            )
    # the HParams columns' types, before any run logs its session (the search's runs too)
    types = tensorboard.hparam_types(
        tensorboard.flat_hparams(v.to_dict(), seed=0)
        for v in session_variants(load(), experiment, root)
    )
    settings = dataclasses.replace(settings, hparam_types=types)
    if experiment.search is not None:

        def search_tasks(tasks) -> None:
            nonlocal trained
            trained = True  # (called with the search runs not finished yet, when there are any)
            if rank0:
                print(f"learning-rate search: {len(tasks)} runs of one seed")
            parallel.run_all(
                tasks,
                dataclasses.replace(settings, quiet=args.quiet or not rank0),
                jobs=args.jobs,
                dist=dist,
                progress="learning-rate search",
            )

        chosen, search_record = tuning.run_search(
            experiment, root, search_tasks, option_name(args, "logdir"), session_of(args)
        )
        experiment = with_chosen_rates(experiment, chosen)
        if rank0:
            print("chosen learning rates: " + ", ".join(f"{k} {v:g}" for k, v in chosen.items()))
            for line in tuning.edge_warnings(search_record):
                print(line)

    tasks = final_tasks(experiment, root)
    if resumed is None:  # the stages decided the configuration: check the folders now
        resumed = check_task_dirs(tasks, option_name(args, "logdir"), session_of(args))
    if rank0:  # every check passed: the folder's record of this configuration, as it trains
        # (the range test's numbers and the search's rates, not the stand-ins validated first)
        ckpt.save_json(root / "experiment.json", {**meta, **experiment.to_dict()})
        every = load()  # the layout and HParams configuration: every variant, whichever ran
        hyper_keys = sorted(
            {"lr", *(KEY_ALIASES.get(k, k) for v in every.variants for k in v.schedules)}
        )  # (as the driver logs them: beta1 is betas[0])
        classes = [optimizer_class(v.optimizer.name) for v in every.variants]
        if any(hasattr(cls, "step_sizes") for cls in classes):
            hyper_keys.append("step_size")  # (the learning-rate-free optimizers' own choice)
        tensorboard.write_layout(root, hyper_keys)  # (replacing an earlier command's)
        write_hparams_config(root, session_variants(every, experiment, root))
        if range_test is not None:
            tuning.save_range_test(root, range_test)
        if search_record is not None:
            tuning.save_search(root, search_record)
    parallel.barrier(dist)
    finished = [t for t in tasks if ckpt.load_result(t.run_dir) is not None]
    tasks = [t for t in tasks if t not in finished]
    done = len(finished)
    total = done + len(tasks)
    if rank0 and done:
        print(f"{done} of {total} runs already finished in {root}; running the other {len(tasks)}")
    for task in tasks if rank0 else ():
        if task.run_dir in resumed:
            step = resumed[task.run_dir]
            print(f"{task.variant.name} seed {task.seed}: resumed from step {step}")

    def report_progress(result: dict) -> None:
        nonlocal done
        done += 1
        if rank0:
            status = result["status"]
            if status == "diverged":
                status += (
                    f" at step {result['diverged']['step']} (loss {result['diverged']['value']})"
                )
            else:
                status += f", test accuracy {100 * result['final']['test_accuracy']:.2f}%"
            from tqdm.auto import tqdm

            tqdm.write(
                f"[{done}/{total}] {result['variant']} seed {result['seed']}: {status}, "
                f"{result['wall_time_s']:.1f} s"
            )

    aggregate = args.jobs > 1 or args.backend != "process"
    parallel.run_all(
        tasks,
        dataclasses.replace(settings, quiet=args.quiet or not rank0),
        jobs=args.jobs,
        dist=dist,
        on_done=report_progress,
        progress="runs" if aggregate else None,
    )
    parallel.barrier(dist)
    if rank0:
        meta = json.loads((root / "experiment.json").read_text())
        if trained or tasks:  # (a command that trained nothing leaves the total as it was)
            this = time.perf_counter() - started  # range test, search and runs included
            meta["wall_time_s"] = meta.get("wall_time_s", 0.0) + this
        ckpt.save_json(root / "experiment.json", meta)
        table, figures = write_report(root)
        print()
        print(table)
        print(f"results: {root / 'summary.md'}, {root / 'summary.json'}, ", end="")
        print(f"{len(figures)} figures in {root / 'figures'}")
        print(f"view the curves: tensorboard --logdir {shlex.quote(str(root))}")
    return 0


def recorded_wall_time(root: Path) -> float | None:
    """The ``wall_time_s`` the folder's ``experiment.json`` holds: the wall time of the earlier
    ``stepsize run`` commands that trained something (range test, search or runs), summed, each
    from its start to its report; None when there is none (no such command finished, or no
    readable file). A command killed before its report adds nothing (its runs' own
    ``wall_time_s`` still count their training up to their last checkpoint)."""
    try:
        value = json.loads((root / "experiment.json").read_bytes()).get("wall_time_s")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return None
    return float(value)


def session_variants(every: Experiment, experiment: Experiment, root: Path) -> list[Variant]:
    """The variants whose settings HParams sessions record: ``every`` variant of the experiment
    as written, those of ``experiment`` that run (with the rates a range test or a search
    chose) and the search's candidates (each a learning rate of the grid)."""
    searched = []
    if experiment.search is not None:
        rows = tuning.search_tasks(experiment, root).values()
        searched = [task.variant for row in rows for _, task in row]
    return [*every.variants, *experiment.variants, *searched]


def write_hparams_config(root: Path, variants: Sequence[Variant]) -> None:
    """TensorBoard's HParams configuration of the experiment: a column for every key any of
    ``variants`` sets (every variant of the experiment as written, those that run, with the
    rates a range test or search chose, and the search's candidates)."""
    from runs import tensorboard

    tensorboard.write_hparams_config(
        root, [tensorboard.flat_hparams(v.to_dict(), seed=0) for v in variants]
    )
