"""Learning-rate-free and adaptive step sizes beside tuned Adam and SGD with momentum.

Setup. Every method of ``optim`` that picks its own step size, at its constructor's defaults:
Prodigy, DAdaptAdam, DAdaptSGD, DAdaptAdaGrad, DoG, LDoG, SGDScheduleFree, AdamWScheduleFree,
SPS (SPS_max, c = 0.5, gamma_b = 1, f* = 0) and SLS (stochastic Armijo line search; its
``n_batches_per_epoch`` is set to the data's n / b, which the paper defines it to be, not a
knob). Beside them the two tuned baselines: ``optim.Adam`` and ``optim.SGD`` with momentum 0.9,
each at the learning rate that the ``optimizers`` experiment's grid search picks.

Problems:

* MNIST-1D, with the models of the ``optimizers`` experiment (``logreg``, ``mlp``, ``cnn``) and
  its training settings (read from ``runs/experiments/optimizers.toml``: steps, batch size,
  seeds 0..2). The search is that experiment's: the grids of ``logreg.adam``,
  ``logreg.momentum``, ... , one seed (its ``[search] seed``), its search budget, the lowest final
  training loss wins (ties: the lower rate; diverged runs never win). The training loop is that
  of ``runs.trainer.train_run`` (model initialised after ``torch.manual_seed(seed)``, the batches
  of ``runs.trainer.epoch_batches``), so the rates picked here are the ones ``stepsize run
  optimizers`` picks.
* Two convex problems from ``theory`` with exact L and f*, full-batch gradients in float64:
  ``quadratic`` (``Quadratic.from_condition_number``, dim 50, κ = 100, L = 1) and ``logistic``
  (``LogisticRegression`` on n = 200 Gaussian points in 20 dimensions, labels sign(Xw + noise),
  l2 = 1e-3). Each seed draws a new instance and start. The baselines' grids are those of the
  ``logreg`` variants, extended past an end where the best rate lies there until a rate does
  no better (:func:`search_convex`); the search runs a quarter of the steps (as the
  ``optimizers`` experiment does) on the seed's instance and keeps the lowest final loss.

Measured, per method and problem (mean ± std over seeds, ``ddof = 1``):

* final test accuracy (MNIST-1D) or gap f(x_T) - f* (convex); Schedule-Free methods are
  evaluated at their averaged point (``optimizer.eval()``). A convex run stops once its gap is
  below ``theory.numerical_floor(problem, "gap")`` (1e4 ε (|f*| + f(x0) - f*) + ..., the float64
  noise level), and gaps are clipped below at that floor: below it the comparison and the step
  sizes are rounding (SLS's Armijo test, for one, then backtracks to nothing);
* the distance from the tuned baseline: accuracy minus the better baseline's mean accuracy (in
  points), or the mean gap divided by the better baseline's mean gap;
* the effective step size the method settled on: the median over the last quarter of the run of
  Prodigy's and D-Adaptation's d · lr, DoG's eta (LDoG: the median over tensors), SPS's and SLS's
  accepted step, Schedule-Free's scheduled lr (= its default lr, no warmup), the baselines' lr;
  compared with the grid's best rate of the baseline in the same units (Adam's for Prodigy,
  DAdaptAdam and AdamWScheduleFree; SGD-with-momentum's for the SGD-like steps; none for
  DAdaptAdaGrad) and with 1/L at the start: the exact L of a convex problem, or for MNIST-1D the
  top Hessian eigenvalue of the first training batch's loss at the seed's initialisation
  (``theory.smoothness``, Lanczos). Note that SGD with momentum β moves lr / (1 - β) = 10 lr per
  step in steady state.

``--quick``: one seed, ``QUICK_MNIST1D_STEPS`` MNIST-1D updates (search: a quarter of them),
``QUICK_CONVEX_STEPS`` convex updates in ``QUICK_DIM`` dimensions; a smoke test, not a result.
On the convex problems x is one tensor, so LDoG is DoG there.

Conventions: t counts updates already made; curves (first seed) hold the effective step size
after every ``RECORD_EVERY``-th update. A run whose training loss becomes non-finite stops and
is reported as diverged (its numbers are left out of the means). A MNIST-1D run that ends at
chance (:func:`collapsed`) is kept in the means and marked.

A failure is the method's or this port's: every MNIST-1D run of a method with a reference
package (:data:`PACKAGES`, the ``reference`` extra) that collapsed or diverged is run again from
the same seed with the package's own class at its defaults (:func:`package_check`), and the
report says whether the package failed the same way and how far its final metrics are from
ours. Without the package installed, the report says the run was not checked.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

import optim
import theory
from runs.figures import save_figure
from runs.spec import Train
from runs.study import format_mean_std as fmt
from runs.study import mean_std

if TYPE_CHECKING:  # (the data are loaded where a study needs them)
    from runs.data import DatasetSplits

DESCRIPTION = (
    "Prodigy, D-Adaptation, DoG, Schedule-Free, SPS and SLS at their defaults beside Adam and "
    "SGD with momentum at the optimizers experiment's grid-searched rate, on MNIST-1D (logreg, "
    "MLP, CNN) and two convex problems: accuracy / gap and the step size each settled on"
)
RUNTIME = (
    "about 3.5-8 min on 2 CPU cores (1 torch thread; 3.4 to 7.9 min measured), baselines' grid "
    "search and the reference packages' reruns of failed runs (about 30 s) included (--quick: "
    "about 8 s, 11 s end to end)"
)
REFERENCE = (
    "No single table to reproduce: each method's paper compares it with tuned baselines on its "
    "own tasks: Defazio & Mishchenko, ICML 2023 (D-Adaptation); Mishchenko & Defazio 2023 "
    "(Prodigy); Ivgi, Hinder & Carmon, ICML 2023 (DoG: close to tuned SGD, LDoG close to tuned "
    "Adam); Defazio et al., NeurIPS 2024 (Schedule-Free); Loizou et al., AISTATS 2021 (SPS); "
    "Vaswani et al., NeurIPS 2019 (SLS). Their common claim is a final quality close to a tuned "
    "baseline with no learning rate to tune; here that claim is measured at the defaults, with "
    "the step size each method chose beside the grid's best and 1/L."
)
SEEDS = 3
QUICK_SEEDS = 1

MNIST1D_PANELS = ("logreg", "mlp", "cnn")
CONVEX_PROBLEMS = ("quadratic", "logistic")
CONVEX_STEPS, QUICK_CONVEX_STEPS = 1000, 60
# --quick trains MNIST-1D for this many updates (search: a quarter) instead of the optimizers
# experiment's own --quick budget, to stay within a few seconds with SLS's extra forward passes.
QUICK_MNIST1D_STEPS = 24
EXTEND_AT_MOST = 6  # rates a convex search may add past an end of its grid (search_convex)
SEARCH_FRACTION = 4  # the search runs steps // 4, as the optimizers experiment (500 of 2000)
QUADRATIC_DIM, QUADRATIC_KAPPA = 50, 100.0
LOGISTIC_N, LOGISTIC_DIM, LOGISTIC_L2, LOGISTIC_NOISE = 200, 20, 1e-3, 0.5
QUICK_DIM = 10
RECORD_EVERY = 10
CHANCE_MARGIN = 0.02
"""A MNIST-1D run collapsed when its final training accuracy is at most 1/classes + this."""
PACKAGES: dict[str, tuple[str, str]] = {
    "prodigy": ("prodigyopt", "Prodigy"),
    "dadapt_adam": ("dadaptation", "DAdaptAdam"),
    "dadapt_sgd": ("dadaptation", "DAdaptSGD"),
    "dadapt_adagrad": ("dadaptation", "DAdaptAdaGrad"),
    "dog": ("dog", "DoG"),
    "ldog": ("dog", "LDoG"),
    "sgd_sf": ("schedulefree", "SGDScheduleFree"),
    "adamw_sf": ("schedulefree", "AdamWScheduleFree"),
}
"""Each method's class in its reference package (module, class): the drop-in ``optim`` matches."""
MOMENTUM = 0.9
BASELINES = ("adam", "momentum")
SMOOTHNESS_TOL, SMOOTHNESS_MAX_HVPS = 1e-4, 300


