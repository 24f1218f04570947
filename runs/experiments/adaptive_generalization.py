"""Adaptive methods can overfit: Wilson, Roelofs, Stern, Srebro and Recht (NeurIPS 2017), §3.3.

Setup. ``theory.WilsonSeparable(n=N, p=P, seed)``: n labels y_i = ±1 with P(y_i = +1) = p
(drawn from the seed); feature 1 is the label, features 2 and 3 are always 1, and each example
owns 5 private columns of which it switches on 1 (y = +1) or 5 (y = -1). The loss is the least
squares loss f(w) = ||Xw - y||² / (2n) (``LeastSquares``); every method starts from w = 0 and
makes ``STEPS`` updates with the optimizers of ``optim``:

* GD: ``optim.SGD`` (no momentum) on the full gradient ``problem.grad``, lr = 1/L;
* SGD: ``optim.SGD`` on single-example stochastic gradients x_i (x_i·w - y_i) (the gradient of
  (x_i·w - y_i)²/2, whose mean over i is ∇f), i drawn uniformly with replacement from
  ``torch.Generator(seed)``, lr = 1/max_i ||x_i||² (= 1/8: a positive example has ||x_i||² = 4, a
  negative one 8);
* AdaGrad (``optim.Adagrad``, lr ``LR["AdaGrad"]``), RMSprop (``optim.RMSprop``, alpha 0.99) and
  Adam (``optim.Adam``, betas (0.9, 0.999)) on the full gradient, with the learning rates in
  ``LR`` (constant) and the optimizers' default eps.

Predicted limits (the paper's Lemma 3.1 and the remark after it, assuming b = Σ y_i > 0): GD and
SGD from 0 stay in the row space of X and converge to the minimum-norm interpolant
``problem.x_star``, which classifies every test point correctly; AdaGrad, RMSprop and Adam
from 0 converge to w = sign(X^T y)/4 (``problem.adaptive_solution``), which scores
<w, x> = (y + 2)/4 > 0 on every test point, so every test point is called +1 and the test error is
the fraction of negative test labels (1 - p in expectation).

Conventions. t counts updates already made (w_0 = 0). Test error (``problem.test_error``): the
fraction of ``TEST_POINTS`` fresh points misclassified by sign(<w, x>), the test labels drawn
from the seed ``TEST_SEED_OFFSET + seed`` (kept apart from the training seeds, since
``WilsonSeparable`` draws its training labels from ``torch.Generator(seed)`` too).

Outputs per method, mean ± std over seeds (``ddof = 1``): the final training loss f(w_T), the
test error, the distance ||w_T - w_pred|| to the predicted limit, and, per seed, b = Σ y_i
(the lemma needs b > 0) and the fraction of negative test labels (the error the lemma predicts
for the adaptive methods). The optimizers' eps makes the adaptive limit an interpolant a
distance of about 1e-6 from sign(X^T y)/4 (the lemma is exact for eps = 0). Curves: test error
and training loss at ``SNAPSHOTS`` log-spaced steps, per seed.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

import optim
import theory
from runs.figures import save_figure
from runs.study import format_mean_std as fmt
from runs.study import mean_std

DESCRIPTION = (
    "GD and SGD vs AdaGrad, RMSprop and Adam on Wilson et al.'s separable least-squares "
    "construction: training loss, test error and distance to the predicted limit"
)
RUNTIME = "about 25 s on 2 CPU cores, end to end (20 s of it computing; --quick: about 1.5 s)"
REFERENCE = (
    'Wilson, Roelofs, Stern, Srebro & Recht, "The Marginal Value of Adaptive Gradient Methods '
    'in Machine Learning", NeurIPS 2017, §3.3: on this linearly separable least-squares '
    "problem, AdaGrad, RMSProp and Adam started at 0 converge to w ∝ sign(X^T y) and classify "
    "every new point as +1, so their test error is 1 - p (close to 1/2 when p is close to 1/2), "
    "whereas gradient descent and SGD converge to the minimum-norm solution and have zero test "
    "error."
)
SEEDS = 10
QUICK_SEEDS = 1

N = 40
P = 0.7
STEPS = 4000
QUICK_STEPS = 2000
TEST_POINTS = 1000
TEST_SEED_OFFSET = 1_000_000
SNAPSHOTS = 60
ADAPTIVE = ("AdaGrad", "RMSprop", "Adam")
METHODS = ("GD", "SGD", *ADAPTIVE)
# GD: 1/L, SGD: 1/max ||x_i||². RMSprop at 0.01 (constant) ends in a 2-cycle around the limit for
# seed 7 (distance 0.05, train loss 4e-4); at 0.005 every seed 0..9 converges.
LR = {"AdaGrad": 0.1, "RMSprop": 0.005, "Adam": 0.01}


def _optimizer(
    method: str, problem: theory.WilsonSeparable, params: list[torch.nn.Parameter]
) -> tuple[torch.optim.Optimizer, float]:
    """The optimizer of ``method`` and its learning rate (see the module docstring)."""
    if method == "GD":
        lr = 1.0 / problem.L
        return optim.SGD(params, lr=lr), lr
    if method == "SGD":
        lr = 1.0 / float(np.max(np.sum(problem.X_data**2, axis=1)))
        return optim.SGD(params, lr=lr), lr
    lr = LR[method]
    make = {"AdaGrad": optim.Adagrad, "RMSprop": optim.RMSprop, "Adam": optim.Adam}[method]
    return make(params, lr=lr), lr


def _gradient_oracle(
    method: str, problem: theory.WilsonSeparable, steps: int, seed: int
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """grad(w, t): the full gradient, or for SGD the gradient of example i_t's squared error."""
    if method != "SGD":
        return lambda w, t: problem.grad(w)
    X = torch.as_tensor(problem.X_data, dtype=torch.float64)
    y = torch.as_tensor(problem.y_data, dtype=torch.float64)
    examples = torch.randint(problem.n, (steps,), generator=torch.Generator().manual_seed(seed))

    def stochastic_gradient(w: torch.Tensor, t: int) -> torch.Tensor:
        row = X[examples[t]]
        return row * (row @ w - y[examples[t]])

    return stochastic_gradient


