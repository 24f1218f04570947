"""What an experiment measures before its comparison: an LR range test and a learning-rate grid
search (the ``[range_test]`` and ``[search]`` sections, see ``runs.spec``).

- :func:`run_range_test` runs ``schedulers.range_test.lr_range_test`` on one variant (its seeded
  model, optimizer and first epoch's batches, exactly as training would build them) and returns
  the numbers that ``"$NAME"`` references take: Smith's CLR bounds, the suggestions, and 1/L and
  2/L from the top Hessian eigenvalue at the start. Its record, ``range_test.json`` and
  ``figures/range_test.png``, is written by :func:`save_range_test` (``runs.experiment`` does so
  only once the comparison's folders are accepted); a later call with the same settings reads
  the file back.
- :func:`run_search` trains every variant at every rate of its grid (one seed, the ``[search]``
  training budget) under ``<root>/_search/<variant>/lr<rate>/`` (the rate with 6 significant
  digits, :func:`search_run_name`: a grid two of whose rates share a name is refused when the
  experiment is validated) and picks per variant the rate with the best final ``metric``
  (lowest loss or highest accuracy; ties go to the smaller rate). Diverged runs, and runs
  without a finite final metric, never win: when every rate of a variant's grid is such a run,
  the search fails naming the variant and its grid (nothing is chosen, so the comparison does
  not train at a rate known to fail; give lower rates). A chosen rate that is the smallest or
  largest of its grid is flagged (``at_edge`` in ``search.json``, a warning line, a mark in the
  search table): the best rate may lie beyond the grid. Each result read must be the run of
  its candidate (its fingerprint), so one run's number is never credited to another rate.
  :func:`save_search` writes ``search.json`` (again once the comparison's folders are
  accepted). Finished search runs are read back, so a resumed experiment does not repeat them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from runs import checkpoint as ckpt
from runs.build import make_optimizer
from runs.data import DatasetSplits
from runs.models import build_model
from runs.spec import Experiment, Train, Variant
from runs.trainer import epoch_batches

if TYPE_CHECKING:  # (the range test is imported where one runs)
    from schedulers.range_test import RangeTestResult

RANGE_TEST_FILE = "range_test.json"
SEARCH_FILE = "search.json"
SEARCH_DIR = "_search"  # variant names start with a letter or digit, so this never collides
RANGE_TEST_OPTIONS = (
    "start_lr",
    "end_lr",
    "num_iter",
    "sweep",
    "smoothing",
    "diverge_threshold",
    "curvature_batches",
)


class _CountedBatches:
    """A list of batches that advances a progress bar each time a batch is read (the range test
    iterates it again when it needs more batches)."""

    def __init__(self, batches: list, bar) -> None:
        self.batches, self.bar = batches, bar

    def __iter__(self):
        for batch in self.batches:
            self.bar.update(1)
            yield batch


def range_test_on_variant(
    variant: Variant, data: DatasetSplits, seed: int, *, quiet: bool = True, **options: Any
) -> RangeTestResult:
    """``lr_range_test`` on ``variant``'s model (initialised after ``torch.manual_seed(seed)``),
    its optimizer and the batches of its first epoch (cycled); ``options`` are the test's keyword
    arguments. The variant's schedules are not applied: the test drives ``lr`` itself. Unless
    ``quiet``, a progress bar counts the batches the test reads (one per update)."""
    from tqdm.auto import tqdm

    from schedulers.range_test import lr_range_test

    torch.manual_seed(seed)
    model = build_model(
        variant.model.name, data.input_shape, data.num_classes, **variant.model.options
    )
    optimizer = make_optimizer(variant.optimizer, model.parameters())
    batches = list(epoch_batches(data, variant.train, seed, 0))
    total = options.get("num_iter", 100)
    with tqdm(
        total=total, desc="LR range test", unit="step", disable=quiet or None, leave=False
    ) as bar:
        return lr_range_test(
            model, optimizer, F.cross_entropy, _CountedBatches(batches, bar), **options
        )


def derived_values(result: RangeTestResult) -> dict[str, float | None]:
    """The numbers ``"$NAME"`` references take from a range test result."""
    base, top = result.clr_bounds if result.clr_bounds is not None else (None, None)
    values: dict[str, float | None] = {"clr_base_lr": base, "clr_max_lr": top}
    for name in ("valley", "steepest", "min/10"):
        suggestion = result.suggestions.get(name)
        values[name] = suggestion.lr if suggestion is not None else None
    values["safe_step"], values["edge_step"] = result.safe_step, result.edge_step
    return values


def _fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _range_test_fingerprint(experiment: Experiment) -> tuple[Variant, dict, str]:
    assert experiment.range_test is not None
    settings = experiment.range_test.to_table()
    variant = next(v for v in experiment.variants if v.name == settings["variant"])
    fingerprint = _fingerprint({"variant": variant.fingerprint(settings["seed"]), **settings})
    return variant, settings, fingerprint


def saved_range_test(experiment: Experiment, root: Path) -> dict[str, float | None] | None:
    """The reference values of this experiment's range test when ``root`` already holds its
    result (same settings), else None; reads only."""
    _, _, fingerprint = _range_test_fingerprint(experiment)
    path = root / RANGE_TEST_FILE
    if path.is_file():
        try:
            saved = json.loads(path.read_bytes())
        except ValueError:
            return None  # unreadable: the test runs again and rewrites it
        if isinstance(saved, dict) and saved.get("fingerprint") == fingerprint:
            return saved["values"]
    return None


def earlier_rules_note(root: Path) -> str | None:
    """A note when the range test saved in ``root`` (reused by :func:`saved_range_test`) reads
    otherwise by this version's rules (``schedulers.range_test.read_curve`` on its saved curve:
    an earlier version's ``steepest`` and CLR ``base_lr`` read the first points of a noisy
    sweep): the saved numbers, which the folder's runs trained with, are kept; the note names
    what differs and how to measure again. None when they agree, or the record has no curve."""
    from schedulers.range_test import RangeTestResult, read_curve

    try:
        saved = json.loads((root / RANGE_TEST_FILE).read_bytes())
        settings, values = saved["settings"], saved["values"]
        curve = [saved[key] for key in ("lrs", "losses", "smoothed", "diverged_lr")]
        suggestions, bounds = read_curve(
            *curve, settings["num_iter"], smoothing=settings["smoothing"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    result = RangeTestResult(*curve[:3], None, curve[3], suggestions, bounds, None)
    now = {k: v for k, v in derived_values(result).items() if k not in ("safe_step", "edge_step")}
    changed = [k for k, v in now.items() if v != values.get(k)]
    if not changed:
        return None
    shown = ", ".join(f"{k} = {_shown(values.get(k))} (now {_shown(now[k])})" for k in changed)
    return (
        f"note: {RANGE_TEST_FILE} was read by an earlier version's rules: {shown}; its runs "
        f"trained with the saved numbers, which are kept; delete {RANGE_TEST_FILE} and the runs "
        "that use them to measure again"
    )


def _shown(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


@dataclasses.dataclass(frozen=True)
class RangeTestRun:
    """A range test computed but not yet written: its values, the ``range_test.json`` record and
    the result (whose figure :func:`save_range_test` draws)."""

    values: dict[str, float | None]
    record: dict[str, Any]
    result: Any


def compute_range_test(
    experiment: Experiment, data_dir: str | None, device: str = "cpu", quiet: bool = True
) -> RangeTestRun:
    """The experiment's range test, computed and not written. Unless ``quiet``, a progress bar
    counts the test's updates."""
    from runs.parallel import dataset_on

    variant, settings, fingerprint = _range_test_fingerprint(experiment)
    data = dataset_on(variant.dataset.to_table(), data_dir, device)
    options = {k: settings[k] for k in RANGE_TEST_OPTIONS}
    label = f"{experiment.name}, variant {variant.name}"
    result = range_test_on_variant(
        variant, data, settings["seed"], quiet=quiet, label=label, **options
    )
    values = derived_values(result)
    curvature = result.curvature
    record = {
        "fingerprint": fingerprint,
        "settings": settings,
        "values": values,
        "L": curvature.eigenvalue if curvature is not None else None,
        "diverged_lr": result.diverged_lr,
        "summary": result.summary(),
        "lrs": result.lrs,
        "losses": result.losses,
        "smoothed": result.smoothed,
    }
    return RangeTestRun(values, record, result)


