"""The workloads of ``stepsize score``: what is trained, the target and the step budget, and the
lean loop that trains one trial until the target is reached.

A :class:`Workload` is either an MNIST-1D model (``runs.data.load_dataset("mnist1d")``: 4000
training and 1000 test examples; ``runs.models.build_model``; mini-batches of
``runs.trainer.epoch_batches``, each epoch shuffled by a generator seeded by ``(seed, epoch)``)
whose target is a test-split metric (MNIST-1D has no separate validation split: the test split
plays AlgoPerf's validation set), or a convex problem of
``theory.problems`` trained full-batch in float64 from the problem's fixed start ``x0``, whose
target is the gap ``f(x) - f*`` (there the seed changes nothing: a run depends on its
hyperparameters only, so repeated studies differ only by their sampled points).

The targets and budgets of the built-in workloads (:data:`WORKLOADS`) were set by measurement:
externally tuned SGD with momentum and cosine reaches them after about half of the budget
(0.47, 0.48, 0.63, 0.53 and 0.50 of it, median over studies), tuned Adam after 0.37-0.67 of it
on MNIST-1D; the quick targets only check that something is reached.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from runs.build import attach_schedules, evaluation_mode, make_optimizer
from runs.checks import folder_name

if TYPE_CHECKING:  # (theory is imported where a problem is built)
    import theory

SOURCES = ("mnist1d", "theory")
MNIST1D_METRICS = {"test_accuracy": "max", "test_loss": "min"}  # metric -> better direction
THEORY_METRICS = {"gap": "min"}
THEORY_PROBLEMS = ("quadratic", "logistic")
# the options each theory problem takes (see Workload.model); any other key is refused
THEORY_OPTIONS = {
    "quadratic": ("dim", "kappa", "seed", "spacing"),
    "logistic": ("n", "dim", "l2", "noise", "seed"),
}


@dataclasses.dataclass(frozen=True)
class Workload:
    """One workload: a model or problem, a target and a step budget.

    Attributes:
        name: letters, digits and ``- _ . +``.
        source: ``"mnist1d"`` (a model of ``runs.models`` on MNIST-1D) or ``"theory"`` (a convex
            problem of ``theory.problems``).
        model: for ``"mnist1d"`` a model name of ``runs.models`` (``logistic``, ``mlp``,
            ``mnist1d-cnn``); for ``"theory"`` one of ``quadratic`` (``Quadratic``
            ``.from_condition_number(dim, kappa, L=1, seed)``, options ``dim``, ``kappa``,
            ``seed``, ``spacing``) or ``logistic`` (``LogisticRegression`` on ``n`` Gaussian
            points in ``dim`` dimensions with labels ``sign(X w + noise * e)``, options ``n``,
            ``dim``, ``l2``, ``noise``, ``seed``).
        metric: ``test_accuracy`` (reached when ``>= target``) or ``test_loss`` (``<=``) for
            MNIST-1D; ``gap`` (``f(x) - f* <= target``) for a theory problem.
        target: the value to reach, inside what the metric can reach and not met before
            training: an accuracy in ``(0, 1]`` (an accuracy is in ``[0, 1]``, and a target of 0
            or less is met at the first check), a cross-entropy loss ``> 0`` (it is ``>= 0``
            and 0 only in the limit), a gap ``> 0`` (``f(x) - f* >= 0``).
        budget: the step budget of one external-tuning trial (self-tuning runs get a multiple).
        eval_every: the target is checked after every ``eval_every`` updates (and after the last);
            the time to target is the first checked step at which it is met.
        batch_size: MNIST-1D mini-batch size (theory problems are full-batch).
        options: the model's or problem's options: for ``"theory"`` only the keys listed under
            ``model`` (:data:`THEORY_OPTIONS`); for ``"mnist1d"`` the options of
            ``runs.models.build_model`` (``hidden`` for ``mlp``, ``channels`` for
            ``mnist1d-cnn``). An unknown key (or an MNIST-1D model that does not build with
            them) is refused here, naming the workload, the key and the allowed keys; the
            values of a theory problem's options are checked by :func:`check_workloads`, which
            ``runs.score.score`` calls before anything trains.
        quick_budget, quick_target: what ``--quick`` uses instead (None: the same).
        description: one line for the table's notes.
    """

    name: str
    source: str
    model: str
    metric: str
    target: float
    budget: int
    eval_every: int
    batch_size: int = 100
    options: dict = dataclasses.field(default_factory=dict)
    quick_budget: int | None = None
    quick_target: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        allowed = folder_name(self.name)
        if allowed is not None:
            raise ValueError(f"Workload.name must be {allowed}, got name={self.name!r}")
        where = f"workload {self.name!r}"
        if self.source not in SOURCES:
            raise ValueError(f"{where}: source={self.source!r}; allowed: {', '.join(SOURCES)}")
        metrics = MNIST1D_METRICS if self.source == "mnist1d" else THEORY_METRICS
        if self.metric not in metrics:
            raise ValueError(
                f"{where}: metric={self.metric!r}; allowed for source {self.source!r}: "
                f"{', '.join(metrics)}"
            )
        if self.source == "theory" and self.model not in THEORY_PROBLEMS:
            raise ValueError(
                f"{where}: model={self.model!r}; allowed for source 'theory': "
                f"{', '.join(THEORY_PROBLEMS)}"
            )
        if self.source == "mnist1d":
            from runs.models import model_names

            if self.model not in model_names():
                raise ValueError(
                    f"{where}: model={self.model!r}; allowed: {', '.join(model_names())}"
                )
        for field in ("target", "quick_target"):
            value = getattr(self, field)
            if field == "quick_target" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where}: {field}={value!r}; allowed: a finite number")
            if not math.isfinite(value) or not _target_in_range(self.metric, value):
                raise ValueError(
                    f"{where}: {field}={value!r}; allowed: {TARGET_RANGES[self.metric]}"
                )
        for field in ("budget", "eval_every", "batch_size", "quick_budget"):
            value = getattr(self, field)
            if field == "quick_budget" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: {field}={value!r}; allowed: a positive integer")
        if self.eval_every > min(self.budget, self.quick_budget or self.budget):
            raise ValueError(
                f"{where}: eval_every={self.eval_every} exceeds the budget; allowed: at most "
                f"{min(self.budget, self.quick_budget or self.budget)}"
            )
        if not isinstance(self.options, dict):
            raise ValueError(f"{where}: options={self.options!r}; allowed: a dict")
        object.__setattr__(self, "options", dict(self.options))
        if self.source == "theory":
            allowed_keys = THEORY_OPTIONS[self.model]
            unknown = [key for key in self.options if key not in allowed_keys]
            if unknown:
                raise ValueError(
                    f"{where}: options={self.options!r}: unknown key(s) "
                    f"{', '.join(map(repr, unknown))} for the theory problem {self.model!r}; "
                    f"allowed: {', '.join(allowed_keys)}"
                )
        else:
            problem = _model_problem(self.model, self.options)
            if problem is not None:
                raise ValueError(f"{where}: options={self.options!r}: {problem}")

    @property
    def higher_is_better(self) -> bool:
        """Whether the metric is reached from below (accuracy) rather than from above."""
        return {**MNIST1D_METRICS, **THEORY_METRICS}[self.metric] == "max"

    def reached(self, value: float, target: float | None = None) -> bool:
        """Whether ``value`` meets the target (``>=`` for accuracy, ``<=`` otherwise)."""
        target = self.target if target is None else target
        return value >= target if self.higher_is_better else value <= target

    def quick(self) -> Workload:
        """The workload ``--quick`` runs: ``quick_budget`` and ``quick_target`` in place."""
        return dataclasses.replace(
            self,
            budget=self.quick_budget or self.budget,
            target=self.target if self.quick_target is None else self.quick_target,
            quick_budget=None,
            quick_target=None,
        )

    def target_text(self) -> str:
        """The target as a phrase, e.g. ``test accuracy >= 0.9``."""
        sign = ">=" if self.higher_is_better else "<="
        return f"{self.metric.replace('_', ' ')} {sign} {self.target:g}"


TARGET_RANGES = {  # what each metric can reach (see Workload.target)
    "test_accuracy": "an accuracy in (0, 1]",
    "test_loss": "a cross-entropy loss > 0",
    "gap": "a gap > 0",
}


def _target_in_range(metric: str, value: float) -> bool:
    """Whether ``value`` is a target the metric can reach, and not one met before training."""
    if metric == "test_accuracy":
        return 0 < value <= 1
    return value > 0  # a cross-entropy loss and a gap are >= 0


def _model_problem(model: str, options: dict) -> str | None:
    """What is wrong with building the MNIST-1D model ``model`` with ``options``, or None
    (``runs.models.build_problem``: on the meta device, the caller's random stream unchanged)."""
    from runs.data import known_shape
    from runs.models import build_problem

    return build_problem(model, *known_shape("mnist1d"), options)


# The measured targets: see the module docstring and ``runs.score``'s.
WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "mnist1d-logistic", "mnist1d", "logistic", "test_loss", 1.68, budget=300, eval_every=20,
        quick_budget=200, quick_target=1.8,
        description="MNIST-1D multinomial logistic regression, batch 100",
    ),
    Workload(
        "mnist1d-mlp", "mnist1d", "mlp", "test_accuracy", 0.60, budget=500, eval_every=20,
        quick_budget=200, quick_target=0.4,
        description="MNIST-1D residual MLP (hidden 100), batch 100",
    ),
    Workload(
        "mnist1d-cnn", "mnist1d", "mnist1d-cnn", "test_accuracy", 0.85, budget=600,
        eval_every=20, quick_budget=200, quick_target=0.4,
        description="MNIST-1D CNN (3 conv layers, 25 channels), batch 100",
    ),
    Workload(
        "quadratic", "theory", "quadratic", "gap", 1e-5, budget=300, eval_every=10,
        options={"dim": 50, "kappa": 1000.0, "seed": 0}, quick_budget=200, quick_target=1e-2,
        description="ill-conditioned quadratic, dim 50, kappa 1000, L = 1, full batch, float64",
    ),
    Workload(
        "logistic", "theory", "logistic", "gap", 1e-6, budget=300, eval_every=10,
        options={"n": 200, "dim": 20, "l2": 1e-3, "noise": 0.5, "seed": 0},
        quick_budget=200, quick_target=1e-3,
        description="l2-regularised logistic regression, n = 200, dim 20, l2 = 1e-3, full batch",
    ),
)  # fmt: skip
BY_NAME = {w.name: w for w in WORKLOADS}


