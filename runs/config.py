"""Experiments written in TOML: the schema, its complete validation, and the resolved variants.

An experiment file, with every key (defaults in brackets)::

    name = "mnist1d-schedules"          # [the file's stem]; the output folder's name
    description = "one line for `stepsize list`"
    runtime = "about 2 minutes on 2 CPU cores"   # shown by `stepsize list`
    seeds = 3                           # N means seeds 0..N-1, or a list such as [0, 7]

    [dataset]                           # runs.data.load_dataset(name, normalize=...)
    name = "mnist1d"                    # or a name given to runs.register_dataset
    normalize = true

    [model]                             # runs.models.build_model(name, ..., **options)
    name = "mnist1d-cnn"                # or runs.register_model's; other keys: its options

    [train]
    loss = "cross_entropy"
    epochs = 30                         # exactly one of epochs, steps
    batch_size = 256
    shuffle = true                      # [true]; false takes batches in order
    schedule_unit = "epoch"             # ["step"]: the driver steps once per update or epoch
    eval_every = "epoch"                # ["epoch"] or a number of updates
    eval_train_examples = 10000         # [all]; train metrics on the first N examples

    [logging]
    flush_every = 50                    # [50] updates between host syncs of the logged values
    stats_every = 10                    # [10] updates between gradient-norm / update-ratio logs
    checkpoint_every = 500              # [500] updates between checkpoints

    [optimizer]                         # common optimizer; hyperparameters as in torch.optim
    name = "sgd"                        # sgd adam adamw adagrad rmsprop adadelta, torch.<same>,
                                        # or a class by import path: "torch.optim.NAdam",
                                        # "my_module:MyOptimizer" (a torch.optim.Optimizer)
    lr = 0.1

    [schedules]                         # any param-group key -> a schedule's to_dict() form
    lr = {name = "cosine_decay", learning_rate = 0.3, decay_steps = 20}

    [quick]                             # overrides applied by --quick (tables train, logging,
    seeds = 1                           # dataset, model; and seeds)
    train = {epochs = 2}

    [[variants]]                        # at least one
    name = "cosine"                     # letters, digits, - _ . +
    schedules = {lr = {...}}            # any of dataset, model, train, logging, optimizer,
                                        # schedules: overrides of the common settings;
    search = {lr = [0.01, 0.1]}         # and this variant's own grid (see [search])

Optional sections of the catalogue's experiments:

    reference = "what paper / framework this reproduces (markdown, shown in the README)"

    [fallback]                          # used when [dataset] needs files and no --data-dir is given
    dataset = {name = "mnist1d"}        # replaces [dataset]
    model = {name = "mnist1d-cnn"}      # replaces [model]

    [range_test]                        # an LR range test before training (runs.tuning);
    variant = "fixed"                   # [the first]: whose model, optimizer and batches
    start_lr = 1e-4                     # [1e-6]
    end_lr = 10.0                       # [10]
    num_iter = 200                      # [100]
    curvature_batches = 1               # [1]: the top Hessian eigenvalue L at the start
    # its numbers may be used in any optimizer or schedule value as "$NAME" or "F * $NAME":
    # $clr_base_lr $clr_max_lr (Smith 2017) $valley $steepest $min/10 $safe_step (1/L)
    # $edge_step (2/L), e.g. max_lr = "$clr_max_lr", lr = "0.5 * $edge_step"

    [search]                            # a learning-rate grid search before training
    lr = [0.01, 0.03, 0.1]              # the grid (a variant may give its own)
    metric = "train_loss"               # [train_loss]: the final value that decides (lower is
                                        # better; higher for accuracies)
    seed = 0                            # [0]: the one seed of the search runs
    train = {steps = 1000}              # overrides of [train] for the search runs

    [report]                            # what the report adds (runs.report)
    figure = "test_accuracy"            # the README's figure: an evaluation metric,
                                        # "train_loss_per_step" or "schedules"
    panels = ["logreg", "mlp"]          # one panel per prefix of variant names "<prefix>.<rest>"
    max_step = 500                      # the figure's x-axis limit
    reach = "fixed"                     # column: steps until the mean test accuracy first
                                        # reaches that variant's final mean test accuracy
    early_steps = 200                   # column: largest training loss of the first N updates
    published = {source = "...", metric = "test_accuracy", values = {logreg = 0.32}}
                                        # column: the published number for a variant (by name
                                        # or prefix)

Merging: a variant's tables are merged key by key over the common ones, and the ``[quick]``
tables over both. A variant's ``optimizer`` table is merged over the common optimizer when it
names the same optimizer (or none), and replaces it when it names another one. ``schedules``
are merged per hyperparameter.

Validation (:func:`load_experiment`) checks the whole file before anything trains and raises one
``ValueError`` that lists every problem with its location (``variants[2].optimizer.betas``) and
what is allowed: unknown keys, wrong types, impossible values, unknown optimizer or schedule names
(optimizers are constructed and schedules attached on a dummy parameter, so their own checks run).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"

OPTIMIZER_CLASS_NAMES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
    "adadelta": "Adadelta",
}
OPTIMIZER_NAMES = (*OPTIMIZER_CLASS_NAMES, *(f"torch.{n}" for n in OPTIMIZER_CLASS_NAMES))
LOSSES = ("cross_entropy",)
_VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


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


def make_optimizer(spec: Mapping[str, Any], params) -> torch.optim.Optimizer:
    """Builds the optimizer described by an ``optimizer`` table (``name`` plus keyword arguments;
    lists become tuples, as TOML has no tuples)."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "name"}
    return optimizer_class(spec["name"])(params, **kwargs)


