"""Theory made visible: gradient descent, heavy ball and Nesterov on ill-conditioned quadratics,
each run certified against its textbook bound.

Setup. For every condition number κ in (10, 100, 1000) and every seed, the quadratic
f(x) = ½ (x − x*)ᵀ A (x − x*) with A = Q diag(λ) Qᵀ, λ spaced linearly from mu = L/κ to L = 1 and
Q Haar-random (``theory.Quadratic.from_condition_number``; the seed draws Q, x* and x0). On it
``optim.SGD`` runs

* gradient descent (momentum 0) with η = 0.5/L and 1/L, certified by ``theory.
  gd_strongly_convex_bound`` (‖x_k − x*‖² ≤ (1 − η mu)^k ‖x0 − x*‖², Garrigos & Gower 2023,
  Thm 3.6, which needs η ≤ 1/L);
* gradient descent with η = 1.9/L: between 1/L and the stability edge 2/L, certified by
  ``theory.gd_long_step_bound`` (f(x_k) − f* ≤ 2Δ0 r0² / (2 r0² + k η (2 − Lη) Δ0), Nesterov
  2004 Thm 2.1.14, an O(1/k) bound for convex f), its rate compared with the exact quadratic
  rate ρ(I − ηA) = max(|1 − η mu|, |1 − η L|) (per step of ‖x_k − x*‖);
* gradient descent with η = 2.1/L, certified to diverge by the lower bound ``theory.
  gd_divergence_bound`` (‖x_k − x*‖ ≥ |1 − ηL|^k |⟨v_max, x0 − x*⟩|, Nesterov 2004 §1.2.3); it
  runs only ``DIVERGENCE_STEPS`` updates (its gap grows by 1.21 per step and would overflow
  float64 after about 3700);
* heavy ball with Polyak's optimal α = 4/(√L + √mu)², β = ((√κ − 1)/(√κ + 1))², certified by
  ``theory.heavy_ball_bound`` (Polyak 1964/1987, with an explicit constant, linear factor in k);
* Nesterov's method (``nesterov=True``) with step 1/L and constant momentum (√κ − 1)/(√κ + 1),
  certified by ``theory.nesterov_strongly_convex_bound`` (Nesterov 2004 §2.2.1, scheme III,
  Thm 2.2.3), measured at the gradient-step sequence x_k (``theory.sgd_nesterov_gradient_point``).

Conventions. k (or t) counts updates already made: k = 0 is x0. A certificate (``theory.certify``)
compares its bound's own quantity (‖x_k − x*‖², ‖x_k − x*‖ or f(x_k) − f*) with the bound at
every step k = 0..steps, with theory's float64 noise floor as absolute tolerance.

Outputs, all in units of the gap f(x_k) − f* so that methods can be compared on one axis:

* ``bound at final step``: the gap bound implied by the certified one, using
  mu/2 ‖x − x*‖² ≤ f(x) − f* ≤ L/2 ‖x − x*‖² on a quadratic: an upper bound B on ‖x − x*‖ gives
  f − f* ≤ L/2 B² (on ‖x − x*‖²: L/2 B); a lower bound gives f − f* ≥ mu/2 B². It holds whenever
  the certificate holds.
* ``fitted rate``: ``theory.fit_rate`` of the observed gap (exp of the least-squares slope of
  log(f(x_k) − f*) over the second half of the run above theory's noise floor), i.e. the
  empirical per-step factor; ``theoretical rate``: the bound's rate in gap units (squared for
  bounds on ‖x − x*‖), or ρ(I − ηA)² for η = 1.9/L.
* ``rate_consistent``: theory's ``Certificate.rate_consistent`` on the certified quantity (fitted
  ≤ predicted × exp(p/a) for a bound with a k^p factor, ≥ predicted for the lower bound), with a
  relative slack ``RATE_SLACK``; for η = 1.9/L, fitted gap rate ≤ ρ² (1 + slack).

With several seeds: a certificate "held" only if it held for every seed, the first violation is
the earliest over seeds, and gaps, bounds and rates are means over seeds; the findings' growth
of the divergent run's gap ("at least X times the initial one") is the smallest over κ and seeds
of each seed's own final/initial gap (``divergence_growth``). Curves for the figure are those
of the first seed, subsampled to at most ``CURVE_POINTS`` points (headline numbers use the full
curves).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import optim
import theory
from runs.figures import save_figure

DESCRIPTION = (
    "GD at 0.5/L, 1/L, 1.9/L, 2.1/L, heavy ball and Nesterov on quadratics with kappa = 10, "
    "100, 1000, each certified against its bound from theory"
)
RUNTIME = (
    "about 1 min on 2 CPU cores, end to end (52 s of it computing; --quick: about 2.5 s, "
    "6.5 s end to end)"
)
REFERENCE = (
    "Bounds, so the published numbers are the rates: gradient descent with η ≤ 1/L contracts "
    "‖x_k − x*‖² by (1 − η mu) per step (Garrigos & Gower 2023, Thm 3.6) and diverges on a "
    "quadratic for η > 2/L, its top mode growing by |1 − ηL| per step (Nesterov 2004, §1.2.3); "
    "Polyak's heavy ball (1964; Polyak 1987, §3.2.1) converges at q = (√κ − 1)/(√κ + 1) per step "
    "of ‖x_k − x*‖ (up to a factor linear in k), and Nesterov's constant-momentum method "
    "satisfies f(x_k) − f* ≤ (1 − 1/√κ)^k (f(x0) − f* + mu/2 ‖x0 − x*‖²) (Nesterov 2004, §2.2.1, "
    "Thm 2.2.3). For 1/L < η < 2/L Nesterov (2004) Thm 2.1.14 gives only an O(1/k) gap bound, "
    "certified here; η = 1.9/L's rate is compared with the exact quadratic rate ρ(I − ηA)."
)
SEEDS = 5
QUICK_SEEDS = 1

KAPPAS: tuple[float, ...] = (10.0, 100.0, 1000.0)
DIM, QUICK_DIM = 50, 10
# Steps per kappa: STEPS_PER_KAPPA x kappa, capped (GD at 1/L needs about 30 kappa steps to reach
# the float64 floor; kappa = 1000 shows its linear rate well before that).
STEPS_PER_KAPPA = 30
MAX_STEPS, QUICK_MAX_STEPS = 4000, 600
DIVERGENCE_STEPS = 300
CURVE_POINTS = 2000
RATE_SLACK = 1e-6
L_SMOOTH = 1.0


@dataclass(frozen=True)
class Method:
    """One optimizer setting of the study: its key, its label and its plot colour."""

    key: str
    label: str
    color: str


METHODS: tuple[Method, ...] = (
    Method("gd_0.5", "GD η = 0.5/L", "tab:blue"),
    Method("gd_1", "GD η = 1/L", "tab:orange"),
    Method("gd_1.9", "GD η = 1.9/L", "tab:green"),
    Method("gd_2.1", "GD η = 2.1/L", "tab:red"),
    Method("heavy_ball", "heavy ball (Polyak)", "tab:purple"),
    Method("nesterov", "Nesterov", "tab:brown"),
)

# The power to which a bound's quantity is raised to be in units of ||x - x*||^2 (hence of the
# gap, up to the factor L/2 or mu/2): converts its values and its rate to gap units.
_GAP_EXPONENT = {"gap": None, "distance": 2, "distance_sq": 1}


def steps_for(kappa: float, quick: bool) -> int:
    """Updates run at condition number ``kappa``: min(STEPS_PER_KAPPA κ, cap), cap 4000 (600
    with ``quick``)."""
    return int(min(STEPS_PER_KAPPA * kappa, QUICK_MAX_STEPS if quick else MAX_STEPS))


def method_setup(key: str, problem: theory.Quadratic) -> tuple[theory.Bound, dict]:
    """The bound certifying method ``key`` on ``problem`` and the ``optim.SGD``
    hyper-parameters (``lr``, ``momentum``, ``nesterov``), taken from the bound so that what is
    run is what is certified."""
    L = problem.L
    if key == "gd_0.5":
        bound = theory.gd_strongly_convex_bound(problem, 0.5 / L)
    elif key == "gd_1":
        bound = theory.gd_strongly_convex_bound(problem, 1.0 / L)
    elif key == "gd_1.9":
        bound = theory.gd_long_step_bound(problem, 1.9 / L)
    elif key == "gd_2.1":
        bound = theory.gd_divergence_bound(problem, 2.1 / L)
    elif key == "heavy_ball":
        bound = theory.heavy_ball_bound(problem)
    elif key == "nesterov":
        bound = theory.nesterov_strongly_convex_bound(problem)
    else:
        raise ValueError(f"key must be one of {[m.key for m in METHODS]}, got key={key!r}")
    hyperparameters = {"momentum": 0.0, "nesterov": False, **bound.hyperparameters}
    return bound, hyperparameters


def gd_quadratic_rate(lr: float, problem: theory.Quadratic) -> float:
    """ρ(I − ηA) = max(|1 − η mu|, |1 − η L|): the exact asymptotic factor per step of
    ‖x_k − x*‖ for gradient descent on a quadratic with spectrum in [mu, L], attained when
    x0 − x* has a component on the eigenvector of the maximising eigenvalue
    (x_k − x* = (I − ηA)^k (x0 − x*); Nesterov 2004, §1.2.3)."""
    return max(abs(1 - lr * problem.mu), abs(1 - lr * problem.L))


def implied_gap_bound(bound: theory.Bound, problem: theory.Problem, ks: Any) -> np.ndarray:
    """The bound on f(x_k) − f* that ``bound`` implies on a quadratic, at steps ``ks``:
    mu/2 ‖x − x*‖² ≤ f(x) − f* ≤ L/2 ‖x − x*‖², so an upper bound on ‖x − x*‖ (or its square)
    becomes L/2 B² (L/2 B) and a lower one mu/2 B² (mu/2 B); a gap bound is returned as is."""
    values = bound(ks)
    exponent = _GAP_EXPONENT[bound.quantity]
    if exponent is None:
        return values
    scale = problem.L / 2 if bound.direction == "upper" else problem.mu / 2
    return scale * values**exponent


def gap_rate(bound: theory.Bound) -> float | None:
    """The bound's per-step rate in gap units: squared for a bound on ‖x − x*‖."""
    if bound.rate is None:
        return None
    return bound.rate ** (_GAP_EXPONENT[bound.quantity] or 1)


