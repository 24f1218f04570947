"""Building an experiment's objects from its spec: optimizers and schedules.

- :func:`optimizer_class` maps a configuration name to a class: ``"adam"`` is this package's
  ``optim.Adam``, ``"torch.adam"`` is ``torch.optim.Adam`` (the control column), anything else is
  the import path of a ``torch.optim.Optimizer`` subclass.
- :func:`make_optimizer` and :func:`attach_schedules` build what an ``[optimizer]`` table and a
  ``[schedules]`` table describe (models are built by ``runs.models.build_model``). A key has one
  schedule, which drives every param group: an optimizer whose groups hold different values of
  the key is refused (:func:`shared_schedule_problem`), as is a list of schedules per group
  (``schedulers.attach`` takes one; the runner does not).
- :func:`check_optimizer` and :func:`check_schedules` validate those tables by building
  them on a dummy parameter, so the optimizer's and the schedules' own checks run before anything
  trains.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch

from runs.checks import Problems
from runs.spec import Optimizer, schedule_tables

if TYPE_CHECKING:  # (schedulers is imported where a schedule is attached)
    from torch.optim.optimizer import ParamsT

    from schedulers.driver import ScheduleDriver

OPTIMIZER_CLASS_NAMES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
    "adadelta": "Adadelta",
}
OPTIMIZER_NAMES = (*OPTIMIZER_CLASS_NAMES, *(f"torch.{n}" for n in OPTIMIZER_CLASS_NAMES))


OPTIMIZER_HELP = ", ".join(OPTIMIZER_NAMES) + (
    ', or the import path of a torch.optim.Optimizer class ("torch.optim.NAdam", '
    '"my_package.my_module:MyOptimizer")'
)


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The optimizer class for a configuration name: ``"adam"`` is ``optim.Adam``, ``"torch.adam"``
    is ``torch.optim.Adam`` (the control column); any other name is an import path of a
    ``torch.optim.Optimizer`` subclass, ``"module.Class"`` or ``"module:Class"`` (e.g.
    ``"torch.optim.NAdam"``)."""
    if not isinstance(name, str):
        raise ValueError(
            f"optimizer name must be a string, got {name!r}; allowed: {OPTIMIZER_HELP}"
        )
    base = name.removeprefix("torch.")
    if name not in OPTIMIZER_NAMES:
        return _import_optimizer(name)
    if name.startswith("torch."):
        return getattr(torch.optim, OPTIMIZER_CLASS_NAMES[base])
    try:
        import optim
    except ImportError as err:  # pragma: no cover - only while optim is being written
        raise ValueError(f"optimizer {name!r} needs the optim package: {err}") from None
    cls = getattr(optim, OPTIMIZER_CLASS_NAMES[base], None)
    if cls is None:
        raise ValueError(f"optimizer {name!r}: optim.{OPTIMIZER_CLASS_NAMES[base]} does not exist")
    return cls


def _import_optimizer(path: str) -> type[torch.optim.Optimizer]:
    """The class at ``"module.Class"`` / ``"module:Class"``; it must subclass torch's Optimizer."""
    import importlib

    if ":" in path:
        module_name, _, attribute = path.partition(":")
    else:
        module_name, _, attribute = path.rpartition(".")
    if (
        not module_name
        or not attribute
        or not all(part.isidentifier() for part in (*module_name.split("."), *attribute.split(".")))
    ):
        raise ValueError(f"unknown optimizer {path!r}; allowed: {OPTIMIZER_HELP}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"optimizer {path!r}: cannot import module {module_name!r} ({err}); "
            f"allowed: {OPTIMIZER_HELP}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(
                f"optimizer {path!r}: module {module_name!r} has no attribute {attribute!r}"
            )
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, torch.optim.Optimizer)):
        raise ValueError(
            f"optimizer {path!r} is {target!r}, not a subclass of torch.optim.Optimizer"
        )
    return target


def make_optimizer(spec: Optimizer | Mapping[str, Any], params: ParamsT) -> torch.optim.Optimizer:
    """Builds the optimizer described by an :class:`~runs.spec.Optimizer` or its table (``name``
    plus keyword arguments; lists become tuples, as TOML has no tuples), ready to train: one
    with train and eval modes (:func:`has_train_eval_modes`) is put in train mode."""
    if isinstance(spec, Optimizer):
        spec = spec.to_table()
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "name"}
    optimizer = optimizer_class(spec["name"])(params, **kwargs)
    if has_train_eval_modes(optimizer):
        optimizer.train()
    return optimizer