def attach_schedules(optimizer: torch.optim.Optimizer, schedules: Mapping[str, Mapping]):
    """``schedulers.attach`` on the schedules' dict forms; returns the driver (or None if empty)."""
    if not schedules:
        return None
    import schedulers

    built = {key: schedulers.from_dict(dict(spec)) for key, spec in schedules.items()}
    return schedulers.attach(optimizer, built)


# ----------------------------------------------------------------------------- the resolved form
@dataclasses.dataclass(frozen=True)
class Variant:
    """One fully resolved variant: every setting it trains with."""

    name: str
    dataset: dict
    model: dict
    train: dict
    logging: dict
    optimizer: dict
    schedules: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self, seed: int) -> str:
        """Hash of everything that changes the numbers (logging cadence excluded) and the seed;
        for a dataset registered in memory (``runs.register_dataset``), also its content, so a
        run folder never resumes on other data under the same name."""
        from runs.data import registered_digest

        numeric = {k: v for k, v in self.to_dict().items() if k != "logging"}
        payload: dict[str, Any] = {"variant": numeric, "seed": seed}
        digest = registered_digest(self.dataset.get("name"))
        if digest is not None:  # never for the bundled datasets: their fingerprints stay
            payload["data"] = digest
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A validated experiment: its name, description, seeds and resolved variants."""

    name: str
    description: str
    runtime: str
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    source: str
    reference: str = ""
    range_test: dict | None = None  # resolved [range_test] settings, or None
    search: dict | None = None  # resolved [search]: metric, seed, train, grids per variant
    report: dict = dataclasses.field(default_factory=dict)
    fallback_used: bool = False  # [fallback] replaced [dataset] and [model]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "runtime": self.runtime,
            "reference": self.reference,
            "seeds": list(self.seeds),
            "source": self.source,
            "fallback_used": self.fallback_used,
            "range_test": self.range_test,
            "search": self.search,
            "report": self.report,
            "variants": [v.to_dict() for v in self.variants],
        }


# ------------------------------------------------------------------------------- field checkers
# A checker returns None when the value is allowed, else the phrase saying what is allowed.
Checker = Callable[[Any], "str | None"]


def _positive_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return None if ok else "a positive integer"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _one_of(*allowed: str) -> Checker:
    return lambda value: None if value in allowed else "one of " + ", ".join(map(repr, allowed))


def _non_negative_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else "an integer >= 0"


def _positive_number(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf
    return None if ok else "a positive finite number"


def _unit_interval(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1
    return None if ok else "a number in [0, 1)"


def _above_one(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 1 < value < math.inf
    return None if ok else "a finite number > 1"


def _at_least_two(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 2
    return None if ok else "an integer >= 2"


def _table(value: Any) -> str | None:
    return None if isinstance(value, dict) else "a table"


def _lr_grid(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(_positive_number(v) is None for v in value)
    ok = ok and len(set(value)) == len(value)
    return None if ok else "a non-empty list of distinct positive learning rates"


def _names(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
    return None if ok else "a non-empty list of names"


def _figure(value: Any) -> str | None:
    from runs.report import README_FIGURES

    return _one_of(*README_FIGURES)(value)


def _published(value: Any) -> str | None:
    allowed = (
        '{source = "...", metric = "test_accuracy", values = {name = number, ...}}; '
        "metric one of " + ", ".join(EVAL_METRIC_NAMES)
    )
    if not isinstance(value, dict) or set(value) != {"source", "metric", "values"}:
        return allowed
    values = value["values"]
    ok = isinstance(value["source"], str) and value["metric"] in EVAL_METRIC_NAMES
    ok = ok and isinstance(values, dict) and values
    ok = ok and all(_positive_number(v) is None or v == 0 for v in values.values())
    return None if ok else allowed


def _positive_int_or_epoch(value: Any) -> str | None:
    return (
        None
        if value == "epoch" or _positive_int(value) is None
        else 'a positive integer or "epoch"'
    )


def _seeds(value: Any) -> str | None:
    if _positive_int(value) is None:
        return None
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
        and len(set(value)) == len(value)
    )
    return None if ok else "a positive integer N (seeds 0..N-1) or a list of distinct seeds >= 0"


TRAIN_FIELDS: dict[str, Checker] = {
    "loss": _one_of(*LOSSES),
    "epochs": _positive_int,
    "steps": _positive_int,
    "batch_size": _positive_int,
    "shuffle": _boolean,
    "schedule_unit": _one_of("step", "epoch"),
    "eval_every": _positive_int_or_epoch,
    "eval_train_examples": _positive_int,
}
TRAIN_DEFAULTS = {
    "loss": "cross_entropy",
    "shuffle": True,
    "schedule_unit": "step",
    "eval_every": "epoch",
}
LOGGING_FIELDS: dict[str, Checker] = {
    "flush_every": _positive_int,
    "stats_every": _positive_int,
    "checkpoint_every": _positive_int,
}
LOGGING_DEFAULTS = {"flush_every": 50, "stats_every": 10, "checkpoint_every": 500}
EVAL_METRIC_NAMES = ("test_accuracy", "test_loss", "train_loss", "train_accuracy")
FALLBACK_FIELDS: dict[str, Checker] = {"dataset": _table, "model": _table}
RANGE_TEST_FIELDS: dict[str, Checker] = {
    "variant": _text,
    "start_lr": _positive_number,
    "end_lr": _positive_number,
    "num_iter": _at_least_two,
    "sweep": _one_of("exp", "linear"),
    "smoothing": _unit_interval,
    "diverge_threshold": _above_one,
    "curvature_batches": _non_negative_int,
    "seed": _non_negative_int,
}
RANGE_TEST_DEFAULTS = {
    "start_lr": 1e-6,
    "end_lr": 10.0,
    "num_iter": 100,
    "sweep": "exp",
    "smoothing": 0.98,
    "diverge_threshold": 4.0,
    "curvature_batches": 1,
    "seed": 0,
}
SEARCH_FIELDS: dict[str, Checker] = {
    "lr": _lr_grid,
    "metric": _one_of(*EVAL_METRIC_NAMES),
    "seed": _non_negative_int,
    "train": _table,
}
SEARCH_DEFAULTS = {"metric": "train_loss", "seed": 0, "train": {}}
REPORT_FIELDS: dict[str, Checker] = {
    "figure": _figure,
    "panels": _names,
    "max_step": _positive_int,
    "reach": _text,
    "early_steps": _positive_int,
    "published": _published,
}
DATASET_FIELDS: dict[str, Checker] = {
    "name": _text,
    "normalize": _boolean,
    "train_examples": _positive_int,
    "test_examples": _positive_int,
}
DATASET_DEFAULTS = {"normalize": True}
SECTIONS = ("dataset", "model", "train", "logging", "optimizer", "schedules")
STAGES = ("fallback", "range_test", "search", "report")
TOP_KEYS = ("name", "description", "runtime", "reference", "seeds", *SECTIONS, *STAGES)
TOP_KEYS = (*TOP_KEYS, "quick", "variants")
QUICK_KEYS = ("seeds", "dataset", "model", "train", "logging", "range_test", "search")
VARIANT_KEYS = ("name", *SECTIONS, "search")

# The numbers an LR range test gives to "$NAME" references, with the consistent stand-ins used to
# validate a file before the test has run (a schedule's own checks see plausible values).
RANGE_TEST_VALUES = {
    "clr_base_lr": 1e-3,
    "clr_max_lr": 1e-2,
    "valley": 1e-3,
    "steepest": 1e-3,
    "min/10": 1e-3,
    "safe_step": 1e-2,
    "edge_step": 2e-2,
}
_REFERENCE = re.compile(r"^\s*(?:(?P<factor>[-+0-9.eE]+)\s*\*\s*)?\$(?P<name>[a-z_/0-9]+)\s*$")


class _Problems:
    """Collects every problem found, each as ``location: message``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, location: str, message: str) -> None:
        self.items.append(f"{location}: {message}" if location else message)

    def raise_if_any(self, source: str) -> None:
        if self.items:
            lines = "; ".join(self.items)
            raise ValueError(f"{source}: {len(self.items)} problem(s): {lines}")


