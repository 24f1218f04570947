"""The experiment spec: every setting of a comparison, typed, with its default and meaning.

One set of frozen dataclasses describes an experiment; each field is declared once, with its
default, a one-line doc and its check (:func:`setting`). Two front ends build an
:class:`Experiment`: a TOML file (``runs.load``, which layers common tables, variants and
``[quick]`` before building these classes) and Python (construct the classes and pass them to
``runs.run``). Both are validated by the same code (``runs.load``), generically over the fields
declared here; each class also checks the types of its fields when it is constructed
(:func:`check_fields`: a ``TypeError`` naming the class, the field, the value and the declared
type), so a wrong type from Python is refused where it is given. The TOML reference
(:func:`toml_reference`, ``docs/experiment-toml.md``) is generated from them too.

Conventions: a field that is ``None`` is unset and absent from the table form (``to_table``),
so a file that does not name it and one written before it existed give the same table, hence
the same fingerprint. ``Model`` and ``Optimizer`` are open tables: a ``name`` plus the options
passed to the model factory or the optimizer's constructor.

Example (Python front end)::

    >>> from runs.spec import Dataset, Experiment, Model, Optimizer, Train, Variant
    >>> sgd = Variant(
    ...     name="sgd",
    ...     dataset=Dataset("mnist1d"),
    ...     model=Model("mlp"),
    ...     train=Train(batch_size=128, epochs=2),
    ...     optimizer=Optimizer("sgd", {"lr": 0.1}),
    ... )
    >>> sgd.to_dict()["train"]["epochs"], sgd.to_dict()["train"]["schedule_unit"]
    (2, 'step')
    >>> "steps" in sgd.to_dict()["train"]  # unset: absent
    False
    >>> Experiment(name="mine", variants=(sgd,), seeds=2).name
    'mine'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from runs.checks import (
    Check,
    Problems,
    above_one,
    boolean,
    check_type,
    join,
    lr_grid,
    names,
    non_negative_int,
    non_negative_number,
    one_of,
    positive_int,
    positive_int_or_epoch,
    positive_number,
    sweep_length,
    table,
    text,
    type_allows,
    type_hints,
    unit_interval,
)
from runs.checks import seed as a_seed
from runs.claims import claim_problem
from runs.mnist1d import MNIST1D_MAX_EXAMPLES

_ANY_BAD = object()  # a value no check allows: check(_ANY_BAD) is the phrase of what is allowed
# What every evaluation measures (the trainer logs these; tables and figures read them).
EVAL_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
# What ``[report] figure`` may name: the figure the README shows for the experiment.
README_FIGURES = (*EVAL_METRICS, "train_loss_per_step", "schedules")
LOSSES = ("cross_entropy",)


def setting(doc: str, check: Check | None = None, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its one-line ``doc`` and ``check`` (kept in ``field.metadata``)."""
    factory = dataclasses.MISSING
    if isinstance(default, dict | list):  # a fresh copy for each instance
        factory, default = (lambda value=default: type(value)(value)), dataclasses.MISSING
    return dataclasses.field(
        default=default, default_factory=factory, metadata={"doc": doc, "check": check}
    )


def check_fields(spec: Any) -> None:
    """Raises ``TypeError`` naming the class, the field, the value and the declared type for the
    first field of the dataclass instance ``spec`` whose value does not have its declared type
    (``runs.checks.type_allows``). Every class here calls it when constructed, so a wrong type is
    refused where it is given; values are checked with their locations by ``runs.load``.

    A NumPy scalar, a 0-d NumPy array or a 0-d tensor given for a field (or as an item of a
    list or tuple field) is first replaced by the Python number it equals exactly
    (``runs.load.plain_scalar``: ``np.int64(2)`` is ``2``), as ``runs.load`` does for the values
    of a dict or TOML document; its type is then checked as any other (``np.float64(2.0)`` is
    still not an ``int``, ``np.bool_(True)`` not a number)."""
    from runs.load import plain_scalar

    hints = type_hints(type(spec))
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        plain = _plain_items(value, plain_scalar)
        if plain is not value:
            object.__setattr__(spec, field.name, plain)
        check_type(type(spec).__name__, field.name, plain, hints[field.name], str(field.type))


