"""The output of ``stepsize score`` (``runs.score``): the markdown tables, the performance
profile figure and the README section, generated from the results alone (no number typed by
hand)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from runs import score_profiles as P
from runs.results import software_line

RULESET_TITLES = {  # formatted with the results' settings
    "external": "external tuning ({trials} trials x {studies} studies; median of the fastest)",
    "self": "self-tuning (one run per study, {self_tuning_budget}x budget; median over studies)",
}


def _time(value: float | None) -> float:
    """A time to target, ``None`` (not reached, as JSON holds it) as ``inf``."""
    return math.inf if value is None else float(value)


def _cell(entry: dict) -> str:
    """``steps (seconds s)`` of a workload's record: the steps the score uses and the seconds of
    the same run (``runs.score.summarize``)."""
    steps, seconds = entry["steps"], entry["seconds"]
    if steps is None or not math.isfinite(steps):
        return "not reached"
    text = f"{steps:g}"
    return text + (f" ({seconds:.2f} s)" if seconds is not None and math.isfinite(seconds) else "")


def markdown(results: dict[str, Any]) -> str:
    """``score.md``: the workloads, then per ruleset a table of steps (seconds) to target per
    workload and the scores."""
    settings = results["settings"]
    lines = [
        "| workload | target | budget (steps) | checked every | what |",
        "|---|---|---:|---:|---|",
    ]
    for w in results["workloads"]:
        lines.append(
            f"| {w['name']} | {w['target_text']} | {w['budget']} | {w['eval_every']} | "
            f"{w['description']} |"
        )
    names = [w["name"] for w in results["workloads"]]
    for ruleset in settings["rulesets"]:
        entry = results["rulesets"][ruleset]
        title = RULESET_TITLES[ruleset].format(**settings).replace("1 studies", "1 study")
        lines += ["", f"**{title}**", ""]
        lines.append("| submission | " + " | ".join(names) + " | score (steps) | score (s) |")
        lines.append("|---|" + "---:|" * (len(names) + 2))
        order = sorted(entry["submissions"], key=lambda s: -entry["score_steps"][s])
        for sub in order:
            cells = [_cell(entry["times"][sub][w]) for w in names]
            lines.append(
                f"| {sub} | " + " | ".join(cells) + f" | **{entry['score_steps'][sub]:.3f}** | "
                f"{entry['score_seconds'][sub]:.3f} |"
            )
    even = settings["studies"] % 2 == 0
    lines += [
        "",
        "Cells: median over studies of each study's fastest steps to target, and in brackets "
        "the seconds of training of that same run, the fastest trial of the median study"
        + (" (an even count of studies: the mean of the two middle ones)" if even else "")
        + " (wall clock, machine-dependent, evaluations excluded); the score is the area under the "
        f"performance profile of steps, normalised over tau in [1, {settings['tau_max']:g}] "
        "(AlgoPerf); 1 = fastest everywhere; score (s) times each study by its fastest trial "
        "in seconds. Steps and the steps score are deterministic.",
    ]
    return "\n".join(lines) + "\n"


def figure(results: dict[str, Any], path: Path) -> Path:
    """``rho(tau)`` of each submission (steps), one panel per ruleset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runs.figures import save_figure

    rulesets = results["settings"]["rulesets"]
    tau_max = results["settings"]["tau_max"]
    fig, axes = plt.subplots(1, len(rulesets), figsize=(6 * len(rulesets), 5.6), squeeze=False)
    taus = np.linspace(1.0, tau_max, 301)
    for ax, ruleset in zip(axes[0], rulesets):
        entry = results["rulesets"][ruleset]
        for sub in sorted(entry["submissions"], key=lambda s: -entry["score_steps"][s]):
            ratios = [_time(r) for r in entry["ratios_steps"][sub].values()]
            curve = P.profile_curve(ratios, taus)
            label = f"{sub} ({entry['score_steps'][sub]:.2f})"
            style = ("-", "--", "-.", ":")[len(ax.lines) % 4]
            ax.step(taus, curve, where="post", label=label, linestyle=style, linewidth=1.8)
        ax.set(
            xlim=(1, tau_max), ylim=(-0.02, 1.02), xlabel="tau (steps / best steps)",
            ylabel="rho(tau): fraction of workloads", title=RULESET_TITLES[ruleset].split(" (")[0],
        )  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(
            fontsize="small", title="submission (score)", loc="upper center",
            bbox_to_anchor=(0.5, -0.16), ncol=2,
        )  # fmt: skip
    fig.suptitle("Performance profiles (AlgoPerf-style), steps to target")
    return save_figure(fig, path)


