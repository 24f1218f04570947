"""The tables of an experiment, ``summary.json`` and ``summary.md``, made from its run folders.

Everything here is computed from the ``result.json`` of each run (``<dir>/<variant>/seed<k>/``)
and the ``experiment.json`` written before its comparison trains, so ``stepsize report DIR``
regenerates exactly what ``stepsize run`` wrote (:func:`write_report`):

- ``summary.json``: the experiment, software versions, and every variant x seed with its status,
  final and best metrics, wall time, seed and resolved config (histories are left in the runs);
  its ``wall_time_s`` is the experiment's wall time: that of every ``stepsize run`` command that
  trained something in the folder, summed (``experiment.json``'s, see
  ``runs.experiment.recorded_wall_time``), or, when none is recorded, the sum of the runs' own
  training times;
- ``summary.md``: per variant, mean +- standard deviation over seeds (sample standard deviation,
  ``ddof = 1``; none shown for one seed) of the final metrics; diverged seeds are named with the
  step and value of their first non-finite loss and left out of the means (and of the "steps
  to" column of ``[report] reach``, which says "diverged (k of n seeds)" for such a variant:
  :func:`reach_cell`);
- the figures of ``runs.figures``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runs.checkpoint import RESULT, check_writable_folder, save_json, save_text
from runs.claims import claims_table
from runs.figures import check_figure_files, readme_figure, write_figures
from runs.results import (
    METRIC_LABELS,
    collect_results,
    eval_series,
    experiment_and_software,
    group_by_variant,
    load_meta,
    other_runs,
    series_band,
    variant_prefix,
)
from schedulers.files import read_json

TABLE_METRICS = ("test_accuracy", "test_loss", "train_loss", "train_accuracy")


def _other_runs_line(others: Sequence[dict[str, Any]]) -> str:
    """One sentence naming the runs of the folder left out of the summary, or ''."""
    if not others:
        return ""
    parts = [
        f"{variant} (seed{'s' if len(runs) > 1 else ''} {', '.join(str(r['seed']) for r in runs)})"
        for variant, runs in group_by_variant(others).items()
    ]
    return (
        "Other finished runs in this folder, not asked for by the last command and left out "
        "above: " + "; ".join(parts) + "."
    )


def _ran_on_line(results: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """One sentence naming the dataset(s) and model(s) that actually ran."""

    def dataset(table: dict[str, Any]) -> str:
        sizes = (table.get("train_examples"), table.get("test_examples"))
        shown = f"`{table.get('name', '?')}`"
        if sizes != (None, None):  # a generated dataset at a chosen size
            shown += " ({} training / {} test examples)".format(
                *(f"{n:,}" if n is not None else "default" for n in sizes)
            )
        return shown

    pairs = sorted({
        (dataset(r.get("config", {}).get("dataset", {})),
         r.get("config", {}).get("model", {}).get("name", "?"))
        for r in results
    })  # fmt: skip
    text = "Ran on " + "; ".join(f"dataset {d}, model `{m}`" for d, m in pairs)
    if meta.get("fallback_used"):
        text += (
            " (the experiment's `[fallback]`: no data folder was given, `--data-dir` or "
            "`data_dir=`)"
        )
    return text + "."


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else None


def _fmt(metric: str, mean: float, std: float | None) -> str:
    if metric.endswith("accuracy"):
        text = f"{100 * mean:.2f}"
        return text + (f" ± {100 * std:.2f}" if std is not None else "")
    text = f"{mean:.4f}"
    return text + (f" ± {std:.4f}" if std is not None else "")


def variant_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant (in first-appearance order): seeds, finished and diverged runs, the mean and
    std of each final metric over the finished seeds, and the mean wall time."""
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault(r["variant"], {"variant": r["variant"], "runs": []})
        row["runs"].append(r)
    out = []
    for row in rows.values():
        finished = [r for r in row["runs"] if r["status"] == "finished"]
        stats = {}
        for m in TABLE_METRICS:
            mean, std = _mean_std([r["final"][m] for r in finished]) if finished else (None, None)
            stats[m] = {"mean": mean, "std": std}
        out.append({
            "variant": row["variant"],
            "seeds": [r["seed"] for r in row["runs"]],
            "finished": len(finished),
            "diverged": [{"seed": r["seed"], **r["diverged"]} for r in row["runs"]
                         if r["diverged"]],
            "final": stats,
            "wall_time_s": float(np.mean([r["wall_time_s"] for r in row["runs"]])),
        })  # fmt: skip
    return out


def _published_cell(variant: str, published: dict | None) -> str | None:
    if not published:
        return None
    value = published["values"].get(variant, published["values"].get(variant_prefix(variant)))
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if published["metric"].endswith("accuracy") else f"{value:.4g}"


def steps_to_reach(runs: Sequence[dict[str, Any]], target: float) -> int | None:
    """The first evaluation step at which the mean test accuracy over ``runs`` is >= ``target``
    (None if never). The caller picks the runs: :func:`markdown_table` passes a variant's
    finished runs only (:func:`reach_cell`)."""
    steps, mean, _ = series_band(runs, eval_series("test_accuracy"))
    reached = np.nonzero(mean >= target)[0]
    return int(steps[reached[0]]) if len(reached) else None


