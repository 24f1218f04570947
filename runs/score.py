"""``stepsize score``: AlgoPerf-style time-to-target scoring and performance profiles, at CPU scale.

Paper-style comparisons are most often unfair in their tuning budget and their stopping rule;
AlgoPerf (Dahl et al., "Benchmarking Neural Network Training Algorithms", 2023,
arXiv:2306.07179; MLCommons ``algorithmic-efficiency``) fixes both: every submission is timed to
a fixed target on every workload under a stated tuning ruleset, and the times are summarised by
performance profiles and their area. Here:

* **Workloads** (``runs.score_workloads``): MNIST-1D logistic regression, MLP and CNN (a
  test-split loss or accuracy target) and two convex problems of ``theory`` (a gap target),
  each with a step budget; the target is checked every ``eval_every`` updates and the time to
  target is the first checked step that meets it.
* **Submissions** (``runs.score_submissions``): an optimizer, its schedules (whose horizon may be
  ``$budget``), its hyperparameters and a search space; built in, from TOML (``--submissions``)
  or from Python (:func:`score`).
* **External tuning**: each of ``STUDIES`` studies draws ``TRIALS`` points quasi-randomly from
  the submission's search space (seeded) and trains each once with the workload's budget; a
  study's time is its fastest trial that reaches the target; the workload's time is the median
  over studies. Here 3 studies x 4 trials, ``--quick`` 1 x 2. AlgoPerf's numbers changed over
  time (its ``RULES.md``, now ``docs/DOCUMENTATION.md``): 5 studies x 20 trials until November
  2023 (the rules when the paper appeared, June 2023); 5 x 5 for the first competition (v0.5,
  from November 2023); 3 x 5 in the current rules (v0.6, 2025). Its scoring code of November
  2023 to March 2024 (``scoring/performance_profile.py``, ``get_index_that_reaches_target``)
  also scored a study as missing the target when fewer than 3 of its trials reached it; that
  rule is gone from AlgoPerf and is not applied here.
* **Self-tuning**: one run per study at the submission's own ``hyperparameters``, with the
  budget multiplied by ``SELF_TUNING_BUDGET`` (3: AlgoPerf's rules until 2025, at the paper and
  for v0.5; the current rules give 1.5); the median over studies. Every submission takes part;
  only those with a search space take part in external tuning (asked for when none has one, it
  is refused before anything is trained). The two rulesets are two leaderboards: ratios compare
  submissions within a ruleset only.
* **Time**: steps to target (the primary measure: deterministic, it is what the profile and the
  score use) and seconds to target (training time of the updates, evaluations excluded; wall
  clock, so machine- and load-dependent: a second profile and score are computed from it, for
  information, each study timed by its fastest trial in seconds). A table cell gives the steps
  and seconds of one run: the fastest trial (in steps) of the median study (:func:`summarize`).
* **Score** (``runs.score_profiles``): ``r = t / min_s t`` per workload, ``rho(tau)`` the fraction
  of workloads with ``r <= tau``, and ``B = 1/(tau_max - 1) * integral_1^tau_max rho`` with
  ``tau_max = 4``, integrated exactly (AlgoPerf's code uses a trapezoid on 100 points of tau,
  which differs by at most 1/198, about 0.005: half a grid interval per workload).

Output in ``<logdir>/score/`` (``score-quick/`` with ``--quick``): ``score.json`` (settings,
every trial, the times, ratios and scores; ``null`` for not reached), ``score.md`` (the tables)
and ``figures/performance_profile.png`` (``runs.score_report``); ``--readme README.md`` also
writes the README section between ``<!-- score:begin -->`` and ``<!-- score:end -->``.

Targets and budgets of the built-in workloads were chosen by measurement on this project's
2-core CPU (``runs.score_workloads``): externally tuned SGD with momentum and cosine reaches each
in about half of the budget (0.47-0.63 of it, median over studies); tuned Adam and AdamW reach
the MNIST-1D targets in 0.37-0.67 of it and miss the two convex problems' gap targets. The whole
default run takes a few minutes with ``--jobs 2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runs import score_profiles as P
from runs.score_report import figure, markdown, update_readme
from runs.score_submissions import Submission, builtin_submissions, check_unique, sample_points
from runs.score_workloads import WORKLOADS, Workload, check_workloads, train_to_target

RULESETS = ("external", "self")
STUDIES, TRIALS = 3, 4
QUICK_STUDIES, QUICK_TRIALS = 1, 2
PROFILE_FIGURE = "figures/performance_profile.png"  # (in the score's folder)
MAX_STUDIES, MAX_TRIALS = 1000, 10_000
"""The most ``studies`` and ``trials`` per study a score may ask for (AlgoPerf's rules have
used 3 to 5 studies of 5 to 20 trials): every trial is planned, and so listed, before any trains,
and the quasi-random search draws ``trials`` points at once, so a larger count only exhausts
memory or never ends."""
SELF_TUNING_BUDGET = 3
# relative cost of one update, to start the longest trials first
_COST = {"mnist1d-cnn": 6.0, "mlp": 2.0, "logistic": 1.0}


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training run: a submission's hyperparameter point on a workload."""

    submission: str
    ruleset: str
    workload: Workload
    study: int
    index: int
    point: dict
    optimizer: dict
    schedules: dict
    budget: int
    seed: int


