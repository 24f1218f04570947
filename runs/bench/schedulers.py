"""``stepsize bench schedulers``: schedule driving and evaluation against torch, same process.

Two measurements, each printed as medians with ratios against torch:

1. Per-update cost: ``driver.step()`` of :func:`schedulers.attach` against the equivalent
   ``torch.optim.lr_scheduler`` ``step()`` (lr, plus momentum where torch cycles it), on identical
   one-group SGD optimizers. Torch and ours are timed in alternating rounds so that load on the
   machine affects both alike. Target: ratio <= 0.5.
2. Vectorised evaluation of ``--eval-steps`` steps (default 10**6) with ``schedule(np.arange(n))``.
   Torch has no vectorised form; its equivalent is stepping the scheduler ``n`` times, estimated
   from the per-step cost measured in part 1. Target: under 50 ms for 10**6 steps.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

import schedulers as S
from runs.checks import MAX_REPEATS, check_positive_int

MAX_TIMED_STEPS = 10**7
"""The most ``--steps`` per timing round: the metrics of a round are listed before it is timed
(a Python float each), and the schedules' horizon is ``steps * repeats + 10``, which stays well
within the schedules' exact range (2**53) for at most :data:`runs.checks.MAX_REPEATS` rounds."""
MAX_EVAL_STEPS = 10**8
"""The most ``--eval-steps``: each schedule is evaluated on ``np.arange(n)``, 8 bytes a step
(10**8 steps: 800 MB per array), so more fails for memory rather than measuring."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stepsize bench schedulers``."""
    parser.add_argument(
        "--steps", type=int, default=20_000, help="steps per timing round (default 20000)"
    )
    parser.add_argument(
        "--repeats", type=int, default=7, help="timing rounds; medians are reported (default 7)"
    )
    parser.add_argument(
        "--eval-steps",
        type=whole_number,
        default=10**6,
        help="steps of the vectorised evaluation, an integer such as 1000000 or 1e6 (default 1e6, "
        "at most 1e8)",
    )


