"""Convex theory against measured training: Schaipp et al.'s (2025) central figures at small scale.

The bound. For SGD with step sizes η_1..η_T on a convex f with ||g_t|| <= G and
D = ||x_1 - x*||, ``theory.last_iterate_bound`` (Defazio et al. 2023, Thm 10) bounds
E f(x_T) - f*; for the schedule γ·s it is A/γ + γB, minimised at γ* = √(A/B)
(``theory.optimal_base_lr``). The bound for η_1..η_T is about the point after T - 1 updates
(``theory.schedule_bounds``); a schedule that ends at 0 is bounded up to its last positive step.

Parts (every schedule has peak 1 before scaling; cooldowns are the last ``COOLDOWN`` of training):

1. ``schedules``: on ``theory.LeastAbsoluteDeviations.synthetic`` (robust regression, n = 200,
   d = 10, rows on the unit sphere so G = 1, Laplace noise; one row sampled per update, the
   oracle seeded per run), SGD with each of constant, cosine, WSD (linear and 1-sqrt cooldown),
   linear decay to zero and inverse square root at its own γ*, certified by
   ``theory.sgd_last_iterate_bound`` with ``theory.certify(..., seeds=...)`` (mean of f(x_k) - f*
   over seeds below the bound at every step; 95 % t-band). The bound's ranking of the schedules
   (final bound at γ*) is compared with the measured one (final mean gap), by Spearman's ρ and
   Kendall's τ.
2. ``cooldown``: WSD with linear cooldown over fractions ``COOLDOWN_FRACTIONS`` of training, the
   bound's final value against the measured final mean gap, and where each is smallest, two ways:
   each fraction at its own γ* (re-tuned: the bound then falls as the cooldown grows, so its best
   fraction is the sweep's end, linear decay to zero), and at a few fixed base rates
   ``COOLDOWN_FIXED_FACTORS`` times γ* of the 20 % cooldown, as the authors' code does
   (``scripts/cooldown_length.py`` of fabian-sp/lr-scheduling, "final bound vs. cooldown fraction
   for multiple base LRs", cf. Hägele et al. 2024, Fig. 5): there the bound has its optimal
   cooldown fraction inside the sweep, larger at a larger rate.
3. ``transfer``: cosine and WSD (1-sqrt) on the convex problem, each over a grid of base rates
   γ*·2^j; the bound predicts γ*_WSD/γ*_cosine (a ratio that depends on the schedules' shapes
   only, not on D or G); measured: the ratio of the grid's best rates, and the gap of WSD at the
   rate transferred from cosine's best by the predicted ratio.
4. ``mnist1d``: the MLP (hidden 100) on MNIST-1D with plain SGD, batch 128, cosine vs WSD (1-sqrt)
   over a grid of base rates: training-loss curves at each schedule's best rate beside the
   bound's curves (D = G = 1, scaled to their final value: only shapes are comparable on a
   network), and the measured best-rate ratio beside the predicted one.

``compute`` returns every number JSON-ready (curves subsampled to ``CURVE_POINTS``); ``report``
writes the tables, the findings (agreement and disagreement, computed from the numbers) and
three figures from them alone.
"""

from __future__ import annotations

import itertools
import math
import pathlib
from typing import Any

import numpy as np
import torch

import schedulers
import theory
from runs.figures import save_figure
from runs.study import format_mean_std, mean_std, ranked_mean

DESCRIPTION = (
    "convex theory vs measurement for learning-rate schedules: the last-iterate bound of "
    "Defazio et al. certified for six schedules on a stochastic Lipschitz problem, cosine vs "
    "WSD bound curves beside measured loss (convex and MNIST-1D MLP), cooldown-length sweeps "
    "(each length at its tuned rate, and at fixed base rates), optimal base-rate transfer"
)
RUNTIME = (
    "about 2 min on 2 CPU cores, 8 seeds (107 s end to end measured; --quick: about 5 s, 3 s "
    "without generating MNIST-1D)"
)
REFERENCE = (
    "Schaipp, Hägele, Taylor, Simsekli & Bach, 'The Surprising Agreement Between Convex "
    "Optimization Theory and Learning-Rate Scheduling for Large Model Training', ICML 2025 "
    "(arXiv:2501.18965): the last-iterate bound of SGD for an arbitrary step-size sequence "
    "(Defazio, Cutkosky, Mehta & Mishchenko 2023, arXiv:2310.07831, Thm 10) reproduces the "
    "sudden loss drop of a WSD cooldown, ranks cosine and WSD as training does, has at a fixed "
    "base rate an optimal cooldown length that grows with the rate (their code's "
    "scripts/cooldown_length.py, cf. Hägele et al. 2024, Fig. 5; at each length's own tuned "
    "rate the bound only improves as the cooldown grows), and predicts how the optimal base "
    "learning rate transfers between schedules. Their claims are curves and ratios; here they "
    "are checked on a convex problem where the bound's assumptions hold (certified) and on the "
    "MNIST-1D MLP where they do not; the findings below say where the numbers agree and where "
    "they do not."
)
SEEDS = 8
QUICK_SEEDS = 3

SCHEDULES = ("constant", "cosine", "wsd-linear", "wsd-1-sqrt", "linear-to-zero", "inverse-sqrt")
COOLDOWN = 0.2
COOLDOWN_FRACTIONS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
QUICK_COOLDOWN_FRACTIONS = (0.1, 0.4, 1.0)
# the fixed base rates of the cooldown sweep: these multiples of γ* of WSD (linear) with a
# COOLDOWN cooldown (the authors' script uses 0.02 to 0.07 at D = G = 1, T = 400, about 0.8 to
# 2.8 times that γ*; here rates around it, below and above)
COOLDOWN_FIXED_FACTORS = (0.6, 1.0, 1.4)
# a cooldown drop: the loss falls by more than this factor over WSD's cooldown, and by more than
# cosine's over the same steps
DROP = 1.5
# "close to 0": a training loss below this fraction of its value at step 0
NEAR_ZERO = 0.02
CONVEX_STEPS, QUICK_CONVEX_STEPS = 1000, 100
TRANSFER_EXPONENTS = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
QUICK_TRANSFER_EXPONENTS = (-1.0, 0.0, 1.0)
MNIST_STEPS, QUICK_MNIST_STEPS = 2000, 150
MNIST_LRS, QUICK_MNIST_LRS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0), (0.5, 1.0)
MNIST_SEEDS, QUICK_MNIST_SEEDS = 3, 1
MNIST_BATCH = 128
MNIST_EVALS = 40
CURVE_POINTS = 400
COLORS = {
    "constant": "tab:gray",
    "cosine": "tab:blue",
    "wsd-linear": "tab:green",
    "wsd-1-sqrt": "tab:red",
    "linear-to-zero": "tab:purple",
    "inverse-sqrt": "tab:brown",
}