def save_range_test(root: Path, run: RangeTestRun) -> None:
    """Writes ``figures/range_test.png`` and ``range_test.json`` of a computed range test."""
    import matplotlib.pyplot as plt

    plt.close(run.result.plot(root / "figures" / "range_test.png"))
    ckpt.save_json(root / RANGE_TEST_FILE, run.record)


def run_range_test(
    experiment: Experiment,
    root: Path,
    data_dir: str | None,
    device: str = "cpu",
    quiet: bool = True,
) -> dict[str, float | None]:
    """The experiment's range test (or its saved result), written at once; returns the reference
    values. Unless ``quiet``, a progress bar counts the test's updates. (``stepsize run`` computes
    it with :func:`compute_range_test` and writes it only once every check passed.)"""
    saved = saved_range_test(experiment, root)
    if saved is not None:
        return saved
    run = compute_range_test(experiment, data_dir, device, quiet)
    save_range_test(root, run)
    return run.values


def search_train(train: Train, overrides: Mapping[str, Any]) -> Train:
    """``train`` with the search's ``overrides`` (a budget in steps or epochs replaces both)."""
    merged = train.to_table()
    if "steps" in overrides or "epochs" in overrides:
        merged.pop("steps", None)
        merged.pop("epochs", None)
    return Train.from_table({**merged, **overrides})