def _subsample(length: int) -> np.ndarray:
    """At most CURVE_POINTS indices of 0..length-1, both ends included."""
    if length <= CURVE_POINTS:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, CURVE_POINTS).round().astype(int))


def _run_method(
    method: Method, problem: theory.Quadratic, steps: int, keep_curve: bool
) -> dict[str, Any]:
    """Runs one method on one problem; the per-seed record (and the curve when asked)."""
    bound, hyperparameters = method_setup(method.key, problem)
    if method.key == "gd_2.1":
        steps = min(steps, DIVERGENCE_STEPS)

    def make_optimizer(params):
        return optim.SGD(params, **hyperparameters)

    gap_floor = theory.numerical_floor(problem, "gap")
    if bound is None:
        trajectory = theory.run(problem, make_optimizer, steps)
        fitted = theory.fit_rate(trajectory.gap, gap_floor)
        theoretical = gd_quadratic_rate(hyperparameters["lr"], problem) ** 2
        held, first_violation, gap_bound = None, None, None
        consistent = bool(fitted <= theoretical * (1 + RATE_SLACK))
    else:
        certificate = theory.certify(problem, make_optimizer, steps, bound)
        trajectory = certificate.trajectory
        fitted = theory.fit_rate(trajectory.gap, gap_floor)
        held, first_violation = certificate.held, certificate.first_violation
        gap_bound = implied_gap_bound(bound, problem, np.arange(steps + 1))
        if bound.rate is None:  # a sublinear bound: compare with the exact quadratic rate
            theoretical = gd_quadratic_rate(hyperparameters["lr"], problem) ** 2
            consistent = bool(fitted <= theoretical * (1 + RATE_SLACK))
        else:
            theoretical = gap_rate(bound)
            consistent = bool(certificate.rate_consistent(slack=RATE_SLACK))
    gap = trajectory.gap
    record: dict[str, Any] = {
        "steps": steps,
        "lr_times_L": float(hyperparameters["lr"]) * problem.L,
        "momentum": float(hyperparameters["momentum"]),
        "nesterov": bool(hyperparameters["nesterov"]),
        "held": held,
        "first_violation": first_violation,
        "initial_gap": float(gap[0]),
        "final_gap": float(gap[-1]),
        "final_gap_bound": None if gap_bound is None else float(gap_bound[-1]),
        "fitted_rate": float(fitted),
        "theoretical_rate": float(theoretical),
        "rate_consistent": consistent,
        "gap_floor": gap_floor,
    }
    if bound is not None:
        record["bound"] = {
            "name": bound.name,
            "quantity": bound.quantity,
            "direction": bound.direction,
            "formula": bound.formula,
            "source": bound.source,
        }
    if keep_curve:
        index = _subsample(gap.size)
        record["curve"] = {
            "k": index.tolist(),
            "gap": [float(v) for v in gap[index]],
            "gap_bound": None if gap_bound is None else [float(v) for v in gap_bound[index]],
        }
    return record


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def _aggregate(method: Method, kappa: float, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the per-seed records: held for every seed, earliest violation, means."""
    first = records[0]
    certified = first["held"] is not None
    violations = [r["first_violation"] for r in records if r["first_violation"] is not None]
    row: dict[str, Any] = {
        "kappa": kappa,
        "method": method.key,
        "label": method.label,
        "color": method.color,
        "steps": first["steps"],
        "lr_times_L": first["lr_times_L"],
        "momentum": first["momentum"],
        "nesterov": first["nesterov"],
        "certified": certified,
        "held": all(r["held"] for r in records) if certified else None,
        "first_violation": min(violations) if violations else None,
        "initial_gap": _mean([r["initial_gap"] for r in records]),
        "final_gap": _mean([r["final_gap"] for r in records]),
        "final_gap_bound": (_mean([r["final_gap_bound"] for r in records]) if certified else None),
        "fitted_rate": _mean([r["fitted_rate"] for r in records]),
        "theoretical_rate": first["theoretical_rate"],
        "theoretical_rate_kind": "exact ρ(I − ηA)²" if method.key == "gd_1.9" else "bound",
        "rate_consistent": all(r["rate_consistent"] for r in records),
        "bound": first.get("bound"),
        "per_seed": [{k: v for k, v in r.items() if k not in ("curve", "bound")} for r in records],
    }
    return row


def curves(results: dict[str, Any]) -> Iterator[tuple[str, str, list[int], list[float]]]:
    """TensorBoard's curves (``runs.study``): per κ and method, the first seed's gap
    f(x_k) - f* and, when certified, its bound, against the update count k."""
    for panel in results["panels"]:
        for curve in panel["curves"]:
            run = f"kappa{panel['kappa']:g}/{curve['method']}"
            yield run, "gap", curve["k"], curve["gap"]
            if curve["gap_bound"] is not None:
                yield run, "gap_bound", curve["k"], curve["gap_bound"]


def compute(*, quick: bool, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Runs every (κ, method, seed); returns the table rows and the first seed's curves (see
    the module docstring for every field). Deterministic for given seeds."""
    dim = QUICK_DIM if quick else DIM
    rows: list[dict[str, Any]] = []
    panels: list[dict[str, Any]] = []
    for kappa in KAPPAS:
        steps = steps_for(kappa, quick)
        problems = [
            theory.Quadratic.from_condition_number(dim, kappa, L=L_SMOOTH, seed=seed)
            for seed in seeds
        ]
        curves = []
        for method in METHODS:
            records = [
                _run_method(method, problem, steps, keep_curve=index == 0)
                for index, problem in enumerate(problems)
            ]
            rows.append(_aggregate(method, kappa, records))
            curves.append({"method": method.key, **records[0]["curve"]})
        panels.append(
            {
                "kappa": kappa,
                "seed": seeds[0],
                "gap_floor": theory.numerical_floor(problems[0], "gap"),
                "curves": curves,
            }
        )
    return {
        "setup": {
            "dim": dim,
            "L": L_SMOOTH,
            "spacing": "linear",
            "kappas": list(KAPPAS),
            "steps": {str(int(kappa)): steps_for(kappa, quick) for kappa in KAPPAS},
            "divergence_steps": DIVERGENCE_STEPS,
            "seeds": list(seeds),
            "quick": quick,
            "rate_slack": RATE_SLACK,
        },
        "rows": rows,
        "panels": panels,
    }


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if value == 0 or (1e-3 <= abs(value) < 1e4):
        return f"{value:.{digits}g}"
    return f"{value:.{digits - 1}e}"


def _rate(value: float) -> str:
    """A per-step factor with enough digits to tell 0.9990 from 0.9995."""
    return f"{value:.5f}" if math.isfinite(value) else str(value)


def _certificate_cell(row: dict[str, Any]) -> str:
    if not row["certified"]:
        return "none in theory"
    if row["held"]:
        return "held"
    return f"violated at k = {row['first_violation']}"


def _table(rows: list[dict[str, Any]], seeds: int, gap_floor: float) -> str:
    header = (
        "| κ | method | step (× 1/L) | momentum | certificate | observed final gap | "
        "bound at final step | fitted rate | theoretical rate |\n"
        "|---:|---|---:|---:|---|---:|---:|---:|---:|\n"
    )
    lines = []
    for row in rows:
        relation = ""
        if row["bound"] is not None:
            relation = "≤ " if row["bound"]["direction"] == "upper" else "≥ "
        exact = row["theoretical_rate_kind"] != "bound"
        theoretical = _rate(row["theoretical_rate"]) + (" *" if exact else "")
        momentum = f"{row['momentum']:.4g}" + (" (Nesterov)" if row["nesterov"] else "")
        lines.append(
            f"| {row['kappa']:g} | {row['label']} | {row['lr_times_L']:.4g} | {momentum} | "
            f"{_certificate_cell(row)} | {_number(row['final_gap'])} | "
            f"{relation}{_number(row['final_gap_bound'])} | {_rate(row['fitted_rate'])} | "
            f"{theoretical} |"
        )
    seed_note = f"mean over {seeds} seeds" if seeds > 1 else "1 seed"
    note = (
        f"\nGaps are f(x_k) − f* after the last step ({seed_note}); the bound column is the gap "
        "bound implied by the certified one (mu/2‖x − x*‖² ≤ f − f* ≤ L/2‖x − x*‖²); rates are "
        "per-step factors of the gap (fitted: `theory.fit_rate`; theoretical: the bound's rate, "
        "squared for bounds on ‖x − x*‖; * exact ρ(I − ηA)²: the certified "
        "gd_long_step_bound is O(1/k) there; gd_strongly_convex_tight_bound's linear rate covers "
        "η ≤ 2/(mu + L), so 1.9/L from κ = 19 on). A certificate holds only if it held at every "
        "step for every seed. "
        f"Gaps below theory's float64 noise floor (about {gap_floor:.0e} here) are rounding "
        "(0: x_k equals x* to the last bit); rates are fitted above it.\n"
    )
    return header + "\n".join(lines) + "\n" + note


def _bounds_list(rows: list[dict[str, Any]]) -> str:
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["bound"] is not None:
            seen.setdefault(row["bound"]["name"], row["bound"])
    items = [
        f"- `{b['name']}` ({b['direction']} bound): {b['formula']} ({b['source']})"
        for b in seen.values()
    ]
    return "Certificates (from `theory.bounds`):\n\n" + "\n".join(items) + "\n"


def divergence_growth(rows: list[dict[str, Any]]) -> float:
    """The smallest growth of the gap, ``final_gap / initial_gap``, over the per-seed records
    (``per_seed``) of ``rows``: a lower bound on every seed's own growth (a ratio of the means
    over seeds is not one)."""
    return min(s["final_gap"] / s["initial_gap"] for r in rows for s in r["per_seed"])


def _findings(results: dict[str, Any]) -> str:
    rows = results["rows"]
    certified = [r for r in rows if r["certified"]]
    failed = [r for r in certified if not r["held"]]
    sentences = []
    if failed:
        names = ", ".join(
            f"{r['label']} at κ = {r['kappa']:g} (k = {r['first_violation']})" for r in failed
        )
        sentences.append(
            f"{len(certified) - len(failed)} of {len(certified)} certificates held; violated: "
            f"{names}."
        )
    else:
        sentences.append(f"All {len(certified)} certificates held at every step for every seed.")
    divergent = [r for r in rows if r["method"] == "gd_2.1"]
    if divergent:
        growth = divergence_growth(divergent)
        fitted = ", ".join(_rate(r["fitted_rate"]) for r in divergent)
        sentences.append(
            f"GD at η = 2.1/L diverges at every κ: after {divergent[0]['steps']} steps its gap "
            f"is at least {_number(growth)} times the initial one in every seed (fitted factors "
            f"{fitted} per step vs |1 − 2.1|² = {_rate(divergent[0]['theoretical_rate'])}), "
            "certified by the lower bound."
        )
    hardest = max(r["kappa"] for r in rows)
    at_hardest = {r["method"]: r for r in rows if r["kappa"] == hardest}
    listed = [at_hardest[m.key] for m in METHODS if m.key in at_hardest and m.key != "gd_2.1"]
    if listed:
        gaps = ", ".join(f"{r['label']} {_number(r['final_gap'])}" for r in listed)
        sentences.append(
            f"At κ = {hardest:g} after {listed[0]['steps']} steps the gaps are: {gaps}."
        )
    gd = at_hardest.get("gd_1")
    if gd is not None and 0 < gd["fitted_rate"] < 1:
        ratio = math.log(gd["fitted_rate"]) / math.log(gd["theoretical_rate"])
        sentences.append(
            f"The GD bound is on ‖x − x*‖² with factor 1 − η mu; on a quadratic the gap decays "
            f"like (1 − η mu)^(2k): at κ = {hardest:g}, η = 1/L the fitted log-rate is "
            f"{ratio:.2f} times the bound's."
        )
    inconsistent = [r for r in rows if not r["rate_consistent"]]
    if inconsistent:
        names = ", ".join(f"{r['label']} at κ = {r['kappa']:g}" for r in inconsistent)
        sentences.append(f"Fitted rates beyond the theoretical ones: {names}.")
    else:
        sentences.append(
            "Every fitted rate is consistent with its theoretical rate (at or below it, allowing "
            "heavy ball's factor linear in k; at or above it for the divergence)."
        )
    return " ".join(sentences) + "\n"


# The figure's y-axis ends this factor above the largest initial gap: the diverging run leaves
# the panel through the top (its final gap is written beside it) instead of squeezing the rest.
_HEADROOM = 1e6


def _figure(results: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
    """One panel per κ: log-scale gap against k, observed solid, implied bound dashed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = {r["method"]: (r["label"], r["color"]) for r in results["rows"]}
    panels = results["panels"]
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        low = panel["gap_floor"] / 10
        top = _HEADROOM * max(curve["gap"][0] for curve in panel["curves"])
        for curve in panel["curves"]:
            label, color = labels[curve["method"]]
            k = np.asarray(curve["k"])
            gap = np.asarray(curve["gap"])
            ax.semilogy(k, np.where(gap > 0, gap, np.nan), "-", color=color, lw=1.4, label=label)
            if curve["gap_bound"] is not None:
                bound = np.asarray(curve["gap_bound"])
                ax.semilogy(k, np.where(bound > 0, bound, np.nan), "--", color=color, lw=1.0)
            if gap[-1] > top:
                ax.annotate(
                    f"{label}: {gap[-1]:.1e} at k = {k[-1]}",
                    xy=(0.98, 0.95),
                    xycoords="axes fraction",
                    ha="right",
                    va="top",
                    fontsize="x-small",
                    color=color,
                )
        ax.set_ylim(low, top)
        ax.set_title(f"κ = {panel['kappa']:g} (seed {panel['seed']})")
        ax.set_xlabel("k (updates made)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("f(x_k) − f*")
    handles, names = axes[0][0].get_legend_handles_labels()
    handles += [
        matplotlib.lines.Line2D([], [], color="k", lw=1.4),
        matplotlib.lines.Line2D([], [], color="k", lw=1.0, ls="--"),
    ]
    names += ["observed", "bound (implied on the gap)"]
    figure.legend(handles, names, loc="lower center", ncol=len(names), fontsize="small")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return save_figure(figure, path, layout=False)


def report(results: dict[str, Any], figures_dir: pathlib.Path) -> tuple[str, list[pathlib.Path]]:
    """Markdown (the table, the certificates, findings computed from ``results``) and the
    figure ``quadratic.png`` (one panel per κ, log-scale gap against k, observed solid, bound
    dashed in the same colour), from ``results`` alone."""
    figures_dir = pathlib.Path(figures_dir)
    figure = _figure(results, figures_dir / "quadratic.png")
    seeds = len(results["setup"]["seeds"])
    markdown = "\n".join(
        [
            _table(results["rows"], seeds, max(p["gap_floor"] for p in results["panels"])),
            _bounds_list(results["rows"]),
            _findings(results),
        ]
    )
    return markdown, [figure]