def schedule_shape(name: str, steps: int, cooldown: float = COOLDOWN) -> schedulers.Schedule:
    """The schedule ``name`` with peak 1 over ``steps`` updates (cooldown: the last
    ``cooldown`` fraction, at least one update)."""
    decay = max(1, round(cooldown * steps))
    stable = steps - decay
    if name == "constant":
        return schedulers.constant(1.0)
    if name == "cosine":
        return schedulers.cosine_decay(learning_rate=1.0, decay_steps=steps)
    if name in ("wsd-linear", "wsd-1-sqrt"):
        return schedulers.wsd(1.0, 0, stable, decay, cooldown=name[4:])
    if name == "linear-to-zero":
        return schedulers.polynomial_decay(
            learning_rate=1.0, decay_steps=steps, end_learning_rate=0.0
        )
    if name == "inverse-sqrt":
        return schedulers.inverse_sqrt(1.0, 1)
    raise ValueError(f"name must be one of {SCHEDULES}, got name={name!r}")


def bounded_horizon(shape: Any, steps: int) -> tuple[np.ndarray, int]:
    """The shape's step sizes over updates 0..steps-1 and T, one past the last positive one:
    the bound is about the point after T - 1 updates."""
    eta = theory.step_sizes(shape, steps)
    return eta, int(np.nonzero(eta)[0][-1]) + 1


def tuned(shape: Any, steps: int, D: float, G: float) -> dict[str, Any]:
    """γ* of the shape (its bound at the last bounded point minimised), the step sizes γ*·s and
    the bound there."""
    eta, horizon = bounded_horizon(shape, steps)
    gamma, value = theory.optimal_base_lr(eta[:horizon], D, G)
    return {"gamma": gamma, "bound": value, "lrs": gamma * eta, "horizon": horizon}


def _subsample(length: int) -> np.ndarray:
    if length <= CURVE_POINTS:
        return np.arange(length)
    return np.unique(np.geomspace(1, length, CURVE_POINTS).round().astype(int) - 1)


def _floats(values: Any) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _sgd(params):
    return torch.optim.SGD(params, lr=1.0)  # the lr of every update is set by lr_schedule


def _final_gaps(problem, lrs: np.ndarray, steps: int, k: int, seeds) -> list[float]:
    """f(x_k) - f* of one run per oracle seed."""
    schedule = theory.lr_schedule(lrs)
    gaps = []
    for seed in seeds:
        trajectory = theory.run(problem.reseeded(seed), _sgd, steps, before_step=schedule)
        gaps.append(float(trajectory.gap[k]) if trajectory.finite else math.inf)
    return gaps


# ----------------------------------------------------------------------------------------------
# compute
# ----------------------------------------------------------------------------------------------
def convex_problem() -> theory.LeastAbsoluteDeviations:
    """The convex problem of parts 1-3 (its data fixed; runs differ by the oracle seed)."""
    return theory.LeastAbsoluteDeviations.synthetic(n=200, dim=10, seed=0)


def _schedules_part(problem, steps: int, seeds, D: float, G: float) -> dict[str, Any]:
    rows = []
    for name in SCHEDULES:
        setup = tuned(schedule_shape(name, steps), steps, D, G)
        bound = theory.sgd_last_iterate_bound(problem, setup["lrs"])
        certificate = theory.certify(
            problem,
            _sgd,
            steps,
            bound,
            before_step=theory.lr_schedule(setup["lrs"]),
            seeds=seeds,
        )
        k = setup["horizon"] - 1
        index = _subsample(setup["horizon"])
        rows.append(
            {
                "schedule": name,
                "gamma": setup["gamma"],
                "final_step": k,
                "bound_final": float(certificate.bound_values[k]),
                "measured_final": mean_std([t.gap[k] for t in certificate.trajectories]),
                "band_final": [float(certificate.band_lower[k]), float(certificate.band_upper[k])],
                "held": certificate.held,
                "applicable": certificate.applicable,
                "first_violation": certificate.first_violation,
                "worst_ratio": certificate.worst_ratio,
                "worst_step": certificate.worst_step,
                "curve": {
                    "k": index.tolist(),
                    "lr": _floats(setup["lrs"][index]),
                    "bound": _floats(certificate.bound_values[index]),
                    "mean": _floats(certificate.observed[index]),
                    "lower": _floats(certificate.band_lower[index]),
                    "upper": _floats(certificate.band_upper[index]),
                },
            }
        )
    import scipy.stats

    bound_values = [r["bound_final"] for r in rows]
    measured = [ranked_mean(r["measured_final"]) for r in rows]
    rho = scipy.stats.spearmanr(bound_values, measured).statistic
    tau = scipy.stats.kendalltau(bound_values, measured).statistic
    return {
        "rows": rows,
        "ranking": {
            "by_bound": [rows[i]["schedule"] for i in np.argsort(bound_values)],
            "by_measurement": [rows[i]["schedule"] for i in np.argsort(measured)],
            "spearman": float(rho),
            "kendall": float(tau),
        },
    }


def _best_fractions(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "best_by_bound": min(rows, key=lambda r: r["bound_final"])["fraction"],
        "best_by_measurement": min(rows, key=lambda r: ranked_mean(r["measured_final"]))[
            "fraction"
        ],
    }