def takes_lr(name: str) -> bool:
    """Whether the optimizer named ``name`` has a learning rate to set: SPS and SLS choose their
    own step and take none, so a search or a range test has nothing to sweep for them. False for
    a name that does not resolve (its own error is reported where it is checked)."""
    try:
        parameters = inspect.signature(optimizer_class(name).__init__).parameters
    except (ValueError, TypeError):
        return False
    return "lr" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def has_train_eval_modes(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` has Schedule-Free's ``train()`` and ``eval()`` (``optim``'s
    ``SGDScheduleFree`` and ``AdamWScheduleFree``, the ``schedulefree`` package's classes): its
    parameters hold the point where gradients are taken in train mode and the point to evaluate
    (the average) in eval mode."""
    return callable(getattr(optimizer, "train", None)) and callable(
        getattr(optimizer, "eval", None)
    )


BATCH_NORM_BATCHES = 50
"""Training mini-batches over which :func:`evaluation_mode` recomputes batch-norm statistics at a
Schedule-Free optimizer's averaged point (the ``schedulefree`` README's 50)."""


def batch_norms(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The batch-norm layers of ``model`` that keep running statistics (``_BatchNorm``
    subclasses with ``track_running_stats``: BatchNorm1d/2d/3d, SyncBatchNorm, lazy ones)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def recompute_batch_norm(model: torch.nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Replace the running statistics of every batch-norm layer of ``model`` by their plain
    average over the forward passes of ``inputs`` at the current parameters, in train mode and
    without gradients: ``torch.optim.swa_utils.update_bn`` (Izmailov et al., 2018, the same fix
    for averaged weights; PreciseBN), run under ``torch.random.fork_rng`` so that a dropout
    layer's draws leave the caller's random streams unchanged."""
    devices = sorted({p.device for p in model.parameters() if p.device.type == "cuda"}, key=str)
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.optim.swa_utils.update_bn(inputs, model)


@contextlib.contextmanager
def evaluation_mode(
    optimizer: torch.optim.Optimizer,
    *,
    then_train: bool = True,
    model: torch.nn.Module | None = None,
    inputs: Callable[[], Iterable[torch.Tensor]] | None = None,
) -> Iterator[None]:
    """The parameters at the point to evaluate while the block runs: an optimizer with train and
    eval modes is switched to ``eval()``, and back to ``train()`` afterwards when ``then_train``
    (not after the last evaluation, so that the final checkpoint holds the averaged point, as
    the ``schedulefree`` README asks). Other optimizers are left alone.

    With ``model`` and ``inputs`` (a callable giving training inputs), a model with batch norm
    that such an optimizer switched is evaluated with running statistics recomputed at the
    averaged point x (:func:`recompute_batch_norm`): those collected in training were taken at
    y, where the gradients are, and the ``schedulefree`` README recomputes them at x before
    evaluating. Afterwards, when ``then_train``, the statistics collected at y come back, so an
    evaluation changes nothing of the training that follows; after the last one, x's stay with
    the averaged point."""
    switch = has_train_eval_modes(optimizer)
    norms = batch_norms(model) if switch and model is not None and inputs is not None else []
    kept = [[b.clone() for b in m.buffers(recurse=False)] for m in norms] if then_train else []
    if switch:
        optimizer.eval()
    try:
        if norms:
            recompute_batch_norm(model, inputs())
        yield
    finally:
        if switch and then_train:
            optimizer.train()
            with torch.no_grad():
                for module, buffers in zip(norms, kept):
                    for buffer, value in zip(module.buffers(recurse=False), buffers):
                        buffer.copy_(value)


def attach_schedules(
    optimizer: torch.optim.Optimizer, schedules: Mapping[str, Any]
) -> ScheduleDriver | None:
    """``schedulers.attach`` on the schedules (``Schedule`` objects or their dict forms); returns
    the driver (or None if there are none). A reduce-on-plateau schedule among them observes the
    metric ``driver.step(metric=...)`` is given: in the runner, the test split's loss
    (``runs.trainer``)."""
    if not schedules:
        return None
    import schedulers

    if (problem := shared_schedule_problem(optimizer, schedules)) is not None:
        raise ValueError(problem)
    tables = schedule_tables(schedules)
    built = {key: schedulers.from_dict(dict(spec)) for key, spec in tables.items()}
    return schedulers.attach(optimizer, built)


PER_GROUP_ADVICE = (
    "the runner drives every param group with the one schedule a key has: give the groups one "
    "{name} (the optimizer's own options decide its groups and their values), or leave "
    "{key!r} unscheduled so that each group keeps its own value; a schedule per group needs a "
    "training loop of your own, with schedulers.attach(optimizer, {{{key!r}: [s0, s1, ...]}})"
)


def shared_schedule_problem(
    optimizer: torch.optim.Optimizer, schedules: Mapping[str, Any]
) -> str | None:
    """Why one of ``schedules`` cannot drive ``optimizer``'s param groups, or None: its key
    (``lr``, ``betas[0]``, ``beta1``) holds different values in different groups, and the
    schedule, absolute, would write the same values into all of them. The runner has no
    per-group schedules, so the message says what it can run instead (:data:`PER_GROUP_ADVICE`).
    A key a group lacks or holds no number for is left to ``schedulers.attach``, which reports
    it."""
    from schedulers.driver import differing_group_values

    groups = optimizer.param_groups
    for key in schedules:
        try:
            values = differing_group_values(groups, key)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError):
            continue  # (schedulers.attach reports it)
        if values is not None:
            return (
                f"schedule {key!r}: the optimizer's {len(groups)} param groups hold different "
                f"values {values}, and one schedule would write the same values into all of them "
                "(a schedule is absolute; torch's StepLR, CosineAnnealingLR, ... scale each "
                "group's own value instead); "
                + PER_GROUP_ADVICE.format(name=_canonical(key), key=key)
            )
    return None


def _canonical(key: str) -> str:
    """A schedule key as the param groups name it (``beta1`` is ``betas[0]``)."""
    from schedulers.driver import KEY_ALIASES

    return KEY_ALIASES.get(key, key)


def observes_metric(schedules: Mapping[str, Any]) -> bool:
    """Whether any of ``schedules`` (``Schedule`` objects or their dict forms) observes a metric:
    a reduce-on-plateau (``reactive``) anywhere inside it. The runner feeds such a schedule the
    test split's loss (``runs.trainer``: there is no validation split)."""
    if not schedules:
        return False
    import schedulers

    tables = schedule_tables(schedules)
    built = [schedulers.from_dict(copy.deepcopy(dict(spec))) for spec in tables.values()]
    return any(node.reactive for schedule in built for node in schedule.walk())


def check_optimizer(spec: dict, where: dict[str, str], location: str, problems: Problems) -> bool:
    """Adds to ``problems`` what is wrong with an optimizer table (``where``: the location each
    key was written at); True when it builds."""
    name = spec.get("name")
    if name is None:
        problems.add(location, f"an optimizer name is required; allowed: {OPTIMIZER_HELP}")
        return False
    if name not in OPTIMIZER_NAMES and not isinstance(name, str):
        problems.add(
            where.get("name", location), f"unknown optimizer {name!r}; allowed: {OPTIMIZER_HELP}"
        )
        return False
    try:
        cls = optimizer_class(name)
    except ValueError as err:
        problems.add(where.get("name", location), str(err))
        return False
    parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]
    any_key = any(p.kind is p.VAR_KEYWORD for p in parameters)
    allowed = [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    ok = True
    for key in spec:
        if key != "name" and key not in allowed and not any_key:
            problems.add(
                where[key], f"unknown hyperparameter of {name}; allowed: {', '.join(allowed)}"
            )
            ok = False
    # A flag (a parameter whose default is a bool: maximize, nesterov, amsgrad, ...) takes true
    # or false only: torch.optim and optim test it for truth, so "false" or 1 would turn it on.
    flags = {p.name for p in parameters if isinstance(p.default, bool)}
    for key, value in spec.items():
        if key in flags and not isinstance(value, bool):
            problems.add(where[key], f"must be true or false, got {value!r}")
            ok = False
    if not ok:
        return False
    combined = _rejection(spec)
    if combined is None:
        return True
    # Rejected: each hyperparameter alone, so that a bad value is reported where it was written;
    # when none is bad alone, the combination is (e.g. nesterov without momentum).
    for key in spec:
        if key != "name" and (err := _rejection({"name": name, key: spec[key]})) is not None:
            problems.add(where[key], f"{name} rejects {key}={spec[key]!r}: {err}")
            ok = False
    if ok:
        problems.add(location, f"{name} rejects these hyperparameters: {combined}")
    return False


def _rejection(spec: dict) -> str | None:
    """Why the optimizer rejects ``spec`` on a dummy parameter, or None if it accepts it."""
    try:
        make_optimizer(spec, [torch.zeros(1, requires_grad=True)])
    except Exception as err:  # a user's optimizer class (import path) may raise anything
        if isinstance(err, ValueError | TypeError | RuntimeError | IndexError):
            return str(err)
        return f"{type(err).__name__}: {err}"
    return None


INTEGER_WRITTEN = "an integer (written without a decimal point, as every integer of an experiment)"


def _float_integers(spec: Any, location: str) -> list[tuple[str, float]]:
    """``(location, value)`` of each float that the schedule table ``spec`` (written at
    ``location``) holds as an integer (``decay_steps = 4.0``, ``milestones = [2.0]``, nested
    schedules' too): ``schedulers.check_int`` takes an integral float as its int, while every
    integer field of an experiment refuses one, so a schedule's integer is refused too (one
    spelling, one fingerprint). Nothing when ``spec`` is no table or does not build (its own
    check reports why)."""
    import schedulers

    if not isinstance(spec, dict):
        return []
    try:
        held = schedulers.from_dict(copy.deepcopy(spec)).to_dict()
    except (ValueError, TypeError, KeyError):
        return []
    return _floats_held_as_ints(spec, held, location)


def _floats_held_as_ints(written: Any, held: Any, location: str) -> list[tuple[str, float]]:
    if isinstance(written, Mapping) and isinstance(held, Mapping):
        return [
            found
            for key, value in written.items()
            if key in held
            for found in _floats_held_as_ints(value, held[key], f"{location}.{key}")
        ]
    if isinstance(written, list | tuple) and isinstance(held, list | tuple):
        if len(written) == len(held):
            return [
                found
                for index, (w, h) in enumerate(zip(written, held))
                for found in _floats_held_as_ints(w, h, f"{location}[{index}]")
            ]
        return []
    if isinstance(written, float) and type(held) is int:
        return [(location, written)]
    return []


def check_schedules(
    optimizer: dict, schedules: dict, where: dict[str, str], location: str, problems: Problems
) -> None:
    """Adds to ``problems`` what is wrong with a schedules table, built over ``optimizer``."""
    try:
        import schedulers
    except ImportError as err:  # pragma: no cover - only while schedulers is being written
        problems.add(location, f"schedules need the schedulers package: {err}")
        return
    ok = True
    for key, spec in schedules.items():
        for place, value in _float_integers(spec, where[key]):
            problems.add(place, f"must be {INTEGER_WRITTEN}, got {value!r}")
            ok = False
        if not isinstance(spec, dict):
            problem = f'must be a schedule such as {{name = "constant", value = 0.1}}, got {spec!r}'
            if isinstance(spec, list | tuple):  # one per param group, as schedulers.attach takes
                advice = PER_GROUP_ADVICE.format(name=_canonical(key), key=key)
                problem += f"; a list of schedules per param group is not taken here: {advice}"
            problems.add(where[key], problem)
            ok = False
            continue
        try:
            schedulers.from_dict(copy.deepcopy(spec))
        except (ValueError, TypeError, KeyError) as err:
            problems.add(where[key], str(err.args[0] if isinstance(err, KeyError) else err))
            ok = False
    if not ok:
        return
    try:
        opt = make_optimizer(optimizer, [torch.zeros(1, requires_grad=True)])
        attach_schedules(opt, schedules)
    except (ValueError, TypeError, KeyError) as err:
        problems.add(location, str(err.args[0] if isinstance(err, KeyError) else err))