def _plain_items(value: Any, plain_scalar: Any) -> Any:
    """``value`` with a NumPy or 0-d tensor scalar (itself, or an item of a list or tuple) made
    the Python scalar it equals exactly; ``value`` itself when nothing changes (a scalar with no
    exact Python equal is left for the type check to refuse)."""
    if isinstance(value, list | tuple):
        items = [_plain_items(item, plain_scalar) for item in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        return type(value)(items)
    plain = plain_scalar(value)
    return value if plain is None else plain


def published(value: Any) -> str | None:
    """The ``[report] published`` table: a source, a metric and a finite number >= 0 (not a
    bool) per name; ``runs.load`` checks that each name is a variant's or a prefix of one."""
    allowed = (
        '{source = "...", metric = "test_accuracy", values = {name = number >= 0, ...}}; '
        "metric one of " + ", ".join(EVAL_METRICS)
    )
    if not isinstance(value, dict) or set(value) != {"source", "metric", "values"}:
        return allowed
    values = value["values"]
    ok = isinstance(value["source"], str) and value["metric"] in EVAL_METRICS
    ok = ok and isinstance(values, dict) and values
    ok = ok and all(non_negative_number(v) is None for v in values.values())
    return None if ok else allowed


# ---------------------------------------------------------------------- generic over sections
class Section:
    """Base of the tables: ``to_table`` / ``from_table`` and the per-field checks; constructing
    one checks its fields' types, and that an open table sets none of the declared fields."""

    OPEN: ClassVar[str | None] = None  # the field holding a table's other keys (open tables)
    TITLE: ClassVar[str] = ""  # what the table configures, for the generated reference

    def __post_init__(self) -> None:
        check_fields(self)
        taken = sorted(set(getattr(self, self.OPEN)) & set(self.known())) if self.OPEN else []
        if taken:  # (the table form would replace the field by it)
            raise ValueError(
                f"{type(self).__name__}: {self.OPEN} must not set {', '.join(map(repr, taken))}, "
                f"a field of {type(self).__name__}; allowed: other keys"
            )

    def to_table(self) -> dict[str, Any]:
        """The table form: set fields (``None`` ones left out), an open table's keys inline."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == self.OPEN:
                out.update(value)
            elif value is not None:
                out[field.name] = value.to_table() if isinstance(value, Section) else value
        return out

    @classmethod
    def known(cls) -> dict[str, dataclasses.Field]:
        """The table keys: the declared settings (an open table takes other keys too; a field
        without a doc is resolved, never written in a file)."""
        fields = dataclasses.fields(cls)
        return {f.name: f for f in fields if f.name != cls.OPEN and "doc" in f.metadata}

    @classmethod
    def required(cls) -> list[str]:
        fields = cls.known().values()
        missing = dataclasses.MISSING
        return [f.name for f in fields if f.default is missing and f.default_factory is missing]

    @classmethod
    def builds(cls, values: Mapping[str, Any]) -> bool:
        """Whether ``from_table(values)`` builds: every setting has its field's type (the loader
        builds nothing from a table whose values it has refused)."""
        hints, known = type_hints(cls), cls.known()
        return all(type_allows(hints[k], v) for k, v in values.items() if k in known)

    @classmethod
    def from_table(cls, values: Mapping[str, Any]) -> Self:
        """The section of an already checked table (keys of an open table go to ``OPEN``)."""
        known = cls.known()
        kwargs = {k: v for k, v in values.items() if k in known}
        if cls.OPEN is not None:
            kwargs[cls.OPEN] = {k: v for k, v in values.items() if k not in known}
        return cls(**kwargs)


def check_table(cls: type[Section], values: Any, location: str, problems: Problems) -> dict:
    """Adds every unknown key and refused value of a ``cls`` table to ``problems``; returns the
    table (``{}`` when it is not one)."""
    for key, message in field_problems(cls, values):
        problems.add(join(location, key), message)
    return values if isinstance(values, dict) else {}


def field_problems(cls: type[Section], values: Any) -> list[tuple[str, str]]:
    """``(key, message)`` for every unknown key and every value its field's check refuses."""
    if not isinstance(values, dict):
        return [("", f"must be a table, got {values!r}")]
    known, out = cls.known(), []
    for key, value in values.items():
        if key not in known:
            if cls.OPEN is None:
                out.append((key, f"unknown key; allowed: {', '.join(known)}"))
        elif (check := known[key].metadata.get("check")) and (allowed := check(value)):
            out.append((key, f"must be {allowed}, got {value!r}"))
    return out


