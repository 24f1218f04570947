"""Experiments from TOML or Python: layering, references, and the one validation of both.

A TOML file holds common tables, ``[[variants]]`` that override them and optional ``[quick]``
overrides (see ``runs.spec.LAYERS_DOC``; every key is in ``docs/experiment-toml.md``, generated from
``runs.spec``). :func:`parse_experiment` layers them, substitutes the LR range test's ``"$NAME"``
references, applies ``[fallback]``, and builds a resolved :class:`~runs.spec.Experiment`. A
Python :class:`~runs.spec.Experiment` goes through the same function (:func:`resolve` writes it
as a document first), so both front ends are validated by one piece of code.

Validation checks the whole document before anything trains and raises one ``ValueError`` that
lists every problem with its location (``variants[2].optimizer.betas``) and what is allowed:
unknown keys, wrong types, impossible values, unknown optimizer or schedule names (optimizers
are constructed and schedules attached on a dummy parameter, so their own checks run).
NumPy scalars, 0-d NumPy arrays and 0-d tensors (from Python) are taken as the Python numbers
they equal exactly (:func:`python_scalars`); one with no such number, and any other value a TOML
file could not hold (a class, a function, an array), is refused at its location.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runs import checks, spec
from runs.build import check_optimizer, check_schedules, takes_lr
from runs.catalog import find_experiment
from runs.checks import NAME, Problems, join
from runs.claims import claimed_variants
from runs.references import RANGE_TEST_VALUES, with_references
from runs.spec import Experiment, Variant, Written, check_table
from schedulers.files import read_toml

TOP_KEYS = (
    *(key for key, _ in spec.TOP_LEVEL),
    *spec.SECTIONS,
    "schedules",
    "fallback",
    *spec.STAGES,
    "quick",
    "variants",
)
QUICK_KEYS = ("seeds", "dataset", "model", "train", "logging", "range_test", "search")
LAYERED = (*spec.SECTIONS, "schedules")
VARIANT_KEYS = ("name", *LAYERED, "search")


def _unknown(table: dict, location: str, allowed: Sequence[str], problems: Problems) -> None:
    for key in table:
        if key not in allowed:
            problems.add(join(location, key), f"unknown key; allowed: {', '.join(allowed)}")


def _layer(section: str, table: Any, location: str, problems: Problems) -> dict:
    """One layer of a layered table as written, its keys checked where they were written (the
    optimizer's by ``check_optimizer``, once merged); ``{}`` when it is not a table."""
    if section in spec.SECTIONS and section != "optimizer":
        return check_table(spec.SECTIONS[section], table, location, problems)
    if not isinstance(table, dict):
        problems.add(location, f"must be a table, got {table!r}")
        return {}
    return table


def _merge(layers: Sequence[tuple[str, dict]]) -> tuple[dict, dict[str, str]]:
    """Merges tables key by key, later layers winning; returns the table and where each key came
    from (so an error is reported at the place the user wrote the value)."""
    merged: dict = {}
    where: dict[str, str] = {}
    for location, table in layers:
        for key, value in table.items():
            merged[key] = copy.deepcopy(value)
            where[key] = join(location, key)
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


def _resolve_variant(
    index: int,
    raw: Any,
    common: dict,
    quick: dict | None,
    problems: Problems,
    *,
    common_where: Mapping[str, str] | None = None,
    quick_unused: dict | None = None,
) -> Variant | None:
    """One ``[[variants]]`` table layered on ``common`` (written at ``common_where[section]``,
    the section's own name by default) and, when ``quick`` is given, the ``[quick]`` overrides.
    ``quick_unused`` is the ``[quick]`` table when it does not apply: the dataset sizes it would
    give are checked all the same (a file passes or fails whatever the command's mode)."""
    loc = f"variants[{index}]"
    if not isinstance(raw, dict):
        problems.add(loc, f"must be a table, got {raw!r}")
        return None
    _unknown(raw, loc, VARIANT_KEYS, problems)
    name = raw.get("name")
    if (allowed := checks.variant_name(name)) is not None:
        problems.add(join(loc, "name"), f"must be {allowed}, got {name!r}")
    tables: dict[str, dict] = {}
    wheres: dict[str, dict[str, str]] = {}
    dataset_layers: list[tuple[str, dict]] = []
    for section in LAYERED:
        own = _layer(section, raw.get(section, {}), join(loc, section), problems)
        base = (common_where or {}).get(section, section)
        layers = [(base, common.get(section, {})), (join(loc, section), own)]
        if quick is not None and section in QUICK_KEYS:
            layers.append((join("quick", section), quick.get(section, {})))
        merge = _merge_optimizer if section == "optimizer" else _merge
        tables[section], wheres[section] = merge(layers)
        if section == "dataset":
            dataset_layers = layers
    train = tables["train"]
    if ("epochs" in train) == ("steps" in train):
        # both written in one table (common, the variant's, [quick]'s): located there, once
        places = {
            wheres["train"][key].rpartition(".")[0] for key in ("epochs", "steps") if key in train
        }
        both_in_one = "epochs" in train and len(places) == 1
        where = places.pop() if both_in_one else join(loc, "train")
        problems.add(where, "give exactly one of epochs, steps")
    missing = [
        (section, key)
        for section, cls in spec.SECTIONS.items()
        for key in cls.required()
        if key not in tables[section]
    ]
    for section, key in missing:
        if section != "optimizer":  # a missing optimizer name: check_optimizer lists the names
            problems.add(join(loc, section), f"{key} is required")
    if check_optimizer(tables["optimizer"], wheres["optimizer"], join(loc, "optimizer"), problems):
        check_schedules(
            tables["optimizer"],
            tables["schedules"],
            wheres["schedules"],
            join(loc, "schedules"),
            problems,
        )
    _check_names(tables, wheres, loc, problems)
    found = _check_dataset_sizes(
        tables["dataset"], wheres["dataset"], join(loc, "dataset"), problems
    )
    over = quick_unused.get("dataset") if isinstance(quick_unused, dict) else None
    if isinstance(over, dict) and over:  # what --quick would give, checked without it too
        table, where = _merge([*dataset_layers, (join("quick", "dataset"), over)])
        if _dataset_size_problem(table, where, join(loc, "dataset")) not in (None, found):
            _check_dataset_sizes(table, where, join(loc, "dataset"), problems)
    built = all(cls.builds(tables[s]) for s, cls in spec.SECTIONS.items())
    if not isinstance(name, str) or missing or not built:  # (its problems are reported)
        return None
    sections = {s: cls.from_table(tables[s]) for s, cls in spec.SECTIONS.items()}
    search = raw.get("search", {})
    if not isinstance(search, dict):
        problems.add(join(loc, "search"), f"must be a table, got {search!r}")
        return None
    return Variant(name=name, schedules=tables["schedules"], search=search, **sections)


def _check_names(
    tables: Mapping[str, dict], wheres: Mapping[str, Mapping[str, str]], location: str,
    problems: Problems,
) -> None:  # fmt: skip
    """Dataset and model names against the registries of runs.data and runs.models, each
    located where it was written (a common table's name once, not once per variant)."""
    from runs.data import dataset_names
    from runs.models import model_names

    for key, known, how in (
        ("dataset", dataset_names(), "runs.register_dataset"),
        ("model", model_names(), "runs.register_model"),
    ):
        value = tables[key].get("name")
        if isinstance(value, str) and value not in known:
            problems.add(
                wheres[key].get("name", join(location, f"{key}.name")),
                f"unknown {key} {value!r}; allowed: {', '.join(known)} ({how} adds your own)",
            )


def _dataset_size_problem(
    table: dict, where: Mapping[str, str], location: str
) -> tuple[str, str] | None:
    """``(location, message)`` when ``train_examples`` / ``test_examples`` do not suit the
    dataset (``runs.data``'s rule, which needs no data), located where the user wrote the size
    (``where[key]``, else ``location.key``); None when they suit it."""
    from runs.data import dataset_size_problem

    sizes = [table.get(key) for key in ("train_examples", "test_examples")]
    if any(size is not None and checks.positive_int(size) is not None for size in sizes):
        return None  # (refused by the field's own check, where it was written)
    problem = dataset_size_problem(table.get("name"), *sizes)
    if problem is None:
        return None
    key, message = problem
    return where.get(key, join(location, key)), message


def _check_dataset_sizes(
    table: dict, where: Mapping[str, str], location: str, problems: Problems
) -> tuple[str, str] | None:
    """Adds :func:`_dataset_size_problem`'s problem (if any) to ``problems``; returns it."""
    found = _dataset_size_problem(table, where, location)
    if found is not None:
        problems.add(*found)
    return found


def _name_in(table: Any) -> Any:
    return table.get("name") if isinstance(table, dict) else None


def _apply_fallback(raw: dict, data_dir: str | None, problems: Problems) -> tuple[dict, bool]:
    """``[fallback]``'s dataset and model replace the common ones when no ``data_dir`` was given
    and the common dataset needs one. An explicit ``data_dir`` never falls back: a folder without
    the dataset's files is an error when the dataset is loaded."""
    if "fallback" not in raw:
        return raw, False
    fallback = raw["fallback"]
    if not isinstance(fallback, dict):
        problems.add("fallback", f"must be a table, got {fallback!r}")
        return raw, False
    _unknown(fallback, "fallback", ("dataset", "model"), problems)
    for key, value in fallback.items():
        if not isinstance(value, dict):
            problems.add(join("fallback", key), f"must be a table, got {value!r}")
    dataset = raw.get("dataset")
    primary = dataset.get("name") if isinstance(dataset, dict) else None
    from runs.data import dataset_available

    if data_dir is not None or not isinstance(primary, str) or dataset_available(primary, None):
        # not used: validated all the same (the whole file is checked, whichever parts apply)
        for key in ("dataset", "model"):
            if isinstance(fallback.get(key), dict):
                check_table(spec.SECTIONS[key], fallback[key], join("fallback", key), problems)
        names = {key: {"name": _name_in(fallback.get(key))} for key in ("dataset", "model")}
        _check_names(names, {"dataset": {}, "model": {}}, "fallback", problems)
        if isinstance(fallback.get("dataset"), dict):
            _check_dataset_sizes(fallback["dataset"], {}, join("fallback", "dataset"), problems)
        return raw, False
    return {**raw, **{k: fallback[k] for k in ("dataset", "model") if k in fallback}}, True


def _stage(raw: dict, quick_table: dict, quick: bool, key: str, problems: Problems) -> dict | None:
    """A stage table (``range_test``, ``search``) with its ``[quick]`` overrides."""
    cls = spec.STAGES[key]
    if key not in raw:
        if key in quick_table:
            problems.add(join("quick", key), f"overrides a [{key}] section the file does not have")
        return None
    table = dict(check_table(cls, raw[key], key, problems))
    over = check_table(cls, quick_table.get(key, {}), join("quick", key), problems)
    if quick:
        for name, value in over.items():
            merged = isinstance(value, dict) and isinstance(table.get(name), dict)
            table[name] = {**table[name], **value} if merged else value
    return table


def _range_test(table: dict | None, names: list[str], variants: list[Variant], problems: Problems):
    if table is None:
        return None
    table = {"variant": names[0] if names else None, **table}
    if not spec.RangeTest.builds(table):  # (a value of a wrong type is reported already)
        return None
    result = spec.RangeTest.from_table(table)
    if names and result.variant not in names:
        allowed = ", ".join(names)
        problems.add(
            "range_test.variant", f"unknown variant {result.variant!r}; allowed: {allowed}"
        )
    tested = next((v for v in variants if v.name == result.variant), None)
    if tested is not None and not takes_lr(tested.optimizer.name):
        problems.add(
            "range_test.variant",
            f"variant {tested.name!r} uses {tested.optimizer.name}, which takes no lr (it chooses "
            "its own step size): the range test sweeps lr; name a variant whose optimizer has one",
        )
    if result.start_lr >= result.end_lr:
        problems.add(
            "range_test",
            f"start_lr must be below end_lr, got start_lr={result.start_lr!r}, "
            f"end_lr={result.end_lr!r}",
        )
    _range_test_limits(result, problems)
    return result


def _range_test_limits(result: spec.RangeTest, problems: Problems) -> None:
    """The bounds ``schedulers.range_test.check_options`` puts on a range test, checked with the
    file: ``start_lr`` and ``end_lr`` at most the largest value of torch's default dtype (float32
    unless changed: the models' parameters; ``rate_limit_problem``) and
    ``curvature_batches`` at most ``MAX_CURVATURE_BATCHES``."""
    from schedulers.range_test import MAX_CURVATURE_BATCHES, rate_limit_problem

    for key in ("start_lr", "end_lr"):
        value = getattr(result, key)
        if checks.positive_number(value) is None and (problem := rate_limit_problem(value)):
            problems.add(join("range_test", key), f"{problem}, got {value!r}")
    batches = result.curvature_batches
    if checks.non_negative_int(batches) is None and batches > MAX_CURVATURE_BATCHES:
        problems.add(
            "range_test.curvature_batches",
            f"must be at most {MAX_CURVATURE_BATCHES} (they are held in memory together), "
            f"got {batches!r}",
        )


def _grid_names(grid: Any, location: str, problems: Problems) -> None:
    """Refuses a grid (one its own check allows) two of whose rates would share a search run's
    folder (``runs.tuning.search_run_name``: 6 significant digits), or with a rate beyond the
    largest value of the models' dtype (``schedulers.range_test.rate_limit_problem``: it cannot
    be applied to them)."""
    from runs.tuning import colliding_rates
    from schedulers.range_test import rate_limit_problem

    if checks.lr_grid(grid) is not None:
        return  # (refused by its own check)
    if (problem := rate_limit_problem(max(grid))) is not None:
        problems.add(location, f"rates {problem}, got {max(grid)!r}")
    if (pair := colliding_rates(grid)) is not None:
        first, second, name = pair
        problems.add(
            location,
            f"rates {first!r} and {second!r} would share the search run folder {name} (a rate "
            "is named by its first 6 significant digits); give rates that differ within their "
            f"first 6 significant digits, got {grid!r}",
        )


def _train_tables(raw: dict, quick_table: dict, raw_variants: list) -> list[tuple[str, dict]]:
    """Every ``train`` table the file writes, with its location: ``[train]``, each variant's,
    ``[quick] train``, ``[search] train`` and ``[quick] search.train`` (whichever apply to the
    command's mode: a file passes or fails whatever the mode)."""
    tables = [("train", raw.get("train")), ("quick.train", quick_table.get("train"))]
    tables += [
        (f"variants[{index}].train", variant.get("train"))
        for index, variant in enumerate(raw_variants)
        if isinstance(variant, dict)
    ]
    for location, section in (
        ("search", raw.get("search")),
        ("quick.search", quick_table.get("search")),
    ):
        if isinstance(section, dict):
            tables.append((join(location, "train"), section.get("train")))
    return [(location, table) for location, table in tables if isinstance(table, dict)]


def _check_budget(train: dict, location: str, problems: Problems) -> None:
    """Refuses ``epochs`` or ``steps`` above :data:`runs.checks.MAX_UPDATES` at its location (a
    value that is not a positive integer is refused by its own check): such a run would start and
    never end. (``runs.experiment.training_problem`` bounds ``epochs`` times the updates of an
    epoch too, once the dataset's size is known.)"""
    for key in ("epochs", "steps"):
        value = train.get(key)
        if checks.positive_int(value) is None and value > checks.MAX_UPDATES:
            problems.add(
                join(location, key),
                f"must be at most {checks.MAX_UPDATES} (runs.checks.MAX_UPDATES: a larger "
                f"budget would run for months), got {value!r}",
            )


def _budget(train: dict) -> str:
    return ", ".join(f"{key}={train[key]!r}" for key in ("epochs", "steps") if key in train)


def _search_train(raw: dict, quick_table: dict, quick: bool, problems: Problems) -> None:
    """Checks ``[search] train`` and ``[quick] search.train`` (each where it was written; one
    that is not a table is refused once, by the ``[search]`` table's check): their keys are
    ``[train]``'s, each gives at most one of epochs, steps, and under ``--quick`` (the quick
    table merged over the file's key by key, as ``[quick] train`` over ``[train]``) the two do
    not give the budget in different units, which would set both."""
    layers = []
    for location, section in (
        ("search", raw["search"]),
        ("quick.search", quick_table.get("search")),
    ):
        train = section.get("train") if isinstance(section, dict) else None
        if isinstance(train, dict):
            check_table(spec.Train, train, join(location, "train"), problems)
            if "epochs" in train and "steps" in train:
                problems.add(
                    join(location, "train"),
                    "give at most one of epochs, steps (the search runs' budget, replacing "
                    f"[train]'s), got {_budget(train)}",
                )
        layers.append(train if isinstance(train, dict) else {})
    written, over = layers
    units = ("epochs", "steps")
    if quick and all(sum(unit in t for unit in units) == 1 for t in (written, over)):
        mine = next(unit for unit in units if unit in over)
        theirs = next(unit for unit in units if unit in written)
        if mine != theirs:
            problems.add(
                "quick.search.train",
                f"gives {mine} while [search] train gives {theirs}: the tables merge key by key "
                "(as [quick] train and [train] do), so both would be set; give the quick budget "
                f"in {theirs}, got {_budget(over)} over {_budget(written)}",
            )


def _search(
    table: dict | None,
    raw: dict,
    quick_table: dict,
    quick: bool,
    raw_variants: list,
    variants: list[Variant],
    problems: Problems,
):
    """The resolved ``[search]``: each searched variant's grid, from ``[quick] search.lr`` under
    ``--quick`` (the quick layer wins, over a variant's own grid too), else the variant's own
    ``search.lr``, else ``[search] lr``."""
    if table is None:
        for index, raw_variant in enumerate(raw_variants):
            if isinstance(raw_variant, dict) and "search" in raw_variant:
                problems.add(f"variants[{index}].search", "needs a [search] section")
        return None
    _search_train(raw, quick_table, quick, problems)
    quick_search = quick_table.get("search")
    quick_search = quick_search if isinstance(quick_search, dict) else {}
    for location, section in (("search", raw["search"]), ("quick.search", quick_search)):
        if isinstance(section, dict) and "lr" in section:
            _grid_names(section["lr"], join(location, "lr"), problems)
    quick_grid = quick_search.get("lr") if quick else None
    grids = {}
    for index, variant in enumerate(variants):
        location = f"variants[{index}].search"
        own = variant.search
        _unknown(own, location, ("lr",), problems)
        if not takes_lr(variant.optimizer.name):  # SPS, SLS: nothing to search; trained as is
            if "lr" in own:
                problems.add(
                    join(location, "lr"),
                    f"{variant.optimizer.name} takes no lr (it chooses its own step size)",
                )
            continue
        if "lr" in own and (allowed := checks.lr_grid(own["lr"])) is not None:
            problems.add(join(location, "lr"), f"must be {allowed}, got {own['lr']!r}")
        if "lr" in own:
            _grid_names(own["lr"], join(location, "lr"), problems)
        grid = quick_grid if quick_grid is not None else own.get("lr", table.get("lr"))
        if grid is None:
            problems.add(location, "no learning-rate grid: give search.lr here or in [search]")
        if "lr" in variant.schedules:
            problems.add(location, "the lr of a variant with an lr schedule cannot be searched")
        grids[variant.name] = grid
    if problems.items:  # refused: nothing to build (a grid may be missing)
        return None
    table = {k: v for k, v in table.items() if k != "lr"}
    return dataclasses.replace(spec.Search.from_table(table), grids=grids)


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
        ValueError: listing every problem with its location (``seeds`` that is not a positive
            integer is refused first, alone).
    """
    checks.check_seeds(seeds)
    document = copy.deepcopy(raw)  # (as written: what resolve() resolves again)
    problems = Problems()
    _unknown(raw, "", TOP_KEYS, problems)
    for key in ("name", "description", "runtime", "reference"):
        if key in raw and not isinstance(raw[key], str):
            problems.add(key, f"must be a string, got {raw[key]!r}")
    name = raw.get("name", Path(source).stem)
    if "name" not in raw and source.startswith("<"):  # not read from a file: no stem to take
        problems.add("name", "required (it names the output folder)")
    elif isinstance(name, str) and not NAME.match(name):
        problems.add("name", f"must be {checks.folder_name(None)}, got {name!r}")
    written = raw
    raw, fallback_used = _apply_fallback(raw, data_dir, problems)
    # where the common tables were written: a table the used fallback replaced is reported there
    common_where = {
        s: join("fallback", s)
        if fallback_used and s in ("dataset", "model") and s in written["fallback"]
        else s
        for s in LAYERED
    }
    values = derived if derived is not None else RANGE_TEST_VALUES if "range_test" in raw else None
    raw = with_references(raw, values, problems)
    raw = python_scalars(raw, "", problems)
    common = {s: _layer(s, raw.get(s, {}), common_where[s], problems) for s in LAYERED}
    quick_table = raw.get("quick", {})
    if not isinstance(quick_table, dict):
        problems.add("quick", f"must be a table, got {quick_table!r}")
        quick_table = {}
    _unknown(quick_table, "quick", QUICK_KEYS, problems)
    for section in ("dataset", "model", "train", "logging"):
        if section in quick_table:
            cls = spec.SECTIONS[section]
            check_table(cls, quick_table[section], join("quick", section), problems)
    seed_value = raw.get("seeds", 1)
    if quick and "seeds" in quick_table:
        seed_value = quick_table["seeds"]
    for location, value in (
        ("seeds", raw.get("seeds", 1)),
        ("quick.seeds", quick_table.get("seeds", 1)),
    ):
        if (allowed := checks.seeds(value)) is not None:
            problems.add(location, f"must be {allowed}, got {value!r}")
    if seeds is not None:
        seed_value = seeds
    if checks.seeds(seed_value) is not None:
        resolved_seeds: tuple = ()  # (refused above, or by the override's own check)
    elif isinstance(seed_value, int):
        resolved_seeds = tuple(range(seed_value))
    else:
        resolved_seeds = tuple(seed_value)
    raw_variants = raw.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        problems.add("variants", "at least one [[variants]] table is required")
        raw_variants = []
    variants: list[Variant] = []
    for index, raw_variant in enumerate(raw_variants):
        variant = _resolve_variant(
            index,
            raw_variant,
            common,
            quick_table if quick else None,
            problems,
            common_where=common_where,
            quick_unused=None if quick else quick_table,
        )
        if variant is not None:
            variants.append(variant)
    # every variant named in the file (one with a problem is not built, but it is not unknown)
    names = [
        r["name"] for r in raw_variants if isinstance(r, dict) and isinstance(r.get("name"), str)
    ]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.add("variants", f"variant name {dup!r} is used more than once")
    for location, table in _train_tables(raw, quick_table, raw_variants):
        _check_budget(table, location, problems)
    range_test = _range_test(
        _stage(raw, quick_table, quick, "range_test", problems), names, variants, problems
    )
    search = _search(
        _stage(raw, quick_table, quick, "search", problems),
        raw,
        quick_table,
        quick,
        raw_variants,
        variants,
        problems,
    )
    report = check_table(spec.Report, raw.get("report", {}), "report", problems)
    claims = report.get("claims")  # (one that is not a list is refused by its field's check)
    for index, claim in enumerate(claims if isinstance(claims, list) else []):
        for claimed in claimed_variants(claim) if isinstance(claim, dict) else ():
            if claimed not in names:
                allowed = ", ".join(names)
                problems.add(
                    f"report.claims[{index}]", f"unknown variant {claimed!r}; allowed: {allowed}"
                )
    from runs.results import variant_prefix

    prefixes = list(dict.fromkeys(variant_prefix(n) for n in names))
    panels = report.get("panels")
    for panel in panels if isinstance(panels, list) else []:
        if isinstance(panel, str) and panel not in prefixes:
            problems.add(
                "report.panels",
                f"unknown panel {panel!r}; allowed: the prefixes {', '.join(prefixes)} of the "
                'variant names "<prefix>.<rest>"',
            )
    published = report.get("published")
    values = published.get("values") if isinstance(published, dict) else None
    for key in values if isinstance(values, dict) else ():
        if key not in names and key not in prefixes:
            problems.add(
                "report.published.values",
                f"unknown variant {key!r}; allowed: a variant name ({', '.join(names)}) or a "
                f'prefix ({", ".join(prefixes)}) of the names "<prefix>.<rest>"',
            )
    if "reach" in report and report["reach"] not in names:
        problems.add(
            "report.reach", f"unknown variant {report['reach']!r}; allowed: {', '.join(names)}"
        )
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
        report=spec.Report.from_table(report),
        fallback_used=fallback_used,
        written=Written(
            document,
            source,
            quick=quick,
            seeds=seeds,
            data_dir=data_dir,
            derived=None if derived is None else dict(derived),
        ),
    )


SCALARS_ALLOWED = (
    "a bool, int, float or str (TOML's scalars; a NumPy scalar, a 0-d NumPy array or a 0-d "
    "tensor is taken as the Python number it equals exactly), a list or a table of them"
)


def python_scalars(value: Any, location: str, problems: Problems) -> Any:
    """A copy of the document ``value`` (dicts and lists) in which every NumPy scalar
    (``np.float32``, ``np.float64``, ``np.int64``, ``np.bool_``, ...), 0-d NumPy array and 0-d
    torch tensor (``torch.tensor(0.1)``) is the Python ``float``, ``int``, ``bool`` or ``str`` it
    equals exactly (:func:`plain_scalar`: ``np.float32(0.1)`` becomes ``0.10000000149011612``,
    its exact value), so that ``experiment.json``, fingerprints and checkpoints hold plain
    numbers (a checkpoint holding a NumPy scalar cannot be read back by the weights-only
    unpickler). Any other value that a TOML file could not hold and ``experiment.json`` could
    not record (``None`` aside) is added to ``problems`` at its location, before anything is
    written: a scalar with no exactly equal Python one (a complex, a ``longdouble`` between two
    floats, a date), an array or tensor of several values, a class, a function, a module."""
    if isinstance(value, dict):
        return {k: python_scalars(v, join(location, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [python_scalars(v, f"{location}[{i}]", problems) for i, v in enumerate(value)]
    if value is None or (isinstance(value, bool | int | float | str) and _python(value)):
        return value
    plain = plain_scalar(value)
    if plain is None:
        problems.add(location, f"must be {SCALARS_ALLOWED}, got {value!r:.80}{_hint(value)}")
        return value
    return plain


def _hint(value: Any) -> str:
    """How to give ``value`` (refused by :func:`python_scalars`) as a value that can be recorded."""
    import inspect

    import torch

    if isinstance(value, np.ndarray | torch.Tensor) and value.ndim > 0:
        return f" (an array of shape {tuple(value.shape)}: give a list, value.tolist())"
    if inspect.isclass(value) or inspect.isroutine(value) or isinstance(value, functools.partial):
        what = f"{type(value).__name__} {getattr(value, '__qualname__', '')}".strip()
        return (
            f" ({what}: an option is recorded in experiment.json and the fingerprint, so give "
            "its name as a string and look the class or function up in the factory)"
        )
    if callable(getattr(value, "to_dict", None)):
        return f" ({type(value).__name__}: give its to_dict() form)"
    return f" ({type(value).__name__})"


def plain_scalar(value: Any) -> bool | int | float | str | None:
    """The Python scalar exactly equal to ``value`` when it is a Python scalar already, a NumPy
    scalar, a 0-d NumPy array or a 0-d torch tensor (on any device but ``meta``); None when it
    is none of these, or one with no exactly equal Python scalar (a complex, a ``longdouble``
    between two floats, a date, an object array's item)."""
    import torch

    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]  # (a NumPy scalar; an object array gives its item)
    if isinstance(value, bool | int | float | str) and _python(value):
        return value
    if isinstance(value, np.generic):
        return _plain_scalar(value)
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.device.type != "meta":
        if value.dtype.is_complex:
            return None
        item = value.item()  # (a float16/32/64 value is a double exactly; an int64 an int)
        return item if isinstance(item, bool | int | float) else None
    return None


def _python(value: Any) -> bool:
    """Whether the scalar ``value`` is not a NumPy one (``np.float64`` and ``np.str_`` are
    subclasses of ``float`` and ``str``)."""
    return not isinstance(value, np.generic)


def _plain_scalar(value: np.generic) -> bool | int | float | str | None:
    """The Python scalar exactly equal to the NumPy scalar ``value``, or None when there is none."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.floating):
        plain = float(value)
        same = type(value)(plain) == value or (np.isnan(value) and math.isnan(plain))
        return plain if same else None
    return None


def as_toml_values(value: Any) -> Any:
    """A copy of ``value`` with tuples as lists and mappings as dicts, as ``tomllib`` gives them."""
    if isinstance(value, Mapping):
        return {key: as_toml_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_toml_values(item) for item in value]
    return value


def document_of(experiment: Experiment) -> dict[str, Any]:
    """A Python :class:`~runs.spec.Experiment` as a TOML document (every variant complete), to be
    validated by :func:`parse_experiment` like a file.

    ``Search.grids`` is what this module resolves (each variant's grid): given in Python, it is
    refused (a TOML file cannot give it either); on an experiment this module resolved
    (``experiment.written`` set), each variant's grid is written as its own ``search.lr``.

    Raises:
        TypeError: ``experiment`` is not an Experiment.
        ValueError: ``Search.grids`` given in Python.
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(
            f"experiment must be a runs.spec.Experiment, got {type(experiment).__name__}"
        )
    grids = None if experiment.search is None else experiment.search.grids
    if grids is not None and experiment.written is None:
        raise ValueError(
            "search.grids: resolved by runs.load from the grids written, not given; give "
            "Search(lr=[...]) for every variant or Variant(search={'lr': [...]}) for one, got "
            f"grids={grids!r}"
        )
    raw: dict[str, Any] = {"name": experiment.name, "seeds": experiment.seeds}
    for key in ("description", "runtime", "reference"):
        if getattr(experiment, key):
            raw[key] = getattr(experiment, key)
    if isinstance(raw["seeds"], tuple):
        raw["seeds"] = list(raw["seeds"])
    for key in spec.STAGES:
        value = getattr(experiment, key)
        if value is not None:
            raw[key] = {k: v for k, v in value.to_table().items() if k != "grids"}
    variants = []
    for variant in experiment.variants:  # (Variant objects: Experiment checks its fields' types)
        table = variant.to_dict()
        search = dict(variant.search)
        if grids is not None and grids.get(variant.name) is not None:
            search["lr"] = list(grids[variant.name])  # (the grid it was resolved with)
        if search:
            table["search"] = search
        variants.append(table)
    raw["variants"] = variants
    return as_toml_values(raw)


def resolve(
    experiment: Experiment,
    *,
    quick: bool = False,
    seeds: int | None = None,
    data_dir: str | None = None,
    derived: Mapping[str, float | None] | None = None,
) -> Experiment:
    """An experiment validated and resolved as a file would be (keyword arguments of
    :func:`parse_experiment`); ``runs.run`` trains what it returns.

    - An experiment this module resolved (``load_experiment``, ``parse_experiment``: its
      ``written`` is set) and unchanged since is resolved again from the document it was
      resolved from, as ``stepsize run`` resolves the file: its range-test references take
      ``derived`` (the range test's numbers), ``[quick]`` applies under ``quick``, a common
      ``[search] lr`` grid and ``[fallback]`` count as in the file. ``seeds`` overrides the
      seeds (None: those it was resolved with). ``quick`` and ``data_dir`` must resolve the
      document to this same experiment (they are those it was resolved with, or make no
      difference to it); other ones are refused (load it again with them).
    - Any other experiment (built in Python, or a copy changed with ``dataclasses.replace``) is
      resolved from its values. It has no ``[quick]`` layer: ``quick=True`` is refused, except
      for a changed copy of one resolved with ``quick=True``, which must keep it. A changed copy
      whose document gives range-test references is refused (they hold the values it was
      resolved with, not the range test's of the run).

    Raises:
        ValueError: the experiment is invalid (every problem, with its location), or the cases
            above.
    """
    written = experiment.written if isinstance(experiment, Experiment) else None
    if written is not None and _resolved_again(written) == experiment:
        if quick and written.python:
            raise ValueError(_python_quick(experiment))
        seeds = written.seeds if seeds is None else seeds
        if (quick, data_dir) != (written.quick, written.data_dir):
            other = _resolved_again(written, quick=quick, seeds=seeds, data_dir=data_dir)
            if dataclasses.replace(other, seeds=experiment.seeds) != experiment:
                raise ValueError(
                    f"quick={quick!r}, data_dir={data_dir!r}: the experiment was resolved from "
                    f"{written.source} with quick={written.quick!r}, "
                    f"data_dir={written.data_dir!r}, and these options resolve it to other "
                    "variants; pass the options it was resolved with, or load it again with "
                    "these (runs.load.load_experiment), or pass its .toml path"
                )
        again = _resolved_again(
            written, quick=quick, seeds=seeds, data_dir=data_dir, derived=derived
        )
        return _from_python(again) if written.python else again
    loaded_quick = written is not None and not written.python and written.quick
    if quick != loaded_quick and (written is None or written.python):
        raise ValueError(_python_quick(experiment))
    if quick != loaded_quick:
        raise ValueError(
            f"quick={quick!r}: this experiment was resolved from {written.source} with "
            f"quick={written.quick!r} and changed since (dataclasses.replace), so its [quick] "
            f"layer can neither be applied nor undone; pass quick={written.quick!r}, or load "
            "the file again with the quick you want and change that"
        )
    if written is not None and not written.python and _has_references(written.document):
        raise ValueError(
            f"experiment: changed since it was resolved from {written.source} "
            "(dataclasses.replace), and that file gives optimizer or schedule values as the LR "
            'range test\'s numbers ("$NAME"), which the changed copy holds as the values it was '
            "resolved with (stand-ins unless derived was given), not the numbers the run's range "
            "test measures; change the file, or a dict in the TOML layout, and pass that"
        )
    source = experiment.source if experiment.source != "<python>" else f"<{experiment.name}>"
    resolved = parse_experiment(
        document_of(experiment),
        source,
        seeds=seeds,
        data_dir=data_dir,
        derived=derived,
    )
    return dataclasses.replace(_from_python(resolved), fallback_used=experiment.fallback_used)


def _resolved_again(written: Written, **options: Any) -> Experiment:
    """:func:`parse_experiment` of the document ``written`` holds, with ``options`` (by default
    the options it was resolved with)."""
    defaults = {
        "quick": written.quick,
        "seeds": written.seeds,
        "data_dir": written.data_dir,
        "derived": written.derived,
    }
    return parse_experiment(written.document, written.source, **{**defaults, **options})


def _from_python(experiment: Experiment) -> Experiment:
    """``experiment`` (resolved from a document written from a Python experiment) marked so."""
    assert experiment.written is not None
    written = dataclasses.replace(experiment.written, python=True)
    return dataclasses.replace(experiment, written=written)


def _python_quick(experiment: Experiment) -> str:
    return (
        "quick: a Python experiment (runs.spec.Experiment) has no [quick] layer, so quick=True "
        f"would train its configuration as it is into {experiment.name + '-quick'!r}; build the "
        "quick configuration in Python, or pass a .toml path or a dict in the TOML layout with "
        "a [quick] table"
    )


def _has_references(document: dict) -> bool:
    """Whether ``document`` gives an optimizer or schedule value as an LR range test's number
    (``"$NAME"``, ``"F * $NAME"``)."""
    found = Problems()
    with_references(document, None, found)
    return bool(found.items)


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
    raw = read_toml(path)
    return parse_experiment(
        raw, str(path), quick=quick, seeds=seeds, data_dir=data_dir, derived=derived
    )
