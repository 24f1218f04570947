"""Adam versus AMSGrad on the online counterexample of Reddi, Kale and Kumar (ICLR 2018, §5).

Setup. ``theory.ReddiCounterexample``: the linear losses f_t(x) = c_t x on F = [-1, 1] with
c_t = 1010 at updates t = 0, 101, 202, ... (the paper's t mod 101 = 1 with its t = 1, 2, ...)
and c_t = -10 otherwise (deterministic version), or c_t = 1010 with probability 0.01 and -10
otherwise, drawn from (seed, t) (stochastic version). Over a period the coefficients sum to
+10 (in expectation +0.2 per step), so x* = -1. ``optim.Adam`` with betas (0.9, 0.99), eps 1e-8,
``amsgrad=False`` (Adam) or ``True`` (AMSGrad) plays x_t, receives the gradient c_t, updates,
and the iterate is projected onto [-1, 1] (``problem.project``, a clip) after every update.

Step size. The paper's analysis (Theorems 1-4, Algorithm 2) uses α_t = α/√t with its t = 1, 2,
...; here ``schedulers.power_decay(ALPHA, 0.5)`` attached with ``schedulers.attach`` gives
lr_t = ALPHA/√(t + 1) for update t = 0, 1, ..., the same sequence. ALPHA = 1 is our choice (the
drift of both methods scales with α Σ_t 1/√t; α = 1 makes it visible within STEPS updates). Our
Adam applies the bias corrections 1 - β^t of torch's Adam; the paper's analysis omits them; they
fade after a few hundred updates and do not change the limits.

Conventions. t counts updates already made: x_0 (drawn uniformly in [-1, 1] from the seed by
``ReddiCounterexample``) is played at t = 0, x_T is the iterate after the last update. The seed
sets x_0 and, in the stochastic version, the coefficient sequence.

Efficiency. Adam's update is coordinate-wise (each coordinate has its own m, v and max v; the
bias corrections depend only on the shared step count), so the runs of every (version, seed)
pair are the coordinates of one parameter vector: one ``optim.Adam`` per method updates all of
them at once, exactly as separate one-coordinate runs would. The loop sets the gradient by a
copy from a precomputed (T, runs) coefficient table and records x into a preallocated tensor, so
no step reads a value back to Python.

Outputs, per version (deterministic / stochastic) and method (Adam / AMSGrad), mean ± std over
seeds (``ddof = 1``) from the full curves:

* ``final_x``: x_T; ``tail_mean_x``: the mean of x_t over the last ``TAIL_FRACTION`` of the run
  (Adam's iterate dips after every large gradient, so one point can mislead);
* ``average_regret``: R_T / T with R_T = Σ_{t<T} f_t(x_t) - min_{x∈F} Σ_{t<T} f_t(x)
  (``problem.regret``, the best fixed point in hindsight);
* ``average_suboptimality``: (1/T) Σ_{t<T} (F(x_t) - F(x*)) with F(x) = E f_t(x) =
  ``problem.loss``; for the stochastic version this is the expected-loss criterion, which the
  realized regret estimates only slowly (the per-step noise of c_t, about 101, is 500 times the
  drift 0.2).

Curves for the figure: x_t as means over ``CURVE_WINDOWS`` equal windows of the run, and R_t/t at
as many log-spaced t, for every seed.
"""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

import optim
import schedulers
import theory
from runs.figures import save_figure
from runs.study import format_mean_std as fmt
from runs.study import mean_std

DESCRIPTION = (
    "Adam vs AMSGrad (betas 0.9, 0.99) on Reddi et al.'s online counterexample "
    "f_t(x) = 1010x or -10x on [-1, 1], deterministic and stochastic: x_t and R_t/t"
)
RUNTIME = "about 85 s on 2 CPU cores, end to end (77 s of it computing; --quick: about 3 s)"
REFERENCE = (
    'Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018, §5 and Figure 1: '
    "on f_t(x) = 1010x if t mod 101 = 1 else -10x over [-1, 1] (and on its stochastic version, "
    "1010x with probability 0.01), with β1 = 0.9, β2 = 0.99, Adam converges to the highly "
    "suboptimal point x = +1 while AMSGrad converges to the optimum x* = -1; AMSGrad's average "
    "regret R_t/t goes to 0 and Adam's does not (their Figure 1 shows it up to about 5·10⁶ "
    "iterations)."
)
SEEDS = 5
QUICK_SEEDS = 1

BETAS = (0.9, 0.99)
EPS = 1e-8
ALPHA = 1.0
STEPS = 400_000
QUICK_STEPS = 20_000
TAIL_FRACTION = 0.1
CURVE_WINDOWS = 1000
VERSIONS = ("deterministic", "stochastic")
METHODS = {"Adam": False, "AMSGrad": True}  # method name -> amsgrad flag
X_STAR = -1.0