def _cooldown_part(problem, steps: int, seeds, D: float, G: float, quick: bool) -> dict:
    """WSD (linear) over the cooldown fractions: each at its own γ* (``rows``), and at the fixed
    base rates ``COOLDOWN_FIXED_FACTORS`` times γ* of the ``COOLDOWN`` cooldown (``fixed``)."""
    fractions = QUICK_COOLDOWN_FRACTIONS if quick else COOLDOWN_FRACTIONS
    rows = []
    shapes = {}
    for fraction in fractions:
        shapes[fraction] = schedule_shape("wsd-linear", steps, fraction)
        setup = tuned(shapes[fraction], steps, D, G)
        k = setup["horizon"] - 1
        gaps = _final_gaps(problem, setup["lrs"], steps, k, seeds)
        rows.append(
            {
                "fraction": fraction,
                "gamma": setup["gamma"],
                "bound_final": setup["bound"],
                "measured_final": mean_std(gaps),
            }
        )
    reference = tuned(schedule_shape("wsd-linear", steps, COOLDOWN), steps, D, G)["gamma"]
    fixed = []
    for factor in COOLDOWN_FIXED_FACTORS:
        gamma = factor * reference
        fixed_rows = []
        for fraction in fractions:
            eta, horizon = bounded_horizon(shapes[fraction], steps)
            gaps = _final_gaps(problem, gamma * eta, steps, horizon - 1, seeds)
            fixed_rows.append(
                {
                    "fraction": fraction,
                    "bound_final": theory.last_iterate_bound(gamma * eta[:horizon], D, G),
                    "measured_final": mean_std(gaps),
                }
            )
        fixed.append(
            {"factor": factor, "gamma": gamma, "rows": fixed_rows, **_best_fractions(fixed_rows)}
        )
    return {
        "rows": rows,
        **_best_fractions(rows),
        "fixed": {"reference_gamma": reference, "reference_fraction": COOLDOWN, "rates": fixed},
    }


def best_rate(lrs: list[float], finals: list[float]) -> float:
    """The measured best base rate: the vertex of a parabola through log(final) against
    log(lr) at the grid's best point and its two neighbours (the grid point itself at an end
    of the grid or when the parabola does not open upwards)."""
    i = int(np.argmin(finals))
    if i == 0 or i == len(lrs) - 1:
        return float(lrs[i])
    x, y = np.log(lrs[i - 1 : i + 2]), np.log(finals[i - 1 : i + 2])
    a, b, _ = np.polyfit(x, y, 2)
    if not a > 0:
        return float(lrs[i])
    return float(np.exp(np.clip(-b / (2 * a), x[0], x[-1])))


def _transfer_part(problem, steps: int, seeds, D: float, G: float, quick: bool) -> dict:
    """One absolute grid of base rates for both schedules, γ_ref 2^j with γ_ref the geometric
    mean of the two γ*, so that the measured best rates are not tied to either γ*."""
    exponents = QUICK_TRANSFER_EXPONENTS if quick else TRANSFER_EXPONENTS
    names = ("cosine", "wsd-1-sqrt")
    shapes = {name: schedule_shape(name, steps) for name in names}
    setups = {name: tuned(shapes[name], steps, D, G) for name in names}
    reference = math.sqrt(setups["cosine"]["gamma"] * setups["wsd-1-sqrt"]["gamma"])
    out: dict[str, Any] = {"reference_lr": reference, "schedules": {}}
    for name in names:
        eta, horizon = bounded_horizon(shapes[name], steps)
        grid = []
        for exponent in exponents:
            base = reference * 2.0**exponent
            grid.append(
                {
                    "lr": base,
                    "measured_final": mean_std(
                        _final_gaps(problem, base * eta, steps, horizon - 1, seeds)
                    ),
                    "bound_final": theory.last_iterate_bound(base * eta[:horizon], D, G),
                }
            )
        best = best_rate([g["lr"] for g in grid], [ranked_mean(g["measured_final"]) for g in grid])
        out["schedules"][name] = {"gamma": setups[name]["gamma"], "grid": grid, "best_lr": best}
    cosine, wsd = out["schedules"]["cosine"], out["schedules"]["wsd-1-sqrt"]
    predicted = wsd["gamma"] / cosine["gamma"]
    out["predicted_ratio"] = predicted
    out["measured_ratio"] = wsd["best_lr"] / cosine["best_lr"]
    eta, horizon = bounded_horizon(shapes["wsd-1-sqrt"], steps)
    transferred = cosine["best_lr"] * predicted
    out["transferred_lr"] = transferred
    out["transferred_final"] = mean_std(
        _final_gaps(problem, transferred * eta, steps, horizon - 1, seeds)
    )
    out["wsd_best_final"] = min(ranked_mean(r["measured_final"]) for r in wsd["grid"])
    return out


def _train_mnist1d(data, shape: Any, base: float, steps: int, seed: int) -> dict[str, Any]:
    """Plain SGD on the MLP; training loss on the whole training split at ``MNIST_EVALS``
    evenly spaced steps (and at the end)."""
    from runs.batches import batches
    from runs.models import build_model

    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=base)
    generator = torch.Generator().manual_seed(seed)
    lrs = base * theory.step_sizes(shape, steps)
    marks = set(np.linspace(0, steps, MNIST_EVALS + 1).round().astype(int).tolist())
    curve_k, curve_loss = [], []

    def evaluate(k: int) -> float:
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(model(data.train_x), data.train_y)
        curve_k.append(k)
        curve_loss.append(float(loss))
        return float(loss)

    t = 0
    evaluate(0)
    while t < steps:
        for x, y in batches(
            data.train_x,
            data.train_y,
            MNIST_BATCH,
            shuffle=True,
            generator=generator,
            drop_last=True,
        ):
            if t >= steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = float(lrs[t])
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            t += 1
            if t in marks and not math.isfinite(evaluate(t)):
                return {"k": curve_k, "loss": curve_loss, "final": math.inf}
    return {"k": curve_k, "loss": curve_loss, "final": curve_loss[-1]}