def search_run_name(lr: float) -> str:
    """What names the search run of rate ``lr`` (its folder, and its variant after the dot):
    ``lr`` and the rate with 6 significant digits (``lr0.1``, ``lr1``, ``lr3e-05``). Two rates
    that print alike would share a folder, so :func:`colliding_rates` refuses such a grid."""
    return f"lr{lr:g}"


def colliding_rates(grid: Sequence[float]) -> tuple[float, float, str] | None:
    """The first two distinct rates of ``grid`` that share a :func:`search_run_name`, with that
    name, or None."""
    seen: dict[str, float] = {}
    for lr in grid:
        name = search_run_name(lr)
        if name in seen and seen[name] != lr:
            return seen[name], lr, name
        seen.setdefault(name, lr)
    return None


def search_variant(variant: Variant, lr: float, train: Mapping[str, Any]) -> Variant:
    """``variant`` at learning rate ``lr`` with the search's training overrides."""
    return dataclasses.replace(
        variant,
        name=f"{variant.name}.{search_run_name(lr)}",
        optimizer=variant.optimizer.with_values(lr=lr),
        train=search_train(variant.train, train),
    )


def _score(result: dict[str, Any] | None, metric: str) -> float:
    """The value compared (lower is better): the final metric, negated for accuracies; +inf for a
    missing, diverged or non-finite run."""
    if result is None or result["status"] != "finished":
        return math.inf
    value = result["final"][metric]
    if value is None or not math.isfinite(value):
        return math.inf
    return -value if metric.endswith("accuracy") else value


def search_tasks(experiment: Experiment, root: Path) -> dict[str, list[tuple[float, Any]]]:
    """The grid search's runs: per variant, ``(rate, runs.parallel.Task)`` for each rate."""
    from runs.parallel import Task, run_dir_of

    search = experiment.search
    assert search is not None
    by_variant: dict[str, list[tuple[float, Task]]] = {}
    for variant in experiment.variants:
        for lr in search.grids.get(variant.name, ()):  # (a variant without lr is not searched)
            candidate = search_variant(variant, lr, search.train)
            run_dir = run_dir_of(root / SEARCH_DIR / variant.name, search_run_name(lr), search.seed)
            by_variant.setdefault(variant.name, []).append(
                (lr, Task(candidate, search.seed, run_dir))
            )
    return by_variant


def _check_candidate(result: dict[str, Any], lr: float, task: Any) -> None:
    """Raises ``ValueError`` unless ``result`` is the run of ``task`` (its fingerprint: the
    variant, the rate ``lr`` and the seed), so that no rate is credited with another's number."""
    if result.get("fingerprint") == task.variant.fingerprint(task.seed):
        return
    config = result.get("config")
    optimizer = config.get("optimizer") if isinstance(config, dict) else None
    recorded = optimizer.get("lr") if isinstance(optimizer, dict) else None
    raise ValueError(
        f"{task.run_dir}: its result is not the search run of {task.variant.name!r} at lr "
        f"{lr!r}, seed {task.seed} (it records variant {result.get('variant')!r}, lr "
        f"{recorded!r}, another fingerprint); delete that folder and run again"
    )