def trial_seed(seed: int, study: int, index: int) -> int:
    """The training seed of trial ``index`` of ``study`` (initial weights and batch order)."""
    return int(np.random.SeedSequence([seed, study, index]).generate_state(1)[0] & 0x7FFFFFFF)


def plan(
    submissions: Sequence[Submission],
    workloads: Sequence[Workload],
    rulesets: Sequence[str],
    *,
    studies: int,
    trials: int,
    seed: int = 0,
) -> list[Trial]:
    """Every trial to train, in order: ruleset, submission, workload, study, trial."""
    planned = []
    for ruleset in rulesets:
        for sub in submissions:
            if ruleset == "external" and not sub.externally_tunable:
                continue
            for workload in workloads:
                budget = workload.budget * (SELF_TUNING_BUDGET if ruleset == "self" else 1)
                for study in range(studies):
                    if ruleset == "external":
                        points = sample_points(
                            sub.search, trials, seed=seed, study=study, name=sub.name
                        )
                    else:
                        points = [{}]
                    for index, point in enumerate(points):
                        optimizer, schedules = sub.resolve(point, budget)
                        planned.append(
                            Trial(sub.name, ruleset, workload, study, index, point, optimizer,
                                  schedules, budget, trial_seed(seed, study, index))
                        )  # fmt: skip
    return planned


def run_trial(trial: Trial) -> dict[str, Any]:
    """Trains one trial with one torch thread (so ``--jobs N`` gives ``--jobs 1``'s steps; the
    caller's count is restored afterwards: ``runs.parallel.torch_threads``)."""
    from runs.parallel import torch_threads

    with torch_threads(1):
        result = train_to_target(
            trial.workload, trial.optimizer, trial.schedules, trial.budget, trial.seed
        )
    return {
        "submission": trial.submission,
        "ruleset": trial.ruleset,
        "workload": trial.workload.name,
        "study": trial.study,
        "trial": trial.index,
        "seed": trial.seed,
        "budget": trial.budget,
        "point": trial.point,
        **result,
    }


def _start_worker() -> None:
    from runs.parallel import exit_with_parent

    exit_with_parent()


def run_trials(trials: Sequence[Trial], jobs: int = 1, quiet: bool = True) -> list[dict]:
    """Every trial's result, in the order of ``trials``; ``jobs > 1``: spawned worker processes,
    the most expensive trials first."""
    from tqdm.auto import tqdm

    results: list[dict | None] = [None] * len(trials)
    order = sorted(
        range(len(trials)),
        key=lambda i: -trials[i].budget * _COST.get(trials[i].workload.model, 0.5),
    )
    with tqdm(total=len(trials), desc="score", unit="run", disable=quiet or None) as bar:
        if jobs <= 1 or len(trials) <= 1:
            for i in order:
                results[i] = run_trial(trials[i])
                bar.update(1)
            return results  # type: ignore[return-value]
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        from runs.parallel import stop_pool

        context = multiprocessing.get_context("spawn")
        workers = min(jobs, len(trials))
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker) as pool:
            futures = {pool.submit(run_trial, trials[i]): i for i in order}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
            except BaseException as err:
                stop_pool(pool, err)
                if isinstance(err, BrokenProcessPool):  # (a worker killed from outside)
                    raise ChildProcessError(
                        f"a --jobs {jobs} worker process died (killed by a signal, e.g. by the "
                        "out-of-memory killer) while running a trial; run the command again (a "
                        "smaller --jobs needs less memory)"
                    ) from None
                raise
    return results  # type: ignore[return-value]


def _time(value: float | None) -> float:
    return math.inf if value is None else float(value)


