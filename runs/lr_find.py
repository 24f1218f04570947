"""``stepsize lr-find EXPERIMENT [--variant NAME]``: the LR range test on an experiment's variant.

It builds the variant's model (seeded), optimizer and training batches exactly as ``stepsize run``
does, runs :func:`schedulers.range_test.lr_range_test` (the variant's schedules are not applied:
the test drives ``lr`` itself), prints the suggestions and the curvature numbers (top Hessian
eigenvalue L at the starting parameters, 1/L, 2/L), and saves the plot under
``<logdir>/<experiment>/lr-find-<variant>.png``, or at ``--out`` (then ``--logdir``, which would
be ignored, is refused). It runs on ``--threads`` torch threads (default 1, as ``stepsize run``
computes its range test: CPU kernels reduce in an order that depends on it), the caller's count
restored afterwards. Nothing is trained for keeps.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from runs.catalog import DEFAULT_EXPERIMENT
from runs.checkpoint import check_writable_folder
from runs.checks import MAX_THREADS, check_positive_int, check_seed
from runs.data import known_shape, load_dataset
from runs.experiment import (
    DATA_DIR_HELP,
    DEFAULT_LOGDIR,
    check_data_dir,
    check_data_dir_applies,
    model_problem,
    select_variants,
)
from runs.load import load_experiment
from runs.parallel import torch_threads
from runs.tuning import range_test_on_variant
from schedulers.files import check_output_file
from schedulers.range_test import check_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stepsize lr-find``."""
    parser.add_argument(
        "experiment", nargs="?", default=DEFAULT_EXPERIMENT, metavar="NAME|PATH.toml",
        help=f"bundled experiment or TOML file (default: {DEFAULT_EXPERIMENT})",
    )  # fmt: skip
    parser.add_argument("--variant", help="variant to test (default: the first)")
    parser.add_argument("--start-lr", type=float, default=1e-6, help="first rate (default 1e-6)")
    parser.add_argument("--end-lr", type=float, default=10.0, help="last rate (default 10)")
    parser.add_argument("--num-iter", type=int, default=100, help="updates (default 100)")
    parser.add_argument("--sweep", default="exp", choices=("exp", "linear"))
    parser.add_argument("--smoothing", type=float, default=0.98, help="EMA beta (default 0.98)")
    parser.add_argument(
        "--diverge-threshold", type=float, default=4.0,
        help="stop when the smoothed loss exceeds this multiple of the best "
        "(above it by (this - 1) * |best| for a negative loss; default 4)",
    )  # fmt: skip
    parser.add_argument(
        "--validation", action="store_true", help="record the test-split loss after each update"
    )
    parser.add_argument("--accuracy", action="store_true", help="also record accuracy")
    parser.add_argument(
        "--curvature-batches", type=int, default=1, help="batches for the Hessian (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=0, help="model and batch-order seed")
    parser.add_argument(
        "--threads", type=int, default=1, metavar="T",
        help="torch threads (default 1, as `stepsize run`'s range test; the numbers depend on it)",
    )  # fmt: skip
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument(
        "--logdir",
        help=f"where the plot goes, as <logdir>/<experiment>/lr-find-*.png (default "
        f"{DEFAULT_LOGDIR}; not with --out)",
    )
    parser.add_argument(
        "--out", help="plot path (default <logdir>/<experiment>/lr-find-*.png; not with --logdir)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the range test and print what it found (its options, the experiment, the variant's
    model and where the plot goes checked before any data is generated, read or cached)."""
    options = {
        "start_lr": args.start_lr,
        "end_lr": args.end_lr,
        "num_iter": args.num_iter,
        "sweep": args.sweep,
        "smoothing": args.smoothing,
        "diverge_threshold": args.diverge_threshold,
        "curvature_batches": args.curvature_batches,
    }
    try:
        check_options(**options)
    except (ValueError, TypeError) as err:  # named as the command's flags, not as arguments
        message = str(err)
        for name in options:
            message = re.sub(rf"\b{name}\b", "--" + name.replace("_", "-"), message)
        raise type(err)(message) from None
    check_seed("--seed", args.seed)
    check_positive_int("--threads", args.threads, MAX_THREADS)
    if args.out is not None and args.logdir is not None:  # (--logdir would be ignored)
        raise ValueError(
            f"--logdir {args.logdir!r} does not apply with --out {args.out!r}: the plot goes to "
            "--out; give one of them"
        )
    if args.data_dir is not None:
        check_data_dir(args.data_dir, "--data-dir")
    if args.variant is not None and "," in args.variant:
        raise ValueError(f"--variant: name one variant, got {args.variant!r}")
    experiment = load_experiment(args.experiment, data_dir=args.data_dir)
    variant = select_variants(experiment, args.variant, "--variant").variants[0]
    check_data_dir_applies(experiment.name, [variant.dataset.name], args.data_dir, "--data-dir")
    if args.out == "":
        raise ValueError("--out: an empty path ''; give an image file")
    if args.out is None:
        logdir = DEFAULT_LOGDIR if args.logdir is None else args.logdir
        check_writable_folder(logdir, "--logdir")
        out = Path(logdir) / experiment.name / f"lr-find-{variant.name}.png"
    else:
        out = Path(args.out)
    option = "--logdir" if args.out is None else "--out"
    check_output_file(out, option, make_parent=args.out is None)
    known = known_shape(variant.dataset.name)  # the model checked before data is generated
    if known is not None and (problem := model_problem(variant, *known)) is not None:
        raise ValueError(f"{experiment.source}: {problem}")
    dataset_options = {k: v for k, v in variant.dataset.to_table().items() if k != "name"}
    data = load_dataset(variant.dataset.name, data_dir=args.data_dir, **dataset_options)
    with torch_threads(args.threads):  # (as `stepsize run` computes its range test)
        result = range_test_on_variant(
            variant,
            data,
            args.seed,
            label=f"{experiment.name}, variant {variant.name}",
            val_data=[(data.test_x, data.test_y)] if args.validation else None,
            accuracy=args.accuracy,
            quiet=args.quiet,
            **options,
        )
    result.plot(out)
    print(f"{experiment.name} / {variant.name} ({variant.optimizer.name})")
    print(result.summary())
    print(f"plot: {out}")
    return 0