def _join(location: str, key: str) -> str:
    return f"{location}.{key}" if location else key


def _check_table(
    table: Any, location: str, fields: Mapping[str, Checker] | None, problems: _Problems
) -> dict:
    """Checks that ``table`` is a table whose keys (if ``fields`` is given) are known and valid."""
    if not isinstance(table, dict):
        problems.add(location, f"must be a table, got {table!r}")
        return {}
    if fields is None:
        return table
    for key, value in table.items():
        if key not in fields:
            problems.add(_join(location, key), f"unknown key; allowed: {', '.join(fields)}")
        elif (allowed := fields[key](value)) is not None:
            problems.add(_join(location, key), f"must be {allowed}, got {value!r}")
    return table


def _check_unknown(table: dict, location: str, allowed: Sequence[str], problems: _Problems) -> None:
    for key in table:
        if key not in allowed:
            problems.add(_join(location, key), f"unknown key; allowed: {', '.join(allowed)}")


# ---------------------------------------------------------------------------------- resolution
def _merge(layers: Sequence[tuple[str, dict]]) -> tuple[dict, dict[str, str]]:
    """Merges tables key by key, later layers winning; returns the table and where each key came
    from (so an error is reported at the place the user wrote the value)."""
    merged: dict = {}
    where: dict[str, str] = {}
    for location, table in layers:
        for key, value in table.items():
            merged[key] = copy.deepcopy(value)
            where[key] = _join(location, key)
    return merged, where