def _finite(value: float) -> float | None:
    """``inf`` as None, for JSON."""
    return value if math.isfinite(value) else None


def _median_studies(studies: Sequence[dict]) -> list[int]:
    """The study at the median of the studies' steps (an odd count), or the two middle ones (an
    even count), ordered by steps (ties: the earlier study first)."""
    order = sorted(range(len(studies)), key=lambda i: studies[i]["steps"])
    half = len(order) // 2
    return order[half : half + 1] if len(order) % 2 else order[half - 1 : half + 1]


def summarize(
    results: Sequence[dict], workloads: Sequence[Workload], rulesets: Sequence[str]
) -> dict[str, Any]:
    """Per ruleset: each submission's study times, median times, ratios and scores.

    A study's record is its fastest trial in steps (the first on a tie, as AlgoPerf's
    ``idxmin``): ``steps``, ``seconds``, ``point`` and ``trial`` of that one trial, and
    ``fastest_seconds``, the smallest seconds to target of any of its trials (maybe another
    trial's). A workload's record: ``steps`` the median over studies of the studies' steps (the
    score's time); ``seconds`` and ``point`` those of the same run: the fastest trial of the
    median study (for an even count of studies, the mean of the two middle studies' seconds
    and no ``point``); ``fastest_seconds`` the median over studies of ``fastest_seconds``, the
    time of the seconds score (each measure's own fastest trial, as AlgoPerf times each study by
    its fastest trial). ``inf`` where not reached."""
    out: dict[str, Any] = {}
    names = [w.name for w in workloads]
    for ruleset in rulesets:
        mine = [r for r in results if r["ruleset"] == ruleset]
        subs = list(dict.fromkeys(r["submission"] for r in mine))
        times: dict[str, dict[str, dict]] = {s: {} for s in subs}
        for sub in subs:
            for workload in names:
                runs = [r for r in mine if r["submission"] == sub and r["workload"] == workload]
                studies = []
                for study in sorted({r["study"] for r in runs}):
                    group = [r for r in runs if r["study"] == study]
                    steps = P.study_time(_time(r["steps"]) for r in group)
                    fastest = min(group, key=lambda r: _time(r["steps"]))
                    reached = math.isfinite(steps)
                    studies.append({
                        "steps": steps,
                        "seconds": _time(fastest["seconds"]) if reached else math.inf,
                        "point": fastest["point"] if reached else None,
                        "trial": fastest["trial"] if reached else None,
                        "fastest_seconds": P.study_time(_time(r["seconds"]) for r in group),
                        "reached": sum(r["status"] == "reached" for r in group),
                        "diverged": sum(r["status"] == "diverged" for r in group),
                    })  # fmt: skip
                middle = [studies[i] for i in _median_studies(studies)] if studies else []
                steps = P.median_time([s["steps"] for s in studies])
                times[sub][workload] = {
                    "steps": steps,
                    "seconds": (
                        sum(s["seconds"] for s in middle) / len(middle)
                        if math.isfinite(steps)
                        else math.inf
                    ),
                    "point": middle[0]["point"] if len(middle) == 1 else None,
                    "fastest_seconds": P.median_time([s["fastest_seconds"] for s in studies]),
                    "studies": studies,
                }
        entry: dict[str, Any] = {"submissions": subs, "times": times}
        for unit, key in (("steps", "steps"), ("seconds", "fastest_seconds")):
            ratios = P.performance_ratios({s: {w: times[s][w][key] for w in names} for s in subs})
            entry[f"ratios_{unit}"] = ratios
            entry[f"score_{unit}"] = {s: P.profile_score(ratios[s].values()) for s in subs}
        out[ruleset] = entry
    return out


def check_external(
    submissions: Sequence[Submission], rulesets: Sequence[str], option: str, instead: str
) -> None:
    """Refuses (``ValueError`` naming ``option``) external tuning when no submission declares a
    search space: it would train nothing and write an empty table. ``instead``: the setting
    that scores the submissions under self-tuning alone."""
    if "external" in rulesets and not any(sub.externally_tunable for sub in submissions):
        raise ValueError(
            f"{option}: no submission declares a search space (a search table), which external "
            f"tuning needs; give one a search space or use {instead}"
        )