def snapshot_steps(steps: int) -> list[int]:
    """About ``SNAPSHOTS`` log-spaced steps in [0, steps], 0 and ``steps`` included."""
    spaced = np.unique(np.geomspace(1, steps, SNAPSHOTS - 1).astype(int))
    return [0, *spaced.tolist()] if spaced[-1] == steps else [0, *spaced.tolist(), steps]


def train(
    method: str, problem: theory.WilsonSeparable, steps: int, seed: int, record: list[int]
) -> tuple[torch.Tensor, dict[int, torch.Tensor], float]:
    """``steps`` updates of ``method`` from w = 0; returns w_T, {t: w_t for t in record}, lr."""
    w = torch.nn.Parameter(problem.x0.detach().clone())
    optimizer, lr = _optimizer(method, problem, [w])
    gradient = _gradient_oracle(method, problem, steps, seed)
    wanted = set(record)
    snapshots = {0: w.detach().clone()} if 0 in wanted else {}
    w.grad = torch.zeros_like(w)
    for t in range(steps):
        with torch.no_grad():
            w.grad.copy_(gradient(w.detach(), t))
        optimizer.step()
        if t + 1 in wanted:
            snapshots[t + 1] = w.detach().clone()
    return w.detach().clone(), snapshots, lr


def curves(results: dict[str, Any]) -> Iterator[tuple[str, str, list[int], list[float]]]:
    """TensorBoard's curves (``runs.study``): per method and seed, the training loss and the
    test error at the recorded steps."""
    for run in results["runs"]:
        name = f"{run['method']}/seed{run['seed']}"
        for tag in ("train_loss", "test_error"):
            yield name, tag, run["curve"]["t"], run["curve"][tag]