@dataclass(frozen=True)
class Method:
    """One optimizer of the comparison: its key, label, how its step size compares (``family``:
    ``"adam"``, ``"sgd"`` or ``"adagrad"``) and its factory ``make(params, lr, batches_per_epoch)``
    (``lr`` only for the baselines)."""

    key: str
    label: str
    family: str
    make: Callable[..., torch.optim.Optimizer]
    closure: bool = False  # step(closure): the loss at the current point is needed
    schedule_free: bool = False  # train() before training, eval() before measuring
    baseline: bool = False


METHODS: tuple[Method, ...] = (
    Method("prodigy", "Prodigy", "adam", lambda ps, lr, n: optim.Prodigy(ps)),
    Method("dadapt_adam", "DAdaptAdam", "adam", lambda ps, lr, n: optim.DAdaptAdam(ps)),
    Method("dadapt_sgd", "DAdaptSGD", "sgd", lambda ps, lr, n: optim.DAdaptSGD(ps)),
    Method("dadapt_adagrad", "DAdaptAdaGrad", "adagrad", lambda ps, lr, n: optim.DAdaptAdaGrad(ps)),
    Method("dog", "DoG", "sgd", lambda ps, lr, n: optim.DoG(ps)),
    Method("ldog", "LDoG", "sgd", lambda ps, lr, n: optim.LDoG(ps)),
    Method(
        "sgd_sf",
        "SGDScheduleFree",
        "sgd",
        lambda ps, lr, n: optim.SGDScheduleFree(ps),
        schedule_free=True,
    ),
    Method(
        "adamw_sf",
        "AdamWScheduleFree",
        "adam",
        lambda ps, lr, n: optim.AdamWScheduleFree(ps),
        schedule_free=True,
    ),
    Method("sps", "SPS", "sgd", lambda ps, lr, n: optim.SPS(ps), closure=True),
    Method(
        "sls", "SLS", "sgd", lambda ps, lr, n: optim.SLS(ps, n_batches_per_epoch=n), closure=True
    ),
    Method("adam", "Adam (tuned)", "adam", lambda ps, lr, n: optim.Adam(ps, lr=lr), baseline=True),
    Method(
        "momentum",
        "SGD momentum (tuned)",
        "sgd",
        lambda ps, lr, n: optim.SGD(ps, lr=lr, momentum=MOMENTUM),
        baseline=True,
    ),
)
BY_KEY = {m.key: m for m in METHODS}
# The baseline whose grid rate is in the same units as a family's step size.
REFERENCE_BASELINE = {"adam": "adam", "sgd": "momentum", "adagrad": None}