def check_rulesets(rulesets: Sequence[str]) -> None:
    """Refuses (``ValueError`` naming ``rulesets``) a string (``"self"`` would be read letter by
    letter: give ``("self",)``), no ruleset, a ruleset not in :data:`RULESETS` and one given
    twice (its trials would be trained twice and listed twice)."""
    if isinstance(rulesets, str):
        raise ValueError(
            f"rulesets={rulesets!r} is a string; allowed: a sequence of rulesets, e.g. "
            f"({rulesets!r},), from: {', '.join(RULESETS)}"
        )
    rulesets = list(rulesets)
    if not rulesets:
        raise ValueError(f"rulesets=(); allowed: one or more of {', '.join(RULESETS)}")
    for ruleset in rulesets:
        if ruleset not in RULESETS:
            raise ValueError(f"ruleset={ruleset!r}; allowed: {', '.join(RULESETS)}")
        if rulesets.count(ruleset) > 1:
            raise ValueError(
                f"rulesets={tuple(rulesets)!r} gives {ruleset!r} twice; allowed: each of "
                f"{', '.join(RULESETS)} at most once"
            )


def score(
    submissions: Sequence[Submission] | None = None,
    workloads: Sequence[Workload] | None = None,
    *,
    rulesets: Sequence[str] = RULESETS,
    studies: int = STUDIES,
    trials: int = TRIALS,
    seed: int = 0,
    jobs: int = 1,
    quiet: bool = True,
) -> dict[str, Any]:
    """Scores ``submissions`` (default: the built-in ones) on ``workloads`` (default: all
    built-in) under ``rulesets``; returns everything ``score.json`` holds (times to target as
    numbers, ``inf`` when not reached). Writes nothing.

    Everything is checked before any trial trains: no submission or workload, two of either with
    one name, a ruleset that is unknown, given twice or given as a bare string
    (:func:`check_rulesets`), external tuning without a search space, a theory workload whose
    problem does not build (``runs.score_workloads.check_workloads``) are refused
    (``ValueError``; ``TypeError`` for an item that is not a ``Submission`` or ``Workload``)."""
    from runs.results import software_versions

    submissions = list(builtin_submissions() if submissions is None else submissions)
    workloads = list(WORKLOADS if workloads is None else workloads)
    if not submissions:
        raise ValueError("submissions=[]; allowed: one or more Submission (None: the built-in)")
    if not workloads:
        raise ValueError("workloads=[]; allowed: one or more Workload (None: the built-in)")
    for value, kind in ((submissions, Submission), (workloads, Workload)):
        for item in value:
            if not isinstance(item, kind):
                raise TypeError(
                    f"{kind.__name__.lower()}s: {item!r} is a {type(item).__name__}; "
                    f"allowed: {kind.__name__} objects"
                )
    check_unique(submissions)
    seen: set[str] = set()
    for workload in workloads:
        if workload.name in seen:
            raise ValueError(f"workloads: two workloads are named {workload.name!r}")
        seen.add(workload.name)
    check_rulesets(rulesets)
    check_external(submissions, rulesets, f"rulesets={tuple(rulesets)!r}", "rulesets=('self',)")
    from runs.checks import MAX_JOBS, check_positive_int

    maxima = {"studies": MAX_STUDIES, "trials": MAX_TRIALS, "jobs": MAX_JOBS}
    for name, value in (("studies", studies), ("trials", trials), ("jobs", jobs)):
        check_positive_int(name, value, maxima[name])
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}; allowed: an integer >= 0")
    check_workloads(workloads)
    started = time.perf_counter()
    planned = plan(submissions, workloads, rulesets, studies=studies, trials=trials, seed=seed)
    results = run_trials(planned, jobs=jobs, quiet=quiet)
    return {
        "settings": {
            "rulesets": list(rulesets),
            "studies": studies,
            "trials": trials,
            "self_tuning_budget": SELF_TUNING_BUDGET,
            "tau_max": P.TAU_MAX,
            "seed": seed,
            "jobs": jobs,
            "torch_threads_per_run": 1,
        },
        "workloads": [dataclasses.asdict(w) | {"target_text": w.target_text()} for w in workloads],
        "submissions": [s.to_dict() for s in submissions],
        "rulesets": summarize(results, workloads, rulesets),
        "trials": results,
        "wall_time_s": time.perf_counter() - started,
        "software": software_versions(),
    }