def _problems(seeds: tuple[int, ...]) -> list[tuple[str, int, theory.ReddiCounterexample]]:
    """(version, seed, problem) for every run, in the column order of the batched parameter."""
    return [
        (version, seed, theory.ReddiCounterexample(stochastic=version == "stochastic", seed=seed))
        for version in VERSIONS
        for seed in seeds
    ]


def run_method(
    problems: list[theory.ReddiCounterexample], amsgrad: bool, steps: int
) -> torch.Tensor:
    """Plays ``steps`` rounds of every problem (one coordinate each) with ``optim.Adam``.

    lr_t = ALPHA/√(t + 1) (``power_decay`` via ``schedulers.attach``), betas ``BETAS``, projection
    onto [-1, 1] after every update. Returns x_0..x_steps as a (steps + 1, runs) float64 tensor.
    """
    coefficients = torch.as_tensor(
        np.stack([problem.coefficients(steps) for problem in problems], axis=1),
        dtype=torch.float64,
    )
    x = torch.nn.Parameter(torch.cat([problem.x0 for problem in problems]).to(torch.float64))
    optimizer = optim.Adam([x], lr=ALPHA, betas=BETAS, eps=EPS, amsgrad=amsgrad)
    driver = schedulers.attach(optimizer, lr=schedulers.power_decay(ALPHA, 0.5))
    points = torch.empty(steps + 1, len(problems), dtype=torch.float64)
    points[0] = x.detach()
    x.grad = torch.zeros_like(x)
    project = problems[0].project
    for t in range(steps):
        x.grad.copy_(coefficients[t])  # ∇f_t(x) = c_t
        optimizer.step()
        with torch.no_grad():
            x.copy_(project(x))
        points[t + 1] = x.detach()
        driver.step()
    return points


def _window_means(values: np.ndarray, windows: int) -> tuple[list[float], list[float]]:
    """Centre step and mean of ``values`` over ``windows`` equal consecutive windows."""
    edges = np.linspace(0, values.size, min(windows, values.size) + 1).astype(int)
    centres = [(a + b - 1) / 2 for a, b in itertools.pairwise(edges)]
    means = [float(values[a:b].mean()) for a, b in itertools.pairwise(edges)]
    return centres, means


def curves(results: dict[str, Any]) -> Iterator[tuple[str, str, list[int], list[float]]]:
    """TensorBoard's curves (``runs.study``): per version, method and seed, the iterate x_t
    (window means, at each window's centre step rounded down) and the average regret R_t / t."""
    for run in results["runs"]:
        name = f"{run['version']}/{run['method']}/seed{run['seed']}"
        steps = [int(t) for t in run["curve_x"]["t"]]
        yield name, "x", steps, run["curve_x"]["x"]
        regret = run["curve_average_regret"]
        yield name, "average_regret", regret["t"], regret["value"]