# -------------------------------------------------------------------------------- the sections
@dataclasses.dataclass(frozen=True)
class Dataset(Section):
    """The dataset of a variant. ``normalize`` (true by default) standardises a copy of the
    inputs, ``x' = (x - mean) / std`` with the training split's mean and population std, applied
    to both splits (``runs.data``), over these axes:

    - examples of two or more axes, ``(N, C, ...)``: per channel, axis 1 (an image ``(C, H,
      W)``, a sequence ``(C, L)``). A batch of channel-less images ``(N, H, W)`` would be taken
      as ``H`` channels of length ``W`` (standardised row by row): give such images a channel
      axis, ``x[:, None]``, to get one mean and std;
    - a registered dataset's vectors, ``(N, F)``: per feature (as scikit-learn's
      ``StandardScaler``);
    - MNIST-1D's vectors ``(N, 40)``: one mean and std over every value (its generator
      standardised them so already; kept, so the bundled experiments' numbers stay).

    A channel or feature that does not vary in the training split is only centred.

    >>> Dataset("mnist1d", train_examples=4000).to_table()  # (test_examples unset: left out)
    {'name': 'mnist1d', 'normalize': True, 'train_examples': 4000}
    >>> Dataset("mnist1d", normalize="yes")
    Traceback (most recent call last):
    TypeError: Dataset: normalize must be bool, got 'yes' (str)
    """

    TITLE: ClassVar[str] = "what the models train on: runs.data.load_dataset(name, ...)"

    name: str = setting(
        "mnist1d, mnist, fashion-mnist, cifar10, or a name given to runs.register_dataset", text
    )
    normalize: bool = setting(
        "standardise inputs with the training split's statistics", boolean, True
    )
    train_examples: int | None = setting(
        "mnist1d only: the generated training split's size, at most "
        f"{MNIST1D_MAX_EXAMPLES}, train_examples + test_examples a multiple of 10 (the "
        "generator makes as many of each digit) [4000]",
        positive_int,
        None,
    )
    test_examples: int | None = setting(
        f"mnist1d only: the generated test split's size, at most {MNIST1D_MAX_EXAMPLES}, "
        "train_examples + test_examples a multiple of 10 [1000]",
        positive_int,
        None,
    )


@dataclasses.dataclass(frozen=True)
class Model(Section):
    OPEN: ClassVar[str | None] = "options"
    TITLE: ClassVar[str] = "runs.models.build_model(name, input shape, classes, **options)"

    name: str = setting("a bundled model or one given to runs.register_model", text)
    options: dict[str, Any] = setting("the factory's keyword arguments (other keys)", default={})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Train(Section):
    TITLE: ClassVar[str] = "the training loop (runs.trainer)"

    loss: str = setting("the training loss", one_of(*LOSSES), "cross_entropy")
    epochs: int | None = setting("passes over the training split (or steps)", positive_int, None)
    steps: int | None = setting("updates (exactly one of epochs, steps)", positive_int, None)
    batch_size: int = setting("examples per update", positive_int)
    shuffle: bool = setting("reshuffle every epoch (false: batches in order)", boolean, True)
    schedule_unit: str = setting(
        "the schedules' clock: once per update or once per epoch", one_of("step", "epoch"), "step"
    )
    eval_every: int | str = setting(
        "updates between evaluations, or once per epoch", positive_int_or_epoch, "epoch"
    )
    eval_train_examples: int | None = setting(
        "training metrics on the first N examples [all]", positive_int, None
    )


@dataclasses.dataclass(frozen=True)
class Logging(Section):
    TITLE: ClassVar[str] = "logging cadence (never changes the numbers)"

    flush_every: int = setting("updates between host syncs of the logged values", positive_int, 50)
    stats_every: int = setting(
        "updates between gradient-norm / update-ratio logs", positive_int, 10
    )
    checkpoint_every: int = setting("updates between checkpoints", positive_int, 500)