# ------------------------------------------------------------------------------------ output
def _jsonable(value: Any) -> Any:
    """``inf`` as None (JSON has no infinity), recursively."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logdir", default="stepsize-logs", help="output root [stepsize-logs]")
    parser.add_argument("--quick", action="store_true", help="smaller budgets, 1 study x 2 trials")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes [1]")
    parser.add_argument("--submissions", metavar="FILE.toml", help="more submissions (TOML)")
    parser.add_argument(
        "--only-file", action="store_true", help="score the --submissions file's alone"
    )
    parser.add_argument("--workloads", help="comma-separated workload names [all]")
    parser.add_argument("--ruleset", choices=("external", "self", "both"), default="both")
    parser.add_argument("--studies", type=int, help=f"studies [{STUDIES}; --quick {QUICK_STUDIES}]")
    parser.add_argument("--trials", type=int, help=f"trials per study [{TRIALS}; --quick 2]")
    parser.add_argument("--seed", type=int, default=0, help="seeds the search and the trials [0]")
    parser.add_argument(
        "--readme",
        metavar="README.md",
        help="also write the score section of this README (a Markdown file, .md)",
    )


def _selected_workloads(text: str | None, quick: bool) -> list[Workload]:
    by_name = {w.name: w for w in WORKLOADS}
    names = [n.strip() for n in text.split(",")] if text is not None else list(by_name)
    for name in names:
        if name not in by_name:
            allowed = ", ".join(by_name)
            raise ValueError(f"--workloads: unknown workload {name!r}; allowed: {allowed}")
    return [by_name[n].quick() if quick else by_name[n] for n in dict.fromkeys(names)]


def run(args: argparse.Namespace) -> int:
    from runs.checkpoint import check_writable_folder, folder_lock, save_json, save_text
    from runs.checks import MAX_JOBS, check_non_negative_int, check_positive_int
    from runs.readme import check_readme
    from runs.score_submissions import load_submissions
    from schedulers.files import check_replaceable

    maxima = {"jobs": MAX_JOBS, "studies": MAX_STUDIES, "trials": MAX_TRIALS}
    for flag, maximum in maxima.items():
        if getattr(args, flag) is not None:
            check_positive_int(f"--{flag}", getattr(args, flag), maximum)
    for flag, what, allowed in (  # (an empty value is refused, never read as the option left out)
        ("submissions", "path", "a TOML file"),
        ("readme", "path", "a Markdown file (.md)"),
        ("workloads", "list", "comma-separated workload names (leave --workloads out for all)"),
    ):
        value = getattr(args, flag)
        if value is not None and not value.strip():
            raise ValueError(f"--{flag}: an empty {what} {value!r}; give {allowed}")
    if args.only_file and args.submissions is None:
        raise ValueError("--only-file needs --submissions FILE.toml")
    workloads = _selected_workloads(args.workloads, args.quick)
    submissions = [] if args.only_file else builtin_submissions()
    if args.submissions is not None:
        submissions += load_submissions(args.submissions)
    check_unique(submissions, "--submissions")
    rulesets = RULESETS if args.ruleset == "both" else (args.ruleset,)
    check_external(submissions, rulesets, f"--ruleset {args.ruleset}", "--ruleset self")
    check_non_negative_int("--seed", args.seed)
    if args.readme is not None:
        check_readme(args.readme)
    check_writable_folder(args.logdir, "--logdir")
    studies = args.studies or (QUICK_STUDIES if args.quick else STUDIES)
    trials = args.trials or (QUICK_TRIALS if args.quick else TRIALS)
    folder = Path(args.logdir) / ("score-quick" if args.quick else "score")
    check_writable_folder(folder / "figures", "--logdir")
    for target in ("score.json", "score.md", PROFILE_FIGURE):
        check_replaceable(folder / target, "--logdir")  # (a read-only one: refused, as --readme)
    with folder_lock(folder):
        results = score(
            submissions, workloads, rulesets=rulesets, studies=studies, trials=trials,
            seed=args.seed, jobs=args.jobs, quiet=False,
        )  # fmt: skip
        results["settings"] |= {  # (what the README's *Run:* line and sentence say)
            "quick": args.quick,
            "submissions_file": args.submissions,
            "only_file": args.only_file,
        }
        table = markdown(results)
        save_json(folder / "score.json", _jsonable(results))
        save_text(folder / "score.md", table)
        path = figure(results, folder / PROFILE_FIGURE)
    print(table)
    print(f"wrote score.json, score.md and {path.relative_to(folder)} in {folder} "
          f"({results['wall_time_s']:.1f} s)")  # fmt: skip
    if args.readme is not None:
        update_readme(Path(args.readme), results, path)
        print(f"wrote the score section of {args.readme}")
    return 0