# ------------------------------------------------------------------------------ what is trained
@functools.lru_cache(maxsize=2)
def _mnist1d():
    from runs.data import load_dataset

    return load_dataset("mnist1d")


@functools.lru_cache(maxsize=8)
def _problem(model: str, options_items: tuple):
    import numpy as np

    import theory

    options = dict(options_items)
    unknown = sorted(set(options) - set(THEORY_OPTIONS[model]))
    if unknown:  # (Workload refuses them first)
        raise ValueError(
            f"options: unknown key(s) {', '.join(map(repr, unknown))} for {model!r}; "
            f"allowed: {', '.join(THEORY_OPTIONS[model])}"
        )
    seed = options.pop("seed", 0)
    if model == "quadratic":
        dim, kappa = options.pop("dim", 50), options.pop("kappa", 100.0)
        return theory.Quadratic.from_condition_number(dim, kappa, L=1.0, seed=seed, **options)
    n, dim = options.pop("n", 200), options.pop("dim", 20)
    noise, l2 = options.pop("noise", 0.5), options.pop("l2", 1e-3)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim))
    w = rng.standard_normal(dim)
    y = np.where(X @ w + noise * rng.standard_normal(n) >= 0, 1.0, -1.0)
    return theory.LogisticRegression(X, y, l2, seed=seed)