@dataclasses.dataclass(frozen=True)
class Optimizer(Section):
    OPEN: ClassVar[str | None] = "hyperparameters"
    TITLE: ClassVar[str] = "the optimizer; hyperparameters as in torch.optim"

    name: str = setting(
        "sgd adam adamw adagrad rmsprop adadelta (optim), torch.<same> (torch.optim), or a "
        'torch.optim.Optimizer class by import path ("torch.optim.NAdam", "pkg.mod:MyOpt")',
        text,
    )
    hyperparameters: dict[str, Any] = setting(
        "the constructor's keyword arguments (other keys)", default={}
    )

    def with_values(self, **values: Any) -> Optimizer:
        """This optimizer with ``values`` replacing (or adding) hyperparameters."""
        return dataclasses.replace(self, hyperparameters={**self.hyperparameters, **values})


@dataclasses.dataclass(frozen=True)
class RangeTest(Section):
    TITLE: ClassVar[str] = (
        "an LR range test before training (runs.tuning); its numbers may stand in any optimizer "
        'or schedule value as "$NAME" or "F * $NAME": $clr_base_lr $clr_max_lr $valley '
        "$steepest $min/10 $safe_step (1/L) $edge_step (2/L)"
    )

    variant: str | None = setting("whose model, optimizer and batches [the first]", text, None)
    start_lr: float = setting("the sweep's first rate", positive_number, 1e-6)
    end_lr: float = setting("the sweep's last rate", positive_number, 10.0)
    num_iter: int = setting("updates of the sweep", sweep_length, 100)
    sweep: str = setting("how the rate grows", one_of("exp", "linear"), "exp")
    smoothing: float = setting("the loss's bias-corrected EMA factor", unit_interval, 0.98)
    diverge_threshold: float = setting(
        "stop once the loss exceeds the best by (this - 1) x |best|", above_one, 4.0
    )
    curvature_batches: int = setting(
        "batches for the top Hessian eigenvalue L at the start (0: none)", non_negative_int, 1
    )
    seed: int = setting("the test's seed", a_seed, 0)


@dataclasses.dataclass(frozen=True)
class Search(Section):
    TITLE: ClassVar[str] = "a learning-rate grid search before training (runs.tuning)"

    lr: list[float] | None = setting(
        "the grid (a variant may give its own; under --quick, [quick] search.lr replaces every "
        "grid); rates name their run folders by 6 significant digits (lr0.1), so they must "
        "differ within them",
        lr_grid,
        None,
    )
    metric: str = setting(
        "the final value that decides (lower is better; higher for accuracies; ties: the smaller "
        "rate). Diverged runs never win: a variant whose every rate diverges stops the command. "
        "A best rate at an end of the grid is flagged",
        one_of(*EVAL_METRICS),
        "train_loss",
    )
    seed: int = setting("the one seed of the search runs", a_seed, 0)
    train: dict[str, Any] = setting(
        "overrides of [train] for the search runs (a budget, at most one of epochs, steps, "
        "replaces [train]'s)",
        table,
        {},
    )
    # Resolved by runs.load, not written in a file: each variant's grid (none for a variant
    # whose optimizer takes no lr: it is not searched).
    grids: dict[str, list[float]] | None = None


@dataclasses.dataclass(frozen=True)
class Report(Section):
    TITLE: ClassVar[str] = "what the report adds (runs.report)"

    figure: str | None = setting(
        "the README's figure: a metric, train_loss_per_step or schedules [test_accuracy]",
        one_of(*README_FIGURES),
        None,
    )
    panels: list[str] | None = setting(
        'one panel per prefix of variant names "<prefix>.<rest>"', names, None
    )
    max_step: int | None = setting("the figure's x-axis limit", positive_int, None)
    reach: str | None = setting(
        "column: steps until the mean test accuracy first reaches this variant's final one",
        text,
        None,
    )
    early_steps: int | None = setting(
        "column: the largest training loss of the first N updates", positive_int, None
    )
    published: dict | None = setting(
        "column: a published number per variant (by name or prefix)", published, None
    )
    claims: list[dict] | None = setting(
        "the reference's findings, each checked on the runs and shown with its numbers; a "
        "tie, or a diverged run of a variant a claim names, does not hold (runs.claims)",
        claim_problem,
        None,
    )


