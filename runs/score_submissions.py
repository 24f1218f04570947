"""Submissions to ``stepsize score``: an optimizer, its schedules, its hyperparameters and the
search space it declares for external tuning; from Python or from a TOML file.

A submission's optimizer table and schedules are the table forms of ``runs.spec`` (an optimizer
``name`` as in experiments, ``"sgd"``, ``"torch.adam"``, or any ``torch.optim.Optimizer`` by import
path, ``"optim.Prodigy"``, ``"torch.optim.NAdam"``; schedules as ``schedulers`` dicts), in which
any value may be a reference ``"$name"`` or ``"F * $name"``:

* ``$budget``: the run's step budget (the workload's budget, times the self-tuning multiplier
  under self-tuning), rounded to the nearest integer (at least 1), so a schedule's horizon can
  follow the budget: ``decay_steps = "0.95 * $budget"``;
* ``$<hyperparameter>``: the value of a hyperparameter: the submission's own
  (``hyperparameters``, the point self-tuning runs) or, under external tuning, the trial's
  sample from ``search``.

TOML::

    [[submissions]]
    name = "adam-warmup-cosine"
    description = "Adam, 5% linear warmup then cosine to 0 at the budget"
    optimizer = {name = "adam", lr = "$lr"}
    schedules = {lr = {name = "linear_warmup", warmup_steps = "0.05 * $budget", schedule = {
        name = "cosine_decay", learning_rate = "$lr", decay_steps = "0.95 * $budget"}}}
    hyperparameters = {lr = 1e-3}                # every referenced name needs a value here
    search = {lr = {log_uniform = [1e-4, 1e-1]}}  # or uniform = [a, b], choice = [...]

A submission with an empty ``search`` takes part in self-tuning only.

External-tuning trials are drawn by :func:`sample_points`: a scrambled Halton sequence (the
quasi-random search AlgoPerf's baselines use; Bousquet et al. 2017, "Critical hyper-parameters:
no random, no cry") with a random shift, seeded by ``(seed, study, submission name)``, mapped to
each range.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runs.build import attach_schedules, make_optimizer
from runs.checks import folder_name
from schedulers.files import read_toml

SEARCH_KINDS = ("log_uniform", "uniform", "choice")
SUBMISSION_KEYS = ("name", "description", "optimizer", "schedules", "hyperparameters", "search")
_REFERENCE = re.compile(r"^\s*(?:([-+0-9.eE]+)\s*\*\s*)?\$([A-Za-z_][A-Za-z0-9_]*)\s*$")
BUDGET = "budget"


def _references(value: Any, where: str, found: dict[str, str]) -> None:
    """Collects every ``$name`` in ``value`` (nested dicts and lists) into ``found``
    (name -> where it appears); a ``$`` outside the two forms is an error."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _references(item, f"{where}.{key}", found)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _references(item, f"{where}[{i}]", found)
    elif isinstance(value, str) and "$" in value:
        match = _REFERENCE.match(value)
        if match is None:
            raise ValueError(
                f"{where} = {value!r}; allowed references: '$name' or 'F * $name' with a number F"
            )
        if match.group(1) is not None:
            try:
                float(match.group(1))
            except ValueError:
                message = f"{where} = {value!r}: {match.group(1)!r} is not a number"
                raise ValueError(message) from None
        found.setdefault(match.group(2), where)


def substitute(value: Any, values: Mapping[str, Any]) -> Any:
    """``value`` with every reference replaced: ``"$x"`` by ``values["x"]``, ``"F * $x"`` by
    ``F * values["x"]``; references to ``budget`` give integers (rounded, at least 1).

    >>> substitute({"decay_steps": "0.95 * $budget", "lr": "$lr", "name": "c"},
    ...            {"budget": 600, "lr": 0.1})
    {'decay_steps': 570, 'lr': 0.1, 'name': 'c'}
    """
    if isinstance(value, Mapping):
        return {key: substitute(item, values) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(item, values) for item in value]
    if not (isinstance(value, str) and "$" in value):
        return value
    match = _REFERENCE.match(value)
    if match is None or match.group(2) not in values:
        raise ValueError(f"cannot resolve {value!r}; known names: {', '.join(sorted(values))}")
    factor, name = match.group(1), match.group(2)
    resolved = values[name]
    if factor is not None:
        resolved = float(factor) * resolved
    if name == BUDGET:
        return max(1, round(resolved))
    return resolved