def problem_of(workload: Workload) -> theory.Quadratic | theory.LogisticRegression:
    """The ``theory`` problem of a theory workload (built once per process)."""
    return _problem(workload.model, tuple(sorted(workload.options.items())))


def check_workloads(workloads: Sequence[Workload]) -> None:
    """Builds the problem of every theory workload (each once per process, as its trials would),
    so that an option value the problem refuses (``dim=0``, ``kappa=0.5``, ``spacing="cubic"``)
    stops the score before any trial trains, naming the workload (``ValueError``). MNIST-1D
    models are built when the :class:`Workload` is made."""
    for workload in workloads:
        if workload.source != "theory":
            continue
        try:
            problem_of(workload)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"workload {workload.name!r}: options={workload.options!r}: {err}"
            ) from None


def step_loss(returned: Any, computed: torch.Tensor | None) -> float | None:
    """The loss of one update for the divergence check, from what ``optimizer.step(closure)``
    returned: a tensor of one element or a real number (a Python or NumPy float or int; some
    optimizers return the closure's loss as a float) is that loss; anything else (None, the
    Optimizer API allows any value) gives way to ``computed``, the loss the closure computed
    first (the update's batch at the parameters before the step: what torch's optimizers return
    and what ``runs.trainer`` checks). None when neither is there."""
    if isinstance(returned, torch.Tensor) and returned.numel() == 1:
        return float(returned.detach())
    if isinstance(returned, numbers.Real) and not isinstance(returned, bool):
        return float(returned)
    return None if computed is None else float(computed.detach())