def _mnist_part(quick: bool) -> dict[str, Any]:
    from runs.data import load_dataset

    data = load_dataset("mnist1d")
    steps = QUICK_MNIST_STEPS if quick else MNIST_STEPS
    lrs = QUICK_MNIST_LRS if quick else MNIST_LRS
    seeds = range(QUICK_MNIST_SEEDS if quick else MNIST_SEEDS)
    out: dict[str, Any] = {"steps": steps, "batch": MNIST_BATCH, "schedules": {}}
    for name in ("cosine", "wsd-1-sqrt"):
        shape = schedule_shape(name, steps)
        grid = []
        for base in lrs:
            runs = [_train_mnist1d(data, shape, base, steps, seed) for seed in seeds]
            finals = [r["final"] for r in runs]
            diverged = not all(math.isfinite(f) for f in finals)
            grid.append(
                {
                    "lr": base,
                    "diverged": diverged,
                    "final": None if diverged else mean_std(finals),
                    "curve": {
                        "k": runs[0]["k"],
                        "loss": _floats(np.mean([r["loss"] for r in runs], axis=0))
                        if not diverged
                        else None,
                    },
                }
            )
        finite = [g for g in grid if not g["diverged"]]
        best = min(finite, key=lambda g: g["final"]["mean"]) if finite else None
        best_lr = (
            best_rate([g["lr"] for g in finite], [g["final"]["mean"] for g in finite])
            if finite
            else None
        )
        eta, horizon = bounded_horizon(shape, steps)
        gamma, _ = theory.optimal_base_lr(eta[:horizon], 1.0, 1.0)
        index = _subsample(horizon)
        bound_curve = theory.last_iterate_bound_curve(gamma * eta[:horizon], 1.0, 1.0)
        out["schedules"][name] = {
            "grid": grid,
            "best_grid_lr": None if best is None else best["lr"],
            "best_lr": best_lr,
            "gamma_unit": gamma,
            "bound_shape": {
                "k": index.tolist(),
                "relative": _floats(bound_curve[index] / bound_curve[-1]),
            },
        }
    cosine, wsd = out["schedules"]["cosine"], out["schedules"]["wsd-1-sqrt"]
    out["predicted_ratio"] = wsd["gamma_unit"] / cosine["gamma_unit"]
    out["measured_ratio"] = (
        wsd["best_lr"] / cosine["best_lr"] if cosine["best_lr"] and wsd["best_lr"] else None
    )
    return out


