"""A reference's findings, checked on the runs: ``[report] claims``.

A comparison that reproduces a paper or a textbook chapter states what the source found; each
claim here is checked against the runs' numbers and shown with them, so a table says by itself
which findings carried over and by how much. Three kinds, each a table with a ``text``:

- ``{lower = "a", than = "b", metric = "test_loss"}``: the mean over seeds of ``a``'s final
  ``metric`` is lower than ``b``'s (``higher = ...`` for "higher than").
- ``{rises = "a", metric = "test_loss"}``: ``a`` overfits: its mean ``metric`` curve ends above
  its lowest value while its mean training loss ends below its value at that evaluation.
- ``{smoothest = "a", metric = "test_loss"}``: ``a``'s mean ``metric`` curve moves against the
  direction of improvement the least of all variants: its roughness
  ``R = sum_k max(0, m_{k+1} - m_k)`` (``m_k - m_{k+1}`` for accuracies) is the smallest.

Means are over the finished (not diverged) runs of a variant, aligned on evaluation steps
(``runs.results.series_band``); a claim about a variant without a finished run does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from runs.results import METRIC_LABELS, eval_series, group_by_variant, series_band

KINDS = {"lower": "than", "higher": "than", "rises": None, "smoothest": None}


def claim_problem(value: Any) -> str | None:
    """None when ``value`` is a list of well-formed claims, else what is allowed."""
    allowed = (
        'a list of {text = "...", metric = "test_loss", and one of lower = "a", than = "b" / '
        'higher = "a", than = "b" / rises = "a" / smoothest = "a"}; metric one of '
        + ", ".join(METRIC_LABELS)
    )
    if not isinstance(value, list | tuple) or not value:
        return allowed
    for claim in value:
        if not isinstance(claim, dict) or not isinstance(claim.get("text"), str):
            return allowed
        kinds = [k for k in KINDS if k in claim]
        if len(kinds) != 1 or claim.get("metric") not in METRIC_LABELS:
            return allowed
        keys = {"text", "metric", kinds[0], *([KINDS[kinds[0]]] if KINDS[kinds[0]] else [])}
        if set(claim) != keys or not all(isinstance(claim[k], str) for k in keys - {"text"}):
            return allowed
    return None


def claimed_variants(claim: Mapping[str, Any]) -> list[str]:
    """The variant names a claim refers to."""
    return [claim[k] for k in (*KINDS, "than") if k in claim]


def _finished(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r["status"] == "finished"]


def _curve(runs: Sequence[dict[str, Any]], metric: str) -> np.ndarray:
    return series_band(_finished(runs), eval_series(metric))[1]


def roughness(curve: np.ndarray, metric: str) -> float:
    """``sum_k max(0, m_{k+1} - m_k)``: how far a curve moves the wrong way (accuracies: down)."""
    steps = np.diff(curve)
    return float(np.clip(-steps if metric.endswith("accuracy") else steps, 0, None).sum())


def _fmt(metric: str, value: float) -> str:
    return f"{100 * value:.2f}%" if metric.endswith("accuracy") else f"{value:.4g}"


def check_claim(
    claim: Mapping[str, Any], by_variant: Mapping[str, Sequence[dict[str, Any]]]
) -> tuple[bool, str]:
    """Whether ``claim`` holds on the runs, and the numbers that decide it (one line)."""
    metric = claim["metric"]
    label = METRIC_LABELS[metric]
    curves = {name: _curve(runs, metric) for name, runs in by_variant.items()}
    missing = [n for n in claimed_variants(claim) if len(curves.get(n, ())) == 0]
    if missing:
        return False, f"no finished run of {', '.join(missing)}"
    if "lower" in claim or "higher" in claim:
        a, b = claim.get("lower", claim.get("higher")), claim["than"]
        va, vb = curves[a][-1], curves[b][-1]
        holds = va < vb if "lower" in claim else va > vb
        return bool(holds), f"{a} {_fmt(metric, va)} vs {b} {_fmt(metric, vb)} ({label})"
    if "rises" in claim:
        a = claim["rises"]
        curve, train = curves[a], _curve(by_variant[a], "train_loss")
        best = int(np.argmin(curve)) if not metric.endswith("accuracy") else int(np.argmax(curve))
        moved = curve[-1] - curve[best]
        holds = (moved < 0 if metric.endswith("accuracy") else moved > 0) and train[-1] < train[
            best
        ]
        return bool(holds), (
            f"{a}: best {label} {_fmt(metric, curve[best])} at evaluation {best + 1} of "
            f"{len(curve)}, final {_fmt(metric, curve[-1])}; train loss {train[best]:.4g} -> "
            f"{train[-1]:.4g}"
        )
    a = claim["smoothest"]
    rough = {name: roughness(curve, metric) for name, curve in curves.items() if len(curve)}
    order = sorted(rough, key=rough.get)
    shown = ", ".join(f"{name} {rough[name]:.3g}" for name in order)
    return order[0] == a, f"roughness of the mean {label} curve: {shown}"


def claims_table(results: Sequence[dict[str, Any]], claims: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of ``claims`` checked on ``results``."""
    by_variant = group_by_variant(results)
    lines = ["| finding of the reference | holds here | the numbers |", "|---|---|---|"]
    for claim in claims:
        holds, numbers = check_claim(claim, by_variant)
        lines.append(f"| {claim['text']} | {'yes' if holds else '**no**'} | {numbers} |")
    return "\n".join(lines) + "\n"