def _merge_optimizer(layers: Sequence[tuple[str, dict]]) -> tuple[dict, dict[str, str]]:
    """Like :func:`_merge`, but a layer naming another optimizer starts afresh."""
    kept: list[tuple[str, dict]] = []
    name = None
    for location, table in layers:
        new_name = table.get("name", name)
        if name is not None and new_name != name:
            kept = []
        kept.append((location, table))
        name = new_name
    return _merge(kept)


def _validate_optimizer(
    spec: dict, where: dict[str, str], location: str, problems: _Problems
) -> bool:
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


def _validate_schedules(
    optimizer: dict, schedules: dict, where: dict[str, str], location: str, problems: _Problems
) -> None:
    try:
        import schedulers
    except ImportError as err:  # pragma: no cover - only while schedulers is being written
        problems.add(location, f"schedules need the schedulers package: {err}")
        return
    ok = True
    for key, spec in schedules.items():
        if not isinstance(spec, dict):
            problems.add(
                where[key],
                f'must be a schedule such as {{name = "constant", value = 0.1}}, got {spec!r}',
            )
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


def _resolve_variant(
    index: int, raw: dict, common: dict, quick: dict | None, problems: _Problems
) -> Variant | None:
    loc = f"variants[{index}]"
    if not isinstance(raw, dict):
        problems.add(loc, f"must be a table, got {raw!r}")
        return None
    _check_unknown(raw, loc, VARIANT_KEYS, problems)
    name = raw.get("name")
    if not isinstance(name, str) or not _VARIANT_NAME.match(name):
        problems.add(
            _join(loc, "name"),
            f"must be a name of letters, digits and - _ . + (it names a folder), got {name!r}",
        )
    sections: dict[str, dict] = {}
    wheres: dict[str, dict[str, str]] = {}
    for section in SECTIONS:
        layers = [(section, common.get(section, {}))]
        own = raw.get(section, {})
        if not isinstance(own, dict):
            problems.add(_join(loc, section), f"must be a table, got {own!r}")
            own = {}
        layers.append((_join(loc, section), own))
        if quick is not None and section in QUICK_KEYS:
            layers.append((_join("quick", section), quick.get(section, {})))
        merge = _merge_optimizer if section == "optimizer" else _merge
        sections[section], wheres[section] = merge(layers)
    for section, defaults in (
        ("dataset", DATASET_DEFAULTS),
        ("train", TRAIN_DEFAULTS),
        ("logging", LOGGING_DEFAULTS),
    ):
        sections[section] = {**defaults, **sections[section]}  # values were checked where written
    train = sections["train"]
    if ("epochs" in train) == ("steps" in train):
        problems.add(_join(loc, "train"), "give exactly one of epochs, steps")
    if "batch_size" not in train:
        problems.add(_join(loc, "train"), "batch_size is required")
    if "name" not in sections["dataset"]:
        problems.add(_join(loc, "dataset"), "a dataset name is required")
    if "name" not in sections["model"]:
        problems.add(_join(loc, "model"), "a model name is required")
    opt_ok = _validate_optimizer(
        sections["optimizer"], wheres["optimizer"], _join(loc, "optimizer"), problems
    )
    if opt_ok:
        _validate_schedules(
            sections["optimizer"],
            sections["schedules"],
            wheres["schedules"],
            _join(loc, "schedules"),
            problems,
        )
    return Variant(name=name, **sections) if isinstance(name, str) else None