def _choose(
    experiment: Experiment, by_variant: dict[str, list[tuple[float, Any]]]
) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
    """The chosen rate of each variant and the grid's rows, from the search runs on disk: the
    best score, ties going to the smaller rate.

    Raises:
        ValueError: when a result is not its candidate's run (:func:`_check_candidate`), or when
            every rate of a variant's grid scores +inf (diverged, or no finite final metric),
            naming each such variant and its grid.
    """
    search = experiment.search
    assert search is not None
    grid: dict[str, list[dict[str, Any]]] = {}
    chosen: dict[str, float] = {}
    failed: list[str] = []
    for variant in experiment.variants:
        if variant.name not in by_variant:
            continue
        rows = []
        for lr, task in by_variant[variant.name]:
            result = ckpt.load_result(task.run_dir)
            if result is not None:
                _check_candidate(result, lr, task)
            score = _score(result, search.metric)
            value = result["final"][search.metric] if result else None
            status = result["status"] if result else "missing"
            rows.append({"lr": lr, "status": status, "value": value, "score": score})
        best = min(rows, key=lambda row: (row["score"], row["lr"]))
        if math.isinf(best["score"]):
            rates = ", ".join(f"{row['lr']:g}" for row in rows)
            failed.append(
                f"every rate of the grid of variant {variant.name!r} ({rates}) diverged or ended "
                f"without a finite final {search.metric}: give it rates below "
                f"{min(row['lr'] for row in rows):g}"
            )
            continue
        chosen[variant.name] = best["lr"]
        grid[variant.name] = [{k: v for k, v in r.items() if k != "score"} for r in rows]
    if failed:
        raise ValueError(
            f"learning-rate search: {'; '.join(failed)}. No rate is chosen, so that its "
            "comparison never trains at a rate known to fail; finished search runs are kept "
            "and reused when the command runs again"
        )
    return chosen, grid


def grid_edges(
    grid: Mapping[str, Sequence[Mapping[str, Any]]], chosen: Mapping[str, float]
) -> dict[str, str | None]:
    """Per variant of ``chosen``: ``"low"`` or ``"high"`` when its chosen rate is the smallest or
    the largest rate of its grid (of more than one rate; ``grid`` as in ``search.json``), so the
    best rate may lie beyond the grid, else None."""
    edges: dict[str, str | None] = {}
    for name, lr in chosen.items():
        rates = [row["lr"] for row in grid.get(name, ())]
        edge = None
        if len(rates) > 1 and lr == min(rates):
            edge = "low"
        elif len(rates) > 1 and lr == max(rates):
            edge = "high"
        edges[name] = edge
    return edges


def edge_warnings(search: Mapping[str, Any]) -> list[str]:
    """One warning line per variant whose chosen rate lies at an end of its grid (from a
    ``search.json`` record; :func:`grid_edges`)."""
    lines = []
    for name, edge in grid_edges(search["grid"], search["chosen"]).items():
        if edge is not None:
            which = "smallest" if edge == "low" else "largest"
            beyond = "lower" if edge == "low" else "higher"
            lines.append(
                f"warning: {name}'s best rate {search['chosen'][name]:g} is the {which} of its "
                f"grid; the best may lie beyond it: extend the grid to {beyond} rates"
            )
    return lines


def saved_choice(experiment: Experiment, root: Path) -> dict[str, float] | None:
    """The rates the search chooses when every search run has finished in ``root``, else None;
    reads only."""
    by_variant = search_tasks(experiment, root)
    if any(ckpt.load_result(t.run_dir) is None for pairs in by_variant.values() for _, t in pairs):
        return None
    return _choose(experiment, by_variant)[0]