def _setup(workload: Workload, seed: int) -> tuple[list, Callable, Callable, Callable, dict]:
    """``(params, next_batch, loss(batch), evaluate(), evaluation)`` of one trial, where
    ``evaluation`` holds what ``runs.build.evaluation_mode`` needs to recompute a batch-norm
    model's statistics at a Schedule-Free optimizer's averaged point (as the trainer does)."""
    if workload.source == "theory":
        problem = problem_of(workload)
        x = problem.parameter()
        return [x], lambda: None, lambda _: problem.loss(x), lambda: problem.gap(x), {}
    from runs.models import build_model
    from runs.spec import Train
    from runs.trainer import batch_norm_inputs, epoch_batches, evaluate

    data = _mnist1d()
    torch.manual_seed(seed)  # the initial weights
    model = build_model(workload.model, data.input_shape, data.num_classes, **workload.options)
    train = Train(batch_size=workload.batch_size, steps=workload.budget)

    def stream():  # the trainer's batches: epoch e shuffled by a generator seeded by (seed, e)
        epoch = 0
        while True:
            yield from epoch_batches(data, train, seed, epoch)
            epoch += 1

    batch_stream = stream()
    metric = 0 if workload.metric == "test_loss" else 1

    def loss(batch):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

    model.train()
    return (
        [p for p in model.parameters() if p.requires_grad],
        lambda: next(batch_stream),
        loss,
        lambda: evaluate(model, data.test_x, data.test_y)[metric],
        {"model": model, "inputs": functools.partial(batch_norm_inputs, data, train, seed)},
    )


def train_to_target(
    workload: Workload,
    optimizer: dict,
    schedules: dict,
    budget: int,
    seed: int,
) -> dict[str, Any]:
    """Trains one trial until ``workload``'s target is met or ``budget`` updates are made.

    A lean loop rather than ``runs.trainer.train_run``: time to target needs the metric after
    every ``eval_every`` updates and a stop at the target, and none of the run folder
    (TensorBoard events, checkpoints, ``result.json``) that ``train_run`` writes. The optimizer
    and its schedules are built by ``runs.build.make_optimizer`` and ``attach_schedules``; the
    driver steps after every update (``t`` counts updates already made). Every update goes
    through ``optimizer.step(closure)`` on the update's batch, so loss-based methods (SPS, SLS)
    work too; a Schedule-Free optimizer (one with ``train()``/``eval()``) is evaluated in eval
    mode (a batch-norm model with statistics recomputed there, as in the trainer). Seconds count
    the updates only (batch, forward, backward, step; not the evaluations: AlgoPerf's submission
    time). A non-finite loss or metric at a check stops the run as diverged; the loss is the
    last update's, as :func:`step_loss` reads it from what ``step`` returned.

    Returns ``{"status": "reached" | "not reached" | "diverged", "steps": first checked step
    meeting the target or None, "seconds": training seconds until then or None, "best": the
    best metric seen, "last_step": updates made}``.
    """
    params, next_batch, loss_of, evaluate, evaluation = _setup(workload, seed)
    opt = make_optimizer(optimizer, params)
    driver = attach_schedules(opt, schedules)
    better = max if workload.higher_is_better else min
    best, elapsed, step, status = None, 0.0, 0, "not reached"
    steps = seconds = None
    while step < budget:
        started = time.perf_counter()
        batch = next_batch()

        computed: list[torch.Tensor] = []

        def closure(batch=batch, computed=computed):
            opt.zero_grad(set_to_none=True)
            value = loss_of(batch)
            value.backward()
            if not computed:  # the first evaluation: before the step
                computed.append(value.detach())
            return value

        returned = opt.step(closure)  # (read at the checks only: no host read per update)
        if driver is not None:
            driver.step()
        step += 1
        elapsed += time.perf_counter() - started
        if step % workload.eval_every and step != budget:
            continue
        with evaluation_mode(opt, **evaluation):
            value = float(evaluate())  # note: a host read, once per evaluation
        loss = step_loss(returned, computed[0] if computed else None)
        if not math.isfinite(value) or (loss is not None and not math.isfinite(loss)):
            status = "diverged"
            break
        best = value if best is None else better(best, value)
        if workload.reached(value):
            status, steps, seconds = "reached", step, elapsed
            break
    return {"status": status, "steps": steps, "seconds": seconds, "best": best, "last_step": step}