def effective_step_size(optimizer: torch.optim.Optimizer) -> float:
    """The first param group's step size after an update (see the module docstring): the
    optimizer's own ``step_sizes()`` for the learning-rate-free methods, the baselines' lr; a
    host read, taken outside ``step()``."""
    if hasattr(optimizer, "step_sizes"):
        return float(optimizer.step_sizes()[0])
    return float(optimizer.param_groups[0]["lr"])


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _settled(steps: list[float]) -> float | None:
    """The median of the last quarter of a run's step sizes."""
    if not steps:
        return None
    tail = steps[len(steps) - max(1, len(steps) // 4) :]
    return _finite_or_none(float(np.median(tail)))


# ----------------------------------------------------------------------------------------------
# MNIST-1D
# ----------------------------------------------------------------------------------------------
def optimizers_settings(quick: bool) -> dict[str, Any]:
    """What this study takes from the ``optimizers`` experiment: per panel the model and the
    grids of Adam and of SGD with momentum; the training and search settings; the seeds."""
    from runs import tuning
    from runs.load import load_experiment

    experiment = load_experiment("optimizers", quick=quick)
    variants = {v.name: v for v in experiment.variants}
    search = experiment.search
    assert search is not None
    panels = {}
    for panel in MNIST1D_PANELS:
        adam, momentum = variants[f"{panel}.adam"], variants[f"{panel}.momentum"]
        optimizer = momentum.optimizer
        if optimizer.hyperparameters.get("momentum") != MOMENTUM or optimizer.name != "sgd":
            raise ValueError(f"{panel}.momentum is no longer SGD with momentum {MOMENTUM}")
        panels[panel] = {
            "model": adam.model.to_table(),
            "grids": {
                "adam": search.grids[adam.name],
                "momentum": search.grids[momentum.name],
            },
        }
    first = experiment.variants[0]
    train = first.train.to_table()
    search_train = tuning.search_train(first.train, search.train).to_table()
    if quick:
        train["steps"] = QUICK_MNIST1D_STEPS
        search_train["steps"] = QUICK_MNIST1D_STEPS // SEARCH_FRACTION
    return {
        "panels": panels,
        "dataset": first.dataset.to_table(),
        "train": train,
        "search_train": search_train,
        "search_seed": search.seed,
        "search_metric": search.metric,
        "seeds": list(experiment.seeds),
    }


def _build(model: dict, data, seed: int) -> torch.nn.Module:
    from runs.models import build_model

    torch.manual_seed(seed)
    options = {k: v for k, v in model.items() if k != "name"}
    return build_model(model["name"], data.input_shape, data.num_classes, **options)


def initial_smoothness(model: dict, data: DatasetSplits, train: dict, seed: int) -> float:
    """L at the start: the top Hessian eigenvalue of the first training batch's loss at the
    model ``seed`` initialises (``theory.smoothness``; the global RNG is left untouched)."""
    from runs.trainer import epoch_batches

    net = _build(model, data, seed)
    batch = next(iter(epoch_batches(data, Train.from_table(train), seed, 0)))
    estimate = theory.smoothness(
        net, F.cross_entropy, batch, tol=SMOOTHNESS_TOL, max_hvps=SMOOTHNESS_MAX_HVPS, seed=seed
    )
    return float(estimate.eigenvalue)


def train_mnist1d(
    method: Method,
    model: dict,
    data: DatasetSplits,
    train: dict,
    seed: int,
    lr: float | None = None,
) -> dict[str, Any]:
    """``train["steps"]`` updates of ``method`` (the loop of ``runs.trainer.train_run``); the
    final metrics (``runs.trainer.eval_metrics``), status and per-update step sizes."""
    from runs.batches import batches_per_epoch
    from runs.build import evaluation_mode
    from runs.trainer import batch_norm_inputs, epoch_batches, eval_metrics

    net = _build(model, data, seed)
    params = [p for p in net.parameters() if p.requires_grad]
    per_epoch = batches_per_epoch(len(data.train_x), train["batch_size"])
    optimizer = method.make(params, lr, per_epoch)
    if method.schedule_free:
        optimizer.train()
    steps, step, epoch, sizes, diverged = train["steps"], 0, 0, [], None
    net.train()
    while step < steps and diverged is None:
        for xb, yb in epoch_batches(data, Train.from_table(train), seed, epoch):
            if method.closure:

                def closure(xb=xb, yb=yb):
                    optimizer.zero_grad(set_to_none=True)
                    batch_loss = F.cross_entropy(net(xb), yb)
                    batch_loss.backward()
                    return batch_loss

                loss = optimizer.step(closure)
            else:
                loss = F.cross_entropy(net(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            step += 1
            sizes.append(effective_step_size(optimizer))
            value = float(loss.detach())  # note: a host read per update (the study logs each)
            if not math.isfinite(value):
                diverged = step
                break
            if step == steps:
                break
        epoch += 1
    spec = Train.from_table(train)
    inputs = functools.partial(batch_norm_inputs, data, spec, seed)
    with evaluation_mode(optimizer, then_train=False, model=net, inputs=inputs):
        metrics = eval_metrics(net, data, spec)
    finite = diverged is None and all(math.isfinite(v) for v in metrics.values())
    return {
        "status": "finished" if finite else "diverged",
        "diverged_step": diverged,
        "final": {k: float(v) for k, v in metrics.items()} if finite else None,
        "step_sizes": sizes,
    }


def collapsed(final: dict[str, float] | None, classes: int) -> bool:
    """Whether a finished MNIST-1D run ended at chance: final training accuracy at most
    ``1 / classes + CHANCE_MARGIN`` (the model predicts about one class for every input).

    >>> collapsed({"train_accuracy": 0.1027}, 10), collapsed({"train_accuracy": 0.36}, 10)
    (True, False)
    """
    return final is not None and final["train_accuracy"] <= 1 / classes + CHANCE_MARGIN


def package_method(method: Method) -> Method | None:
    """``method`` with its reference package's class (:data:`PACKAGES`) at that class's
    defaults, as ``method`` uses ours; None when the method has no package or the package is
    not installed."""
    if method.key not in PACKAGES:
        return None
    module_name, class_name = PACKAGES[method.key]
    try:
        package_class = getattr(importlib.import_module(module_name), class_name)
    except ImportError:
        return None
    return dataclasses.replace(
        method, label=f"{module_name}.{class_name}", make=lambda ps, lr, n: package_class(ps)
    )


def package_check(
    method: Method,
    ours: dict[str, Any],
    model: dict,
    data: DatasetSplits,
    train: dict,
    seed: int,
) -> dict[str, Any]:
    """The MNIST-1D run ``ours`` of ``method`` (one that collapsed or diverged) trained again
    from the same seed with the reference package's class (:func:`package_method`): whether the
    package failed the same way (``same_outcome``: the same status, the same diverged step, and
    both collapsed or neither), and the largest difference between the two runs' final metrics
    (None when either diverged). ``installed`` is False, with nothing else, when the package is
    missing."""
    module_name, class_name = PACKAGES[method.key]
    package = package_method(method)
    if package is None:
        return {"package": f"{module_name}.{class_name}", "installed": False}
    theirs = train_mnist1d(package, model, data, train, seed)
    difference = None
    if ours["final"] is not None and theirs["final"] is not None:
        difference = max(abs(ours["final"][k] - theirs["final"][k]) for k in ours["final"])
    same = (
        ours["status"] == theirs["status"]
        and ours["diverged_step"] == theirs["diverged_step"]
        and collapsed(ours["final"], data.num_classes)
        == collapsed(theirs["final"], data.num_classes)
    )
    return {
        "package": package.label,
        "installed": True,
        "status": theirs["status"],
        "diverged_step": theirs["diverged_step"],
        "final": theirs["final"],
        "same_outcome": same,
        "max_difference": difference,
    }


def _choose(rows: list[dict[str, Any]]) -> float:
    """The grid's rate with the lowest final value (ties: the lower rate; diverged never wins),
    as ``runs.tuning`` chooses."""

    def score(row):
        return row["value"] if row["value"] is not None else math.inf

    return min(rows, key=lambda row: (score(row), row["lr"]))["lr"]


def search_mnist1d(settings: dict, data: DatasetSplits) -> dict[str, dict[str, Any]]:
    """The ``optimizers`` experiment's grid search for Adam and SGD with momentum, per panel."""
    found = {}
    metric = settings["search_metric"]
    if metric != "train_loss":
        raise ValueError(f"the optimizers experiment's search metric changed to {metric!r}")
    for panel, spec in settings["panels"].items():
        found[panel] = {}
        for key in BASELINES:
            rows = []
            for lr in spec["grids"][key]:
                run = train_mnist1d(
                    BY_KEY[key],
                    spec["model"],
                    data,
                    settings["search_train"],
                    settings["search_seed"],
                    lr=lr,
                )
                value = run["final"][metric] if run["final"] else None
                rows.append({"lr": lr, "status": run["status"], "value": value})
            found[panel][key] = {"grid": rows, "chosen": _choose(rows)}
    return found


# ----------------------------------------------------------------------------------------------
# convex problems
# ----------------------------------------------------------------------------------------------
def convex_problem(name: str, seed: int, quick: bool) -> theory.Problem:
    """The seed's instance of a convex problem (see the module docstring)."""
    if name == "quadratic":
        dim = QUICK_DIM if quick else QUADRATIC_DIM
        return theory.Quadratic.from_condition_number(dim, QUADRATIC_KAPPA, L=1.0, seed=seed)
    if name == "logistic":
        dim = QUICK_DIM if quick else LOGISTIC_DIM
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((LOGISTIC_N, dim))
        w = rng.standard_normal(dim)
        y = np.where(X @ w + LOGISTIC_NOISE * rng.standard_normal(LOGISTIC_N) >= 0, 1.0, -1.0)
        return theory.LogisticRegression(X, y, LOGISTIC_L2, seed=seed)
    raise ValueError(f"name must be one of {CONVEX_PROBLEMS}, got name={name!r}")


def train_convex(
    method: Method, problem: theory.Problem, steps: int, lr: float | None = None
) -> dict[str, Any]:
    """Up to ``steps`` full-gradient updates of ``method`` on ``problem`` from ``problem.x0``
    (float64); the run stops early once the gap of the point the optimizer holds is below
    ``theory.numerical_floor`` (beyond it the step sizes only see rounding: SLS's Armijo test,
    for one, then backtracks to nothing). Returns the final gap (at Schedule-Free's averaged
    point) clipped below at the floor, whether it reached the floor, status and step sizes."""
    floor = theory.numerical_floor(problem, "gap")
    x = problem.parameter()
    optimizer = method.make([x], lr, 1)  # full batch: n / b = 1
    if method.schedule_free:
        optimizer.train()

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = problem.loss(x)
        loss.backward()
        return loss

    sizes, diverged, reached = [], None, None
    for t in range(steps):
        if method.closure:
            loss = optimizer.step(closure)
        else:
            loss = closure()
            optimizer.step()
        sizes.append(effective_step_size(optimizer))
        if not (math.isfinite(float(loss.detach())) and bool(torch.isfinite(x).all())):
            diverged = t + 1
            break
        if problem.gap(x) <= floor:
            reached = t + 1
            break
    if method.schedule_free:
        optimizer.eval()
    gap = problem.gap(x) if diverged is None else math.nan
    finite = math.isfinite(gap)
    return {
        "status": "finished" if finite else "diverged",
        "diverged_step": diverged,
        "reached_floor_step": reached,
        "final": {"gap": max(gap, floor), "at_floor": gap <= floor} if finite else None,
        "step_sizes": sizes,
    }


def neighbouring_rate(lr: float, up: bool) -> float:
    """The next rate of a 1-3-10 grid (..., 0.01, 0.03, 0.1, 0.3, 1, ...) above or below ``lr``.

    >>> neighbouring_rate(0.3, up=True), neighbouring_rate(1.0, up=True)
    (1.0, 3.0)
    >>> neighbouring_rate(0.03, up=False), neighbouring_rate(0.01, up=False)
    (0.01, 0.003)
    """
    leading = lr / 10 ** math.floor(math.log10(lr) + 1e-9)  # (1 or 3 on such a grid)
    factor = (3.0 if up else 10 / 3) if leading < 2 else (10 / 3 if up else 3.0)
    return float(f"{lr * factor if up else lr / factor:.3g}")


def search_convex(problem: theory.Problem, grids: dict, steps: int) -> dict[str, Any]:
    """The baselines' grid search on one instance: lowest final gap after ``steps`` updates.

    The grids are the ``logreg`` variants', chosen for MNIST-1D, not for a convex problem's L:
    where the best rate is the grid's largest (smallest), the grid goes on past that end a rate
    at a time (:func:`neighbouring_rate`) until a new rate does no better than the best before
    it, at most :data:`EXTEND_AT_MOST` rates, so that the tuned baseline's rate is bracketed
    by rates that do worse (the report marks one still at an end). Each grid row records the
    rate, its status and final gap."""
    found = {}
    for key in BASELINES:

        def tried(lr: float, key: str = key) -> dict[str, Any]:
            run = train_convex(BY_KEY[key], problem, steps, lr=lr)
            value = run["final"]["gap"] if run["final"] else None
            return {"lr": lr, "status": run["status"], "value": value}

        rows = [tried(lr) for lr in grids[key]]
        for _ in range(EXTEND_AT_MOST):
            rates, chosen = [row["lr"] for row in rows], _choose(rows)
            if min(rates) < chosen < max(rates):
                break
            rows.append(tried(neighbouring_rate(chosen, up=chosen == max(rates))))
            if _choose(rows) == chosen:
                break  # (the new rate did no better: the best is bracketed)
        rows.sort(key=lambda row: row["lr"])
        found[key] = {"grid": rows, "chosen": _choose(rows)}
    return found


# ----------------------------------------------------------------------------------------------
# the comparison
# ----------------------------------------------------------------------------------------------
def _curve(sizes: list[float]) -> dict[str, list]:
    index = list(range(RECORD_EVERY - 1, len(sizes), RECORD_EVERY))
    return {
        "step": [i + 1 for i in index],
        "step_size": [_finite_or_none(sizes[i]) for i in index],
    }


def _record(method: Method, seed: int, run: dict[str, Any], lr: float | None) -> dict[str, Any]:
    return {
        "method": method.key,
        "seed": seed,
        "lr": lr,
        "status": run["status"],
        "diverged_step": run["diverged_step"],
        "reached_floor_step": run.get("reached_floor_step"),
        "final": run["final"],
        "settled_step_size": _settled(run["step_sizes"]) if run["final"] else None,
    }


def _row(
    problem: str,
    kind: str,
    method: Method,
    records: list[dict[str, Any]],
    searches: list[dict[str, Any]],
    inverse_L: list[float],
) -> dict[str, Any]:
    """One table row: the method's per-seed ``records`` on ``problem``; ``searches`` the grid
    search each seed's step size is compared with (one per seed, in ``records``' order)."""
    metric = "test_accuracy" if kind == "mnist1d" else "gap"
    finished = [r for r in records if r["final"] is not None]
    reference = REFERENCE_BASELINE[method.family]
    grid_best = [s[reference]["chosen"] for s in searches] if reference else None
    settled = [r["settled_step_size"] for r in finished if r["settled_step_size"] is not None]
    ratios = [  # each seed's settled step over its own search's best rate
        r["settled_step_size"] / best
        for r, best in zip(records, grid_best or [])
        if r["final"] is not None and r["settled_step_size"] is not None
    ]
    return {
        "problem": problem,
        "kind": kind,
        "method": method.key,
        "label": method.label,
        "family": method.family,
        "baseline": method.baseline,
        "metric": metric,
        "final": mean_std([r["final"][metric] for r in finished]) if finished else None,
        "train_loss": (
            mean_std([r["final"]["train_loss"] for r in finished])
            if finished and kind == "mnist1d"
            else None
        ),
        "diverged_seeds": [r["seed"] for r in records if r["final"] is None],
        "collapsed_seeds": [r["seed"] for r in finished if r.get("collapsed")],
        "package_checks": [
            {"seed": r["seed"], **r["package_check"]} for r in records if "package_check" in r
        ],
        "at_floor_seeds": [r["seed"] for r in finished if r["final"].get("at_floor")],
        "settled_step_size": mean_std(settled) if settled else None,
        "reference": reference,
        "grid_best_lr": grid_best,
        "step_over_grid_best": float(np.mean(ratios)) if ratios else None,
        "inverse_L": mean_std(inverse_L),
        "step_times_L": (
            float(np.mean([s / i for s, i in zip(settled, inverse_L)]))
            if len(settled) == len(inverse_L) and settled
            else None
        ),
        "per_seed": records,
    }


def _distances(rows: list[dict[str, Any]]) -> None:
    """Adds each row's distance from the better tuned baseline of its problem (in place)."""
    for problem in {r["problem"] for r in rows}:
        mine = [r for r in rows if r["problem"] == problem]
        baselines = [r for r in mine if r["baseline"] and r["final"] is not None]
        if not baselines:
            continue
        if mine[0]["kind"] == "mnist1d":
            best = max(baselines, key=lambda r: r["final"]["mean"])
            for r in mine:
                value = r["final"]["mean"] - best["final"]["mean"] if r["final"] else None
                r["vs_tuned"] = {"best_baseline": best["method"], "accuracy_points": value}
        else:
            best = min(baselines, key=lambda r: r["final"]["mean"])
            for r in mine:
                ratio = None
                if r["final"] and best["final"]["mean"] > 0:
                    ratio = r["final"]["mean"] / best["final"]["mean"]
                r["vs_tuned"] = {"best_baseline": best["method"], "gap_ratio": ratio}


def compute(*, quick: bool, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Searches the baselines' rates, runs every method on every problem and seed; see the
    module docstring for every field. Deterministic for given seeds."""
    from runs.data import load_dataset

    settings = optimizers_settings(quick)
    data = load_dataset(settings["dataset"]["name"], normalize=settings["dataset"]["normalize"])
    train = settings["train"]
    searches = search_mnist1d(settings, data)
    rows, curves, searches_out = [], {}, {}
    for panel, spec in settings["panels"].items():
        inverse_L = [1.0 / initial_smoothness(spec["model"], data, train, s) for s in seeds]
        curves[panel] = {}
        for method in METHODS:
            lr = searches[panel][method.key]["chosen"] if method.baseline else None
            records = []
            for seed in seeds:
                run = train_mnist1d(method, spec["model"], data, train, seed, lr=lr)
                record = _record(method, seed, run, lr)
                record["collapsed"] = collapsed(run["final"], data.num_classes)
                failed = record["collapsed"] or run["final"] is None
                if failed and method.key in PACKAGES:
                    record["package_check"] = package_check(
                        method, run, spec["model"], data, train, seed
                    )
                records.append(record)
                if seed == seeds[0]:
                    curves[panel][method.key] = _curve(run["step_sizes"])
            rows.append(
                _row(panel, "mnist1d", method, records, [searches[panel]] * len(seeds), inverse_L)
            )
        searches_out[panel] = {"seed": settings["search_seed"], **searches[panel]}
    grids = settings["panels"]["logreg"]["grids"]
    steps = QUICK_CONVEX_STEPS if quick else CONVEX_STEPS
    for name in CONVEX_PROBLEMS:
        problems = [convex_problem(name, seed, quick) for seed in seeds]
        per_seed_search = [search_convex(p, grids, steps // SEARCH_FRACTION) for p in problems]
        curves[name] = {}
        for method in METHODS:
            records = []
            for seed, problem, search in zip(seeds, problems, per_seed_search):
                lr = search[method.key]["chosen"] if method.baseline else None
                run = train_convex(method, problem, steps, lr=lr)
                records.append(_record(method, seed, run, lr))
                if seed == seeds[0]:
                    curves[name][method.key] = _curve(run["step_sizes"])
            # each seed's step is compared with its own instance's best rate (the seeds' best
            # rates may differ; every seed's choice is in ``search``)
            row = _row(
                name, "convex", method, records, per_seed_search, [1 / p.L for p in problems]
            )
            row["gap_floor"] = mean_std([theory.numerical_floor(p, "gap") for p in problems])
            rows.append(row)
        searches_out[name] = {
            key: {
                "chosen_per_seed": [s[key]["chosen"] for s in per_seed_search],
                "chosen": per_seed_search[0][key]["chosen"],
                "grid": per_seed_search[0][key]["grid"],
            }
            for key in BASELINES
        }
    _distances(rows)
    return {
        "setup": {
            "seeds": list(seeds),
            "quick": quick,
            "mnist1d": {
                "train": train,
                "search_train": settings["search_train"],
                "search_seed": settings["search_seed"],
                "search_metric": settings["search_metric"],
                "models": {p: s["model"] for p, s in settings["panels"].items()},
            },
            "convex": {
                "steps": steps,
                "search_steps": steps // SEARCH_FRACTION,
                "quadratic": {
                    "dim": QUICK_DIM if quick else QUADRATIC_DIM,
                    "kappa": QUADRATIC_KAPPA,
                },
                "logistic": {
                    "n": LOGISTIC_N,
                    "dim": QUICK_DIM if quick else LOGISTIC_DIM,
                    "l2": LOGISTIC_L2,
                    "label_noise": LOGISTIC_NOISE,
                },
                "grids": grids,
            },
            "record_every": RECORD_EVERY,
        },
        "search": searches_out,
        "rows": rows,
        "curves": curves,
    }


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _num(value: float | None, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec)


def _final(row: dict[str, Any]) -> str:
    if row["final"] is None:
        return "diverged"
    at_floor = row.get("at_floor_seeds") or []
    if row["kind"] == "mnist1d":
        text = fmt({k: 100 * v for k, v in row["final"].items()}, ".1f") + " %"
    elif len(at_floor) == len(row["per_seed"]):
        text = f"≤ {row['gap_floor']['mean']:.1e} (floor)"
    else:
        text = fmt(row["final"], ".2e")
        if at_floor:
            text += f" (seeds {at_floor} at the floor)"
    if row.get("collapsed_seeds"):
        text += f" (at chance: seeds {row['collapsed_seeds']})"
    if row["diverged_seeds"]:
        text += f" (diverged: seeds {row['diverged_seeds']})"
    return text


def _versus(row: dict[str, Any]) -> str:
    distance = row.get("vs_tuned")
    if distance is None:
        return "—"
    if "accuracy_points" in distance:
        value = distance["accuracy_points"]
        return "—" if value is None else f"{100 * value:+.1f} pts"
    value = distance["gap_ratio"]
    return "—" if value is None else f"× {value:.3g}"


def _table(rows: list[dict[str, Any]], seeds: int) -> str:
    lines = [
        f"Mean ± std over {seeds} seed(s). *vs tuned*: accuracy minus the better tuned "
        "baseline's (points), or gap divided by the better baseline's gap. *step*: the "
        "effective step size settled on (median of the last quarter of the run; Schedule-Free's "
        "is its fixed default lr, and SPS's and SLS's may sit at their caps gamma_b = 1 and "
        "eta_max = 10); */ grid*: divided by the grid's best rate of the baseline of its kind "
        "(Adam for Adam-like steps, SGD with momentum 0.9 for SGD-like ones, each seed by its "
        "own search's rate), whose steady-state step is lr / (1 - 0.9) = 10 lr: an SGD-like "
        "method at about 10 moves as far per step as the tuned baseline; *× L0*: times L at "
        "the start. The figure's curves are the first seed's.",
        "",
        "| problem | method | test accuracy / gap | vs tuned | step | / grid | × L0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        step = fmt(r["settled_step_size"], ".3g") if r["settled_step_size"] else "—"
        lines.append(
            f"| {r['problem']} | {r['label']} | {_final(r)} | {_versus(r)} | {step} | "
            f"{_num(r['step_over_grid_best'])} | {_num(r['step_times_L'])} |"
        )
    return "\n".join(lines) + "\n"


def _edge(found: dict[str, Any]) -> str:
    """The chosen rate, marked when it is the grid's largest or smallest."""
    rates = [row["lr"] for row in found["grid"]]
    mark = " (grid's top)" if found["chosen"] == max(rates) else ""
    mark = " (grid's bottom)" if found["chosen"] == min(rates) else mark
    per_seed = found.get("chosen_per_seed") or []
    if len(set(per_seed)) > 1:  # (a convex problem's seeds are instances of their own)
        mark += " (per seed: " + ", ".join(f"{lr:g}" for lr in per_seed) + ")"
    return f"{found['chosen']:g}{mark}"


def _search_table(results: dict[str, Any]) -> str:
    lines = [
        "The grids' best rates (MNIST-1D: the optimizers experiment's search; convex: the "
        "first seed's instance, and each seed's where they differ, the logreg grids extended "
        "past an end where the best lay there, until a rate did no better) and 1/L at the "
        "start (mean over seeds). Convex gaps are clipped below at theory's float64 noise "
        "floor (``theory.numerical_floor``), where runs stop.",
        "",
        "| problem | Adam grid best | SGD momentum grid best | 1/L0 |",
        "|---|---|---|---|",
    ]
    for problem, found in results["search"].items():
        row = next(r for r in results["rows"] if r["problem"] == problem)
        rates = [_edge(found[key]) for key in ("adam", "momentum")]
        lines.append(f"| {problem} | {rates[0]} | {rates[1]} | {fmt(row['inverse_L'], '.3g')} |")
    return "\n".join(lines) + "\n"


def _findings(rows: list[dict[str, Any]]) -> str:
    """The findings sentences. A method counts as close to the tuned baseline only when every
    seed finished: its mean is over the finished seeds, and a method that diverged on some seeds
    is not "at most 1 point below" because its survivors are; such rows are named apart, with
    their diverged seeds."""
    sentences = []
    for kind, unit in (("mnist1d", "accuracy_points"), ("convex", "gap_ratio")):
        free = [r for r in rows if r["kind"] == kind and not r["baseline"]]
        if not free:
            continue
        close, diverged = [], []
        for r in free:
            if r["diverged_seeds"]:
                diverged.append(r)
                continue
            value = (r.get("vs_tuned") or {}).get(unit)
            if value is None:
                continue
            if (unit == "accuracy_points" and value >= -0.01) or (
                unit == "gap_ratio" and value <= 10
            ):
                close.append(r)
        problems = sorted({r["problem"] for r in free})
        counts = {p: [r["label"] for r in close if r["problem"] == p] for p in problems}
        rule = (
            "at most 1 point below the better tuned baseline's test accuracy"
            if unit == "accuracy_points"
            else "at most 10x the better tuned baseline's gap"
        )
        parts = "; ".join(f"{p}: {', '.join(c) if c else 'none'}" for p, c in counts.items())
        sentences.append(f"Learning-rate-free methods {rule} ({parts}).")
        if diverged:
            named = "; ".join(
                f"{r['label']} on {r['problem']} (seed{'s' if len(r['diverged_seeds']) > 1 else ''}"
                f" {', '.join(map(str, r['diverged_seeds']))})"
                for r in diverged
            )
            sentences.append(f"Not counted there, for diverged seeds: {named}.")
    settled = [r for r in rows if not r["baseline"] and r["step_over_grid_best"] is not None]
    ratios = [
        (r["label"], r["problem"], r["step_over_grid_best"])
        for r in settled
        if not r["diverged_seeds"]
    ]
    if ratios:
        low = min(ratios, key=lambda x: x[2])
        high = max(ratios, key=lambda x: x[2])
        sentences.append(
            f"The settled step sizes range from {low[2]:.2g}x the grid's best rate ({low[0]} on "
            f"{low[1]}) to {high[2]:.2g}x ({high[0]} on {high[1]})"
            + (" (methods with a diverged seed left out)." if len(ratios) < len(settled) else ".")
        )
    return " ".join(sentences) + "\n"


def _failures(rows: list[dict[str, Any]]) -> str:
    """The MNIST-1D runs of learning-rate-free methods that ended at chance or diverged, and
    what their reference packages did from the same seeds (:func:`package_check`)."""
    failed = [
        r
        for r in rows
        if r["kind"] == "mnist1d"
        and not r["baseline"]
        and (r.get("collapsed_seeds") or r["diverged_seeds"])
    ]
    if not failed:
        return ""
    seeds = {id(r): sorted(r.get("collapsed_seeds", []) + r["diverged_seeds"]) for r in failed}
    runs = "; ".join(
        f"{r['label']} on {r['problem']} (seed{'s' if len(seeds[id(r)]) > 1 else ''} "
        f"{', '.join(map(str, seeds[id(r)]))})"
        for r in failed
    )
    text = (
        "MNIST-1D runs of learning-rate-free methods that ended at chance (training accuracy "
        f"at most 1/classes + {CHANCE_MARGIN:g}) or diverged: {runs}."
    )
    checks = [(r, c) for r in failed for c in r.get("package_checks", [])]
    rerun = [(r, c) for r, c in checks if c["installed"]]
    if rerun:
        packages = ", ".join(sorted({c["package"] for _, c in rerun}))
        text += (
            f" Rerun from the same seeds with the reference packages' classes ({packages}) at "
            "their defaults, "
        )
        differences = [c["max_difference"] for _, c in rerun if c["max_difference"] is not None]
        otherwise = [
            f"{r['label']} on {r['problem']} seed {c['seed']}: {c['status']}"
            for r, c in rerun
            if not c["same_outcome"]
        ]
        if otherwise:
            text += "some ended otherwise: " + "; ".join(otherwise) + "."
        else:
            largest = (
                f" (largest difference in a final metric: {max(differences):.2g})"
                if differences  # (none when every run diverged, as ours did)
                else ""
            )
            text += (
                f"every one failed the same way{largest}: these failures are the methods', "
                "not this port's."
            )
    missing = sorted({c["package"] for _, c in checks if not c["installed"]})
    if missing:
        text += f" Not rerun (package not installed): {', '.join(missing)}."
    return text + "\n"


PANELS = (*MNIST1D_PANELS, *CONVEX_PROBLEMS)
COLORS = {
    "prodigy": "tab:blue",
    "dadapt_adam": "tab:orange",
    "dadapt_sgd": "tab:green",
    "dadapt_adagrad": "tab:olive",
    "dog": "tab:red",
    "ldog": "tab:pink",
    "sgd_sf": "tab:purple",
    "adamw_sf": "tab:brown",
    "sps": "tab:cyan",
    "sls": "tab:gray",
    "adam": "black",
    "momentum": "black",
}
# Adam-like step sizes dashed (compare with Adam's rate), SGD-like solid, AdaGrad's dash-dot.
STYLES = {"adam": "--", "sgd": "-", "adagrad": "-."}


def _figure(results: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
    """One panel per problem: each method's effective step size against t (log scale; Adam-like
    steps dashed, SGD-like solid), the grids' best rates (Adam dashed, SGD with momentum solid,
    both black) and 1/L0 (dotted) as lines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = {r["method"]: r["label"] for r in results["rows"]}
    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    flat = axes.ravel()
    for ax, panel in zip(flat, PANELS):
        curves = results["curves"].get(panel, {})
        for key, curve in curves.items():
            if BY_KEY[key].baseline:
                continue
            values = np.array([np.nan if v is None else v for v in curve["step_size"]])
            ax.semilogy(curve["step"], np.where(values > 0, values, np.nan), color=COLORS[key],
                        ls=STYLES[BY_KEY[key].family], label=labels[key],
                        lw=3.0 if BY_KEY[key].schedule_free else 1.2,
                        alpha=0.5 if BY_KEY[key].schedule_free else 1.0)  # fmt: skip
        found = results["search"][panel]
        ax.axhline(
            found["momentum"]["chosen"], color="black", lw=1.6, label="SGD momentum grid best"
        )
        ax.axhline(found["adam"]["chosen"], color="black", lw=1.6, ls="--", label="Adam grid best")
        row = next(r for r in results["rows"] if r["problem"] == panel)
        ax.axhline(row["inverse_L"]["mean"], color="gray", lw=1.2, ls=":", label="1/L at start")
        ax.set_title(panel)
        ax.set_xlabel("t (updates made)")
        ax.grid(True, which="major", alpha=0.3)
    flat[0].set_ylabel("effective step size")
    flat[3].set_ylabel("effective step size")
    handles, names = flat[0].get_legend_handles_labels()
    flat[-1].axis("off")
    flat[-1].legend(handles, names, loc="center", fontsize="small")
    return save_figure(figure, path)


def report(results: dict[str, Any], figures_dir: pathlib.Path) -> tuple[str, list[pathlib.Path]]:
    """Markdown (the comparison table, the grids' best rates, findings computed from
    ``results``) and the figure ``learning-rate-free.png``, from ``results`` alone."""
    figure = _figure(results, pathlib.Path(figures_dir) / "learning-rate-free.png")
    seeds = len(results["setup"]["seeds"])
    markdown = "\n".join(
        [
            _table(results["rows"], seeds),
            _search_table(results),
            _findings(results["rows"]),
            _failures(results["rows"]),
        ]
    )
    return markdown, [figure]
