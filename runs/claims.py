"""A reference's findings, checked on the runs: ``[report] claims``.

A comparison that reproduces a paper or a textbook chapter states what the source found; each
claim here is checked against the runs' numbers and shown with them, so a table says by itself
which findings carried over and by how much. Each claim is a table with a ``text``, a
``metric`` (one of :data:`runs.results.METRIC_LABELS`) and one kind. Below, ``m`` is a variant's
mean ``metric`` curve over its seeds (aligned on evaluation steps, ``runs.results.series_band``),
``m_1 .. m_n`` its ``n`` evaluations (``m_1`` the one before any update), and "better" means
higher for an accuracy, lower for a loss. A kind that reads two metrics' curves together
(``rises``, ``smaller_gap``, ``gap_widens``) reads them at the evaluation steps both have: a
mean curve has no value at a step where no finished run has a finite one, so ``n`` counts the
steps where both curves do.

- ``{lower = "a", than = "b"}``: ``a``'s final ``m_n`` is lower than ``b``'s (``higher = "a"``:
  higher).
- ``{rises = "a"}``: ``a`` overfits: its ``m`` ends worse than its best value ``m_j`` while its
  mean training loss ends below its value at that evaluation ``j``.
- ``{smoothest = "a"}``: ``a``'s curve moves against the direction of improvement the least of
  all variants: its roughness ``R = sum_k max(0, m_{k+1} - m_k)`` (``m_k - m_{k+1}`` for an
  accuracy) is smaller than every other variant's.
- ``{smoother = "a", than = "b"}``: ``R(a) < R(b)``.
- ``{smaller_gap = "a", than = "b"}`` ("less overfitting"): ``a``'s final generalisation gap is
  smaller than ``b``'s. The gap ``G`` is the training counterpart against the test metric,
  ``G = train_accuracy - test_accuracy`` (``metric = "test_accuracy"``) or ``G = test_loss -
  train_loss`` (``metric = "test_loss"``), each the mean over seeds; these two metrics only.
- ``{gap_widens = "a"}`` ("training keeps improving while the test metric stalls"): over the
  second half of the evaluations, from the middle one ``c = floor((n + 1) / 2)`` to ``n``, the
  training counterpart improves (``T_n`` better than ``T_c``) and the gap grows, ``G_n > G_c``
  (the training metric improved by more than the test metric); test metrics only, as above.
- ``{better_early = "a", than = "b", first = k}`` ("converges better initially"): the mean of
  ``m`` over the first ``k`` evaluations after the start (``m_2 .. m_{k+1}``; the evaluation
  before any update is left out) is better for ``a`` than for ``b``. Both variants must have
  those ``k`` evaluations, at the same steps.

Diverged runs (the rule for every kind). Means are over a variant's finished runs, but a claim
never holds on survivors alone: a claim about a variant (every variant it names: ``a``, and
``b`` for the pairwise kinds) any of whose runs diverged (status not ``finished``, or a final
value of a metric the claim reads that is not finite) does not hold, and its numbers name the
diverged seeds ("multistep: seed 2 diverged (2 of 3 runs finished)") beside the means over the
finished runs. For ``smoothest``, another variant with a diverged run has ``R = inf``: its curve
left the finite numbers, so it is rougher than any variant whose runs all finished.

Ties. Two values that differ by no more than :data:`TIE_RTOL` (``1e-12``) times the largest
magnitude among them and the curves they come from are equal: the difference is rounding, not a
finding. Every comparison above is strict, so a tie does not hold (``smoothest``: a variant tied
with ``a`` at the smallest roughness makes the claim a tie). The table says which ("**no**
(tie)", "**no** (diverged)"), and nothing depends on the order of the variants: the numbers
list them by value, then by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from runs.results import METRIC_LABELS, eval_series, group_by_variant, series_band

# kind -> the key naming its second variant (None: one variant)
KINDS = {
    "lower": "than",
    "higher": "than",
    "rises": None,
    "smoothest": None,
    "smoother": "than",
    "smaller_gap": "than",
    "gap_widens": None,
    "better_early": "than",
}
EXTRA_KEYS = {"better_early": ("first",)}  # a kind's keys besides text, metric and variants
GAP_KINDS = ("smaller_gap", "gap_widens")
GAP_METRICS = {"test_accuracy": "train_accuracy", "test_loss": "train_loss"}
TIE_RTOL = 1e-12

ALLOWED = (
    'a list of {text = "...", metric = "test_loss", and one of lower = "a", than = "b" / '
    'higher = "a", than = "b" / rises = "a" / smoothest = "a" / smoother = "a", than = "b" / '
    'smaller_gap = "a", than = "b" / gap_widens = "a" / better_early = "a", than = "b", '
    "first = k}; metric one of "
    + ", ".join(METRIC_LABELS)
    + " (smaller_gap, gap_widens: "
    + " or ".join(GAP_METRICS)
    + "); runs.claims defines each"
)


def claim_problem(value: Any) -> str | None:
    """None when ``value`` is a list of well-formed claims, else what is allowed (and, for a
    malformed claim, which one and what is wrong with it)."""
    if not isinstance(value, list | tuple) or not value:
        return ALLOWED
    for index, claim in enumerate(value):
        if problem := _claim_problem(claim):
            return f"{ALLOWED}; claims[{index}]: {problem}"
    return None


def _claim_problem(claim: Any) -> str | None:
    if not isinstance(claim, dict):
        return "not a table"
    if not isinstance(claim.get("text"), str):
        return "needs text, a string"
    kinds = [k for k in KINDS if k in claim]
    if len(kinds) != 1:
        found = f" (has {', '.join(kinds)})" if kinds else ""
        return f"needs exactly one of {', '.join(KINDS)}{found}"
    kind = kinds[0]
    partner = KINDS[kind]
    keys = {"text", "metric", kind, *([partner] if partner else []), *EXTRA_KEYS.get(kind, ())}
    if missing := sorted(keys - set(claim)):
        return f"{kind} needs {', '.join(missing)}"
    if unknown := sorted(set(claim) - keys):
        return f"{kind} takes no {', '.join(unknown)}; its keys: {', '.join(sorted(keys))}"
    if claim["metric"] not in METRIC_LABELS:
        return f"metric must be one of {', '.join(METRIC_LABELS)}"
    if kind in GAP_KINDS and claim["metric"] not in GAP_METRICS:
        return f"{kind} compares a test metric with its training counterpart: metric " + (
            " or ".join(GAP_METRICS)
        )
    names = [claim[kind], *([claim[partner]] if partner else [])]
    if not all(isinstance(n, str) and n for n in names):
        return "variant names must be non-empty strings"
    if partner and claim[kind] == claim[partner]:
        return f"{partner} must name another variant than {kind}"
    first = claim.get("first", 1)
    if isinstance(first, bool) or not isinstance(first, int) or first < 1:
        return "first must be a positive integer (a number of evaluations)"
    return None


def claimed_variants(claim: Mapping[str, Any]) -> list[str]:
    """The variant names a claim refers to."""
    return [claim[k] for k in (*KINDS, "than") if k in claim]


def roughness(curve: Sequence[float] | np.ndarray, metric: str) -> float:
    """``sum_k max(0, m_{k+1} - m_k)``: how far a curve moves the wrong way (accuracies: down)."""
    steps = np.diff(np.asarray(curve, dtype=float))
    return float(np.clip(-steps if _higher_is_better(metric) else steps, 0, None).sum())


def tied(x: float, y: float, scale: float = 0.0) -> bool:
    """Whether ``x`` and ``y`` are equal up to rounding: ``|x - y| <= TIE_RTOL * max(|x|, |y|,
    scale)`` (``scale``: the magnitude of the curves they come from)."""
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= TIE_RTOL * max(abs(x), abs(y), abs(scale))


def _higher_is_better(metric: str) -> bool:
    return metric.endswith("accuracy")


def _fmt(metric: str, value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{100 * value:.2f}%" if _higher_is_better(metric) else f"{value:.4g}"


def _fmt_gap(metric: str, value: float) -> str:
    return f"{100 * value:.2f} points" if _higher_is_better(metric) else f"{value:.4g}"


def _metrics_read(claim: Mapping[str, Any]) -> list[str]:
    metric = claim["metric"]
    if "rises" in claim:
        return [metric, "train_loss"]
    if any(kind in claim for kind in GAP_KINDS):
        return [metric, GAP_METRICS[metric]]
    return [metric]


def _final_finite(run: Mapping[str, Any], metric: str) -> bool:
    values = eval_series(metric)(run)[1]  # (a run without the metric: KeyError, as before)
    return len(values) > 0 and values[-1] is not None and math.isfinite(values[-1])


class _Variant:
    """A variant's runs as a claim reads them: the finished ones' mean curves, and the seeds
    that diverged."""

    def __init__(self, runs: Sequence[dict[str, Any]], metrics: Sequence[str]):
        self.runs = list(runs)
        self.finished = [
            r
            for r in self.runs
            if r["status"] == "finished" and all(_final_finite(r, m) for m in metrics)
        ]
        kept = {id(r) for r in self.finished}
        self.diverged = [r for r in self.runs if id(r) not in kept]

    def curve(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        steps, mean, _ = series_band(self.finished, eval_series(metric))
        return steps, mean

    def aligned(self, *metrics: str) -> list[np.ndarray]:
        """The mean curves of ``metrics`` at the evaluation steps all of them have (a mean curve
        leaves out a step where no finished run has a finite value of its metric, so two
        metrics' curves can differ in length): one array per metric, in order."""
        curves = [self.curve(metric) for metric in metrics]
        shared = curves[0][0]
        for steps, _ in curves[1:]:
            shared = np.intersect1d(shared, steps)
        return [mean[np.isin(steps, shared)] for steps, mean in curves]

    def seeds_text(self) -> str:
        """``"seed 2"``, ``"seeds 1, 2"``: the diverged runs."""
        seeds = [str(r["seed"]) for r in self.diverged if "seed" in r]
        if not seeds:
            return f"{len(self.diverged)} run(s)"
        return ("seeds " if len(seeds) > 1 else "seed ") + ", ".join(seeds)

    def diverged_line(self, name: str) -> str:
        if not self.finished:
            return f"no finished run of {name}: {self.seeds_text()} diverged"
        return (
            f"{name}: {self.seeds_text()} diverged ({len(self.finished)} of {len(self.runs)} "
            "runs finished)"
        )


def verdict(
    claim: Mapping[str, Any], by_variant: Mapping[str, Sequence[dict[str, Any]]]
) -> tuple[str, str]:
    """``(verdict, numbers)``: whether ``claim`` holds on the runs, ``"yes"``, ``"no"``,
    ``"tie"``, ``"diverged"`` (a variant it names has a diverged run) or ``"not run"`` (a
    variant it names has no runs), and the numbers that decide it (one line)."""
    metrics = _metrics_read(claim)
    variants = {name: _Variant(runs, metrics) for name, runs in by_variant.items()}
    named = claimed_variants(claim)
    if absent := [n for n in named if not variants.get(n) or not variants[n].runs]:
        return "not run", f"no run of {', '.join(absent)}"
    failed = [n for n in named if variants[n].diverged]
    if any(not variants[n].finished for n in named):
        return "diverged", "; ".join(variants[n].diverged_line(n) for n in failed)
    result, numbers = _decide(claim, variants)
    if failed:
        lines = "; ".join(variants[n].diverged_line(n) for n in failed)
        return "diverged", f"{lines}; over the finished runs: {numbers}"
    return result, numbers


def check_claim(
    claim: Mapping[str, Any], by_variant: Mapping[str, Sequence[dict[str, Any]]]
) -> tuple[bool, str]:
    """Whether ``claim`` holds on the runs, and the numbers that decide it (one line)."""
    result, numbers = verdict(claim, by_variant)
    return result == "yes", numbers


def _compare(better: bool, x: float, y: float, scale: float = 0.0) -> str:
    """``"yes"`` when ``x`` is (better: above; else: below) ``y`` beyond a tie."""
    if tied(x, y, scale):
        return "tie"
    return "yes" if (x > y if better else x < y) else "no"


def _scale(*curves: np.ndarray) -> float:
    return max((float(np.max(np.abs(c))) for c in curves if len(c)), default=0.0)


def _decide(claim: Mapping[str, Any], variants: Mapping[str, _Variant]) -> tuple[str, str]:
    metric = claim["metric"]
    label = METRIC_LABELS[metric]
    up = _higher_is_better(metric)
    if "lower" in claim or "higher" in claim:
        a, b = claim.get("lower", claim.get("higher")), claim["than"]
        va, vb = variants[a].curve(metric)[1][-1], variants[b].curve(metric)[1][-1]
        result = _compare("higher" in claim, va, vb)
        return result, f"{a} {_fmt(metric, va)} vs {b} {_fmt(metric, vb)} ({label})"
    if "rises" in claim:
        a = claim["rises"]
        curve, train = variants[a].aligned(metric, "train_loss")
        best = int(np.argmax(curve)) if up else int(np.argmin(curve))
        ended_worse = _compare(not up, curve[-1], curve[best], _scale(curve)) == "yes"
        train_fell = _compare(False, train[-1], train[best], _scale(train)) == "yes"
        return ("yes" if ended_worse and train_fell else "no"), (
            f"{a}: best {label} {_fmt(metric, curve[best])} at evaluation {best + 1} of "
            f"{len(curve)}, final {_fmt(metric, curve[-1])}; train loss {train[best]:.4g} -> "
            f"{train[-1]:.4g}"
        )
    if "smoothest" in claim or "smoother" in claim:
        return _decide_roughness(claim, variants, metric, label)
    if any(kind in claim for kind in GAP_KINDS):
        return _decide_gap(claim, variants, metric)
    return _decide_early(claim, variants, metric, label)


def _decide_roughness(
    claim: Mapping[str, Any], variants: Mapping[str, _Variant], metric: str, label: str
) -> tuple[str, str]:
    curves = {n: v.curve(metric)[1] for n, v in variants.items() if v.runs}
    if "smoother" in claim:  # (a named variant with a diverged run: verdict() says so)
        a, b = claim["smoother"], claim["than"]
        ra, rb = roughness(curves[a], metric), roughness(curves[b], metric)
        result = _compare(False, ra, rb, _scale(curves[a], curves[b]))
        return result, f"roughness of the mean {label} curve: {a} {ra:.3g} vs {b} {rb:.3g}"
    # a variant with a diverged run left the finite numbers: rougher than any other
    rough = {
        n: math.inf if v.diverged else roughness(curves[n], metric)
        for n, v in variants.items()
        if v.runs
    }
    a = claim["smoothest"]
    others = {n: _compare(False, rough[a], rough[n], _scale(curves[a], curves[n])) for n in rough}
    others.pop(a)
    ties = sorted(n for n, r in others.items() if r == "tie")
    result = "no" if "no" in others.values() else "tie" if ties else "yes"
    order = sorted(rough, key=lambda n: (rough[n], n))
    shown = ", ".join(
        f"{n} {rough[n]:.3g}"
        + (f" ({variants[n].seeds_text()} diverged)" if variants[n].diverged else "")
        for n in order
    )
    tie_note = f"; {a} tied with {', '.join(ties)}" if ties and result == "tie" else ""
    return result, f"roughness of the mean {label} curve: {shown}{tie_note}"


def _decide_gap(
    claim: Mapping[str, Any], variants: Mapping[str, _Variant], metric: str
) -> tuple[str, str]:
    train_metric = GAP_METRICS[metric]
    up = _higher_is_better(metric)

    def gap(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        test, train = variants[name].aligned(metric, train_metric)
        return (train - test if up else test - train), train, test

    what = f"{METRIC_LABELS[train_metric]} against {METRIC_LABELS[metric]}"
    if "smaller_gap" in claim:
        a, b = claim["smaller_gap"], claim["than"]
        (ga, *curves_a), (gb, *curves_b) = gap(a), gap(b)
        result = _compare(False, ga[-1], gb[-1], _scale(*curves_a, *curves_b))
        return result, (
            f"final gap ({what}): {a} {_fmt_gap(metric, ga[-1])} vs {b} {_fmt_gap(metric, gb[-1])}"
        )
    a = claim["gap_widens"]
    g, train, test = gap(a)
    n = len(g)
    if n < 2:
        return "no", f"{a}: {n} evaluation(s); the gap's change needs two"
    c = (n + 1) // 2 - 1  # the middle evaluation, 0-based
    scale = _scale(train, test)
    train_improved = _compare(up, train[-1], train[c], scale) == "yes"
    widened = _compare(True, g[-1], g[c], scale) == "yes"
    return ("yes" if train_improved and widened else "no"), (
        f"{a}, evaluation {c + 1} -> {n} of {n}: {METRIC_LABELS[train_metric]} "
        f"{_fmt(metric, train[c])} -> {_fmt(metric, train[-1])}, {METRIC_LABELS[metric]} "
        f"{_fmt(metric, test[c])} -> {_fmt(metric, test[-1])}; gap {_fmt_gap(metric, g[c])} -> "
        f"{_fmt_gap(metric, g[-1])}"
    )


def _decide_early(
    claim: Mapping[str, Any], variants: Mapping[str, _Variant], metric: str, label: str
) -> tuple[str, str]:
    a, b, k = claim["better_early"], claim["than"], claim["first"]
    windows = {}
    for name in (a, b):
        steps, curve = variants[name].curve(metric)
        after = steps > 0  # the evaluation before any update is left out
        windows[name] = (steps[after][:k], curve[after][:k])
    (sa, ca), (sb, cb) = windows[a], windows[b]
    if len(sa) < k or len(sb) < k:
        return "no", (
            f"{a} has {len(sa)} and {b} {len(sb)} evaluations after the start; the claim "
            f"reads the first {k}"
        )
    if not np.array_equal(sa, sb):
        return "no", f"{a} and {b} are evaluated at different steps; the claim compares them"
    ma, mb = float(np.mean(ca)), float(np.mean(cb))
    result = _compare(_higher_is_better(metric), ma, mb, _scale(ca, cb))
    return result, (
        f"mean {label} over the first {k} evaluations (steps {int(sa[0])}-{int(sa[-1])}): "
        f"{a} {_fmt(metric, ma)} vs {b} {_fmt(metric, mb)}"
    )


HOLDS = {
    "yes": "yes",
    "no": "**no**",
    "tie": "**no** (tie)",
    "diverged": "**no** (diverged)",
    "not run": "**no** (not run)",
}


def claims_table(results: Sequence[dict[str, Any]], claims: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of ``claims`` checked on ``results``."""
    by_variant = group_by_variant(results)
    lines = ["| finding of the reference | holds here | the numbers |", "|---|---|---|"]
    for claim in claims:
        result, numbers = verdict(claim, by_variant)
        lines.append(f"| {claim['text']} | {HOLDS[result]} | {numbers} |")
    return "\n".join(lines) + "\n"