# ------------------------------------------------------------------------------ variants, runs
@dataclasses.dataclass(frozen=True)
class Variant:
    """One variant: every setting it trains with (a resolved one, after layering).

    >>> import schedulers
    >>> v = Variant("sgd", Dataset("mnist1d"), Model("logistic"), Train(steps=100, batch_size=32),
    ...             Optimizer("sgd", {"lr": 0.1}), schedules={"lr": schedulers.step_lr(0.1, 50)})
    >>> v.to_dict()["optimizer"], v.to_dict()["schedules"]["lr"]["name"], v.logging.checkpoint_every
    ({'name': 'sgd', 'lr': 0.1}, 'step_lr', 500)
    >>> quieter = dataclasses.replace(v, logging=Logging(flush_every=10))  # cadence only
    >>> quieter.fingerprint(0) == v.fingerprint(0) != v.fingerprint(1)
    True
    """

    name: str
    dataset: Dataset
    model: Model
    train: Train
    optimizer: Optimizer
    logging: Logging = dataclasses.field(default_factory=Logging)
    schedules: dict[str, Any] = dataclasses.field(default_factory=dict)
    # This variant's own search grid ({"lr": [...]}); resolved into Experiment.search.grids.
    search: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        """The resolved tables (schedules in their ``to_dict`` form); the search grid is not
        part of it (the experiment's ``search`` holds it)."""
        return {
            "name": self.name,
            "dataset": self.dataset.to_table(),
            "model": self.model.to_table(),
            "train": self.train.to_table(),
            "logging": self.logging.to_table(),
            "optimizer": self.optimizer.to_table(),
            "schedules": schedule_tables(self.schedules),
        }

    def fingerprint(self, seed: int) -> str:
        """Hash of everything that changes the numbers (logging cadence excluded) and the seed;
        for a dataset registered in memory (``runs.register_dataset``), also its content (and,
        for examples that are vectors, standardised per feature: ``runs.data``), and for a model
        registered with ``runs.register_model``, a description of the model its factory builds
        (``runs.models.registered_model_digest``: its modules, parameter and buffer shapes and
        dtypes, and their initial values at a fixed seed), so a run folder never resumes on
        other data, nor on an edited model (another layer, width or initialisation), under the
        same name. Bundled datasets and models add nothing: their fingerprints stay as they
        were."""
        return self._fingerprint(seed, legacy=False)

    def legacy_fingerprint(self, seed: int) -> str | None:
        """The fingerprint stepsize gave this run before a registered model's initial values
        and the per-feature standardisation of registered vectors counted in it (a registered
        model described by its modules, shapes and dtypes only), or None when it equals
        :meth:`fingerprint` (nothing registered is involved): a run folder holding it was
        written by that earlier version, and is refused saying so."""
        old = self._fingerprint(seed, legacy=True)
        return None if old == self.fingerprint(seed) else old

    def _fingerprint(self, seed: int, *, legacy: bool) -> str:
        from runs.data import known_shape, registered_digest
        from runs.models import registered_model_digest

        numeric = {k: v for k, v in self.to_dict().items() if k != "logging"}
        payload: dict[str, Any] = {"variant": numeric, "seed": seed}
        digest = registered_digest(self.dataset.name)
        if digest is not None:  # never for the bundled datasets: their fingerprints stay
            payload["data"] = digest
        shape = known_shape(self.dataset.name)
        if shape is not None:
            model = registered_model_digest(
                self.model.name, *shape, self.model.options, legacy=legacy
            )
            if model is not None:  # never for the bundled models: their fingerprints stay
                payload["model"] = model
        vectors = shape is not None and len(shape[0]) == 1
        if not legacy and digest is not None and self.dataset.normalize and vectors:
            payload["standardized"] = "per feature"
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def schedule_tables(schedules: Mapping[str, Any]) -> dict[str, Any]:
    """``schedules`` with ``schedulers.Schedule`` objects in their ``to_dict`` form (every
    argument written, defaults included: the form the fingerprint hashes for an object)."""
    return {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in schedules.items()}