def reach_cell(runs: Sequence[dict[str, Any]], target: float) -> str:
    """The table's "steps to" cell of a variant's ``runs``: the first evaluation step at which
    the mean test accuracy over its finished runs reaches ``target`` (:func:`steps_to_reach`;
    "not reached" if never), the runs the final columns and ``target`` (the reach variant's
    final, a mean over its finished runs) use. A variant with a diverged run is marked
    "diverged (k of n seeds)" instead, as the early-loss column marks a divergence: the step
    at which its survivors alone reach the target is no finding (nor is a mean over a set of
    seeds that changes where runs stopped)."""
    finished = [r for r in runs if r["status"] == "finished"]
    if len(finished) < len(runs):
        return f"diverged ({len(runs) - len(finished)} of {len(runs)} seeds)"
    reached = steps_to_reach(finished, target)
    return str(reached) if reached is not None else "not reached"


def early_max_loss(runs: Sequence[dict[str, Any]], early_steps: int) -> float:
    """Mean over ``runs`` of the largest training loss of the first ``early_steps`` updates
    (inf when a run's loss was not finite there)."""
    peaks = []
    for r in runs:
        h = r["history"]["train_loss"]
        values = [v for s, v in zip(h["step"], h["value"]) if s < early_steps]
        finite = all(v is not None and math.isfinite(v) for v in values)
        peaks.append(max(values) if values and finite else math.inf)
    return float(np.mean(peaks))


def _learning_rate(config: dict[str, Any]) -> float | str | None:
    """A variant's learning rate for the table: the optimizer's, a constant schedule's value, or
    "scheduled"."""
    schedule = config.get("schedules", {}).get("lr")
    if schedule is None:
        return config.get("optimizer", {}).get("lr")
    return schedule["value"] if schedule.get("name") == "constant" else "scheduled"


