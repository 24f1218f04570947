"""``stepsize run``: run an experiment's variants x seeds, then write its table and figures.

Order of work: read and validate the experiment (all problems reported together), load its
datasets and build each variant's model once (missing files and bad model options are reported
before anything is written), check that existing run folders hold this configuration, then train
every run that has not finished (finished runs are read back, interrupted ones resume from their
checkpoint), and write ``summary.json``, ``summary.md`` and the figures.

Output: ``<logdir>/<experiment>/`` (``<experiment>-quick`` with ``--quick``, so a quick run never
resumes into a full one), with one folder per run, ``<variant>/seed<k>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path

from runs import checkpoint as ckpt
from runs.catalog import DEFAULT_EXPERIMENT
from runs.config import Experiment, load_experiment

DEFAULT_LOGDIR = "stepsize-logs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "experiment",
        nargs="?",
        default=DEFAULT_EXPERIMENT,
        metavar="NAME|PATH.toml",
        help=f"bundled experiment (`stepsize list`) or TOML file (default: {DEFAULT_EXPERIMENT})",
    )
    parser.add_argument("--quick", action="store_true", help="the experiment's [quick] settings")
    parser.add_argument("--seeds", type=int, metavar="N", help="run seeds 0..N-1")
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="worker processes (default 1)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="T",
        help="torch threads per run (default 1); the numbers depend on it, not on --jobs",
    )
    parser.add_argument(
        "--logdir", default=DEFAULT_LOGDIR, help=f"output root (default {DEFAULT_LOGDIR})"
    )
    parser.add_argument("--data-dir", help="folder holding MNIST / Fashion-MNIST / CIFAR-10 files")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--variants", metavar="A,B", help="only these variants (comma-separated)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def select_variants(experiment: Experiment, names: str | None) -> Experiment:
    """The experiment restricted to the comma-separated variant ``names``."""
    if not names:
        return experiment
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = [v.name for v in experiment.variants]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(
            f"--variants: unknown variant(s) {', '.join(unknown)}; "
            f"{experiment.name} has: {', '.join(known)}"
        )
    chosen = tuple(v for v in experiment.variants if v.name in wanted)
    return dataclasses.replace(experiment, variants=chosen)


def preflight(experiment: Experiment, data_dir: str | None) -> None:
    """Loads every dataset and builds every model once, so that missing files and bad model
    options stop the command before anything is written."""
    import torch

    from runs.models import build_model
    from runs.parallel import dataset_on

    problems = []
    for variant in experiment.variants:
        dataset = variant.dataset
        data = dataset_on(dataset["name"], dataset["normalize"], data_dir, "cpu")
        options = {k: v for k, v in variant.model.items() if k != "name"}
        try:
            with torch.device("meta"):
                build_model(variant.model["name"], data.input_shape, data.num_classes, **options)
        except (ValueError, TypeError) as err:
            problems.append(f"variant {variant.name!r}, model: {err}")
    if problems:
        raise ValueError(f"{experiment.source}: " + "; ".join(problems))


def check_run_dirs(experiment: Experiment, root: Path) -> None:
    """Refuses to mix configurations: an existing run folder must hold this variant and seed."""
    from runs.parallel import run_dir_of

    for variant in experiment.variants:
        for seed in experiment.seeds:
            run_dir = Path(run_dir_of(root, variant.name, seed))
            result = ckpt.load_result(run_dir)
            state = None if result else ckpt.load_checkpoint(run_dir)
            found = (result or state or {}).get("fingerprint")
            if found is not None and found != variant.fingerprint(seed):
                raise ValueError(
                    f"{run_dir} holds a run of another configuration of {variant.name!r}; "
                    "delete that folder or choose another --logdir"
                )


def run(args: argparse.Namespace) -> int:
    from runs import parallel
    from runs.report import write_report
    from runs.tensorboard import write_layout

    for option in ("jobs", "threads"):
        value = getattr(args, option)
        if value < 1:
            raise ValueError(f"--{option} must be a positive integer, got {value}")
    experiment = load_experiment(args.experiment, quick=args.quick, seeds=args.seeds)
    experiment = select_variants(experiment, args.variants)
    preflight(experiment, args.data_dir)
    root = Path(args.logdir) / (experiment.name + ("-quick" if args.quick else ""))
    check_run_dirs(experiment, root)

    dist = parallel.init_distributed(args.device)
    device = args.device
    if dist is not None and device.startswith("cuda"):
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    if dist is not None and args.jobs != 1:
        raise ValueError("--jobs must be 1 under torchrun (each rank trains every run)")
    rank0 = dist is None or dist.rank == 0
    if rank0:
        root.mkdir(parents=True, exist_ok=True)
        meta = {**experiment.to_dict(), "command": shlex.join(sys.argv), "threads": args.threads}
        meta["world_size"] = dist.world_size if dist else 1
        ckpt.save_json(root / "experiment.json", meta)
        hyper_keys = sorted({"lr", *(k for v in experiment.variants for k in v.schedules)})
        write_layout(root, hyper_keys)
    parallel.barrier(dist)

    tasks, done = [], 0
    for variant in experiment.variants:
        for seed in experiment.seeds:
            task = parallel.Task(variant, seed, parallel.run_dir_of(root, variant.name, seed))
            if ckpt.load_result(task.run_dir) is None:
                tasks.append(task)
            else:
                done += 1
    total = done + len(tasks)
    if rank0 and done:
        print(f"{done} of {total} runs already finished in {root}; running the other {len(tasks)}")

    def report_progress(result: dict) -> None:
        nonlocal done
        done += 1
        if rank0:
            status = result["status"]
            if status == "diverged":
                status += (
                    f" at step {result['diverged']['step']} (loss {result['diverged']['value']})"
                )
            else:
                status += f", test accuracy {100 * result['final']['test_accuracy']:.2f}%"
            print(
                f"[{done}/{total}] {result['variant']} seed {result['seed']}: {status}, "
                f"{result['wall_time_s']:.1f} s",
                flush=True,
            )

    settings = parallel.Settings(
        data_dir=args.data_dir, device=device, threads=args.threads, quiet=args.quiet
    )
    parallel.run_all(tasks, settings, jobs=args.jobs, dist=dist, on_done=report_progress)
    parallel.barrier(dist)
    if rank0:
        table, figures = write_report(root)
        print()
        print(table)
        print(f"results: {root / 'summary.md'}, {root / 'summary.json'}, ", end="")
        print(f"{len(figures)} figures in {root / 'figures'}")
        print(f"view the curves: tensorboard --logdir {shlex.quote(str(root))}")
    return 0
