"""The driver: writes schedule values into an optimizer's param groups, one step at a time.

Any torch optimizer works (torch.optim or the project's ``optim`` package): the driver only reads
and writes ``optimizer.param_groups``. Keys are param-group keys, with an index for tuple
entries: ``"lr"``, ``"momentum"``, ``"weight_decay"``, ``"betas[0]"``, ``"betas[1]"``; keyword
aliases ``beta1`` and ``beta2`` stand for ``"betas[0]"`` and ``"betas[1]"``.

Typical use::

    driver = attach(optimizer, lr=cosine_decay(0.1, 1000), momentum=constant(0.9))
    for batch in data:
        loss(batch).backward(); optimizer.step(); optimizer.zero_grad()
        driver.step()                      # the next update uses s(t + 1)
    torch.save({"driver": driver.state_dict(), ...}, path)

Step ``t`` counts updates already made: at construction the driver writes ``s(0)``, the value of
the first update, and each :meth:`ScheduleDriver.step` advances ``t`` by one and writes ``s(t)``.
Whether a step is an update or an epoch is the caller's choice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

from schedulers.base import SCALAR, Schedule, check_schedule

KEY_ALIASES = {"beta1": "betas[0]", "beta2": "betas[1]"}
_KEY = re.compile(r"^([A-Za-z_]\w*)(?:\[(\d+)\])?$")


def _parse_key(key: str) -> tuple[str, int | None]:
    match = _KEY.match(key) if isinstance(key, str) else None
    if match is None:
        raise ValueError(
            f"schedule key must be a param-group key such as 'lr', 'momentum', 'weight_decay' "
            f"or 'betas[0]', got key={key!r}"
        )
    name, index = match.groups()
    return name, None if index is None else int(index)


def _write(group: dict, name: str, index: int | None, value: float) -> None:
    """``group[name] = value`` (or its ``index`` entry); 0-dim tensors are filled in place."""
    if index is None:
        current = group[name]
        if type(current) is float or not hasattr(current, "fill_"):
            group[name] = value
        else:
            current.fill_(value)
        return
    entries = group[name]
    current = entries[index]
    if hasattr(current, "fill_"):
        current.fill_(value)
    elif isinstance(entries, tuple):
        group[name] = (*entries[:index], value, *entries[index + 1 :])
    else:
        entries[index] = value


class ScheduleDriver:
    """Drives param-group hyperparameters with schedules; created by :func:`attach`.

    Attributes:
        optimizer: the driven optimizer.
        schedules: ``{key: [schedule per group]}``.
    """

    def __init__(
        self, optimizer: Any, schedules: Mapping[str, Schedule | Sequence[Schedule]]
    ) -> None:
        groups = getattr(optimizer, "param_groups", None)
        if not isinstance(groups, list) or not groups:
            raise TypeError(
                "optimizer must be a torch optimizer with param_groups, "
                f"got {type(optimizer).__name__}"
            )
        if not schedules:
            raise ValueError("attach needs at least one schedule, e.g. attach(optimizer, lr=...)")
        self.optimizer = optimizer
        self.schedules: dict[str, list[Schedule]] = {}
        unique: list[Schedule] = []
        plan: list[tuple] = []
        self._values: dict[str, list[float]] = {}
        for key, spec in schedules.items():
            name, index = _parse_key(key)
            per_group = self._per_group(key, spec, len(groups))
            for g, group in enumerate(groups):
                self._check_slot(key, name, index, g, group)
            self.schedules[key] = per_group
            record = self._values[key] = [0.0] * len(groups)
            for g, (group, schedule) in enumerate(zip(groups, per_group)):
                if not any(s is schedule for s in unique):
                    unique.append(schedule)
                # the hot path calls each formula directly: t is a known int >= 0, so the
                # argument checks of Schedule.__call__ are skipped
                plan.append((schedule._value, group, name, index, record, g))
        self._plan = plan
        self._reactive = [s for s in unique if s.reactive]
        self._unique = unique
        self._t = 0
        self._apply(0)

    @staticmethod
    def _per_group(key: str, spec: Any, n_groups: int) -> list[Schedule]:
        if isinstance(spec, (Schedule, Mapping)):
            return [check_schedule(key, spec)] * n_groups
        if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
            if len(spec) != n_groups:
                raise ValueError(
                    f"{key} needs one schedule for all groups or one per group "
                    f"({n_groups}), got {len(spec)}"
                )
            return [check_schedule(f"{key}[group {g}]", s) for g, s in enumerate(spec)]
        raise TypeError(f"{key} must be a Schedule or a list of them, got {key}={spec!r}")

    @staticmethod
    def _check_slot(key: str, name: str, index: int | None, g: int, group: dict) -> None:
        if name not in group:
            hint = " (Adam-like optimizers: drive 'betas[0]', beta1=)" if name == "momentum" else ""
            keys = sorted(k for k in group if k != "params")
            raise ValueError(
                f"param group {g} has no key {name!r} for schedule {key!r}{hint}; its keys: {keys}"
            )
        if index is not None:
            entries = group[name]
            if not isinstance(entries, (tuple, list)) or index >= len(entries):
                raise ValueError(
                    f"param group {g} key {name!r} = {entries!r} has no entry [{index}] "
                    f"for schedule {key!r}"
                )

    # --- stepping ---------------------------------------------------------------------------
    def _apply(self, t: int) -> None:
        for formula, group, name, index, record, g in self._plan:
            value = record[g] = float(formula(t, SCALAR))
            if index is None and type(group[name]) is float:
                group[name] = value
            else:
                _write(group, name, index, value)

    @property
    def t(self) -> int:
        """Steps made so far; the values in the optimizer are the schedules at ``t``."""
        return self._t

    def step(self, metric: SupportsFloat | None = None) -> None:
        """Advance ``t`` by one and write the values at the new ``t``.

        ``metric`` (e.g. a validation loss) is passed to every reactive schedule
        (reduce-on-plateau) before the new values are computed; with ``metric=None`` they make
        no decision this step.
        """
        t = self._t + 1
        self._t = t
        if metric is not None:
            for schedule in self._reactive:
                schedule.observe(metric, t)
        self._apply(t)

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group as last written (read from the groups if not driven)."""
        if "lr" in self._values:
            return list(self._values["lr"])
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def last_values(self) -> dict[str, list[float]]:
        """``{key: [value per group]}`` for every driven key, as last written (for logging)."""
        return {key: list(values) for key, values in self._values.items()}

    # --- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"t": steps made, "reactive": [state of each reactive schedule]}``."""
        return {"t": self._t, "reactive": [s.state_dict() for s in self._reactive]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output and write the values at the restored ``t``."""
        t = state.get("t") if isinstance(state, Mapping) else None
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"state must hold a step count 't' >= 0, got {state!r}")
        reactive = list(state.get("reactive", []))
        if len(reactive) != len(self._reactive):
            raise ValueError(
                f"state holds {len(reactive)} reactive schedule state(s), this driver has "
                f"{len(self._reactive)}"
            )
        for schedule, schedule_state in zip(self._reactive, reactive):
            schedule.load_state_dict(schedule_state)
        self._t = t
        self._apply(t)

    def __repr__(self) -> str:
        keys = ", ".join(self.schedules)
        return f"ScheduleDriver(t={self._t}, keys=[{keys}])"


def attach(
    optimizer: Any,
    schedules: Mapping[str, Schedule | Sequence[Schedule]] | None = None,
    **schedules_by_key: Schedule | Sequence[Schedule],
) -> ScheduleDriver:
    """Drive ``optimizer``'s hyperparameters with schedules; writes the values for ``t = 0`` now.

    Args:
        optimizer: any torch optimizer (``torch.optim`` or the project's ``optim``).
        schedules: ``{key: schedule or [schedule per group]}`` with keys such as ``"lr"``,
            ``"momentum"``, ``"weight_decay"``, ``"betas[0]"``; schedule dicts are accepted.
        **schedules_by_key: the same as keywords; ``beta1``/``beta2`` mean
            ``betas[0]``/``betas[1]``.

    Returns:
        The :class:`ScheduleDriver`; call its ``step()`` after each optimizer update.

    Raises:
        ValueError: a key missing from a param group, a wrong number of per-group schedules, a
            key given twice.
        TypeError: not an optimizer, not a schedule.
    """
    merged: dict[str, Any] = {}
    for key, spec in [*(schedules or {}).items(), *schedules_by_key.items()]:
        canonical = KEY_ALIASES.get(key, key)
        if canonical in merged:
            raise ValueError(f"schedule key {canonical!r} is given twice")
        merged[canonical] = spec
    return ScheduleDriver(optimizer, merged)