def markdown_table(results: Sequence[dict[str, Any]], report: dict | None = None) -> str:
    """The results table: one row per variant, mean ± std over seeds (accuracies in %), with the
    columns ``report`` asks for (see ``runs.spec.Report``: ``reach``, ``early_steps``,
    ``published``) and the learning rate when the variants differ in it."""
    report = report or {}
    rows = variant_rows(results)
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    lrs = {name: _learning_rate(runs[0].get("config", {})) for name, runs in by_variant.items()}
    show_lr = len({v for v in lrs.values() if v is not None}) > 1
    target = None
    if report.get("reach") in by_variant:
        finished = [r for r in by_variant[report["reach"]] if r["status"] == "finished"]
        if finished:
            target = float(np.mean([r["final"]["test_accuracy"] for r in finished]))
    published = report.get("published")
    header = ["variant", "seeds"] + (["lr"] if show_lr else [])
    header += [f"final {METRIC_LABELS[m]}" for m in TABLE_METRICS]
    if target is not None:
        header.append(f"steps to {100 * target:.2f}% ({report['reach']}'s final)")
    if report.get("early_steps"):
        header.append(f"max train loss, first {report['early_steps']} steps")
    if published:
        header.append(f"published {METRIC_LABELS[published['metric']]}")
    header += ["time (s)", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["variant"], str(len(row["seeds"]))]
        if show_lr:
            lr = lrs.get(row["variant"])
            cells.append("-" if lr is None else lr if isinstance(lr, str) else f"{lr:.3g}")
        for m in TABLE_METRICS:
            stat = row["final"][m]
            cells.append(_fmt(m, stat["mean"], stat["std"]) if stat["mean"] is not None else "-")
        if target is not None:
            cells.append(reach_cell(by_variant[row["variant"]], target))
        if report.get("early_steps"):
            peak = early_max_loss(by_variant[row["variant"]], report["early_steps"])
            cells.append(f"{peak:.3f}" if math.isfinite(peak) else "diverged")
        if published:
            cells.append(_published_cell(row["variant"], published))
        status = "ok"
        if row["diverged"]:
            status = "diverged: " + ", ".join(
                f"seed {d['seed']} at step {d['step']} (loss {d['value']})" for d in row["diverged"]
            )
        cells += [f"{row['wall_time_s']:.1f}", status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def search_table(search: dict[str, Any]) -> str:
    """The grid search: per variant, the final metric at each rate tried; the chosen in bold. A
    run that cannot be scored (not finished, or finished without a finite final metric: the rule
    of ``runs.tuning``, where such a run never wins) is shown as ``diverged``. A chosen rate at an
    end of its grid (``runs.tuning.grid_edges``: the best may lie beyond it) is marked ``†``, and
    a line under the table names each such variant."""
    from runs.tuning import edge_warnings, grid_edges

    edges = grid_edges(search["grid"], search["chosen"])
    metric = search["metric"]
    rates = sorted({row["lr"] for rows in search["grid"].values() for row in rows})
    header = ["variant", *(f"lr {lr:g}" for lr in rates)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, rows in search["grid"].items():
        by_lr = {row["lr"]: row for row in rows}
        cells = [variant]
        for lr in rates:
            row = by_lr.get(lr)
            if row is None:
                cells.append("")
                continue
            value = row["value"]
            scored = row["status"] == "finished" and value is not None and math.isfinite(value)
            text = _fmt(metric, value, None) if scored else "diverged"
            if lr == search["chosen"][variant]:
                text = f"**{text}**" + (" †" if edges.get(variant) else "")
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"† {line.removeprefix('warning: ')}" for line in edge_warnings(search)]
    return "\n".join(lines) + "\n" + "".join(f"\n{note}\n" for note in notes)


def summary(results: Sequence[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """``summary.json``: the experiment, the versions and CPU that ran it
    (:func:`~runs.results.experiment_and_software`), per-variant aggregates and every run."""
    runs = [{k: v for k, v in r.items() if k != "history"} for r in results]
    experiment, software = experiment_and_software(meta)
    return {
        "experiment": experiment,
        "software": software,
        "variants": variant_rows(results),
        "runs": runs,
    }


def range_test_line(root: Path) -> str:
    """One sentence on the range test the experiment ran (``range_test.json``), or ''."""
    path = root / "range_test.json"
    if not path.is_file():
        return ""
    saved = read_json(path, dict)
    values, settings = saved["values"], saved["settings"]
    parts = [f"{k} = {v:.4g}" for k, v in values.items() if v is not None]
    return (
        f"LR range test on `{settings['variant']}` ({settings['num_iter']} updates, lr "
        f"{settings['start_lr']:g} to {settings['end_lr']:g}): " + ", ".join(parts) + "."
    )


# What writes a prepared report: returns the markdown and the figures written.
Writer = Callable[[], tuple[str, list[Path]]]


def prepare_report(experiment_dir: str | Path) -> Writer:
    """Reads and checks everything the report of an experiment folder needs and computes its
    tables, writing nothing (so that ``stepsize report`` of several folders writes none when one
    is broken); returns the function that writes ``summary.json``, ``summary.md`` and the
    figures.

    Raises:
        ValueError: naming the file, when ``experiment.json``, a ``result.json``,
            ``range_test.json`` or ``search.json`` is not what a run writes.
        FileNotFoundError: the folder holds no finished runs.
    """
    root = Path(experiment_dir)
    meta = load_meta(root)
    for name in ("summary.json", "summary.md"):
        if (root / name).is_dir():
            raise ValueError(f"{str(root / name)!r} is a folder, not a file; remove it")
    check_writable_folder(root / "figures", "DIR")
    check_figure_files(root / "figures", "DIR")
    if meta.get("kind") == "study":
        from runs.study import prepare_study_report

        return prepare_study_report(root)
    results = collect_results(root)
    if not results:
        raise FileNotFoundError(f"{root} holds no finished runs (no */seed*/{RESULT})")
    title = meta.get("name", root.name)
    report = meta.get("report") or {}
    try:
        table = markdown_table(results, report)
        extra = []
        if line := range_test_line(root):
            extra.append(line)
        search_path = root / "search.json"
        if search_path.is_file():
            search = read_json(search_path, dict)
            extra.append(
                f"Learning-rate grid search (seed {search['seed']}, final "
                f"{METRIC_LABELS[search['metric']]}; the chosen rate in bold):\n\n"
                + search_table(search)
            )
        if report.get("published"):
            extra.append(f"Published numbers: {report['published']['source']}.")
        if report.get("claims"):
            extra.append(
                "The reference's findings, checked on these runs:\n\n"
                + claims_table(results, report["claims"]).rstrip("\n")
            )
        extra.append(_ran_on_line(results, meta))
        others = other_runs(root)
        if others:
            extra.append(_other_runs_line(others))
        markdown = table + "".join(f"\n{part}\n" for part in extra)
        data = summary(results, meta)
        after = {  # (after "readme_figure", known once the figures are written)
            "seeds": meta.get("seeds", []),
            "other_runs": [{"variant": r["variant"], "seed": r["seed"]} for r in others],
            "wall_time_s": meta.get("wall_time_s", float(sum(r["wall_time_s"] for r in results))),
        }
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(
            f"{root}: its experiment.json or run files are not what stepsize run writes "
            f"({type(err).__name__}: {err}); run the experiment again"
        ) from None
    header = f"# {title}\n\n{meta.get('description', '')}\n\n"

    def write() -> tuple[str, list[Path]]:
        figures_dir = root / "figures"
        figures = write_figures(results, figures_dir, title)
        figures.insert(0, readme_figure(results, figures_dir, title, report))
        readme = str(figures[0].relative_to(root))
        save_json(root / "summary.json", {**data, "readme_figure": readme, **after})
        save_text(root / "summary.md", header + markdown)
        return markdown, figures

    return write


def write_report(experiment_dir: str | Path) -> tuple[str, list[Path]]:
    """Writes ``summary.json``, ``summary.md`` and the figures of an experiment folder from its
    runs (or, for a study, from its ``results.json``); returns the markdown and the figures.
    Everything is read and checked before anything is written (:func:`prepare_report`)."""
    return prepare_report(experiment_dir)()