def _check_names(dataset: Any, model: Any, location: str, problems: _Problems) -> None:
    """Dataset and model names against the registries of runs.data and runs.models."""
    if isinstance(dataset, str):
        from runs.data import dataset_names

        if dataset not in dataset_names():
            problems.add(
                _join(location, "dataset.name"),
                f"unknown dataset {dataset!r}; allowed: {', '.join(dataset_names())} "
                "(runs.register_dataset adds your own)",
            )
    if isinstance(model, str):
        from runs.models import model_names

        if model not in model_names():
            problems.add(
                _join(location, "model.name"),
                f"unknown model {model!r}; allowed: {', '.join(model_names())} "
                "(runs.register_model adds your own)",
            )


def _substitute(
    value: Any, values: Mapping[str, float | None] | None, location: str, problems: _Problems
) -> Any:
    """``value`` with every ``"$NAME"`` / ``"F * $NAME"`` string replaced by ``F * values[NAME]``
    (the LR range test's numbers, see :data:`RANGE_TEST_VALUES`)."""
    if isinstance(value, dict):
        return {k: _substitute(v, values, _join(location, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, f"{location}[{i}]", problems) for i, v in enumerate(value)]
    if not (isinstance(value, str) and "$" in value):
        return value
    allowed = ", ".join("$" + n for n in RANGE_TEST_VALUES)
    match = _REFERENCE.match(value)
    if match is None:
        problems.add(location, f'must be "$NAME" or "FACTOR * $NAME" ({allowed}), got {value!r}')
        return value
    name, factor = match["name"], match["factor"]
    if values is None:
        problems.add(location, f"{value!r} needs an LR range test: add a [range_test] section")
        return value
    if name not in RANGE_TEST_VALUES:
        problems.add(location, f"unknown reference ${name} in {value!r}; allowed: {allowed}")
        return value
    try:
        scale = 1.0 if factor is None else float(factor)
    except ValueError:
        problems.add(location, f'bad factor {factor!r} in {value!r}; write e.g. "0.5 * ${name}"')
        return value
    if values.get(name) is None:
        problems.add(location, f"${name} is unavailable: the LR range test did not produce it")
        return value
    return scale * float(values[name])


def _with_references(
    raw: dict, values: Mapping[str, float | None] | None, problems: _Problems
) -> dict:
    """The document with references substituted in every optimizer and schedules table."""
    raw = dict(raw)
    for section in ("optimizer", "schedules"):
        if isinstance(raw.get(section), dict):
            raw[section] = _substitute(raw[section], values, section, problems)
    if isinstance(raw.get("variants"), list):
        variants = []
        for index, variant in enumerate(raw["variants"]):
            if isinstance(variant, dict):
                variant = dict(variant)
                for section in ("optimizer", "schedules"):
                    if isinstance(variant.get(section), dict):
                        location = f"variants[{index}].{section}"
                        variant[section] = _substitute(variant[section], values, location, problems)
            variants.append(variant)
        raw["variants"] = variants
    return raw


def _apply_fallback(raw: dict, data_dir: str | None, problems: _Problems) -> tuple[dict, bool]:
    """``[fallback]``'s dataset and model replace the common ones when no ``data_dir`` was given
    and the common dataset needs one. An explicit ``data_dir`` never falls back: a folder without
    the dataset's files is an error when the dataset is loaded."""
    if "fallback" not in raw:
        return raw, False
    fallback = _check_table(raw["fallback"], "fallback", FALLBACK_FIELDS, problems)
    dataset = raw.get("dataset")
    primary = dataset.get("name") if isinstance(dataset, dict) else None
    from runs.data import dataset_available

    if data_dir is not None or not isinstance(primary, str) or dataset_available(primary, None):
        return raw, False
    return {**raw, **{k: fallback[k] for k in ("dataset", "model") if k in fallback}}, True


def _stage(
    raw: dict,
    quick_table: dict,
    quick: bool,
    key: str,
    fields: Mapping[str, Checker],
    defaults: dict,
    problems: _Problems,
) -> dict | None:
    """A stage table (``range_test``, ``search``) with its ``[quick]`` overrides and defaults."""
    if key not in raw:
        if key in quick_table:
            problems.add(_join("quick", key), f"overrides a [{key}] section the file does not have")
        return None
    table = dict(_check_table(raw[key], key, fields, problems))
    over = _check_table(quick_table.get(key, {}), _join("quick", key), fields, problems)
    if quick:
        for name, value in over.items():
            merged = isinstance(value, dict) and isinstance(table.get(name), dict)
            table[name] = {**table[name], **value} if merged else value
    return {**defaults, **table}


def _resolve_range_test(table: dict | None, variants: list[Variant], problems: _Problems) -> None:
    if table is None:
        return
    names = [v.name for v in variants]
    table.setdefault("variant", names[0] if names else None)
    if names and table["variant"] not in names:
        problems.add(
            "range_test.variant",
            f"unknown variant {table['variant']!r}; allowed: {', '.join(names)}",
        )
    if table["start_lr"] >= table["end_lr"]:
        problems.add(
            "range_test",
            f"start_lr must be below end_lr, got start_lr="
            f"{table['start_lr']!r}, end_lr={table['end_lr']!r}",
        )


def _resolve_search(
    table: dict | None, raw_variants: list, variants: list[Variant], problems: _Problems
) -> None:
    if table is None:
        for index, raw in enumerate(raw_variants):
            if isinstance(raw, dict) and "search" in raw:
                problems.add(f"variants[{index}].search", "needs a [search] section")
        return
    _check_table(table["train"], "search.train", TRAIN_FIELDS, problems)
    grids = {}
    for index, raw in enumerate(raw_variants):
        if not isinstance(raw, dict) or index >= len(variants):
            continue
        location = f"variants[{index}].search"
        own = _check_table(raw.get("search", {}), location, {"lr": _lr_grid}, problems)
        grid = own.get("lr", table.get("lr"))
        if grid is None:
            problems.add(location, "no learning-rate grid: give search.lr here or in [search]")
        if "lr" in variants[index].schedules:
            problems.add(location, "the lr of a variant with an lr schedule cannot be searched")
        grids[variants[index].name] = grid
    table["grids"] = grids
    table.pop("lr", None)


def _resolve_report(table: dict, variants: list[Variant], problems: _Problems) -> None:
    names = [v.name for v in variants]
    if "reach" in table and table["reach"] not in names:
        problems.add(
            "report.reach", f"unknown variant {table['reach']!r}; allowed: {', '.join(names)}"
        )


def parse_experiment(
    raw: dict,
    source: str,
    *,
    quick: bool = False,
    seeds: int | None = None,
    data_dir: str | None = None,
    derived: Mapping[str, float | None] | None = None,
) -> Experiment:
    """Validates a parsed TOML document completely and resolves its variants.

    Args:
        raw: the document as ``tomllib`` parsed it.
        source: the file it came from (named in errors and recorded in results).
        quick: apply the ``[quick]`` overrides.
        seeds: override the seeds with ``0..seeds-1``.
        data_dir: where datasets are read from; ``[fallback]`` applies only when it is None.
        derived: the LR range test's numbers for ``"$NAME"`` references (None: the stand-ins of
            :data:`RANGE_TEST_VALUES`, to validate the file before the test has run).

    Raises:
        ValueError: listing every problem with its location.
    """
    problems = _Problems()
    _check_unknown(raw, "", TOP_KEYS, problems)
    for key in ("name", "description", "runtime", "reference"):
        if key in raw and not isinstance(raw[key], str):
            problems.add(key, f"must be a string, got {raw[key]!r}")
    name = raw.get("name", Path(source).stem)
    if "name" not in raw and source.startswith("<"):  # not read from a file: no stem to take
        problems.add("name", "required (it names the output folder)")
    elif isinstance(name, str) and not _VARIANT_NAME.match(name):
        problems.add(
            "name", f"must be letters, digits and - _ . + (it names a folder), got {name!r}"
        )
    raw, fallback_used = _apply_fallback(raw, data_dir, problems)
    values = derived if derived is not None else RANGE_TEST_VALUES if "range_test" in raw else None
    raw = _with_references(raw, values, problems)
    common = {}
    for section, fields in (
        ("dataset", DATASET_FIELDS),
        ("model", None),
        ("train", TRAIN_FIELDS),
        ("logging", LOGGING_FIELDS),
        ("optimizer", None),
        ("schedules", None),
    ):
        common[section] = _check_table(raw.get(section, {}), section, fields, problems)
    quick_table = _check_table(raw.get("quick", {}), "quick", None, problems)
    _check_unknown(quick_table, "quick", QUICK_KEYS, problems)
    for section, fields in (
        ("dataset", DATASET_FIELDS),
        ("model", None),
        ("train", TRAIN_FIELDS),
        ("logging", LOGGING_FIELDS),
    ):
        if section in quick_table:
            _check_table(quick_table[section], _join("quick", section), fields, problems)
    seed_value = raw.get("seeds", 1)
    if quick and "seeds" in quick_table:
        seed_value = quick_table["seeds"]
    for location, value in (
        ("seeds", raw.get("seeds", 1)),
        ("quick.seeds", quick_table.get("seeds", 1)),
    ):
        if (allowed := _seeds(value)) is not None:
            problems.add(location, f"must be {allowed}, got {value!r}")
    if seeds is not None:
        if _positive_int(seeds) is not None:
            problems.add("--seeds", f"must be a positive integer, got {seeds!r}")
        seed_value = seeds
    resolved_seeds = (
        tuple(range(seed_value)) if isinstance(seed_value, int) else tuple(seed_value or ())
    )
    raw_variants = raw.get("variants")
    variants: list[Variant] = []
    if not isinstance(raw_variants, list) or not raw_variants:
        problems.add("variants", "at least one [[variants]] table is required")
        raw_variants = []
    for index, raw_variant in enumerate(raw_variants):
        if isinstance(raw_variant, dict):
            for section, fields in (
                ("dataset", DATASET_FIELDS),
                ("train", TRAIN_FIELDS),
                ("logging", LOGGING_FIELDS),
            ):
                if isinstance(raw_variant.get(section), dict):
                    _check_table(
                        raw_variant[section], f"variants[{index}].{section}", fields, problems
                    )
        variant = _resolve_variant(
            index, raw_variant, common, quick_table if quick else None, problems
        )
        if variant is not None:
            _check_names(
                variant.dataset.get("name"),
                variant.model.get("name"),
                f"variants[{index}]",
                problems,
            )
            variants.append(variant)
    names = [v.name for v in variants]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.add("variants", f"variant name {dup!r} is used more than once")
    range_test = _stage(
        raw, quick_table, quick, "range_test", RANGE_TEST_FIELDS, RANGE_TEST_DEFAULTS, problems
    )
    _resolve_range_test(range_test, variants, problems)
    search = _stage(raw, quick_table, quick, "search", SEARCH_FIELDS, SEARCH_DEFAULTS, problems)
    _resolve_search(search, raw_variants, variants, problems)
    report = dict(_check_table(raw.get("report", {}), "report", REPORT_FIELDS, problems))
    _resolve_report(report, variants, problems)
    problems.raise_if_any(source)
    return Experiment(
        name=name,
        description=raw.get("description", ""),
        runtime=raw.get("runtime", ""),
        seeds=resolved_seeds,
        variants=tuple(variants),
        source=source,
        reference=raw.get("reference", ""),
        range_test=range_test,
        search=search,
        report=report,
        fallback_used=fallback_used,
    )


def bundled_experiments() -> dict[str, Path]:
    """The experiments shipped in ``runs/experiments``, by name: TOML files by their stem, Python
    modules (experiments that are not training runs, see ``runs.study``) by their stem with
    ``-`` for ``_``."""
    found = {path.stem: path for path in EXPERIMENTS_DIR.glob("*.toml")}
    for path in EXPERIMENTS_DIR.glob("*.py"):
        if not path.stem.startswith("_"):
            found[path.stem.replace("_", "-")] = path
    return dict(sorted(found.items()))


def find_experiment(name_or_path: str) -> Path:
    """A bundled experiment's file by name, or a ``.toml`` path."""
    bundled = bundled_experiments()
    if name_or_path in bundled:
        return bundled[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"experiment file {str(path)!r} does not exist")
        return path
    raise ValueError(
        f"unknown experiment {name_or_path!r}; bundled: {', '.join(bundled) or '(none)'}, "
        "or give a path to a .toml file"
    )


def load_experiment(
    name_or_path: str,
    *,
    quick: bool = False,
    seeds: int | None = None,
    data_dir: str | None = None,
    derived: Mapping[str, float | None] | None = None,
) -> Experiment:
    """Reads, validates and resolves a TOML experiment (a bundled name or a path); the keyword
    arguments are those of :func:`parse_experiment`."""
    path = find_experiment(name_or_path)
    if path.suffix != ".toml":
        raise ValueError(f"{name_or_path!r} is not a TOML experiment (runs.study runs it)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None
    return parse_experiment(
        raw, str(path), quick=quick, seeds=seeds, data_dir=data_dir, derived=derived
    )