def compute(*, quick: bool, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Trains every method on every seed's construction; see the module docstring."""
    steps = QUICK_STEPS if quick else STEPS
    record = snapshot_steps(steps)
    runs: list[dict[str, Any]] = []
    problems = []
    for seed in seeds:
        problem = theory.WilsonSeparable(n=N, p=P, seed=seed)
        test_seed = TEST_SEED_OFFSET + seed
        _, test_labels = problem.test_set(TEST_POINTS, test_seed)
        problems.append(
            {
                "seed": seed,
                "label_sum": problem.label_sum,
                "negative_test_fraction": float(np.mean(test_labels < 0)),
            }
        )
        for method in METHODS:
            w, snapshots, lr = train(method, problem, steps, seed, record)
            limit = problem.adaptive_solution() if method in ADAPTIVE else problem.x_star

            def error(v: torch.Tensor, problem=problem, test_seed=test_seed) -> float:
                return problem.test_error(v, count=TEST_POINTS, seed=test_seed)

            runs.append(
                {
                    "method": method,
                    "seed": seed,
                    "lr": lr,
                    "train_loss": float(problem.loss(w)),
                    "test_error": error(w),
                    "distance_to_limit": float(torch.linalg.vector_norm(w - limit)),
                    "predicted_limit": "adaptive_solution" if method in ADAPTIVE else "x_star",
                    "curve": {
                        "t": record,
                        "test_error": [error(snapshots[t]) for t in record],
                        "train_loss": [float(problem.loss(snapshots[t])) for t in record],
                    },
                }
            )
    summary = []
    for method in METHODS:
        chosen = [r for r in runs if r["method"] == method]
        summary.append(
            {"method": method, "lr": mean_std([r["lr"] for r in chosen])}
            | {
                key: mean_std([r[key] for r in chosen])
                for key in ("train_loss", "test_error", "distance_to_limit")
            }
        )
    return {
        "setup": {
            "n": N,
            "p": P,
            "steps": steps,
            "seeds": list(seeds),
            "test_points": TEST_POINTS,
            "test_seed_offset": TEST_SEED_OFFSET,
            "sgd": "single example per update, uniform with replacement, lr = 1/max_i ||x_i||^2",
            "gd_lr": "1/L",
        },
        "problems": problems,
        "summary": summary,
        "runs": runs,
    }


def _figure(results: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(METHODS, ("k", "tab:gray", "tab:green", "tab:orange", "tab:red")))
    fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(14, 4.5))
    for method in METHODS:
        chosen = [r for r in results["runs"] if r["method"] == method]
        t = np.asarray(chosen[0]["curve"]["t"], dtype=float)
        errors = np.mean([r["curve"]["test_error"] for r in chosen], axis=0)
        losses = np.mean([r["curve"]["train_loss"] for r in chosen], axis=0)
        style = "--" if method == "SGD" else "-"
        ax_err.plot(t + 1, errors, style, color=colours[method], label=method)
        ax_loss.plot(t + 1, losses, style, color=colours[method], label=method)
    expected = 1 - results["setup"]["p"]
    ax_err.axhline(expected, color="tab:purple", ls=":", lw=1, label=f"1 - p = {expected:g}")
    ax_err.set(
        xscale="log",
        xlabel="t + 1 (updates)",
        ylabel="test error (mean over seeds)",
        ylim=(-0.02, 0.62),
        title="test error",
    )
    ax_loss.set(
        xscale="log",
        yscale="log",
        xlabel="t + 1 (updates)",
        ylabel="training loss (mean over seeds)",
        title="training loss ||Xw - y||²/(2n)",
    )
    for ax in (ax_err, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    setup = results["setup"]
    fig.suptitle(
        f"Wilson et al. separable construction, n = {setup['n']}, p = {setup['p']}, "
        f"{len(setup['seeds'])} seed(s)"
    )
    save_figure(fig, path)


def report(results: dict[str, Any], figures_dir: pathlib.Path) -> tuple[str, list[pathlib.Path]]:
    """The per-method table, findings computed from it, and the test-error figure."""
    figures_dir = pathlib.Path(figures_dir)
    setup = results["setup"]
    lines = [
        f"n = {setup['n']} training points, p = {setup['p']}, {setup['steps']} updates from "
        f"w = 0, test error on {setup['test_points']} fresh points; mean ± std over seeds "
        f"{setup['seeds']}. SGD: {setup['sgd']}.",
        "",
        "| method | lr | final train loss | test error | distance to predicted limit |",
        "|---|---|---|---|---|",
    ]
    for row in results["summary"]:
        limit = "sign(Xᵀy)/4" if row["method"] in ADAPTIVE else "min-norm x*"
        lines.append(
            f"| {row['method']} | {fmt(row['lr'], '.4g')} | "
            f"{fmt(row['train_loss'], '.2e')} | {fmt(row['test_error'], '.3f')} | "
            f"{fmt(row['distance_to_limit'], '.2e')} ({limit}) |"
        )
    problems = results["problems"]
    predicted = float(np.mean([p["negative_test_fraction"] for p in problems]))
    by_method = {row["method"]: row for row in results["summary"]}
    adaptive = ", ".join(f"{m} {by_method[m]['test_error']['mean']:.3f}" for m in ADAPTIVE)
    lines += [
        "",
        f"- Test error: GD {by_method['GD']['test_error']['mean']:.3f}, SGD "
        f"{by_method['SGD']['test_error']['mean']:.3f}; {adaptive}. The lemma predicts 0 for "
        f"GD/SGD and, for the adaptive methods, the fraction of negative test labels, "
        f"{predicted:.3f} here (1 - p = {1 - setup['p']:g} in expectation).",
    ]
    nonpositive = [p["seed"] for p in problems if p["label_sum"] <= 0]
    if nonpositive:
        lines.append(
            f"- Seeds {nonpositive} drew b = Σ y_i ≤ 0, outside the lemma's assumption b > 0."
        )
    figure = figures_dir / "adaptive_generalization.png"
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
    "snapshot_steps",
    "train",
]
