"""Experiments written in TOML: the schema, its complete validation, and the resolved variants.

An experiment file, with every key (defaults in brackets)::

    name = "mnist1d-schedules"          # [the file's stem]; the output folder's name
    description = "one line for `stepsize list`"
    runtime = "about 2 minutes on 2 CPU cores"   # shown by `stepsize list`
    seeds = 3                           # N means seeds 0..N-1, or a list such as [0, 7]

    [dataset]                           # runs.data.load_dataset(name, normalize=...)
    name = "mnist1d"
    normalize = true

    [model]                             # runs.models.build_model(name, ..., **options)
    name = "mnist1d-cnn"                # every other key is a model option

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
    name = "sgd"                        # sgd adam adamw adagrad rmsprop adadelta, torch.<same>
    lr = 0.1

    [schedules]                         # any param-group key -> a schedule's to_dict() form
    lr = {name = "cosine_decay", learning_rate = 0.3, decay_steps = 20}

    [quick]                             # overrides applied by --quick (tables train, logging,
    seeds = 1                           # dataset, model; and seeds)
    train = {epochs = 2}

    [[variants]]                        # at least one
    name = "cosine"                     # letters, digits, - _ . +
    schedules = {lr = {...}}            # any of dataset, model, train, logging, optimizer,
                                        # schedules: overrides of the common settings

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


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The optimizer class for a configuration name: ``"adam"`` is ``optim.Adam``, ``"torch.adam"``
    is ``torch.optim.Adam`` (the control column)."""
    base = name.removeprefix("torch.")
    if base not in OPTIMIZER_CLASS_NAMES:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZER_NAMES)}")
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
        """Hash of everything that changes the numbers (logging cadence excluded) and the seed."""
        numeric = {k: v for k, v in self.to_dict().items() if k != "logging"}
        text = json.dumps({"variant": numeric, "seed": seed}, sort_keys=True)
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

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "runtime": self.runtime,
            "seeds": list(self.seeds),
            "source": self.source,
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
DATASET_FIELDS: dict[str, Checker] = {"name": _text, "normalize": _boolean}
DATASET_DEFAULTS = {"normalize": True}
SECTIONS = ("dataset", "model", "train", "logging", "optimizer", "schedules")
TOP_KEYS = ("name", "description", "runtime", "seeds", *SECTIONS, "quick", "variants")
QUICK_KEYS = ("seeds", "dataset", "model", "train", "logging")
VARIANT_KEYS = ("name", *SECTIONS)


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
        problems.add(
            location, f"an optimizer name is required; allowed: {', '.join(OPTIMIZER_NAMES)}"
        )
        return False
    if name not in OPTIMIZER_NAMES:
        problems.add(
            where.get("name", location),
            f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZER_NAMES)}",
        )
        return False
    try:
        cls = optimizer_class(name)
    except ValueError as err:
        problems.add(where.get("name", location), str(err))
        return False
    allowed = [
        p.name
        for p in list(inspect.signature(cls.__init__).parameters.values())[2:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    ok = True
    for key in spec:
        if key != "name" and key not in allowed:
            problems.add(
                where[key], f"unknown hyperparameter of {name}; allowed: {', '.join(allowed)}"
            )
            ok = False
    if not ok:
        return False
    # Each hyperparameter alone first, so that a rejected value is reported where it was written;
    # then all together (some checks involve several).
    for key in spec:
        if key != "name" and (err := _rejection({"name": name, key: spec[key]})) is not None:
            problems.add(where[key], f"{name} rejects {key}={spec[key]!r}: {err}")
            ok = False
    if ok and (err := _rejection(spec)) is not None:
        problems.add(location, f"{name} rejects these hyperparameters: {err}")
        ok = False
    return ok


def _rejection(spec: dict) -> str | None:
    """Why the optimizer rejects ``spec`` on a dummy parameter, or None if it accepts it."""
    try:
        make_optimizer(spec, [torch.zeros(1, requires_grad=True)])
    except (ValueError, TypeError, RuntimeError, IndexError) as err:
        return str(err)
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
        from runs.data import DATASETS

        if dataset not in DATASETS:
            problems.add(
                _join(location, "dataset.name"),
                f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}",
            )
    if isinstance(model, str):
        from runs.models import MODELS

        if model not in MODELS:
            problems.add(
                _join(location, "model.name"),
                f"unknown model {model!r}; allowed: {', '.join(MODELS)}",
            )


def parse_experiment(
    raw: dict, source: str, *, quick: bool = False, seeds: int | None = None
) -> Experiment:
    """Validates a parsed TOML document completely and resolves its variants.

    Args:
        raw: the document as ``tomllib`` parsed it.
        source: the file it came from (named in errors and recorded in results).
        quick: apply the ``[quick]`` overrides.
        seeds: override the seeds with ``0..seeds-1``.

    Raises:
        ValueError: listing every problem with its location.
    """
    problems = _Problems()
    _check_unknown(raw, "", TOP_KEYS, problems)
    for key in ("name", "description", "runtime"):
        if key in raw and not isinstance(raw[key], str):
            problems.add(key, f"must be a string, got {raw[key]!r}")
    name = raw.get("name", Path(source).stem)
    if isinstance(name, str) and not _VARIANT_NAME.match(name):
        problems.add(
            "name", f"must be letters, digits and - _ . + (it names a folder), got {name!r}"
        )
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
    problems.raise_if_any(source)
    return Experiment(
        name=name,
        description=raw.get("description", ""),
        runtime=raw.get("runtime", ""),
        seeds=resolved_seeds,
        variants=tuple(variants),
        source=source,
    )


def bundled_experiments() -> dict[str, Path]:
    """The experiments shipped in ``runs/experiments``, by name (the file's stem)."""
    return {path.stem: path for path in sorted(EXPERIMENTS_DIR.glob("*.toml"))}


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
    name_or_path: str, *, quick: bool = False, seeds: int | None = None
) -> Experiment:
    """Reads, validates and resolves an experiment (a bundled name or a TOML path)."""
    path = find_experiment(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None
    return parse_experiment(raw, str(path), quick=quick, seeds=seeds)