@dataclasses.dataclass(frozen=True)
class Submission:
    """A training algorithm to score: optimizer, schedules, hyperparameters, search space.

    Attributes:
        name: letters, digits and ``- _ . +``.
        optimizer: ``runs.spec.Optimizer``'s table (``name`` plus constructor arguments),
            values may be references (module docstring).
        schedules: param-group key -> a ``schedulers`` dict form (may hold references).
        hyperparameters: name -> value: the point self-tuning runs, and the values of the names
            external tuning does not search. Every ``$name`` (but ``$budget``) needs one.
        search: name -> ``{"log_uniform": [low, high]}`` (``0 < low < high``),
            ``{"uniform": [low, high]}`` (``low < high``) or ``{"choice": [v, ...]}``: the space
            external tuning samples. Empty: self-tuning only.
        description: one line for the table's notes.

    Raises ``ValueError`` naming the field, the value and what is allowed; the optimizer and its
    schedules are also built once on a dummy parameter at ``hyperparameters`` so that their own
    checks run before anything trains.
    """

    name: str
    optimizer: dict
    schedules: dict = dataclasses.field(default_factory=dict)
    hyperparameters: dict = dataclasses.field(default_factory=dict)
    search: dict = dataclasses.field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        allowed = folder_name(self.name)
        if allowed is not None:
            raise ValueError(f"Submission.name must be {allowed}, got name={self.name!r}")
        where = f"submission {self.name!r}"
        for field in ("optimizer", "schedules", "hyperparameters", "search"):
            value = getattr(self, field)
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}: {field}={value!r}; allowed: a table (dict)")
            object.__setattr__(self, field, copy.deepcopy(dict(value)))
        if not isinstance(self.description, str):
            raise ValueError(f"{where}: description={self.description!r}; allowed: a string")
        if not isinstance(self.optimizer.get("name"), str):
            raise ValueError(
                f"{where}: optimizer.name={self.optimizer.get('name')!r}; allowed: an optimizer "
                "name (sgd, adam, ..., torch.<name>) or a torch.optim.Optimizer import path"
            )
        for key, spec in self.schedules.items():
            if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
                raise ValueError(
                    f"{where}: schedules.{key}={spec!r}; allowed: a schedulers dict form with "
                    "a 'name'"
                )
        for key, value in self.hyperparameters.items():
            if not isinstance(key, str) or not key.isidentifier() or key == BUDGET:
                raise ValueError(
                    f"{where}: hyperparameters.{key}: allowed names are identifiers other than "
                    f"{BUDGET!r}"
                )
            if isinstance(value, Mapping) or (isinstance(value, str) and "$" in value):
                raise ValueError(
                    f"{where}: hyperparameters.{key}={value!r}; allowed: a plain value"
                )
        for key, spec in self.search.items():
            _check_range(f"{where}: search.{key}", spec)
            if key not in self.hyperparameters:
                raise ValueError(
                    f"{where}: search.{key} has no value in hyperparameters; allowed: names of "
                    f"hyperparameters ({', '.join(self.hyperparameters) or 'none given'})"
                )
        found: dict[str, str] = {}
        _references(self.optimizer, f"{where}: optimizer", found)
        _references(self.schedules, f"{where}: schedules", found)
        for name, place in found.items():
            if name != BUDGET and name not in self.hyperparameters:
                raise ValueError(
                    f"{place} refers to ${name}, which hyperparameters does not give; allowed: "
                    f"${BUDGET}" + "".join(f", ${key}" for key in self.hyperparameters)
                )
        for key in self.hyperparameters:
            if key not in found:
                raise ValueError(
                    f"{where}: hyperparameters.{key} is never used; refer to it as ${key} in "
                    "optimizer or schedules"
                )
        self._check_buildable()

    def _check_buildable(self) -> None:
        import torch

        optimizer, schedules = self.resolve(self.hyperparameters, budget=100)
        try:
            built = make_optimizer(optimizer, [torch.zeros(1, requires_grad=True)])
            attach_schedules(built, schedules)
        except (ValueError, TypeError, KeyError) as err:
            message = " ".join(str(err).split())
            raise ValueError(f"submission {self.name!r}: {message}") from None

    @property
    def externally_tunable(self) -> bool:
        """Whether it declares a search space (and so takes part in external tuning)."""
        return bool(self.search)

    def resolve(self, point: Mapping[str, Any], budget: int) -> tuple[dict, dict]:
        """The optimizer table and schedules with every reference replaced, for hyperparameters
        ``point`` (over ``hyperparameters``) and a run of ``budget`` updates."""
        values = {**self.hyperparameters, **point, BUDGET: budget}
        return substitute(self.optimizer, values), substitute(self.schedules, values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_range(where: str, spec: Any) -> None:
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in SEARCH_KINDS:
        raise ValueError(
            f"{where}={spec!r}; allowed: a table with exactly one of "
            f"{', '.join(SEARCH_KINDS)}, e.g. {{log_uniform = [1e-4, 1e-1]}}"
        )
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(values, list | tuple) or not values:
            raise ValueError(f"{where}.choice={values!r}; allowed: a non-empty list of values")
        return
    numeric = (
        isinstance(values, list | tuple)
        and len(values) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        and all(math.isfinite(v) for v in values)
    )
    if not numeric or not values[0] < values[1] or (kind == "log_uniform" and values[0] <= 0):
        low = "0 < low < high" if kind == "log_uniform" else "low < high"
        raise ValueError(f"{where}.{kind}={values!r}; allowed: [low, high], finite, {low}")


def sample_points(
    search: Mapping[str, Mapping], count: int, *, seed: int, study: int, name: str
) -> list[dict[str, Any]]:
    """``count`` points of ``search``: the first ``count`` points of a scrambled Halton sequence
    in ``[0, 1)^d`` (``scipy.stats.qmc.Halton``, one dimension per name in sorted order), shifted
    by a uniform random vector modulo 1 (a Cranley-Patterson rotation: with few trials,
    scrambling alone leaves the first points of every study almost in the same place), both
    drawn from ``numpy.random.SeedSequence([seed, study, crc32(name)])``; mapped by
    ``log_uniform: low * (high / low)^u``, ``uniform: low + u (high - low)``,
    ``choice: values[floor(u n)]``. The same arguments give the same points.

    >>> points = sample_points({"lr": {"log_uniform": [1e-3, 1.0]}}, 3, seed=0, study=0, name="a")
    >>> len(points), all(1e-3 <= p["lr"] < 1.0 for p in points)
    (3, True)
    """
    if not search:
        return [{} for _ in range(count)]
    from scipy.stats import qmc

    names = sorted(search)
    entropy = [seed, study, zlib.crc32(name.encode())]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    unit = qmc.Halton(d=len(names), scramble=True, seed=rng).random(count)
    unit = (unit + rng.random(len(names))) % 1.0  # Cranley-Patterson rotation
    points = []
    for row in unit:
        point = {}
        for key, u in zip(names, row):
            kind, values = next(iter(search[key].items()))
            if kind == "log_uniform":
                low, high = values
                point[key] = float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
            elif kind == "uniform":
                point[key] = float(values[0] + u * (values[1] - values[0]))
            else:
                point[key] = values[min(int(u * len(values)), len(values) - 1)]
        points.append(point)
    return points


def submission_from_dict(table: Any, where: str) -> Submission:
    """A :class:`Submission` from one ``[[submissions]]`` table (``where`` names it in errors)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: {table!r}; allowed: a table")
    unknown = [key for key in table if key not in SUBMISSION_KEYS]
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(SUBMISSION_KEYS)}"
        )
    if "name" not in table or "optimizer" not in table:
        missing = "name" if "name" not in table else "optimizer"
        raise ValueError(f"{where}: missing key {missing!r}")
    try:
        return Submission(**dict(table))
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def load_submissions(path: str | Path) -> list[Submission]:
    """The submissions of a TOML file (``[[submissions]]`` tables; see the module docstring).

    Raises:
        ValueError: one line naming the file and the key at fault.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--submissions: {str(path)!r} is a folder, not a TOML file")
    raw = read_toml(path)
    unknown = [key for key in raw if key != "submissions"]
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; allowed: [[submissions]]")
    tables = raw.get("submissions")
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"{path}: no [[submissions]] table; allowed: one or more")
    found = [
        submission_from_dict(table, f"{path}: submissions[{i}]") for i, table in enumerate(tables)
    ]
    check_unique(found, str(path))
    return found