def run_search(
    experiment: Experiment,
    root: Path,
    run_tasks: Callable[[Sequence[Any]], None],
    option: str = "--logdir",
    session: Session | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Runs the grid search (``run_tasks`` trains a list of ``runs.parallel.Task``); returns the
    chosen learning rate of each variant and the ``search.json`` record, which
    :func:`save_search` writes (``runs.experiment`` does once the comparison's folders are
    accepted). ``option`` is what a folder of another configuration's refusal names, and an
    unfinished search run must resume under ``session`` (:func:`check_task_dirs`).

    Raises:
        ValueError: when every rate of a variant's grid diverged (:func:`_choose`).
    """
    search = experiment.search
    assert search is not None
    by_variant = search_tasks(experiment, root)
    tasks = [task for pairs in by_variant.values() for _, task in pairs]
    check_task_dirs(tasks, option, session)
    pending = [t for t in tasks if ckpt.load_result(t.run_dir) is None]
    if pending:
        run_tasks(pending)
    chosen, grid = _choose(experiment, by_variant)
    record = {
        "metric": search.metric,
        "seed": search.seed,
        "train": search.train,
        "grid": grid,
        "chosen": chosen,
        "at_edge": grid_edges(grid, chosen),
    }
    return chosen, record


def save_search(root: Path, record: Mapping[str, Any]) -> None:
    """Writes ``search.json`` (the record :func:`run_search` returns)."""
    ckpt.save_json(root / SEARCH_FILE, dict(record))


def _flag(key: str, value: Any) -> str:
    return f"--{key} {value}"


@dataclasses.dataclass(frozen=True)
class Session:
    """What a run's numbers depend on besides its configuration, as this command gives it: the
    torch intra-op ``threads`` and the ``device`` type (``cpu``, ``cuda``, ``mps``; ``cuda:0``
    and ``cuda:1`` are one type). ``describe(key, value)`` writes an option as the caller
    does (``--threads 2`` on the command line, ``threads=2`` from ``runs.run``)."""

    threads: int
    device: str
    describe: Callable[[str, Any], str] = _flag


def session_problem(run_dir: str, state: Mapping[str, Any], session: Session) -> str | None:
    """Why the checkpoint ``state`` of ``run_dir`` must not resume under ``session``, or None.

    A checkpoint records the threads and device type of the command that trained it
    (``runs.trainer``: ``state["session"]``); CPU kernels reduce in an order that depends on the
    thread count, and devices compute differently, so a run resumed under others would equal
    neither uninterrupted run. A checkpoint written before the record existed has none and
    resumes (its later checkpoints record the command that resumed it)."""
    recorded = state.get("session")
    if not isinstance(recorded, Mapping):
        return None
    for key in ("threads", "device"):
        if key in recorded and recorded[key] != getattr(session, key):
            was = session.describe(key, recorded[key])
            now = session.describe(key, getattr(session, key))
            return (
                f"{run_dir} holds an unfinished run trained with {was}, and this command gives "
                f"{now}: the numbers depend on it, so the resumed run would equal neither "
                f"uninterrupted one; resume it with {was}, or delete that folder to start it again"
            )
    return None


def check_task_dirs(
    tasks: Sequence[Any], option: str = "--logdir", session: Session | None = None
) -> dict[str, int]:
    """Refuses to mix configurations: an existing run folder must hold this task's run (its
    ``result.json`` or checkpoint, which must be readable; the refusal names ``option``), and an
    unfinished run's checkpoint must have been trained under ``session``'s threads and device
    type (:func:`session_problem`; not checked when ``session`` is None). Returns the step of each
    unfinished run's checkpoint, by run folder (the runs that will resume)."""
    resumed: dict[str, int] = {}
    for task in tasks:
        result = ckpt.load_result(task.run_dir)
        state = None if result else ckpt.load_checkpoint(task.run_dir)
        found = (result or state or {}).get("fingerprint")
        if found is not None and found != task.variant.fingerprint(task.seed):
            raise ValueError(
                f"{task.run_dir} holds a run of another configuration of {task.variant.name!r} "
                f"(model {task.variant.model.name!r}, dataset {task.variant.dataset.name!r}): a "
                "setting, the seed, a registered dataset's content or a registered model's "
                "architecture or initial weights differ; delete that folder or choose another "
                f"{option}"
            )
        if state is None:
            continue
        if session is not None and (problem := session_problem(task.run_dir, state, session)):
            raise ValueError(problem)
        resumed[task.run_dir] = int(state["step"])
    return resumed