SCORE_BEGIN, SCORE_END = "<!-- score:begin -->", "<!-- score:end -->"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def command_line(results: dict[str, Any]) -> str:
    """The ``stepsize score`` command that gives ``results``, from its settings: every option
    that differs from its default (``--quick``, ``--submissions``, ``--only-file``,
    ``--workloads``, ``--ruleset``, ``--studies``, ``--trials``, ``--seed``), then ``--jobs``."""
    import shlex

    from runs import score as S
    from runs.score_workloads import WORKLOADS

    settings = results["settings"]
    quick = bool(settings.get("quick"))
    words = ["stepsize", "score"] + (["--quick"] if quick else [])
    if settings.get("submissions_file"):
        words += ["--submissions", str(settings["submissions_file"])]
    if settings.get("only_file"):
        words.append("--only-file")
    names = [w["name"] for w in results["workloads"]]
    if names != [w.name for w in WORKLOADS]:
        words += ["--workloads", ",".join(names)]
    rulesets = list(settings["rulesets"])
    if sorted(rulesets) != sorted(S.RULESETS):
        words += ["--ruleset", rulesets[0]]
    studies, trials = (S.QUICK_STUDIES, S.QUICK_TRIALS) if quick else (S.STUDIES, S.TRIALS)
    if settings["studies"] != studies:
        words += ["--studies", str(settings["studies"])]
    if settings["trials"] != trials:
        words += ["--trials", str(settings["trials"])]
    if settings.get("seed", 0) != 0:
        words += ["--seed", str(settings["seed"])]
    words += ["--jobs", str(settings["jobs"])]
    return shlex.join(words)


def description(results: dict[str, Any]) -> str:
    """What was scored, as one sentence: the submissions, the workloads, ``--quick`` and the
    rulesets that scored some submission."""
    from runs.score_workloads import WORKLOADS

    settings = results["settings"]
    text = (
        "Time-to-target scoring and performance profiles (AlgoPerf: Dahl et al. 2023, "
        "arXiv:2306.07179)"
    )
    if settings.get("submissions_file"):
        file = f"`{Path(settings['submissions_file']).name}`"
        if settings.get("only_file"):
            text += f" of the submissions of {file} alone"
        else:
            text += f" of the built-in submissions and those of {file}"
    names = [w["name"] for w in results["workloads"]]
    if names == [w.name for w in WORKLOADS]:
        text += " on MNIST-1D and two convex problems"
    else:
        text += f" on the workload{'s' if len(names) > 1 else ''} "
        text += ", ".join(f"`{name}`" for name in names)
    if settings.get("quick"):
        text += " (`--quick`: their smaller budgets and easier targets)"
    titles = {"external": "external tuning", "self": "self-tuning"}
    scored = [r for r in settings["rulesets"] if results["rulesets"][r]["submissions"]]
    scored = scored or list(settings["rulesets"])
    text += ", " + " and ".join(titles[r] for r in scored)
    return text + ("." if len(scored) > 1 else " only.")


def readme_section(results: dict[str, Any], figure_link: str) -> str:
    """The README's score section, generated from ``results`` (no number typed by hand): the
    command as it was run (:func:`command_line`) and what it scored (:func:`description`)."""
    settings, software = results["settings"], results["software"]
    run = (
        f"*Run:* `{command_line(results)}`; {_count(settings['studies'], 'study', 'studies')} "
        f"x {_count(settings['trials'], 'trial', 'trials')}; "
        f"{results['wall_time_s'] / 60:.1f} min wall time; {software_line(software)}."
    )
    return "\n\n".join([
        SCORE_BEGIN,
        "<!-- generated by `stepsize score --readme README.md`; do not edit by hand -->",
        "### score",
        description(results),
        run,
        markdown(results).strip(),
        f"![score]({figure_link})",
        SCORE_END,
    ]) + "\n"  # fmt: skip


def update_readme(readme: Path, results: dict[str, Any], figure: Path) -> None:
    """Writes :func:`readme_section` between the score markers of ``readme`` (appended at the
    end when there are none); the figure is copied to ``docs/results/score.png`` beside it."""
    from runs.checkpoint import save_text
    from runs.readme import replace_section
    from schedulers.files import atomic_copy, read_text

    text = read_text(readme)
    target = readme.parent / "docs" / "results" / "score.png"
    atomic_copy(figure, target)
    section = readme_section(results, target.relative_to(readme.parent).as_posix())
    save_text(readme, replace_section(text, SCORE_BEGIN, SCORE_END, section))