def check_unique(submissions: Sequence[Submission], where: str = "submissions") -> None:
    """Raises ``ValueError`` when two submissions share a name."""
    seen: set[str] = set()
    for submission in submissions:
        if submission.name in seen:
            raise ValueError(f"{where}: two submissions are named {submission.name!r}")
        seen.add(submission.name)


def _warmup_cosine(warmup: float = 0.05) -> dict:
    """Linear warmup over ``warmup`` of the budget, then cosine to 0 at the budget."""
    return {
        "name": "linear_warmup",
        "warmup_steps": f"{warmup} * ${BUDGET}",
        "schedule": {
            "name": "cosine_decay",
            "learning_rate": "$lr",
            "decay_steps": f"{1 - warmup} * ${BUDGET}",
        },
    }


def builtin_submissions() -> list[Submission]:
    """The classic optimizers with warmup + cosine (both rulesets; self-tuning runs their
    ``hyperparameters``: torch's defaults for Adam and AdamW, ``lr = 1e-3`` and AdamW's
    ``weight_decay = 1e-2``; SGD at ``lr = 0.1`` with momentum 0.9, where torch's defaults are
    ``lr = 1e-3`` and no momentum) and the learning-rate-free methods of ``optim`` at their
    constructor defaults (self-tuning only), with the schedule their authors use: Prodigy
    annealed by a cosine over the budget, Schedule-Free with a warmup of 5% of the budget (its
    constructor's ``warmup_steps`` is 0)."""
    cosine = {"lr": _warmup_cosine()}
    return [
        Submission(
            "sgd-momentum-cosine",
            {"name": "sgd", "lr": "$lr", "momentum": 0.9},
            cosine,
            {"lr": 0.1},
            {"lr": {"log_uniform": [0.03, 3.0]}},
            "SGD, heavy-ball momentum 0.9; 5% linear warmup, then cosine to 0 at the budget",
        ),
        Submission(
            "adam-warmup-cosine",
            {"name": "adam", "lr": "$lr"},
            cosine,
            {"lr": 1e-3},
            {"lr": {"log_uniform": [1e-3, 0.3]}},
            "Adam, betas (0.9, 0.999); 5% linear warmup, then cosine to 0 at the budget",
        ),
        Submission(
            "adamw-warmup-cosine",
            {"name": "adamw", "lr": "$lr", "weight_decay": "$weight_decay"},
            cosine,
            {"lr": 1e-3, "weight_decay": 1e-2},
            {"lr": {"log_uniform": [1e-3, 0.3]}, "weight_decay": {"log_uniform": [1e-5, 1e-1]}},
            "AdamW; 5% linear warmup, then cosine to 0 at the budget; weight decay searched",
        ),
        Submission(
            "prodigy-cosine",
            {"name": "optim.Prodigy"},
            {"lr": {"name": "cosine_decay", "learning_rate": 1.0, "decay_steps": f"${BUDGET}"}},
            description="Prodigy at its defaults (lr 1), cosine annealing of lr over the budget "
            "as its authors recommend",
        ),
        Submission(
            "dadapt-adam", {"name": "optim.DAdaptAdam"}, description="D-Adaptation Adam, defaults"
        ),
        Submission("dog", {"name": "optim.DoG"}, description="DoG, defaults"),
        Submission(
            "adamw-schedulefree",
            {"name": "optim.AdamWScheduleFree", "warmup_steps": f"0.05 * ${BUDGET}"},
            description="Schedule-Free AdamW (lr 0.0025), 5% warmup, evaluated at x",
        ),
        Submission(
            "sgd-schedulefree",
            {"name": "optim.SGDScheduleFree", "warmup_steps": f"0.05 * ${BUDGET}"},
            description="Schedule-Free SGD (lr 1, momentum 0.9), 5% warmup, evaluated at x",
        ),
    ]