def compute(*, quick: bool, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Runs Adam and AMSGrad on both versions for every seed; see the module docstring."""
    steps = QUICK_STEPS if quick else STEPS
    problems = _problems(seeds)
    tail = max(1, round(TAIL_FRACTION * steps))
    curve_t = np.unique(np.geomspace(1, steps, CURVE_WINDOWS).astype(int))
    runs: list[dict[str, Any]] = []
    for method, amsgrad in METHODS.items():
        points = run_method([problem for _, _, problem in problems], amsgrad, steps).numpy()
        for column, (version, seed, problem) in enumerate(problems):
            path = points[:, column]
            played = path[:-1]  # x_0..x_{T-1}, the points the losses were evaluated at
            regret = problem.regret(played)
            suboptimality = problem.mean_coefficient * (played - X_STAR)  # F(x_t) - F(x*)
            window_t, window_x = _window_means(path, CURVE_WINDOWS)
            runs.append(
                {
                    "version": version,
                    "method": method,
                    "seed": seed,
                    "x0": float(path[0]),
                    "final_x": float(path[-1]),
                    "tail_mean_x": float(path[-tail:].mean()),
                    "average_regret": float(regret.average[-1]),
                    "average_suboptimality": float(suboptimality.mean()),
                    "curve_x": {"t": window_t, "x": window_x},
                    "curve_average_regret": {
                        "t": curve_t.tolist(),
                        "value": regret.average[curve_t - 1].tolist(),
                    },
                }
            )
    headline = ("final_x", "tail_mean_x", "average_regret", "average_suboptimality")
    summary = []
    for version in VERSIONS:
        for method in METHODS:
            chosen = [r for r in runs if r["version"] == version and r["method"] == method]
            summary.append(
                {"version": version, "method": method}
                | {key: mean_std([r[key] for r in chosen]) for key in headline}
            )
    return {
        "setup": {
            "betas": list(BETAS),
            "eps": EPS,
            "alpha": ALPHA,
            "lr": "ALPHA / sqrt(t + 1), t = 0, 1, ... (schedulers.power_decay(ALPHA, 0.5))",
            "steps": steps,
            "seeds": list(seeds),
            "tail_fraction": TAIL_FRACTION,
            "x_star": X_STAR,
        },
        "summary": summary,
        "runs": runs,
    }


def _figure(results: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"Adam": "tab:red", "AMSGrad": "tab:blue"}
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), squeeze=False)
    for row, version in enumerate(VERSIONS):
        ax_x, ax_r = axes[row]
        for method in METHODS:
            chosen = [
                r for r in results["runs"] if r["version"] == version and r["method"] == method
            ]
            for k, run in enumerate(chosen):
                label = method if k == 0 else None
                ax_x.plot(
                    run["curve_x"]["t"],
                    run["curve_x"]["x"],
                    color=colours[method],
                    lw=1,
                    alpha=0.8,
                    label=label,
                )
                curve = run["curve_average_regret"]
                ax_r.plot(
                    curve["t"], curve["value"], color=colours[method], lw=1, alpha=0.8, label=label
                )
        ax_x.axhline(X_STAR, color="k", ls=":", lw=1, label="x* = -1")
        ax_x.set(
            xlabel="t (updates)",
            ylabel="x_t (window mean)",
            ylim=(-1.05, 1.05),
            title=f"{version}: iterate x_t",
        )
        ax_r.axhline(0, color="k", ls=":", lw=1)
        ax_r.set_yscale("symlog", linthresh=0.1)
        ax_r.set(
            xlabel="t (updates)",
            ylabel="R_t / t (symlog)",
            xscale="log",
            title=f"{version}: average regret R_t / t",
        )
        for ax in (ax_x, ax_r):
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=9)
    setup = results["setup"]
    fig.suptitle(
        f"Adam vs AMSGrad, betas {tuple(setup['betas'])}, lr = {setup['alpha']:g}/sqrt(t+1), "
        f"{len(setup['seeds'])} seed(s), one line per seed"
    )
    save_figure(fig, path)


def report(results: dict[str, Any], figures_dir: pathlib.Path) -> tuple[str, list[pathlib.Path]]:
    """The table of final iterates and average regrets, a few computed findings, the figure."""
    figures_dir = pathlib.Path(figures_dir)
    setup = results["setup"]
    lines = [
        f"{setup['steps']} updates, lr_t = {setup['alpha']:g}/√(t+1), betas "
        f"{tuple(setup['betas'])}, projection onto [-1, 1]; x* = {setup['x_star']:g}; "
        f"mean ± std over seeds {setup['seeds']}.",
        "",
        "| version | method | final x_T | mean x over last "
        f"{setup['tail_fraction']:.0%} | R_T/T | (1/T) Σ (F(x_t) − F*) |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["summary"]:
        lines.append(
            f"| {row['version']} | {row['method']} | {fmt(row['final_x'])} | "
            f"{fmt(row['tail_mean_x'])} | {fmt(row['average_regret'], '.4f')} | "
            f"{fmt(row['average_suboptimality'], '.4f')} |"
        )
    by_key = {(row["version"], row["method"]): row for row in results["summary"]}
    lines.append("")
    for version in VERSIONS:
        adam, ams = by_key[(version, "Adam")], by_key[(version, "AMSGrad")]
        lines.append(
            f"- {version}: Adam ends at x = {adam['final_x']['mean']:.3f} (mean of its last "
            f"{setup['tail_fraction']:.0%}: {adam['tail_mean_x']['mean']:.3f}), AMSGrad at "
            f"x = {ams['final_x']['mean']:.3f} ({ams['tail_mean_x']['mean']:.3f}); "
            f"R_T/T is {adam['average_regret']['mean']:.4f} for Adam and "
            f"{ams['average_regret']['mean']:.4f} for AMSGrad."
        )
    unfinished = [
        f"{v} ({by_key[(v, 'AMSGrad')]['tail_mean_x']['mean']:.3f})"
        for v in VERSIONS
        if by_key[(v, "AMSGrad")]["tail_mean_x"]["mean"] > X_STAR + 0.05
    ]
    if unfinished:
        lines.append(
            f"- AMSGrad has not yet reached x* = -1 after {setup['steps']} updates in: "
            f"{', '.join(unfinished)} (tail means; lr_t = α/√(t+1) slows the drift)."
        )
    adam_up = all(by_key[(v, "Adam")]["tail_mean_x"]["mean"] > 0.5 for v in VERSIONS)
    ams_down = all(by_key[(v, "AMSGrad")]["tail_mean_x"]["mean"] < -0.5 for v in VERSIONS)
    verdict = "agrees with" if adam_up and ams_down else "does not fully agree with"
    lines.append(
        f"- The paper's claim (Adam → +1, AMSGrad → -1): this run {verdict} it "
        f"(tail means: Adam > 0.5 in both versions: {adam_up}; AMSGrad < -0.5: {ams_down})."
    )
    figure = figures_dir / "amsgrad_counterexample.png"
    _figure(results, figure)
    return "\n".join(lines) + "\n", [figure]


__all__ = [
    "DESCRIPTION",
    "QUICK_SEEDS",
    "REFERENCE",
    "RUNTIME",
    "SEEDS",
    "compute",
    "report",
    "run_method",
]