def compute(*, quick: bool, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Every part (see the module docstring); deterministic for given seeds."""
    if len(seeds) < 2:
        raise ValueError(f"schedule-theory needs at least 2 seeds (a mean and a band), got {seeds}")
    problem = convex_problem()
    D = float(torch.linalg.vector_norm(problem.x0 - problem.x_star))
    G = problem.G
    steps = QUICK_CONVEX_STEPS if quick else CONVEX_STEPS
    return {
        "setup": {
            "quick": quick,
            "seeds": list(seeds),
            "convex_problem": repr(problem),
            "n": problem.n,
            "dim": problem.dim,
            "D": D,
            "G": G,
            "f_star": problem.f_star,
            "steps": steps,
            "cooldown": COOLDOWN,
        },
        "schedules": _schedules_part(problem, steps, seeds, D, G),
        "cooldown": _cooldown_part(problem, steps, seeds, D, G, quick),
        "transfer": _transfer_part(problem, steps, seeds, D, G, quick),
        "mnist1d": _mnist_part(quick),
    }


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _g(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _schedules_table(part: dict[str, Any], seeds: int) -> str:
    lines = [
        "| schedule | γ* | certificate | worst observed/bound | bound at the last bounded "
        "step | measured mean gap there | 95 % band |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for row in part["rows"]:
        status = (
            "held"
            if row["held"]
            else (
                "not applicable"
                if not row["applicable"]
                else f"violated at k = {row['first_violation']}"
            )
        )
        low, high = row["band_final"]
        lines.append(
            f"| {row['schedule']} | {row['gamma']:.4g} | {status} | {row['worst_ratio']:.3f} | "
            f"{row['bound_final']:.4g} | {format_mean_std(row['measured_final'], '.4g')} | "
            f"{low:.3g} .. {high:.3g} |"
        )
    ranking = part["ranking"]
    lines.append("")
    lines.append(
        f"Ranking at γ* (best first). Bound: {', '.join(ranking['by_bound'])}. Measured "
        f"(mean over {seeds} seeds): {', '.join(ranking['by_measurement'])}. Spearman ρ = "
        f"{ranking['spearman']:.2f}, Kendall τ = {ranking['kendall']:.2f}."
    )
    return "\n".join(lines) + "\n"


def _cooldown_table(part: dict[str, Any]) -> str:
    lines = [
        "| cooldown fraction | γ* | bound at γ* | measured mean gap |",
        "|---:|---:|---:|---:|",
    ]
    for row in part["rows"]:
        lines.append(
            f"| {row['fraction']:g} | {row['gamma']:.4g} | {row['bound_final']:.4g} | "
            f"{format_mean_std(row['measured_final'], '.4g')} |"
        )
    return "\n".join(lines) + "\n"


def _fixed_cooldown_table(part: dict[str, Any]) -> str:
    """Bound and measured mean gap per cooldown fraction at each fixed base rate (the smallest
    of each column in bold)."""
    rates = part["fixed"]["rates"]
    header = "| cooldown fraction |" + "".join(
        f" γ = {r['gamma']:.3g}: bound | measured mean gap |" for r in rates
    )
    lines = [header, "|---:|" + "---:|---:|" * len(rates)]
    for i, fraction in enumerate(r["fraction"] for r in rates[0]["rows"]):
        cells = []
        for rate in rates:
            row = rate["rows"][i]
            bound = f"{row['bound_final']:.4g}"
            measured = format_mean_std(row["measured_final"], ".4g")
            if fraction == rate["best_by_bound"]:
                bound = f"**{bound}**"
            if fraction == rate["best_by_measurement"]:
                measured = f"**{measured}**"
            cells.append(f" {bound} | {measured} |")
        lines.append(f"| {fraction:g} |" + "".join(cells))
    return "\n".join(lines) + "\n"


def _transfer_text(part: dict[str, Any], mnist: dict[str, Any]) -> str:
    lines = [
        "| problem | schedule | base rates tried | best measured | bound's γ* |",
        "|---|---|---|---:|---:|",
    ]
    for name, entry in part["schedules"].items():
        rates = ", ".join(f"{g['lr']:.3g}" for g in entry["grid"])
        lines.append(
            f"| convex (LAD) | {name} | {rates} | {entry['best_lr']:.4g} | {entry['gamma']:.4g} |"
        )
    for name, entry in mnist["schedules"].items():
        rates = ", ".join(
            f"{g['lr']:g}" + (" (diverged)" if g["diverged"] else "") for g in entry["grid"]
        )
        lines.append(f"| MNIST-1D MLP | {name} | {rates} | {_g(entry['best_lr'], 4)} | — |")
    return "\n".join(lines) + "\n"


def _findings(results: dict[str, Any]) -> str:
    """The findings, each sentence computed from the numbers it states: where they agree with
    Schaipp et al. and where they do not."""
    schedules, cooldown = results["schedules"], results["cooldown"]
    transfer, mnist = results["transfer"], results["mnist1d"]
    out = [_certificates_sentence(schedules["rows"])]
    ranking = schedules["ranking"]
    agree = ranking["by_bound"][0] == ranking["by_measurement"][0]
    worst_agree = ranking["by_bound"][-1] == ranking["by_measurement"][-1]
    out.append(
        f"- Ranking: Spearman ρ = {ranking['spearman']:.2f} between the bound's and the measured "
        f"order. Best by the bound: {ranking['by_bound'][0]}, measured: "
        f"{ranking['by_measurement'][0]} ({'agree' if agree else 'disagree'}); worst: "
        f"{ranking['by_bound'][-1]} vs {ranking['by_measurement'][-1]} "
        f"({'agree' if worst_agree else 'disagree'})."
    )
    out.append(_drop_sentence(schedules["rows"], results["setup"]["steps"]))
    out.extend(_cooldown_sentences(cooldown))
    out.append(_transfer_sentence(transfer))
    out.append(_mnist_sentence(mnist))
    return "\n".join(out) + "\n"


def _certificates_sentence(rows: list[dict[str, Any]]) -> str:
    """Whether every certificate held; the violated (or inapplicable) ones named; how loose."""
    held = [r["schedule"] for r in rows if r["held"]]
    ratios = [r["worst_ratio"] for r in rows]
    text = (
        f"- Certificates: {len(held)} of {len(rows)} last-iterate bounds held in mean at every "
        f"step ({', '.join(held) or 'none'}); worst observed/bound {min(ratios):.2f} to "
        f"{max(ratios):.2f}"
    )
    failed = [r for r in rows if not r["held"]]
    if not failed:
        loose = 1 / max(ratios)
        size = (
            "tight (within 10 % at its worst step)"
            if loose < 1.1
            else f"{loose:.1f}x or more above the measured mean gap at every step"
        )
        return (
            f"{text}: the bound is valid here and {size} (the tests show each bound failing once "
            "scaled below its worst ratio)."
        )
    named = []
    for r in failed:
        if not r["applicable"]:
            named.append(f"{r['schedule']} (not applicable)")
        else:
            named.append(
                f"{r['schedule']} (first at k = {r['first_violation']}, worst observed/bound "
                f"{r['worst_ratio']:.2f})"
            )
    return (
        f"{text}: violated: {'; '.join(named)}. The bound is not valid here for "
        f"{'this schedule' if len(failed) == 1 else 'these schedules'}: its assumptions fail on "
        "this problem, or the mean over the seeds is too noisy to certify it (see the 95 % band)."
    )


def _index_before(k: list[int], step: int) -> int:
    """The curve point nearest the point after ``step`` updates."""
    return int(np.argmin(np.abs(np.asarray(k) - step)))


def _fall(row: dict[str, Any], key: str, start: int) -> float:
    """How many times ``row``'s curve ``key`` falls from just before update ``start`` (the point
    after ``start - 1`` updates) to its last point."""
    values = _curve(row["curve"][key])
    return float(values[_index_before(row["curve"]["k"], start - 1)] / values[-1])


def is_drop(wsd: float, cosine: float) -> bool:
    """A sudden cooldown drop: WSD's curve falls by more than ``DROP`` over its cooldown, and by
    more than cosine's over the same steps."""
    return wsd > DROP and wsd > cosine


def _drop_sentence(rows: list[dict[str, Any]], steps: int) -> str:
    by_name = {r["schedule"]: r for r in rows}
    wsd, cosine = by_name["wsd-1-sqrt"], by_name["cosine"]
    start = round((1 - COOLDOWN) * steps)
    measured = _fall(wsd, "mean", start), _fall(cosine, "mean", start)
    bound = _fall(wsd, "bound", start), _fall(cosine, "bound", start)
    text = (
        f"- Cooldown drop: over WSD (1-sqrt)'s cooldown (the last {COOLDOWN:.0%}) the measured "
        f"mean gap falls by {measured[0]:.2f}x and the bound by {bound[0]:.2f}x; cosine over the "
        f"same steps: measured {measured[1]:.2f}x, bound {bound[1]:.2f}x (a drop: more than "
        f"{DROP:g}x and more than cosine's)"
    )
    seen, predicted = is_drop(*measured), is_drop(*bound)
    if seen and predicted:
        size = bound[0] / measured[0]
        return (
            f"{text}: both drop, so the bound reproduces the sudden drop in shape; its size is "
            f"{size:.2f} times the measured one."
        )
    if predicted:
        return f"{text}: the bound drops but the measurement does not: no agreement here."
    if seen:
        return f"{text}: the measurement drops but the bound does not: no agreement here."
    return f"{text}: neither drops, so the sudden drop Schaipp et al. show is not reproduced here."


def _monotone_falling(values: list[float]) -> bool:
    return bool(np.all(np.diff(values) < 0))


def _where(best: float, fractions: list[float]) -> str:
    if best == fractions[-1]:
        return "the sweep's longest cooldown"
    if best == fractions[0]:
        return "the sweep's shortest cooldown"
    return "inside the sweep"