@dataclasses.dataclass(frozen=True)
class Written:
    """What ``runs.load`` resolved an :class:`Experiment` from: the document as written (before
    ``[quick]``, ``[fallback]`` and the range test's ``"$NAME"`` references were applied), the
    file it came from and the options it was resolved with. ``runs.load.resolve`` (hence
    ``runs.run``) resolves that document again, as ``stepsize run`` resolves the file, so that
    what the resolved object lost (the references, which hold validation stand-ins until the
    range test has run, a common ``[search] lr`` grid, the ``[quick]`` layer, ``fallback_used``)
    is not lost to a run of it. ``python``: the document was written from a Python experiment
    (``runs.load.document_of``), which has no ``[quick]`` layer."""

    document: dict[str, Any]
    source: str
    quick: bool = False
    seeds: int | None = None
    data_dir: str | None = None
    derived: dict[str, float | None] | None = None
    python: bool = False


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A comparison: its variants, seeds and stages (as given, or resolved by ``runs.load``).

    ``written`` is set by ``runs.load`` on what it resolves (:class:`Written`; not compared, not
    shown, not in :meth:`to_dict`); ``dataclasses.replace`` carries it, and ``runs.load.resolve``
    tells a changed copy from the object it resolved by resolving the document again.

    >>> sgd = Variant("sgd", Dataset("mnist1d"), Model("logistic"), Train(epochs=1, batch_size=32),
    ...               Optimizer("sgd", {"lr": 0.1}))
    >>> fast = dataclasses.replace(sgd, name="fast", optimizer=sgd.optimizer.with_values(lr=1.0))
    >>> e = Experiment("demo", (sgd, fast), seeds=3)  # seeds=3: the seeds 0, 1, 2
    >>> e.to_dict()["seeds"], [v["optimizer"]["lr"] for v in e.to_dict()["variants"]]
    ([0, 1, 2], [0.1, 1.0])
    >>> Experiment("demo", (sgd,), seeds=(4, 7)).to_dict()["seeds"]  # a tuple: these seeds
    [4, 7]
    """

    name: str
    variants: tuple[Variant, ...]
    seeds: int | tuple[int, ...] = 1
    description: str = ""
    runtime: str = ""
    reference: str = ""
    range_test: RangeTest | None = None
    search: Search | None = None
    report: Report = dataclasses.field(default_factory=Report)
    source: str = "<python>"  # the file it was read from
    fallback_used: bool = False  # [fallback] replaced [dataset] and [model]
    written: Written | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "runtime": self.runtime,
            "reference": self.reference,
            "seeds": list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds),
            "source": self.source,
            "fallback_used": self.fallback_used,
            "range_test": None if self.range_test is None else self.range_test.to_table(),
            "search": None if self.search is None else self.search.to_table(),
            "report": self.report.to_table(),
            "variants": [v.to_dict() for v in self.variants],
        }


LAYERS_DOC = """## Layers: `[[variants]]`, `[quick]`, `[fallback]`

- `[[variants]]` (at least one): `name` (letters, digits, `- _ . +`; it names a folder, so not
  one of the experiment folder's own entries: `experiment.json`, `summary.json`, `summary.md`,
  `figures`, `range_test.json`, `search.json`), any of
  `dataset`, `model`, `train`, `logging`, `optimizer`, `schedules` as overrides of the common
  tables, and `search = {lr = [...]}`, the variant's own grid. Tables merge key by key; an
  `optimizer` table naming another optimizer replaces the common one; `schedules` merge per
  hyperparameter.
- `[quick]` (applied by `--quick`): `seeds` and overrides of `dataset`, `model`, `train`,
  `logging`, `range_test`, `search`, merged over both, key by key (so a quick `train` or
  `search.train` budget must be in the unit the file uses: epochs and steps together are
  refused); `[quick] search.lr` replaces every searched variant's grid, its own too.
- `[fallback]`: `dataset` and `model` tables that replace the common ones when the dataset needs
  files and no `--data-dir` was given (an explicit `--data-dir` never falls back).
