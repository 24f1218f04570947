"""Tables and figures of an experiment, made from its run folders (``stepsize report``).

Everything here is computed from the ``result.json`` of each run (``<dir>/<variant>/seed<k>/``)
and the ``experiment.json`` written when the experiment started, so ``stepsize report DIR``
regenerates exactly what ``stepsize run`` wrote:

- ``summary.json``: the experiment, software versions, and every variant x seed with its status,
  final and best metrics, wall time, seed and resolved config (histories are left in the runs);
- ``summary.md``: per variant, mean +- standard deviation over seeds (sample standard deviation,
  ``ddof = 1``; none shown for one seed) of the final metrics; diverged seeds are named with the
  step and value of their first non-finite loss and left out of the means;
- ``figures/*.png`` (matplotlib, Agg backend): each evaluation metric and the training loss
  against the step, every variant overlaid, the line the mean over seeds and the shaded band
  mean +- std; and ``figures/schedules.png``, the scheduled hyperparameters each variant used.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runs.checkpoint import RESULT, save_json, save_text
from runs.tensorboard import EVAL_METRICS

TABLE_METRICS = ("test_accuracy", "test_loss", "train_loss", "train_accuracy")
# What ``[report] figure`` may name: the figure the README shows for the experiment.
README_FIGURES = (*EVAL_METRICS, "train_loss_per_step", "schedules")
README_FIGURE = "readme.png"
METRIC_LABELS = {
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
    "train_loss": "train loss",
    "train_accuracy": "train accuracy",
}


def software_versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries that change the numbers."""
    import importlib.metadata

    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("stepsize", "torch", "numpy", "tensorboard", "mnist1d"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def collect_results(experiment_dir: str | Path) -> list[dict[str, Any]]:
    """The finished runs the experiment's last command asked for: the variants x seeds of its
    ``experiment.json`` (every finished run when it names none), variant order, then seeds."""
    return _partition_results(Path(experiment_dir))[0]


def other_runs(experiment_dir: str | Path) -> list[dict[str, Any]]:
    """Finished runs in the folder that the last command did not ask for (other variants or
    seeds, from earlier commands): left out of the summary, listed beside it."""
    return _partition_results(Path(experiment_dir))[1]


def _partition_results(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from runs.checkpoint import load_result

    meta = load_meta(root)
    order = [v["name"] for v in meta.get("variants", [])]
    seeds = meta.get("seeds")
    results = [load_result(p.parent) for p in root.glob(f"*/seed*/{RESULT}")]
    rank = {name: i for i, name in enumerate(order)}
    results.sort(key=lambda r: (rank.get(r["variant"], len(rank)), r["variant"], r["seed"]))
    if not order or seeds is None:
        return results, []
    asked = [r for r in results if r["variant"] in rank and r["seed"] in seeds]
    return asked, [r for r in results if not (r["variant"] in rank and r["seed"] in seeds)]


def _other_runs_line(others: Sequence[dict[str, Any]]) -> str:
    """One sentence naming the runs of the folder left out of the summary, or ''."""
    if not others:
        return ""
    parts = [
        f"{variant} (seed{'s' if len(runs) > 1 else ''} {', '.join(str(r['seed']) for r in runs)})"
        for variant, runs in _group(others).items()
    ]
    return (
        "Other finished runs in this folder, not asked for by the last command and left out "
        "above: " + "; ".join(parts) + "."
    )


def _ran_on_line(results: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """One sentence naming the dataset(s) and model(s) that actually ran."""
    pairs = sorted({
        (r.get("config", {}).get("dataset", {}).get("name", "?"),
         r.get("config", {}).get("model", {}).get("name", "?"))
        for r in results
    })  # fmt: skip
    text = "Ran on " + "; ".join(f"dataset `{d}`, model `{m}`" for d, m in pairs)
    if meta.get("fallback_used"):
        text += " (the experiment's `[fallback]`: no `--data-dir` was given)"
    return text + "."


def load_meta(experiment_dir: Path) -> dict[str, Any]:
    path = experiment_dir / "experiment.json"
    return json.loads(path.read_text()) if path.is_file() else {}


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


def _prefix(name: str) -> str:
    return name.split(".", 1)[0]


def _published_cell(variant: str, published: dict | None) -> str | None:
    if not published:
        return None
    value = published["values"].get(variant, published["values"].get(_prefix(variant)))
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if published["metric"].endswith("accuracy") else f"{value:.4g}"


def steps_to_reach(runs: Sequence[dict[str, Any]], target: float) -> int | None:
    """The first evaluation step at which the mean test accuracy over ``runs`` is >= ``target``
    (None if never)."""
    steps, mean, _ = _series_band(runs, _eval_series("test_accuracy"))
    reached = np.nonzero(mean >= target)[0]
    return int(steps[reached[0]]) if len(reached) else None


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


def _eval_series(metric: str):
    return lambda r: (r["history"]["eval"]["step"], r["history"]["eval"][metric])


def markdown_table(results: Sequence[dict[str, Any]], report: dict | None = None) -> str:
    """The results table: one row per variant, mean ± std over seeds (accuracies in %), with the
    columns ``report`` asks for (see ``runs.config``: ``reach``, ``early_steps``,
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
            reached = steps_to_reach(by_variant[row["variant"]], target)
            cells.append(str(reached) if reached is not None else "not reached")
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
    """The grid search: per variant, the final metric at each rate tried; the chosen in bold."""
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
            text = "diverged" if row["status"] != "finished" else _fmt(metric, value, None)
            cells.append(f"**{text}**" if lr == search["chosen"][variant] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(results: Sequence[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """``summary.json``: the experiment, versions, per-variant aggregates and every run."""
    runs = [{k: v for k, v in r.items() if k != "history"} for r in results]
    return {
        "experiment": meta,
        "software": software_versions(),
        "variants": variant_rows(results),
        "runs": runs,
    }


def _series_band(runs: Sequence[dict[str, Any]], get) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and sample std (``ddof = 1``) over runs of a series, aligned on the step (runs
    that stopped early contribute to the steps they reached); non-finite values are ignored."""
    by_step: dict[int, list[float]] = {}
    for r in runs:
        steps, values = get(r)
        for s, v in zip(steps, values):
            if v is not None and math.isfinite(v):
                by_step.setdefault(s, []).append(v)
    steps = np.array(sorted(by_step))
    mean = np.array([np.mean(by_step[s]) for s in steps])
    std = np.array([np.std(by_step[s], ddof=1) if len(by_step[s]) > 1 else 0.0 for s in steps])
    return steps, mean, std


def _smooth(values: Sequence[float], window: int) -> list[float]:
    if window <= 1:
        return list(values)
    arr = np.asarray(values, dtype=float)
    kernel = np.ones(window) / window
    out = np.convolve(arr, kernel, mode="valid")
    return [float("nan")] * (window - 1) + out.tolist()


def _train_loss_series(r: dict[str, Any]):
    """The training loss per update, as a moving average over ~1% of the run."""
    h = r["history"]["train_loss"]
    window = max(1, len(h["value"]) // 100)
    return h["step"], _smooth(h["value"], window)


def _series(name: str):
    """``(getter, y label, log scale)`` of a figure name of :data:`README_FIGURES`; accuracies
    in %, as in the tables."""
    if name == "train_loss_per_step":
        return _train_loss_series, "train loss (moving average)", True
    if name.endswith("accuracy"):
        raw = _eval_series(name)

        def percent(r):
            steps, values = raw(r)
            return steps, [None if v is None else 100 * v for v in values]

        return percent, f"{METRIC_LABELS[name]} (%)", False
    return _eval_series(name), METRIC_LABELS[name], name.endswith("loss")


def steps_per_epoch(results: Sequence[dict[str, Any]]) -> int | None:
    """Updates per epoch when every run's training is counted in epochs (``train.epochs``),
    else None: such experiments are drawn against the epoch."""
    counts = set()
    for r in results:
        train = r.get("config", {}).get("train", {})
        epochs = train.get("epochs")
        if not epochs or train.get("steps") or not r.get("steps"):
            return None
        counts.add(r["steps"] / epochs)
    return int(counts.pop()) if len(counts) == 1 and next(iter(counts)) >= 1 else None


def _x_axis(results: Sequence[dict[str, Any]]):
    """``(scale, label)``: steps are divided by ``scale`` on the x-axis."""
    per_epoch = steps_per_epoch(results)
    if per_epoch is None:
        return 1, "step (updates)"
    return per_epoch, "epoch"


def _in_epochs(get, scale: int):
    if scale == 1:
        return get

    def scaled(r):
        steps, values = get(r)
        return [s / scale for s in steps], values

    return scaled


LINE_STYLES = ("-", "--", ":", "-.")
MAX_VARIANTS_PER_PANEL = 8


def _plot_bands(
    ax, by_variant: dict[str, list[dict[str, Any]]], get, label=lambda v: v, log_y: bool = False
) -> None:
    """Each variant's mean over seeds as a line, mean ± std shaded (on a log axis the band's
    lower edge is kept above a fifth of the mean, so that it does not fall to zero).

    A curve that coincides with one drawn before it gets the next line style, so that both stay
    visible. When a variant with diverged runs would stretch the y-axis far beyond the others,
    the axis is cut at the others' range and the cut is said in the legend. The band has its own
    legend entry."""
    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    banded, clean_top, top = False, -math.inf, -math.inf
    for variant, runs in by_variant.items():
        steps, mean, std = _series_band(runs, get)
        if len(steps) == 0:
            continue
        same = sum(
            len(s) == len(steps) and np.array_equal(s, steps) and np.allclose(m, mean)
            for s, m in drawn
        )
        drawn.append((steps, mean))
        style = LINE_STYLES[same % len(LINE_STYLES)]
        (line,) = ax.plot(steps, mean, style, label=label(variant))
        upper = mean + std
        if len(runs) > 1:
            low = np.maximum(mean - std, mean / 5) if log_y else mean - std
            ax.fill_between(steps, low, upper, color=line.get_color(), alpha=0.2)
            banded = True
        top = max(top, float(np.max(upper)))
        if all(r["status"] == "finished" for r in runs):
            clean_top = max(clean_top, float(np.max(upper)))
    if banded:
        ax.fill_between([], [], [], color="0.5", alpha=0.2, label="shaded: mean ± std over seeds")
    if math.isfinite(clean_top) and clean_top > 0 and top > 1.5 * clean_top:
        ax.set_ylim(top=clean_top * (3 if log_y else 1.15))
        ax.plot([], [], " ", label="diverged runs cut off above")


def _panels(by_variant: dict[str, list[dict[str, Any]]]) -> list[dict[str, list[dict[str, Any]]]]:
    """The variants in groups of at most :data:`MAX_VARIANTS_PER_PANEL`, in their order (one
    panel each), so that a figure with many variants stays readable."""
    names = list(by_variant)
    count = max(1, -(-len(names) // MAX_VARIANTS_PER_PANEL))
    per_panel = max(1, -(-len(names) // count))  # balanced: 9 variants are 5 + 4, not 8 + 1
    chunks = [names[i : i + per_panel] for i in range(0, len(names), per_panel)] or [[]]
    return [{n: by_variant[n] for n in chunk} for chunk in chunks]


def _legend(ax, entries: int) -> None:
    """A legend that stays readable with many variants (two columns, smaller type)."""
    if entries > 8:
        ax.legend(fontsize="xx-small", ncol=2)
    else:
        ax.legend(fontsize="small")


def save_figure(fig, path: Path) -> Path:
    """Lays out, writes (temporary name, then rename) and closes a matplotlib figure."""
    import matplotlib.pyplot as plt

    from runs.checkpoint import atomic_write

    fig.tight_layout()
    atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=110))
    plt.close(fig)
    return path


def _group(results: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    return by_variant


def write_figures(results: Sequence[dict[str, Any]], out_dir: Path, title: str) -> list[Path]:
    """PNG figures: each evaluation metric and the training loss against steps (or epochs, for
    experiments counted in epochs), the mean line and mean ± std band over seeds, every variant
    overlaid (one panel per eight variants); and the schedules used (log-y for a positive
    schedule spanning more than a factor of ten)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_variant = _group(results)
    scale, xlabel = _x_axis(results)
    panels = _panels(by_variant)
    written = []
    for name in (*EVAL_METRICS, "train_loss_per_step"):
        get, ylabel, log_y = _series(name)
        get = _in_epochs(get, scale)
        fig, axes = plt.subplots(
            1, len(panels), figsize=(7 + 5 * (len(panels) - 1), 4.5), squeeze=False
        )
        log_axis = log_y and name == "train_loss_per_step"
        for ax, panel in zip(axes[0], panels):
            if log_axis:
                ax.set_yscale("log")
            _plot_bands(ax, panel, get, log_y=log_axis)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            _legend(ax, len(panel))
        axes[0, 0].set_ylabel(ylabel)
        fig.suptitle(f"{title}: {ylabel}")
        written.append(save_figure(fig, out_dir / f"{name}.png"))

    keys = sorted({tag for r in results for tag in r["history"]["hyper"]})
    if keys:
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), squeeze=False)
        for ax, tag in zip(axes[:, 0], keys):
            values = []
            for i, (variant, runs) in enumerate(by_variant.items()):
                series = runs[0]["history"]["hyper"].get(tag)
                if series:
                    steps = [s / scale for s in series["step"]]
                    style = LINE_STYLES[(i // 10) % len(LINE_STYLES)]
                    ax.step(steps, series["value"], style, where="post", label=variant)
                    values += series["value"]
            if values and min(values) > 0 and max(values) > 10 * min(values):
                ax.set_yscale("log")
            ax.set_ylabel(tag.removeprefix("hyper/"))
            ax.grid(alpha=0.3)
        axes[0, 0].set_title(f"{title}: schedules used")
        axes[-1, 0].set_xlabel(xlabel)
        _legend(axes[0, 0], len(by_variant))
        written.append(save_figure(fig, out_dir / "schedules.png"))
    return written


def readme_figure(
    results: Sequence[dict[str, Any]], out_dir: Path, title: str, report: dict[str, Any]
) -> Path:
    """``figures/readme.png``: the figure ``[report] figure`` names (default: test accuracy),
    one panel per ``[report] panels`` prefix, the x-axis cut at ``max_step``."""
    import shutil

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = report.get("figure", "test_accuracy")
    path = out_dir / README_FIGURE
    if name == "schedules":
        shutil.copyfile(out_dir / "schedules.png", path)
        return path
    get, ylabel, log_y = _series(name)
    scale, xlabel = _x_axis(results)
    get = _in_epochs(get, scale)
    by_variant = _group(results)
    panels = report.get("panels") or [None]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels) + 2.4 * (len(panels) == 1), 4.5), squeeze=False
    )
    for ax, panel in zip(axes[0], panels):
        chosen = {v: runs for v, runs in by_variant.items() if panel is None or _prefix(v) == panel}
        label = (lambda v: v) if panel is None else (lambda v: v.split(".", 1)[-1])
        if log_y:
            ax.set_yscale("log")
        _plot_bands(ax, chosen, get, label, log_y=log_y)
        ax.set_title(f"{title}" if panel is None else f"{title}: {panel}")
        ax.set_xlabel(xlabel)
        if log_y:
            ax.set_yscale("log")
        if "max_step" in report:
            ax.set_xlim(0, report["max_step"] / scale)
        ax.grid(alpha=0.3)
        _legend(ax, len(chosen))
    axes[0, 0].set_ylabel(ylabel)
    return save_figure(fig, path)


def range_test_line(root: Path) -> str:
    """One sentence on the range test the experiment ran (``range_test.json``), or ''."""
    path = root / "range_test.json"
    if not path.is_file():
        return ""
    saved = json.loads(path.read_text())
    values, settings = saved["values"], saved["settings"]
    parts = [f"{k} = {v:.4g}" for k, v in values.items() if v is not None]
    return (
        f"LR range test on `{settings['variant']}` ({settings['num_iter']} updates, lr "
        f"{settings['start_lr']:g} to {settings['end_lr']:g}): " + ", ".join(parts) + "."
    )


def write_report(experiment_dir: str | Path) -> tuple[str, list[Path]]:
    """Writes ``summary.json``, ``summary.md`` and the figures of an experiment folder from its
    runs (or, for a study, from its ``results.json``); returns the markdown and the figures."""
    root = Path(experiment_dir)
    meta = load_meta(root)
    if meta.get("kind") == "study":
        from runs.study import write_study_report

        return write_study_report(root)
    results = collect_results(root)
    if not results:
        raise FileNotFoundError(f"{root} holds no finished runs (no */seed*/{RESULT})")
    title = meta.get("name", root.name)
    report = meta.get("report") or {}
    table = markdown_table(results, report)
    extra = []
    if line := range_test_line(root):
        extra.append(line)
    search_path = root / "search.json"
    if search_path.is_file():
        search = json.loads(search_path.read_text())
        extra.append(
            f"Learning-rate grid search (seed {search['seed']}, final "
            f"{METRIC_LABELS[search['metric']]}; the chosen rate in bold):\n\n"
            + search_table(search)
        )
    if report.get("published"):
        extra.append(f"Published numbers: {report['published']['source']}.")
    extra.append(_ran_on_line(results, meta))
    others = other_runs(root)
    if others:
        extra.append(_other_runs_line(others))
    markdown = table + "".join(f"\n{part}\n" for part in extra)
    figures_dir = root / "figures"
    figures = write_figures(results, figures_dir, title)
    figures.insert(0, readme_figure(results, figures_dir, title, report))
    data = summary(results, meta)
    data["readme_figure"] = str(figures[0].relative_to(root))
    data["seeds"] = meta.get("seeds", [])
    data["other_runs"] = [{"variant": r["variant"], "seed": r["seed"]} for r in others]
    data["wall_time_s"] = meta.get("wall_time_s", float(sum(r["wall_time_s"] for r in results)))
    save_json(root / "summary.json", data)
    header = f"# {title}\n\n{meta.get('description', '')}\n\n"
    save_text(root / "summary.md", header + markdown)
    return markdown, figures


# ------------------------------------------------------------------------------ README section
RESULTS_BEGIN = "<!-- results:begin -->"
RESULTS_END = "<!-- results:end -->"


def _run_line(data: dict[str, Any]) -> str:
    """Seeds, wall time, dataset and software of a summary, as one line."""
    meta, software = data["experiment"], data["software"]
    seeds = data.get("seeds") or meta.get("seeds") or []
    minutes = data.get("wall_time_s", 0.0) / 60
    datasets = sorted({v["dataset"]["name"] for v in meta.get("variants", [])})
    parts = [
        f"`stepsize run {meta['name']}`",
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
        f"{minutes:.1f} min wall time ({meta.get('jobs', 1)} job(s) x {meta.get('threads', 1)} "
        "torch thread(s))",
    ]
    if datasets:
        parts.append(
            "data: " + ", ".join(datasets) + (" (fallback)" if meta.get("fallback_used") else "")
        )
    parts.append(f"torch {software['torch']}, Python {software['python']}")
    return "; ".join(parts)


def readme_section(dirs: Sequence[Path], figures_dir: Path, readme_dir: Path) -> str:
    """The README's Results section: for each experiment folder, its description, what it
    reproduces, how it was run, its table (regenerated now from its runs) and its figure (copied
    to ``figures_dir``)."""
    import shutil

    from runs.catalog import catalogue_order

    by_name = {}
    for directory in dirs:
        markdown, _ = write_report(directory)
        data = json.loads((directory / "summary.json").read_text())
        by_name[data["experiment"]["name"]] = (directory, markdown, data)
    parts = [
        RESULTS_BEGIN,
        "<!-- generated by `stepsize report --readme README.md DIR...` from full runs; "
        "do not edit by hand -->",
    ]
    for name in catalogue_order(by_name):
        directory, markdown, data = by_name[name]
        meta = data["experiment"]
        figure = figures_dir / f"{name}.png"
        figures_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(directory / data["readme_figure"], figure)
        parts += [f"### {name}", meta.get("description", "")]
        if meta.get("reference"):
            parts.append(f"*Reproduces:* {meta['reference']}")
        parts += [f"*Run:* {_run_line(data)}.", markdown.strip()]
        parts.append(f"![{name}]({figure.relative_to(readme_dir).as_posix()})")
    parts.append(RESULTS_END)
    return "\n\n".join(parts) + "\n"


def update_readme(readme: Path, dirs: Sequence[Path], figures_dir: Path | None = None) -> None:
    """Replaces the text between the results markers of ``readme`` (appends a ``## Results``
    section when there are none) with :func:`readme_section`."""
    text = readme.read_text(encoding="utf-8")
    figures_dir = figures_dir or readme.parent / "docs" / "results"
    section = readme_section(dirs, figures_dir, readme.parent)
    if RESULTS_BEGIN in text and RESULTS_END in text:
        before, rest = text.split(RESULTS_BEGIN, 1)
        after = rest.split(RESULTS_END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n## Results\n\n" + section
    save_text(readme, text)


# ---------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="experiment folders (<logdir>/<experiment>), or a logdir for all its full runs",
    )
    parser.add_argument(
        "--readme",
        metavar="README.md",
        help="also write the Results section of this README (figures into docs/results/ beside it)",
    )


def experiment_dirs(dirs: Sequence[str | Path]) -> list[Path]:
    """The experiment folders named: a folder holding ``experiment.json`` is one; any other
    folder (a ``--logdir``) stands for the full runs inside it (``*-quick`` ones left out)."""
    found = []
    for directory in map(Path, dirs):
        if (directory / "experiment.json").is_file():
            found.append(directory)
            continue
        inside = sorted(
            d
            for d in directory.iterdir()
            if (d / "experiment.json").is_file() and not d.name.endswith("-quick")
        )
        if not inside:
            raise FileNotFoundError(f"{str(directory)!r} holds no experiment (no experiment.json)")
        found += inside
    return found


def run(args: argparse.Namespace) -> int:
    for directory in args.dirs:
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"{directory!r} is not a folder")
    import contextlib

    from runs.checkpoint import folder_lock

    args.dirs = [str(d) for d in experiment_dirs(args.dirs)]
    with contextlib.ExitStack() as locks:  # no run may write a folder while it is reported
        for directory in args.dirs:
            locks.enter_context(folder_lock(directory, option="folder"))
        return _write_reports(args)


def _write_reports(args: argparse.Namespace) -> int:
    if args.readme:
        readme = Path(args.readme)
        if not readme.is_file():
            raise FileNotFoundError(f"--readme: {args.readme!r} does not exist")
        update_readme(readme, [Path(d) for d in args.dirs])
        print(f"wrote the Results section of {readme} from {len(args.dirs)} experiments")
        return 0
    for directory in args.dirs:
        table, figures = write_report(directory)
        print(f"{directory}:\n{table}")
        print(f"wrote summary.json, summary.md and {len(figures)} figures in {directory}")
    return 0