def _cooldown_sentences(cooldown: dict[str, Any]) -> list[str]:
    rows = cooldown["rows"]
    fractions = [r["fraction"] for r in rows]
    bound = [r["bound_final"] for r in rows]
    measured = [ranked_mean(r["measured_final"]) for r in rows]
    by_bound, by_measurement = cooldown["best_by_bound"], cooldown["best_by_measurement"]
    shape = []
    for name, values in (("the bound", bound), ("the measured mean gap", measured)):
        if _monotone_falling(values):
            shape.append(f"{name} falls at every longer cooldown")
        elif _monotone_falling(values[::-1]):
            shape.append(f"{name} rises at every longer cooldown")
        else:
            shape.append(f"{name} is not monotone in the cooldown")
    tuned_text = (
        f"- Cooldown length, re-tuned (WSD, linear; each fraction at its own γ*): the bound is "
        f"smallest at a cooldown fraction of {by_bound:g} ({_where(by_bound, fractions)}), the "
        f"measurement at {by_measurement:g} ({_where(by_measurement, fractions)}; 1 is linear "
        f"decay to zero); {shape[0]}, {shape[1]}; they "
        f"{'agree' if by_bound == by_measurement else 'disagree'}."
    )
    if _monotone_falling(bound):
        tuned_text += (
            " At the tuned rate a longer cooldown is never worse by the bound: this sweep has no "
            "optimal cooldown length inside it to find."
        )
    out = [tuned_text]
    fixed = cooldown.get("fixed")
    if not fixed:
        return out
    rates = fixed["rates"]
    gammas = ", ".join(f"{r['gamma']:.3g}" for r in rates)
    factors = ", ".join(f"{r['factor']:g}" for r in rates)
    best_bound = [r["best_by_bound"] for r in rates]
    best_measured = [r["best_by_measurement"] for r in rates]
    inside_bound = sum(_where(b, fractions) == "inside the sweep" for b in best_bound)
    inside_measured = sum(_where(b, fractions) == "inside the sweep" for b in best_measured)
    same = sum(b == m for b, m in zip(best_bound, best_measured))
    n = len(rates)

    def grows(values: list[float]) -> str:
        if all(a < b for a, b in itertools.pairwise(values)):
            return "grows with the rate"
        if all(a <= b for a, b in itertools.pairwise(values)):
            return "does not fall as the rate grows"
        return "does not grow with the rate"

    out.append(
        f"- Cooldown length at fixed base rates γ = {gammas} ({factors} times γ* of the "
        f"{fixed['reference_fraction']:.0%} cooldown; the authors' scripts/cooldown_length.py): "
        f"the bound is smallest at fractions {', '.join(f'{b:g}' for b in best_bound)} "
        f"(inside the sweep at {inside_bound} of {n} rates; its best fraction "
        f"{grows(best_bound)}), the measurement at {', '.join(f'{b:g}' for b in best_measured)} "
        f"(inside at {inside_measured} of {n}; it {grows(best_measured)}); the same fraction at "
        f"{same} of {n} rates."
        + (
            " The bound's optimal cooldown length lies inside the sweep at every fixed rate, as "
            "Schaipp et al.'s bound shows."
            if inside_bound == n
            else " The bound's optimum is not inside the sweep at every fixed rate."
        )
    )
    return out


def grid_end(lrs: list[float], finals: list[float]) -> str | None:
    """``"top"`` or ``"bottom"`` when the smallest of ``finals`` lies at that end of the grid
    ``lrs`` (``best_rate`` then returns the end point: the true best may lie beyond it)."""
    if len(lrs) < 2:
        return None
    i = int(np.argmin(finals))
    return "top" if i == len(lrs) - 1 else "bottom" if i == 0 else None


def _end_note(ends: dict[str, str | None], ratio_name: str) -> str:
    """Which best rates lie at an end of their grid, and what that leaves of the ratio
    (numerator: WSD, denominator: cosine)."""
    at_end = {name: end for name, end in ends.items() if end}
    if not at_end:
        return ""
    # WSD's true best beyond its top (cosine's beyond its bottom) makes the ratio larger
    direction = set()
    for name, end in at_end.items():
        direction.add((end == "top") == (name == "WSD"))
    named = " and ".join(f"{name}'s at the {end} end" for name, end in at_end.items())
    if len(direction) > 1:
        bound = "is not bounded either way"
    else:
        bound = "is only a lower bound" if direction.pop() else "is only an upper bound"
    return (
        f" Best rates at an end of their grid ({named}): the true best may lie beyond it, so "
        f"{ratio_name} {bound}."
    )


def _spacing(lrs: list[float]) -> str:
    ratios = np.asarray(lrs[1:]) / np.asarray(lrs[:-1])
    if len(ratios) == 0 or np.ptp(ratios) > 1e-9 * ratios.max():
        return "uneven spacing"
    ratio = float(ratios[0])
    for text, value in (("√2", math.sqrt(2)), ("2", 2.0)):
        if abs(ratio - value) < 1e-9 * value:
            return f"spacing {text}"
    return f"spacing {ratio:.3g}"


def _transfer_sentence(transfer: dict[str, Any]) -> str:
    cos, wsd = transfer["schedules"]["cosine"], transfer["schedules"]["wsd-1-sqrt"]
    cos_factor, wsd_factor = cos["best_lr"] / cos["gamma"], wsd["best_lr"] / wsd["gamma"]
    ratio_error = transfer["measured_ratio"] / transfer["predicted_ratio"]
    ends = {
        name: grid_end(
            [g["lr"] for g in e["grid"]], [ranked_mean(g["measured_final"]) for g in e["grid"]]
        )
        for name, e in (("cosine", cos), ("WSD", wsd))
    }
    return (
        f"- Base-rate transfer (convex): the bound predicts γ*_WSD / γ*_cosine = "
        f"{transfer['predicted_ratio']:.3f}; measured: {transfer['measured_ratio']:.3f} (one "
        f"grid for both, {_spacing([g['lr'] for g in cos['grid']])}, best rates from a parabola "
        f"in log-log), off by a factor {ratio_error:.2f}. The measured best rates are "
        f"{cos_factor:.2f} γ* (cosine) and {wsd_factor:.2f} γ* (WSD). WSD at cosine's best rate "
        f"times the predicted ratio ({transfer['transferred_lr']:.4g}) reaches "
        f"{format_mean_std(transfer['transferred_final'], '.4g')} vs "
        f"{transfer['wsd_best_final']:.4g} at the grid's best "
        f"({transfer['transferred_final']['mean'] / transfer['wsd_best_final']:.2f}x)."
        + _end_note(ends, "the measured ratio")
    )