def whole_number(text: str) -> int:
    """An integer written as digits or in scientific notation (``1e6``), for an option's type."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise argparse.ArgumentTypeError(
            f"expected an integer such as 1000000 or 1e6, got {text!r}"
        )
    return int(value)


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(4))], lr=0.1, momentum=0.9)


def _cases(horizon: int) -> list[tuple[str, Callable, Callable, bool]]:
    """(name, torch scheduler factory, our driver factory, steps take a metric)."""
    sched = torch.optim.lr_scheduler
    one = S.one_cycle(0.1, horizon)
    clr = S.cyclic(0.01, 0.1, step_size_up=500)
    return [
        (
            "StepLR",
            lambda o: sched.StepLR(o, 100, 0.5),
            lambda o: S.attach(o, lr=S.step_lr(0.1, 100, 0.5)),
            False,
        ),
        (
            "MultiStepLR",
            lambda o: sched.MultiStepLR(o, [1000, 5000]),
            lambda o: S.attach(o, lr=S.multistep(0.1, [1000, 5000])),
            False,
        ),
        (
            "ExponentialLR",
            lambda o: sched.ExponentialLR(o, 0.9999),
            lambda o: S.attach(o, lr=S.exponential_decay(0.1, 1, 0.9999)),
            False,
        ),
        (
            "CosineAnnealingLR",
            lambda o: sched.CosineAnnealingLR(o, horizon),
            lambda o: S.attach(o, lr=S.cosine_annealing(0.1, horizon)),
            False,
        ),
        (
            "CosineAnnealingWarmRestarts",
            lambda o: sched.CosineAnnealingWarmRestarts(o, 100, 2),
            lambda o: S.attach(o, lr=S.cosine_annealing_warm_restarts(0.1, 100, 2)),
            False,
        ),
        (
            "PolynomialLR",
            lambda o: sched.PolynomialLR(o, horizon, 2.0),
            lambda o: S.attach(o, lr=S.polynomial_decay(0.1, horizon, 0.0, 2.0)),
            False,
        ),
        (
            "LinearLR",
            lambda o: sched.LinearLR(o, 0.1, 1.0, horizon),
            lambda o: S.attach(o, lr=S.linear(0.1, 0.1, 1.0, horizon)),
            False,
        ),
        (
            "CyclicLR (+momentum)",
            lambda o: sched.CyclicLR(o, 0.01, 0.1, 500),
            lambda o: S.attach(o, lr=clr, momentum=clr.momentum()),
            False,
        ),
        (
            "OneCycleLR (+momentum)",
            lambda o: sched.OneCycleLR(o, 0.1, total_steps=horizon),
            lambda o: S.attach(o, lr=one, momentum=one.momentum()),
            False,
        ),
        (
            "ReduceLROnPlateau (metric)",
            lambda o: sched.ReduceLROnPlateau(o, patience=5),
            lambda o: S.attach(o, lr=S.reduce_on_plateau(S.constant(0.1), patience=5)),
            True,
        ),
    ]


def _time_steps(step: Callable, steps: int, with_metric: bool) -> float:
    """Seconds per call of ``step`` over ``steps`` calls."""
    if with_metric:
        metrics = [1.0 / (1 + (i % 37)) for i in range(steps)]
        start = time.perf_counter()
        for m in metrics:
            step(m)
    else:
        start = time.perf_counter()
        for _ in range(steps):
            step()
    return (time.perf_counter() - start) / steps


def bench_per_update(steps: int, repeats: int) -> list[dict]:
    """Median per-update seconds of torch and ours for every case, timed in alternating rounds."""
    horizon = steps * repeats + 10
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that optimizer.step() was never called
        for name, make_torch, make_ours, with_metric in _cases(horizon):
            torch_sched, driver = make_torch(_optimizer()), make_ours(_optimizer())
            theirs, ours = [], []
            for _ in range(repeats):
                theirs.append(_time_steps(torch_sched.step, steps, with_metric))
                ours.append(_time_steps(driver.step, steps, with_metric))
            rows.append(
                {"name": name, "torch": statistics.median(theirs), "ours": statistics.median(ours)}
            )
    return rows


def bench_vectorised(n: int, repeats: int) -> list[tuple[str, float]]:
    """Median seconds of ``schedule(np.arange(n))`` for a spread of schedules."""
    t = np.arange(n)
    cases = {
        "step_lr": S.step_lr(0.1, 100, 0.5),
        "cosine_decay": S.cosine_decay(0.1, n),
        "cosine_annealing_warm_restarts": S.cosine_annealing_warm_restarts(0.1, 100, 2),
        "cosine_decay_restarts": S.cosine_decay_restarts(0.1, 100, 2.0, 0.9),
        "noisy_linear_cosine_decay": S.noisy_linear_cosine_decay(0.1, n),
        "cyclic (triangular2, hann)": S.cyclic(0.01, 0.1, 500, mode="triangular2", window="hann"),
        "one_cycle": S.one_cycle(0.1, n),
        "linear_warmup + cosine": S.linear_warmup(S.cosine_decay(0.1, n), 1000),
        "join(3 pieces)": S.join(
            [S.constant(0.01), S.cosine_decay(0.1, 1000), S.exponential_decay(0.05, 100, 0.9)],
            [100, 1100],
        ),
    }
    rows = []
    for name, schedule in cases.items():
        schedule(t[:10])  # first-call imports outside the timing
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            schedule(t)
            times.append(time.perf_counter() - start)
        rows.append((name, statistics.median(times)))
    return rows


def run(args: argparse.Namespace) -> int:
    """Print both tables."""
    check_positive_int("--steps", args.steps, MAX_TIMED_STEPS)
    check_positive_int("--repeats", args.repeats, MAX_REPEATS)
    check_positive_int("--eval-steps", args.eval_steps, MAX_EVAL_STEPS)
    print(
        f"per-update cost, median of {args.repeats} rounds x {args.steps} steps "
        "(target: ratio <= 0.50)"
    )
    print(f"{'torch scheduler':30s} {'torch us':>9s} {'ours us':>9s} {'ratio':>7s}")
    rows = bench_per_update(args.steps, args.repeats)
    for row in rows:
        ratio = row["ours"] / row["torch"]
        print(f"{row['name']:30s} {row['torch'] * 1e6:9.3f} {row['ours'] * 1e6:9.3f} {ratio:7.2f}")
    torch_step = statistics.median(r["torch"] for r in rows)
    n = args.eval_steps
    print()
    print(f"vectorised evaluation of {n} steps, median of {args.repeats} (target: < 50 ms for 1e6)")
    print(
        f"torch equivalent: {n} x step() at the median torch cost {torch_step * 1e6:.2f} us "
        f"= {n * torch_step * 1e3:.0f} ms"
    )
    print(f"{'schedule':34s} {'ms':>8s} {'ratio to torch':>15s}")
    for name, seconds in bench_vectorised(n, args.repeats):
        print(f"{name:34s} {seconds * 1e3:8.2f} {seconds / (n * torch_step):15.4f}")
    return 0