"""

FINGERPRINT_DOC = """\
Every integer is written as one (`4`, not `4.0`; a schedule's too). A run folder is resumed or
read back only by the same configuration as written: its fingerprint hashes every resolved table
but `[logging]`, and the seed, as they are spelt. So `lr = 1` and `lr = 1.0`, or a key written
at its default value and the key left out (`momentum = 0.0`, MNIST-1D's `train_examples = 4000`),
are other configurations to it, though they train the same runs: keep one spelling for a folder
(a folder is refused, never mixed). A `schedulers.Schedule` object given from Python counts as
its `to_dict()`, which writes every argument (`alpha` and `exponent` of a cosine decay too).
"""

# Top-level keys of an experiment file: (key, doc); the sections are the classes above.
TOP_LEVEL = (
    ("name", "the output folder's name [the file's stem]"),
    ("description", "one line for `stepsize list`"),
    ("runtime", "how long it takes, shown by `stepsize list`"),
    ("reference", "what paper or framework it reproduces (markdown, shown in the README)"),
    (
        "seeds",
        "N means seeds 0..N-1, or a list such as [0, 7]; seeds < 2**32 (torch's CPU generator "
        "keeps a seed's low 32 bits) [1]",
    ),
)
SECTIONS: dict[str, type[Section]] = {
    "dataset": Dataset,
    "model": Model,
    "train": Train,
    "logging": Logging,
    "optimizer": Optimizer,
}
STAGES: dict[str, type[Section]] = {"range_test": RangeTest, "search": Search, "report": Report}


def _default_text(field: dataclasses.Field) -> str:
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return "required"
    value = field.default_factory() if field.default is dataclasses.MISSING else field.default
    return "unset" if value is None else json.dumps(value)


def _section_doc(table: str, cls: type[Section]) -> str:
    """A section class's docstring, from the one home of its settings (``TITLE`` and each field's
    doc and default, as :func:`toml_reference` lists them): what ``help(Train)`` shows."""
    lines = [
        f"An experiment's ``[{table}]`` table (TOML or Python): {cls.TITLE}.",
        "",
        "Fields:",
        "",
    ]
    for field, doc in _documented_fields(cls):
        key = "other keys" if field.name == cls.OPEN else f"``{field.name}``"
        lines.append(f"- {key} ({_default_text(field)}): {doc}")
    return "\n".join(lines) + "\n"


def _documented_fields(cls: type[Section]) -> list[tuple[dataclasses.Field, str]]:
    """``(field, doc)`` of each setting a file can write (a field without a doc is resolved)."""
    fields = dataclasses.fields(cls)
    return [(f, f.metadata["doc"]) for f in fields if f.metadata.get("doc") is not None]


for _table, _cls in {**SECTIONS, **STAGES}.items():
    if "__doc__" not in vars(_cls) or vars(_cls)["__doc__"].startswith(_cls.__name__ + "("):
        _cls.__doc__ = _section_doc(_table, _cls)  # (a written docstring is kept)


def toml_reference() -> str:
    """The reference of experiment files, generated from the dataclasses above (markdown)."""
    lines = [
        "# Experiment files (TOML)",
        "",
        "<!-- generated by `python -m runs.spec` from runs/spec.py; do not edit by hand -->",
        "",
        *FINGERPRINT_DOC.splitlines(),
        "",
        "| key | default | meaning | allowed |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{key}` | | {doc} | |" for key, doc in TOP_LEVEL]
    tables = {**SECTIONS, "schedules": None, **STAGES}
    for section, cls in tables.items():
        lines += ["", f"## `[{section}]`", ""]
        if cls is None:
            lines.append(
                "Any param-group key (`lr`, `momentum`, `weight_decay`, ...) -> a schedule's "
                '`to_dict()` form, e.g. `lr = {name = "cosine_decay", learning_rate = 0.3, '
                "decay_steps = 20}` (`schedulers.from_dict`)."
            )
            continue
        lines += [cls.TITLE[:1].upper() + cls.TITLE[1:] + ".", ""]
        lines += ["| key | default | meaning | allowed |", "|---|---|---|---|"]
        for field, doc in _documented_fields(cls):
            check = field.metadata.get("check")
            key = "other keys" if field.name == cls.OPEN else f"`{field.name}`"
            allowed = check(_ANY_BAD) if check else "any"
            lines.append(f"| {key} | {_default_text(field)} | {doc} | {allowed} |")
    lines += ["", LAYERS_DOC]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - writes the generated reference
    print(toml_reference(), end="")
