"""The LR range test's numbers in an experiment: ``"$NAME"`` and ``"F * $NAME"`` references.

An experiment with a ``[range_test]`` may write any optimizer or schedule value as a reference
to what the test measured (``runs.tuning``): Smith's CLR bounds, the suggestions, and 1/L and 2/L
from the top Hessian eigenvalue at the start. :func:`with_references` replaces them; before the
test has run, :data:`RANGE_TEST_VALUES` stand in so that the file can be validated whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runs.checks import Problems, join

# The numbers an LR range test gives to "$NAME" references, with the consistent stand-ins used to
# validate a file before the test has run (a schedule's own checks see plausible values).
RANGE_TEST_VALUES = {
    "clr_base_lr": 1e-3,
    "clr_max_lr": 1e-2,
    "valley": 1e-3,
    "steepest": 1e-3,
    "min/10": 1e-3,
    "safe_step": 1e-2,
    "edge_step": 2e-2,
}
_REFERENCE = re.compile(r"^\s*(?:(?P<factor>[-+0-9.eE]+)\s*\*\s*)?\$(?P<name>[a-z_/0-9]+)\s*$")


def substitute(
    value: Any, values: Mapping[str, float | None] | None, location: str, problems: Problems
) -> Any:
    """``value`` with every ``"$NAME"`` / ``"F * $NAME"`` string replaced by ``F * values[NAME]``
    (the LR range test's numbers, see :data:`RANGE_TEST_VALUES`)."""
    if isinstance(value, dict):
        return {k: substitute(v, values, join(location, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values, f"{location}[{i}]", problems) for i, v in enumerate(value)]
    if not (isinstance(value, str) and "$" in value):
        return value
    allowed = ", ".join("$" + n for n in RANGE_TEST_VALUES)
    match = _REFERENCE.match(value)
    if match is None:
        problems.add(location, f'must be "$NAME" or "FACTOR * $NAME" ({allowed}), got {value!r}')
        return value
    name, factor = match["name"], match["factor"]
    if values is None:
        problems.add(location, f"{value!r} needs an LR range test: add a [range_test] section")
        return value
    if name not in RANGE_TEST_VALUES:
        problems.add(location, f"unknown reference ${name} in {value!r}; allowed: {allowed}")
        return value
    try:
        scale = 1.0 if factor is None else float(factor)
    except ValueError:
        problems.add(location, f'bad factor {factor!r} in {value!r}; write e.g. "0.5 * ${name}"')
        return value
    if values.get(name) is None:
        problems.add(location, f"${name} is unavailable: the LR range test did not produce it")
        return value
    return scale * float(values[name])


def with_references(
    raw: dict, values: Mapping[str, float | None] | None, problems: Problems
) -> dict:
    """The document with references substituted in every optimizer and schedules table."""
    raw = dict(raw)
    for section in ("optimizer", "schedules"):
        if isinstance(raw.get(section), dict):
            raw[section] = substitute(raw[section], values, section, problems)
    if isinstance(raw.get("variants"), list):
        variants = []
        for index, variant in enumerate(raw["variants"]):
            if isinstance(variant, dict):
                variant = dict(variant)
                for section in ("optimizer", "schedules"):
                    if isinstance(variant.get(section), dict):
                        location = f"variants[{index}].{section}"
                        variant[section] = substitute(variant[section], values, location, problems)
            variants.append(variant)
        raw["variants"] = variants
    return raw
