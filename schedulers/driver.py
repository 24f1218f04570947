"""The driver: writes schedule values into an optimizer's param groups, one step at a time.

Any torch optimizer works (torch.optim or the project's ``optim`` package): the driver only reads
and writes ``optimizer.param_groups``. Keys are param-group keys, with an index for tuple
entries: ``"lr"``, ``"momentum"``, ``"weight_decay"``, ``"betas[0]"``, ``"betas[1]"``; keyword
aliases ``beta1`` and ``beta2`` stand for ``"betas[0]"`` and ``"betas[1]"``. A driven slot must
hold a real number or a one-element floating-point tensor: ``params``, flags (``maximize``,
``nesterov``, ``amsgrad``), ``None``-valued options (``foreach``) and a tuple without an index
(``"betas"``) are refused at :func:`attach` with a ``ValueError`` naming the key and its value.

Typical use::

    driver = attach(optimizer, lr=cosine_decay(0.1, 1000), momentum=constant(0.9))
    for batch in data:
        loss(batch).backward(); optimizer.step(); optimizer.zero_grad()
        driver.step()                      # the next update uses s(t + 1)
    torch.save({"driver": driver.state_dict(), ...}, path)

Step ``t`` counts updates already made: at construction the driver writes ``s(0)``, the value of
the first update, and each :meth:`ScheduleDriver.step` advances ``t`` by one and writes ``s(t)``.
Whether a step is an update or an epoch is the caller's choice; for a schedule defined per epoch
and stepped per update, ``driver.step(t=epoch + i / n)`` writes its value at the fraction of the
epoch (as torch's ``CosineAnnealingWarmRestarts.step(epoch)`` and timm's ``step_update``).

Values are checked. At :func:`attach` the schedule's documented range (:meth:`Schedule.bounds`)
must lie in the key's domain (:data:`DOMAINS`: the constraints torch.optim's constructors
enforce, plus ``momentum <= 1``), and every value is checked again before it is written, which
catches what a range cannot (a user function, a wide enclosure). The check reads host floats only:
a tensor hyperparameter is filled in place and never read back (no host sync).

The driver is a ``torch.optim.lr_scheduler.LRScheduler``, so code written against torch's
scheduler interface takes it (PyTorch Lightning's ``configure_optimizers``, ``isinstance``
checks, loops that call ``step()``, ``get_last_lr()`` and ``state_dict()``): ``optimizer``,
``last_epoch`` (the step ``t``), ``base_lrs`` (the learning rates before :func:`attach`),
``get_last_lr()``, ``get_lr()``, ``state_dict()``/``load_state_dict()``, and torch's deprecated
``step(epoch)``, which moves to ``t = epoch`` as torch's closed forms do (with torch's
deprecation warning). Unlike torch's recursive schedulers it never derives a value from the
previous one: every value is ``s(t)``, so resuming, jumping or stepping per epoch and per update
give the same numbers. For the same reason it cannot be a member of torch's ``SequentialLR`` or
``ChainedScheduler``, which rewind their members to step -1 and multiply each other's values:
both refuse it with a ``TypeError`` when they are built; their equivalents here are
``join([a, b], [milestone])`` and ``a * b`` (:func:`schedulers.product`). A driver with a
reduce-on-plateau schedule is also a ``ReduceLROnPlateau`` (:class:`PlateauScheduleDriver`):
frameworks that feed a monitored metric to such schedulers (Lightning's ``monitor``) call
``step(metric)`` as torch's.

One schedule for a key writes the same (absolute) values into every param group. torch's
multiplicative schedulers (``StepLR``, ``CosineAnnealingLR``, ...) instead scale each group's own
initial lr, so where the groups hold different values for the key (e.g. lr 0.1 and 0.01), a
single schedule is refused with a ``ValueError``: give one schedule per group
(``lr=[s, s * 0.1]``), or ``[s] * n_groups`` to write the same values into all of them.

Speed: values are computed in blocks of steps ahead (the schedules are pure; a block is
recomputed when a reduce-on-plateau changes its multiplier), so a step costs a few hundred
nanoseconds whatever the schedule (``stepsize bench schedulers``). A block reaches up to 1023
steps past the current one: where evaluating it raises (a user function defined over the run's
steps only), the schedule is evaluated one step at a time from then on, and an error at the
current step is a ``ValueError`` naming it.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
import reprlib
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import numpy as np
import torch
from torch.optim import lr_scheduler as _torch_schedulers
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from schedulers.base import MAX_STEP, Schedule, check_schedule

KEY_ALIASES = {"beta1": "betas[0]", "beta2": "betas[1]"}
_KEY = re.compile(r"([A-Za-z_]\w*)(?:\[(\d+)\])?\Z")

#: ``key: (low, high, high_open)``: the values a param-group key accepts (the name without an
#: index: ``betas`` covers ``betas[0]`` and ``betas[1]``). From torch.optim's constructor checks
#: (``0 <= lr``, ``0 <= betas[i] < 1``, ``0 <= rho <= 1``, ``0 <= eps``, ...), plus
#: ``momentum <= 1`` and ``alpha <= 1`` (a moving-average coefficient above 1 diverges; torch
#: only checks ``>= 0``). Keys not listed must be finite, and nothing more is checked: an
#: optimizer's own keys (SPS's ``c``, ``gamma_b``; SLS's ``c``, ``beta_b``) may be given values
#: their constructors refuse (SPS ``c=0``, SLS ``c=5``); clamp such schedules into the range the
#: optimizer documents.
DOMAINS: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, math.inf, False),
    "momentum": (0.0, 1.0, False),
    "dampening": (0.0, 1.0, False),
    "betas": (0.0, 1.0, True),
    "rho": (0.0, 1.0, False),
    "alpha": (0.0, 1.0, False),
    "weight_decay": (0.0, math.inf, False),
    "eps": (0.0, math.inf, False),
    "lr_decay": (0.0, math.inf, False),
    "initial_accumulator_value": (0.0, math.inf, False),
}
_ANY = (-math.inf, math.inf, False)
_FIRST_BLOCK, _LARGEST_BLOCK = 16, 1024

#: torch's composite schedulers, which derive each value from the values their members wrote:
#: the code of their constructors (which read ``member.optimizer`` first) -> (name, why the
#: driver cannot be a member, the equivalent here)
_COMPOSITES = {
    inspect.unwrap(cls.__init__).__code__: (cls.__name__, why, equivalent)
    for cls, why, equivalent in (
        (
            getattr(_torch_schedulers, "SequentialLR", None),
            "it rewinds its members to last_epoch=-1 and restarts the next one from the lr "
            "the previous one left",
            "schedulers.join([first, second], [milestone]) (each piece on its own clock, as "
            "SequentialLR's members)",
        ),
        (
            getattr(_torch_schedulers, "ChainedScheduler", None),
            "each member multiplies the lr the others wrote, while the driver writes the "
            "closed form s(t) and would wipe their factors",
            "the product of the schedules, first * second (schedulers.product), e.g. "
            "S.linear(0.1, 0.1, 1.0, 3) * S.exponential_decay(1.0, 1, 0.9) for "
            "ChainedScheduler([LinearLR(start_factor=0.1, total_iters=3), ExponentialLR(0.9)]) "
            "on lr 0.1",
        ),
    )
    if cls is not None
}

#: torch's text for ``step(epoch)`` (``torch.optim.lr_scheduler.EPOCH_DEPRECATION_WARNING``)
_EPOCH_DEPRECATION = getattr(
    _torch_schedulers,
    "EPOCH_DEPRECATION_WARNING",
    "The epoch parameter in `scheduler.step()` was not necessary and is being deprecated where "
    "possible. Please use `scheduler.step()` to step the scheduler.",
)


def _parse_key(key: str) -> tuple[str, int | None]:
    match = _KEY.match(key) if isinstance(key, str) else None
    if match is None:
        raise ValueError(
            f"schedule key must be a param-group key such as 'lr', 'momentum', 'weight_decay' "
            f"or 'betas[0]', got key={key!r}"
        )
    name, index = match.groups()
    return name, None if index is None else int(index)


def differing_group_values(groups: Sequence[Mapping[str, Any]], key: str) -> list[float] | None:
    """The values the param ``groups`` hold for ``key`` (``"lr"``, ``"betas[0]"``, or an alias
    such as ``"beta1"``) when they are not all equal (NaNs count as equal), else None: one
    schedule for ``key`` would then overwrite them with the same values, which
    :func:`attach` refuses. Raises ``ValueError`` for a key that is no param-group key, and
    ``KeyError``/``IndexError``/``TypeError`` for a group that does not hold a number there."""
    name, index = _parse_key(KEY_ALIASES.get(key, key))
    if len(groups) < 2:
        return None
    values = [_as_float(group[name] if index is None else group[name][index]) for group in groups]
    if all(v == values[0] or (math.isnan(v) and math.isnan(values[0])) for v in values):
        return None
    return values


def _domain_text(key: str, domain: tuple[float, float, bool]) -> str:
    low, high, high_open = domain
    if high == math.inf:
        return f"{key} >= {low:g}" if low > -math.inf else f"{key} finite"
    return f"{low:g} <= {key} {'<' if high_open else '<='} {high:g}"


def _inside(value: float, domain: tuple[float, float, bool]) -> bool:
    low, high, high_open = domain
    return low <= value and (value < high if high_open else value <= high) and value < math.inf


def _write(group: dict, name: str, index: int | None, value: float) -> None:
    """``group[name] = value`` (or its ``index`` entry); 0-dim tensors are filled in place.

    An indexed entry of a tuple or list (``betas[0]``) is written into a new container of the
    same type, never into the old one: torch's ``NAdam``, ``RAdam`` and ``Adamax`` (and
    Prodigy, D-Adaptation, Schedule-Free) keep ``betas=[...]`` as the list given, and
    ``add_param_group`` hands that one list to every group and keeps it in
    ``optimizer.defaults``; writing into it would give every group the last group's value and
    change the defaults and the caller's list.
    """
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
        group[name] = [*entries[:index], value, *entries[index + 1 :]]


class _Block:
    """Values of one schedule at whole steps ``start .. start + len(values) - 1``."""

    __slots__ = ("reactive", "schedule", "size", "start", "token", "values")

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.reactive = [node for node in schedule.walk() if node.reactive]
        self.start, self.values, self.token, self.size = 0, [], None, _FIRST_BLOCK

    def value(self, t: float) -> float:
        reactive = self.reactive
        if not reactive:
            token = None
        elif len(reactive) == 1:
            token = reactive[0]._state_token()
        else:
            token = tuple(node._state_token() for node in reactive)
        if t == int(t) and token == self.token:
            offset = int(t) - self.start
            if 0 <= offset < len(self.values):
                return self.values[offset]
        # (start, token, values) are replaced together, and only by a successful evaluation: a
        # step whose evaluation raised is not cached, so asking for it again raises again
        try:
            if t != int(t):  # a fractional step: computed alone, not cached
                return float(self.schedule._evaluate(np.array([t]))[0])
            start = int(t)
            if token != self.token and self.size > 1:  # a plateau reduced: start small again
                self.size = _FIRST_BLOCK
            if self.size > 1:
                steps = np.arange(start, start + self.size, dtype=np.float64)
                try:
                    values = self.schedule._evaluate(steps).tolist()
                except Exception:  # (defined over the run's steps only): one step at a time
                    self.size = 1
                else:
                    self.token, self.start, self.values = token, start, values
                    self.size = min(2 * self.size, _LARGEST_BLOCK)
                    return values[0]
            values = [float(self.schedule._evaluate(np.array([float(t)]))[0])]
        except Exception as err:
            raise ValueError(
                f"schedule {self.schedule!r} failed at step t={t!r}: {type(err).__name__}: {err}"
            ) from err
        self.token, self.start, self.values = token, start, values
        return values[0]


class ScheduleDriver(LRScheduler):
    """Drives param-group hyperparameters with schedules; created by :func:`attach`.

    A ``torch.optim.lr_scheduler.LRScheduler`` with closed-form stepping: :meth:`step` writes
    ``s(t)`` for the new ``t`` (never a value derived from the last one), so the values depend
    on ``t`` alone, and a driver resumed from :meth:`state_dict` writes what an uninterrupted
    one writes. torch's own ``LRScheduler.__init__`` is not run: the driver does not add
    ``initial_lr`` to the param groups nor wrap ``optimizer.step``.

    Attributes:
        optimizer: the driven optimizer (reading it from the constructor of torch's
            ``SequentialLR`` or ``ChainedScheduler`` raises a ``TypeError``: the driver cannot be
            their member, see the module docstring).
        schedules: ``{key: [schedule per group]}``.
        base_lrs: each group's learning rate before :func:`attach` wrote ``s(0)`` (torch's
            ``initial_lr``).
        last_epoch: the step ``t`` (torch's name; ``t`` counts updates or epochs, as the
            caller steps). Setting it moves the driver there and writes the values at it.

    >>> import torch, schedulers as S
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> driver = S.attach(opt, lr=S.step_lr(0.1, step_size=2, gamma=0.5))
    >>> isinstance(driver, torch.optim.lr_scheduler.LRScheduler), driver.base_lrs
    (True, [1.0])
    >>> driver.step(); driver.step(); driver.last_epoch, driver.get_last_lr()
    (2, [0.05])
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
        self._optimizer = optimizer
        self.base_lrs = [_copy(group.get("lr")) for group in groups]
        self.schedules: dict[str, list[Schedule]] = {}
        blocks: dict[int, _Block] = {}
        plan: list[tuple] = []
        self._values: dict[str, list[float]] = {}
        for key, spec in schedules.items():
            name, index = _parse_key(key)
            per_group = self._per_group(key, spec, len(groups))
            domain = DOMAINS.get(name, _ANY)
            for g, group in enumerate(groups):
                self._check_slot(key, name, index, g, group)
            if not _is_sequence(spec):
                self._check_shared(key, name, index, groups)
            self._check_one_tensor(key, name, index, groups, per_group)
            for g, schedule in enumerate(per_group):
                self._check_range(key, g, schedule, domain)
            self.schedules[key] = per_group
            record = self._values[key] = [0.0] * len(groups)
            for g, schedule in enumerate(per_group):
                block = blocks.setdefault(id(schedule), _Block(schedule))
                plan.append((block, name, index, record, g, key, domain))
        self._plan = plan
        self._groups, self._n_groups = groups, len(groups)
        self._blocks = list(blocks.values())
        self._roots = [block.schedule for block in self._blocks]
        self._reactive = _unique(
            node for root in self._roots for node in root.walk() if node.reactive
        )
        # the nodes with a reactive schedule strictly below them: the only ones whose clocks
        # the driver follows when it feeds a metric
        self._above_reactive = {
            id(node)
            for root in self._roots
            for node in root.walk()
            if any(child.reactive for child in node.walk() if child is not node)
        }
        self._t: int | float = 0
        self._apply(0)
        if self._reactive and type(self) is ScheduleDriver:
            # known only once the schedules are parsed: a plateau makes it a ReduceLROnPlateau
            self.__class__ = PlateauScheduleDriver

    @property
    def optimizer(self) -> Any:
        """The driven optimizer."""
        composite = _COMPOSITES.get(sys._getframe(1).f_code)
        if composite is not None:
            name, why, equivalent = composite
            raise TypeError(
                f"a {type(self).__name__} cannot be a member of torch's {name}: {why}. Attach "
                f"one schedule instead: {equivalent}"
            )
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: Any) -> None:
        self._optimizer = optimizer

    @staticmethod
    def _per_group(key: str, spec: Any, n_groups: int) -> list[Schedule]:
        if isinstance(spec, (Schedule, Mapping)):
            return [check_schedule(key, spec)] * n_groups
        if _is_sequence(spec):
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
            adam_like = name == "momentum" and "betas" in group  # (else no momentum at all)
            hint = " (Adam-like optimizers: drive 'betas[0]', beta1=)" if adam_like else ""
            keys = sorted(k for k in group if k != "params")
            raise ValueError(
                f"param group {g} has no key {name!r} for schedule {key!r}{hint}; its keys: {keys}"
            )
        if name == "params":
            raise ValueError(
                f"schedule {key!r}: 'params' is param group {g}'s list of parameters, not a "
                "hyperparameter; drive a numeric key such as 'lr', 'momentum' or 'betas[0]'"
            )
        entries = group[name]
        if index is not None and (not isinstance(entries, (tuple, list)) or index >= len(entries)):
            raise ValueError(
                f"param group {g} key {name!r} = {reprlib.repr(entries)} has no entry [{index}] "
                f"for schedule {key!r}"
            )
        current = entries if index is None else entries[index]
        if not _drivable(current):
            where = name if index is None else f"{name}[{index}]"
            hint = ""
            if index is None and isinstance(current, (tuple, list)):
                alias = " (or the keywords beta1=, beta2=)" if name == "betas" else ""
                hint = f"; it holds {len(current)} entries: give an index such as '{name}[0]'"
                hint += alias
            raise ValueError(
                f"schedule {key!r} cannot drive param group {g} key {where!r} = "
                f"{reprlib.repr(current)}: a schedule writes floats, so the key must hold a real "
                f"number (not a bool) or a one-element floating-point tensor{hint}"
            )

    @staticmethod
    def _check_shared(key: str, name: str, index: int | None, groups: list[dict]) -> None:
        """Refuse one schedule for groups that hold different values for ``key``: it would
        overwrite them all with the same values (torch's multiplicative schedulers scale each
        group's own initial lr instead)."""
        values = differing_group_values(groups, key)
        if values is None:
            return
        raise ValueError(
            f"one schedule for {key!r} would write the same values into all {len(groups)} param "
            f"groups, which hold different values {values}; a schedule here is absolute "
            "(torch's StepLR, CosineAnnealingLR, ... scale each group's own initial lr "
            f"instead). Pass one schedule per group, each built from that group's value "
            f"({key}=[S.step_lr({values[0]!r}, ...), S.step_lr({values[1]!r}, ...), ...] is "
            f"StepLR's), or {key}=[s] * {len(groups)} to write the same values into every group"
        )

    @staticmethod
    def _check_one_tensor(
        key: str, name: str, index: int | None, groups: list[dict], per_group: list[Schedule]
    ) -> None:
        """Refuse different schedules for groups that hold one tensor object for ``key``
        (``optim.Adam(groups, lr=torch.tensor(0.1))`` gives every group the constructor's
        tensor): each group's value would be written into that one tensor, so every group would
        train at the last group's value while ``get_last_lr()`` reported each its own."""
        first_holder: dict[int, int] = {}
        for g, group in enumerate(groups):
            value = group[name] if index is None else group[name][index]
            if not hasattr(value, "fill_"):  # (a number: each group its own)
                continue
            first = first_holder.setdefault(id(value), g)
            if first != g and per_group[first] != per_group[g]:
                raise ValueError(
                    f"param groups {first} and {g} hold one tensor for {key!r} ({value!r}) and "
                    f"their schedules differ: writing each group's value into it would leave "
                    f"every group at the last one's. Give each group a tensor of its own (or a "
                    f"number), or one schedule for {key!r}"
                )

    @staticmethod
    def _check_range(key: str, g: int, schedule: Schedule, domain: tuple) -> None:
        """Refuse a schedule whose documented range leaves the key's domain (where it is known:
        an infinite end of ``bounds()`` means unknown, and is checked step by step)."""
        low, high = schedule.bounds()
        outside = [v for v in (low, high) if math.isfinite(v) and not _inside(v, domain)]
        if outside:
            raise ValueError(
                f"schedule for {key!r} (param group {g}) takes values in [{low:g}, {high:g}], "
                f"but the optimizer requires {_domain_text(key, domain)}; schedule: {schedule!r}"
                " (clamp it with .clamp(floor, ceiling) if its range is narrower than documented)"
            )

    # --- stepping ---------------------------------------------------------------------------
    def _rebind(self, groups: list[dict]) -> list[dict]:
        """Accept a replaced ``optimizer.param_groups`` (torch's ``Optimizer.load_state_dict``,
        used by resumes and Lightning's restore, builds new group dicts) after checking it."""
        if len(groups) != self._n_groups:
            n = len(groups)
            per_key = ", ".join(f"{key!r}: [...]" for key in self.schedules)
            raise ValueError(
                f"the optimizer now has {n} param group(s), the driver was attached to "
                f"{self._n_groups} (add_param_group?); a driver cannot take a new group. To go on "
                f"from this step, attach a new driver with one schedule per group ({n} per key; "
                "reuse this driver's schedules for the old groups, so that any reduce-on-plateau "
                "keeps its state) and move it to this step: "
                f"new = attach(optimizer, {{{per_key}}}); new.last_epoch = {self._t!r} "
                "(a new driver alone starts again at step 0)"
            )
        for key in self.schedules:
            name, index = _parse_key(key)
            for g, group in enumerate(groups):
                self._check_slot(key, name, index, g, group)
        self._groups = groups
        return groups

    def _apply(self, t: int | float) -> None:
        groups = self._optimizer.param_groups
        if groups is not self._groups or len(groups) != self._n_groups:
            groups = self._rebind(groups)
        values = []
        for block, _name, _index, _record, g, key, domain in self._plan:
            value = block.value(t)
            if not _inside(value, domain):
                raise ValueError(
                    f"schedule for {key!r} (param group {g}) gives {value!r} at step t={t!r}, "
                    f"but the optimizer requires {_domain_text(key, domain)}; nothing was written"
                )
            values.append(value)
        for (_block, name, index, record, g, _key, _domain), value in zip(self._plan, values):
            group = groups[g]
            record[g] = value
            if index is None and type(group[name]) is float:
                group[name] = value
            else:
                _write(group, name, index, value)

    @property
    def t(self) -> int | float:
        """Steps made so far; the values in the optimizer are the schedules at ``t``."""
        return self._t

    @property
    def last_epoch(self) -> int | float:
        """torch's name for :attr:`t`; setting it writes the values at the new step."""
        return self._t

    @last_epoch.setter
    def last_epoch(self, t: float) -> None:
        if isinstance(t, numbers.Real) and not isinstance(t, bool) and t < 0:
            raise ValueError(
                f"step last_epoch must be finite and >= 0, got last_epoch={t!r}; the driver has "
                "no step before 0 (torch's SequentialLR sets its members to -1: a driver cannot "
                "be one, use schedulers.join([first, second], [milestone]))"
            )
        t = _check_step(t, "last_epoch")
        self._apply(t)
        self._t = t

    def step(
        self,
        epoch: float | None = None,
        *,
        t: float | None = None,
        metric: SupportsFloat | None = None,
    ) -> None:
        """Advance ``t`` by one (or move it to ``t``) and write the values at the new ``t``.

        ``epoch``: torch's deprecated positional ``LRScheduler.step(epoch)``, honoured as torch
        honours it: the driver moves to ``t = epoch`` (``last_epoch = epoch``) and writes the
        closed form there, and torch's deprecation ``UserWarning`` is issued (``step(t=epoch)``
        does the same without it). A fractional epoch (torch's
        ``CosineAnnealingWarmRestarts.step(epoch + i / iters)``) gives the schedule at that
        fraction; ``last_epoch`` is then that float (torch's warm restarts keep its floor).
        ``t``: the step to move to, e.g. ``epoch + i / n`` for a per-epoch schedule stepped per
        update (a float >= 0; any order). ``metric``: for a reduce-on-plateau schedule
        (:class:`PlateauScheduleDriver`, whose first positional argument it is, as torch's
        ``ReduceLROnPlateau.step(metrics)``); a driver without one ignores it.
        """
        self._step(_epoch_step(epoch, t), metric)

    def _step(self, t: float | None, metric: SupportsFloat | None) -> None:
        """Move to ``t`` (``None``: the next step), feeding ``metric`` to the plateaus first.

        ``metric`` (e.g. a validation loss; a number or a one-element tensor, taken as torch's
        ``ReduceLROnPlateau.step(metrics)`` takes it) is passed to every reactive schedule
        (reduce-on-plateau), wherever it is nested, before the new values are computed, at the
        step its own clock shows; with ``metric=None`` they make no decision this step.
        """
        new_t = self._t + 1 if t is None else _check_step(t)
        if metric is not None and self._reactive:
            value = _metric_value(metric)
            before = [node.state_dict() for node in self._reactive]
            try:  # (all or nothing: a refused step leaves every plateau as it was)
                for node, local in self._reactive_steps(new_t):
                    node.observe(value, local)
                self._apply(new_t)
            except BaseException:
                self._restore_reactive(before)
                raise
        else:
            self._apply(new_t)
        self._t = new_t

    def _restore_reactive(self, states: list[dict[str, Any]]) -> None:
        """Put every reactive schedule back to ``states`` (their :meth:`state_dict` taken
        before a change that was then refused)."""
        for node, node_state in zip(self._reactive, states):
            node.load_state_dict(node_state)

    def _reactive_steps(self, t: float) -> list[tuple[Schedule, float]]:
        """The reactive schedules active at ``t``, each once, with their own step."""
        if not self._reactive:
            return []
        if not self._above_reactive:  # every reactive schedule is a root: its clock is t
            return [(node, t) for node in self._reactive]
        found: dict[int, tuple[Schedule, float]] = {}
        stack = [(root, t) for root in reversed(self._roots)]
        while stack:  # Schedule.active_steps, pruned to the paths that lead to reactive nodes
            node, local = stack.pop()
            if node.reactive and id(node) not in found:
                found[id(node)] = (node, int(local) if local == int(local) else local)
            if id(node) in self._above_reactive:
                stack.extend(reversed(node._child_steps(local)))
        return list(found.values())

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group as last written (read from the groups if not driven)."""
        if "lr" in self._values:
            return list(self._values["lr"])
        return [float(group["lr"]) for group in self._optimizer.param_groups]

    def get_lr(self) -> list[float]:
        """The learning rate of each group at the current step (torch's name): the schedule at
        ``t``, which is what :meth:`step` wrote (the group's own value where lr is not driven)."""
        return self.get_last_lr()

    def last_values(self) -> dict[str, list[float]]:
        """``{key: [value per group]}`` for every driven key, as last written (for logging)."""
        return {key: list(values) for key, values in self._values.items()}

    # --- checkpoints ------------------------------------------------------------------------
    def _reactive_keys(self) -> list[str]:
        """Where each reactive schedule (in ``self._reactive``'s order) sits, as
        ``"<key>/group<g>/<n>"``: the first key (in sorted order, so the order in which
        :func:`attach` was given the keys does not matter) and param group whose schedule holds
        it, and its position in that schedule's :meth:`Schedule.walk` (0: the schedule itself).
        A driver built from the same schedules for the same keys finds the same addresses."""
        found: dict[int, str] = {}
        for key in sorted(self.schedules):
            for g, schedule in enumerate(self.schedules[key]):
                for n, node in enumerate(schedule.walk()):
                    if node.reactive:
                        found.setdefault(id(node), f"{key}/group{g}/{n}")
        return [found[id(node)] for node in self._reactive]

    def state_dict(self) -> dict[str, Any]:
        """``{"t": steps made, "reactive": [state of each reactive schedule],
        "reactive_keys": [where each of them sits]}``.

        ``reactive_keys`` (see :meth:`_reactive_keys`, e.g. ``"lr/group0/0"``) pairs each
        reduce-on-plateau state with its schedule, whatever order the keys are given in when the
        driver is attached again; :meth:`load_state_dict` matches the states by it.
        """
        return {
            "t": self._t,
            "reactive": [s.state_dict() for s in self._reactive],
            "reactive_keys": self._reactive_keys(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output and write the values at the restored ``t``.

        The reactive states are matched to the reduce-on-plateau schedules by
        ``reactive_keys``; a state whose keys are not this driver's is refused, naming both. A
        state without ``reactive_keys`` (written before they were kept) is matched by position,
        so the driver must list its keys in the order of the driver that wrote it. All or
        nothing: a refused state (or a step at which the values are refused) leaves ``t`` and
        every schedule as they were.
        """
        t = state.get("t") if isinstance(state, Mapping) else None
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (t >= 0):
            raise ValueError(f"state must hold a step count 't' >= 0, got {state!r}")
        t = _check_step(t, "state['t']")
        reactive = state.get("reactive", [])
        if not isinstance(reactive, (list, tuple)):
            raise ValueError(
                "state['reactive'] must be a list of reduce-on-plateau states (from "
                f"state_dict()), got state['reactive']={reprlib.repr(reactive)}"
            )
        if len(reactive) != len(self._reactive):
            raise ValueError(
                f"state holds {len(reactive)} reactive schedule state(s), this driver has "
                f"{len(self._reactive)}"
            )
        keys = state.get("reactive_keys")
        if keys is not None:
            reactive = self._match_reactive(keys, reactive)
        before = [schedule.state_dict() for schedule in self._reactive]
        try:  # (all or nothing: a refused state leaves every schedule as it was)
            for schedule, schedule_state in zip(self._reactive, reactive):
                schedule.load_state_dict(schedule_state)
            self._apply(t)
        except BaseException:
            self._restore_reactive(before)
            raise
        self._t = t

    def _match_reactive(self, keys: Any, states: Sequence[Any]) -> list[Any]:
        """``states`` (saved under ``keys``) in the order of ``self._reactive``."""
        if (
            not isinstance(keys, (list, tuple))
            or not all(isinstance(key, str) for key in keys)
            or len(keys) != len(states)
            or len(set(keys)) != len(keys)
        ):
            raise ValueError(
                f"state['reactive_keys'] must be a list of {len(states)} distinct strings, one "
                f"per entry of state['reactive'], got state['reactive_keys']={keys!r}"
            )
        mine = self._reactive_keys()
        if set(keys) != set(mine):
            raise ValueError(
                f"state holds reduce-on-plateau states for {sorted(keys)}, this driver has "
                f"reduce-on-plateau schedules at {sorted(mine)} (key/param group/position in "
                "the schedule): attach the schedules the state was saved from, for the same keys"
            )
        by_key = dict(zip(keys, states))
        return [by_key[key] for key in mine]

    def __repr__(self) -> str:
        keys = ", ".join(self.schedules)
        return f"{type(self).__name__}(t={self._t}, keys=[{keys}])"


class PlateauScheduleDriver(ScheduleDriver, ReduceLROnPlateau):
    """A :class:`ScheduleDriver` with a reduce-on-plateau schedule (what :func:`attach` and
    ``ScheduleDriver(...)`` return when a schedule holds one).

    Also a ``torch.optim.lr_scheduler.ReduceLROnPlateau``, so code that recognises plateau
    schedulers by type passes the metric to :meth:`step` (``step(metric)``, as torch's): PyTorch
    Lightning then requires a ``monitor`` and calls ``step(monitored value)`` at each interval.
    Everything else is :class:`ScheduleDriver`'s: the decisions are made by the
    ``reduce_on_plateau`` schedules inside (``schedulers.plateau``, torch's rules), whose state
    is in :meth:`state_dict`; torch's own attributes and helpers (``mode``, ``best``,
    ``is_better``, ``in_cooldown``) are theirs, not the driver's.

    >>> import torch, schedulers as S
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> driver = S.attach(opt, lr=S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5))
    >>> isinstance(driver, torch.optim.lr_scheduler.ReduceLROnPlateau)
    True
    >>> driver.step(1.0); driver.step(1.0); driver.get_last_lr()  # no improvement: halved
    [0.05]
    """

    def step(  # type: ignore[override]
        self,
        metric: SupportsFloat | None = None,
        epoch: float | None = None,
        *,
        t: float | None = None,
    ) -> None:
        """Feed ``metric`` to the reduce-on-plateau schedules, advance ``t`` by one (or move it
        to ``t``) and write the values at the new ``t``.

        The arguments of torch's ``ReduceLROnPlateau.step(metrics, epoch=None)``: ``metric`` (a
        number or a one-element tensor; ``None``: no decision this step) and the deprecated
        ``epoch``, honoured as torch honours it (``t = epoch``, with torch's deprecation
        ``UserWarning``; ``step(metric, t=epoch)`` does the same without it), as in
        :meth:`ScheduleDriver.step`. The metric is fed to every reduce-on-plateau schedule,
        wherever it is nested, at the step its own clock shows, before the new values are
        computed.
        """
        self._step(_epoch_step(epoch, t), metric)


def _is_sequence(spec: Any) -> bool:
    """Whether ``spec`` is a list of per-group schedules (not a schedule, dict or string)."""
    return isinstance(spec, Sequence) and not isinstance(spec, (str, bytes, Schedule))


def _drivable(value: Any) -> bool:
    """Whether a schedule may write into a param-group slot holding ``value``: a real number
    (not a bool: ``maximize``, ``nesterov`` are flags) or a one-element floating-point tensor
    (filled in place). ``None`` (``foreach``), strings, tuples and lists are not numbers."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and value.is_floating_point()
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_float(value: Any) -> float:
    """A param-group value as a float (a one-element tensor is read back: at attach only)."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return math.nan


def _epoch_step(epoch: Any, t: Any) -> Any:
    """The step to move to from torch's deprecated ``epoch`` or the driver's ``t``."""
    if epoch is None:
        return t
    if t is not None:
        raise ValueError(
            f"give the step to move to once: step(epoch) (torch's deprecated form) or "
            f"step(t=...), got epoch={epoch!r} and t={t!r}"
        )
    epoch = _check_step(epoch, "epoch")
    warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=3)
    return epoch


def _copy(value: Any) -> Any:
    """A tensor hyperparameter cloned (as torch's ``initial_lr``), anything else as it is."""
    return value.clone() if hasattr(value, "clone") else value


def _unique(nodes) -> list[Schedule]:
    out, seen = [], set()
    for node in nodes:
        if id(node) not in seen:
            seen.add(id(node))
            out.append(node)
    return out


def _metric_value(metric: Any) -> float:
    """``float(metric)``; a tensor is read back here: a deliberate host sync point (as in
    torch's ``ReduceLROnPlateau``), made only when a plateau schedule takes the metric."""
    try:
        return float(metric)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"metric must be a real number or a one-element tensor, got metric={metric!r}"
        ) from err


def _check_step(t: Any, name: str = "t") -> int | float:
    """A step to move to: an int, or a float (whole floats become ints), in ``[0, 2**53]``."""
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise TypeError(f"step {name} must be a number >= 0, got {name}={t!r}")
    if isinstance(t, numbers.Integral):
        t = int(t)
    elif not (math.isfinite(t) and t >= 0):
        raise ValueError(f"step {name} must be finite and >= 0, got {name}={t!r}")
    elif float(t).is_integer():
        t = int(t)
    else:
        t = float(t)
    if t < 0:
        raise ValueError(f"step {name} must be finite and >= 0, got {name}={t!r}")
    if t > MAX_STEP:
        raise ValueError(
            f"step {name} must be <= 2**53 (the schedules' last exact step), got "
            f"{name}={reprlib.repr(t)}"
        )
    return t


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
        The :class:`ScheduleDriver` (a ``torch.optim.lr_scheduler.LRScheduler``; a
        :class:`PlateauScheduleDriver`, also a ``ReduceLROnPlateau``, when a schedule holds a
        reduce-on-plateau); call its ``step()`` after each optimizer update.

    Raises:
        ValueError: a key missing from a param group or not holding a number there (a flag,
            ``None``, ``params``, a tuple without an index), a wrong number of per-group
            schedules, a key given twice.
        TypeError: not an optimizer, not a schedule; ``schedules`` not a mapping (a schedule
            given positionally, ``attach(optimizer, schedule)``: give it by key,
            ``attach(optimizer, lr=schedule)``).

    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    >>> driver = attach(opt, lr=multistep(0.1, milestones=[2], gamma=0.5), momentum=constant(0.8))
    >>> opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]  # the values of t = 0
    (0.1, 0.8)
    >>> for _ in range(2): opt.step(); driver.step()  # two updates: t = 2, the milestone
    >>> opt.param_groups[0]["lr"]
    0.05
    """
    if schedules is not None and not isinstance(schedules, Mapping):
        hint = "give each schedule by the key it drives: attach(optimizer, lr=schedule)"
        if isinstance(schedules, Schedule):
            hint = (
                "a schedule is given by the key it drives, not positionally: "
                "attach(optimizer, lr=schedule) (or momentum=, beta1=, ..., or {'lr': schedule})"
            )
        raise TypeError(
            "schedules must be a mapping {key: schedule or [schedule per group]}, got "
            f"schedules={reprlib.repr(schedules)} ({type(schedules).__name__}); {hint}"
        )
    merged: dict[str, Any] = {}
    for key, spec in [*(schedules or {}).items(), *schedules_by_key.items()]:
        canonical = KEY_ALIASES.get(key, key)
        if canonical in merged:
            raise ValueError(f"schedule key {canonical!r} is given twice")
        merged[canonical] = spec
    return ScheduleDriver(optimizer, merged)