def _mnist_sentence(mnist: dict[str, Any]) -> str:
    measured = mnist["measured_ratio"]
    # "within 10 %": the measured ratio differs from the predicted one by at most 10 % of it
    close = measured is not None and abs(measured / mnist["predicted_ratio"] - 1) <= 0.1
    ends = {}
    for name, key in (("cosine", "cosine"), ("WSD", "wsd-1-sqrt")):
        finite = [g for g in mnist["schedules"][key]["grid"] if not g["diverged"]]
        ends[name] = grid_end([g["lr"] for g in finite], [g["final"]["mean"] for g in finite])
    text = (
        f"- MNIST-1D MLP (non-convex, no D or G): best base rates cosine "
        f"{_g(mnist['schedules']['cosine']['best_lr'])}, WSD "
        f"{_g(mnist['schedules']['wsd-1-sqrt']['best_lr'])}: measured ratio {_g(measured)} vs "
        f"the bound's {mnist['predicted_ratio']:.3f} (shapes only): "
        + ("they agree within 10 %." if close else "they disagree.")
    )
    note = _end_note(ends, "the measured ratio")
    if note:
        note += " (A grid's top end here may be the largest rate that did not diverge.)"
    shape = _mnist_shape_sentence(mnist)
    return text + note + (" " + shape if shape else "")


def _mnist_shape_sentence(mnist: dict[str, Any]) -> str:
    drops, starts, firsts = {}, {}, {}
    for name, entry in mnist["schedules"].items():
        best = next((g for g in entry["grid"] if g["lr"] == entry["best_grid_lr"]), None)
        if best is None or best["curve"]["loss"] is None:
            continue
        loss = np.asarray(best["curve"]["loss"], dtype=float)
        k = np.asarray(best["curve"]["k"])
        start = int(np.argmin(np.abs(k - (1 - COOLDOWN) * mnist["steps"])))
        drops[name] = loss[start] / loss[-1]
        starts[name], firsts[name] = loss[start], loss[0]
    if len(drops) < 2:
        return ""
    text = (
        f"Over the last {COOLDOWN:.0%} of training (WSD's cooldown) the training loss at the "
        f"best grid rate falls by {drops['wsd-1-sqrt']:.2f}x with WSD and "
        f"{drops['cosine']:.2f}x with cosine"
    )
    if is_drop(drops["wsd-1-sqrt"], drops["cosine"]):
        return text + ": the cooldown drop the bound predicts appears on the network."
    level = (
        f"WSD's training loss is {starts['wsd-1-sqrt']:.3g} when its cooldown starts "
        f"({firsts['wsd-1-sqrt']:.3g} at step 0)"
    )
    if starts["wsd-1-sqrt"] < NEAR_ZERO * firsts["wsd-1-sqrt"]:
        return (
            f"{text}: no clear cooldown drop; {level}: close to 0 long before the cooldown, so "
            "there is little left for the cooldown to remove."
        )
    return (
        f"{text}: no clear cooldown drop, although {level}, not close to 0: the drop the bound "
        "predicts does not appear on this network."
    )


def _curve(values: list[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def _figure_main(results: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = {r["schedule"]: r for r in results["schedules"]["rows"]}
    fixed = results["cooldown"].get("fixed")
    figure, axes = plt.subplots(1, 5 if fixed else 4, figsize=(22.5 if fixed else 18, 4.2))
    ax = axes[0]
    for name in ("cosine", "wsd-1-sqrt"):
        curve = rows[name]["curve"]
        ax.plot(
            curve["k"],
            _curve(curve["lr"]),
            color=COLORS[name],
            label=f"{name}, γ* = {rows[name]['gamma']:.3g}",
        )
    ax.set_title("schedules at their optimal base rate γ*")
    ax.set_xlabel("step t")
    ax.set_ylabel("step size")
    ax.legend(fontsize="small")
    ax = axes[1]
    for name in ("cosine", "wsd-1-sqrt"):
        curve = rows[name]["curve"]
        k = np.asarray(curve["k"])
        ax.plot(k, _curve(curve["bound"]), "--", color=COLORS[name], label=f"{name}: bound")
        ax.plot(k, _curve(curve["mean"]), color=COLORS[name], label=f"{name}: measured mean")
        ax.fill_between(
            k, _curve(curve["lower"]), _curve(curve["upper"]), color=COLORS[name], alpha=0.2
        )
    ax.set_yscale("log")
    ax.set_title("convex (LAD): bound vs E f(x_k) − f*")
    ax.set_xlabel("k (updates made)")
    ax.legend(fontsize="small")
    ax = axes[2]
    mnist = results["mnist1d"]
    twin = ax.twinx()
    for name, entry in mnist["schedules"].items():
        best = next((g for g in entry["grid"] if g["lr"] == entry["best_grid_lr"]), None)
        if best is not None and best["curve"]["loss"] is not None:
            ax.plot(
                best["curve"]["k"],
                _curve(best["curve"]["loss"]),
                color=COLORS[name],
                label=f"{name}, lr {best['lr']:g}: train loss",
            )
        shape = entry["bound_shape"]
        twin.plot(
            shape["k"],
            _curve(shape["relative"]),
            ":",
            color=COLORS[name],
            label=f"{name}: bound / final bound",
        )
    ax.set_yscale("log")
    twin.set_yscale("log")
    ax.set_title("MNIST-1D MLP, SGD: loss (solid), bound shape (dotted)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    twin.set_ylabel("bound / its final value")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="x-small")
    ax = axes[3]
    cooldown = results["cooldown"]["rows"]
    fractions = [r["fraction"] for r in cooldown]
    bound = np.asarray([r["bound_final"] for r in cooldown])
    measured = np.asarray([ranked_mean(r["measured_final"]) for r in cooldown])
    ax.plot(fractions, bound / bound.min(), "o--", color="k", label="bound (÷ its min)")
    ax.plot(
        fractions,
        measured / measured.min(),
        "o-",
        color="tab:green",
        label="measured mean gap (÷ its min)",
    )
    ax.set_xscale("log")
    ax.set_title("WSD (linear): cooldown length, each at its γ*")
    ax.set_xlabel("cooldown fraction of training")
    ax.legend(fontsize="small")
    if fixed:
        ax = axes[4]
        blues = ["tab:cyan", "tab:blue", "navy", "black"]
        for rate, color in zip(fixed["rates"], itertools.cycle(blues)):
            fractions = [r["fraction"] for r in rate["rows"]]
            bound = np.asarray([r["bound_final"] for r in rate["rows"]])
            measured = np.asarray([ranked_mean(r["measured_final"]) for r in rate["rows"]])
            ax.plot(
                fractions,
                bound / bound.min(),
                "o--",
                color=color,
                label=f"γ = {rate['gamma']:.3g}: bound (÷ its min)",
            )
            ax.plot(
                fractions,
                measured / measured.min(),
                "s-",
                color=color,
                alpha=0.7,
                label=f"γ = {rate['gamma']:.3g}: measured (÷ its min)",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title("WSD (linear): cooldown length at fixed γ")
        ax.set_xlabel("cooldown fraction of training")
        ax.legend(fontsize="x-small")
    for axis in axes:
        axis.grid(True, alpha=0.3)
    return save_figure(figure, path)


def _figure_schedules(results: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = results["schedules"]["rows"]
    figure, axes = plt.subplots(2, 3, figsize=(14, 7), sharey=True)
    for ax, row in zip(axes.flat, rows):
        curve = row["curve"]
        k = np.asarray(curve["k"])
        color = COLORS[row["schedule"]]
        ax.plot(k, _curve(curve["bound"]), "--", color="k", label="bound")
        ax.plot(k, _curve(curve["mean"]), color=color, label="mean over seeds")
        ax.fill_between(
            k,
            _curve(curve["lower"]),
            _curve(curve["upper"]),
            color=color,
            alpha=0.25,
            label="95 % t-band",
        )
        ax.set_yscale("log")
        ax.set_title(
            f"{row['schedule']}: {'held' if row['held'] else 'violated'}, worst "
            f"{row['worst_ratio']:.2f}"
        )
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("k")
    axes[0][0].set_ylabel("f(x_k) − f*")
    axes[0][0].legend(fontsize="small")
    return save_figure(figure, path)


def _figure_transfer(results: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    transfer, mnist = results["transfer"], results["mnist1d"]
    for name, entry in transfer["schedules"].items():
        lrs = [g["lr"] for g in entry["grid"]]
        axes[0].plot(
            lrs,
            [ranked_mean(g["measured_final"]) for g in entry["grid"]],
            "o-",
            color=COLORS[name],
            label=f"{name}: measured",
        )
        axes[0].plot(
            lrs,
            [g["bound_final"] for g in entry["grid"]],
            "s--",
            color=COLORS[name],
            alpha=0.6,
            label=f"{name}: bound",
        )
        axes[0].axvline(entry["gamma"], color=COLORS[name], ls=":")
    axes[0].set_title(
        f"convex: final gap vs base rate (γ* dotted)\npredicted ratio "
        f"{transfer['predicted_ratio']:.2f}"
    )
    for name, entry in mnist["schedules"].items():
        finite = [g for g in entry["grid"] if not g["diverged"]]
        axes[1].plot(
            [g["lr"] for g in finite],
            [g["final"]["mean"] for g in finite],
            "o-",
            color=COLORS[name],
            label=name,
        )
    axes[1].set_title(
        f"MNIST-1D MLP: final train loss vs base rate\npredicted ratio "
        f"{mnist['predicted_ratio']:.2f}"
    )
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("base learning rate")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return save_figure(figure, path)


def report(results: dict[str, Any], figures_dir: pathlib.Path) -> tuple[str, list[pathlib.Path]]:
    """Markdown (tables, findings) and three figures from ``results`` alone: the README figure
    ``schedule-theory.png`` (schedules at γ*, convex bound vs measured, MNIST-1D loss vs bound
    shape, the cooldown sweep at each length's γ* and at the fixed base rates),
    ``schedule-certificates.png`` (the six certificates) and ``lr-transfer.png``."""
    figures_dir = pathlib.Path(figures_dir)
    seeds = len(results["setup"]["seeds"])
    setup = results["setup"]
    figures = [
        _figure_main(results, figures_dir / "schedule-theory.png"),
        _figure_schedules(results, figures_dir / "schedule-certificates.png"),
        _figure_transfer(results, figures_dir / "lr-transfer.png"),
    ]
    markdown = "\n".join(
        [
            f"Convex problem: {setup['convex_problem']}, D = ||x0 − x*|| = {setup['D']:.4g}, "
            f"G = {setup['G']:.4g}, {setup['steps']} SGD updates, one row per update, "
            f"{seeds} oracle seeds; cooldowns are the last {setup['cooldown']:.0%}.\n",
            _schedules_table(results["schedules"], seeds),
            "Cooldown-length sweep (WSD, linear cooldown), each fraction at its own γ*:\n",
            _cooldown_table(results["cooldown"]),
            *(
                [
                    "The same sweep at fixed base rates (multiples of γ* of the "
                    f"{results['cooldown']['fixed']['reference_fraction']:.0%} cooldown, "
                    f"{results['cooldown']['fixed']['reference_gamma']:.4g}; the smallest of "
                    "each column in bold):\n",
                    _fixed_cooldown_table(results["cooldown"]),
                ]
                if results["cooldown"].get("fixed")
                else []
            ),
            "Base-rate grids:\n",
            _transfer_text(results["transfer"], results["mnist1d"]),
            "Findings:\n",
            _findings(results),
        ]
    )
    return markdown, figures
