"""The training loop of one variant and one seed.

:func:`train_run` reads top to bottom: build the model, optimizer and schedule driver from the
variant; restore a checkpoint if there is one; then one update per mini-batch, with logging,
evaluation and checkpointing as small calls. It is deterministic for a given seed on the CPU:
the model is initialised after ``torch.manual_seed(seed)``, and the batches of epoch ``e`` come
from a generator seeded by ``(seed, e)``, so a resumed run sees exactly the batches it would have
seen.

Conventions: ``step`` counts updates already made (``t`` of the schedules). The schedule driver
steps after every update (``schedule_unit = "step"``) or after the last update of every epoch
(``"epoch"``, d2l's convention: the learning rate changes once per epoch, and the schedule's
``t`` is the number of finished epochs). Evaluations happen at step 0, every ``eval_every``
updates (``"epoch"``: at the end of every epoch) and at the end. A Schedule-Free optimizer (one
with ``train()`` and ``eval()``) trains in train mode and is evaluated in eval mode, at its
averaged point, which the final checkpoint holds too; a model with batch norm is evaluated there
with running statistics recomputed at that point over ``BATCH_NORM_BATCHES`` training
mini-batches of a fixed shuffled order (:func:`batch_norm_inputs`; ``runs.build.evaluation_mode``;
at step 0, before any update, with its initial ones, as under every other optimizer).

A reduce-on-plateau schedule observes the **test split's** loss (the runner has no validation
split; ``test_loss`` of the evaluation made right after the update that steps the schedule): on
the step clock, each evaluation's; on the epoch clock, the evaluation at each epoch's end, as
torch's ``ReduceLROnPlateau`` is fed once per epoch. An epoch-clock plateau needs an evaluation at
every epoch end, so ``eval_every`` must then be ``"epoch"`` or divide the updates per epoch
(:func:`plateau_cadence_problem`; refused before anything is written).

Data-parallel training (``dist`` given, under ``torchrun``): every rank takes its share
``batch[rank::world]`` of the same global batch, and the loss is scaled by
``len(local) * world / len(global)`` so that DistributedDataParallel's gradient average is the
gradient of the mean loss over the global batch, whatever the shard sizes; a rank whose share is
empty (``N mod B`` below the world size) contributes an exact 0 (:func:`mini_batch_loss`). Only
rank 0 writes event files and checkpoints. Each checkpoint records the torch thread count and the
device type it was trained with (``session``): the numbers depend on both, so a resume under
others is refused (``runs.tuning.check_task_dirs``).
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from runs import checkpoint as ckpt
from runs.batches import batches, batches_per_epoch
from runs.build import (
    BATCH_NORM_BATCHES,
    attach_schedules,
    evaluation_mode,
    make_optimizer,
    observes_metric,
)
from runs.data import DatasetSplits
from runs.models import build_model
from runs.spec import Train, Variant
from runs.tensorboard import RunLogger, flat_hparams, new_history

if TYPE_CHECKING:
    from schedulers.driver import ScheduleDriver

EVAL_BATCH = 1000


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel group (``torch.distributed`` initialised)."""

    rank: int
    world_size: int


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh CPU generator seeded by ``(seed, epoch)``: ``SeedSequence([seed, epoch])``'s first
    32-bit word."""
    seed_e = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed_e)


def epoch_batches(
    data: DatasetSplits, train: Train, seed: int, epoch: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The mini-batches of ``epoch``: a fresh generator seeded by ``(seed, epoch)`` (pure, so a
    resumed run needs only the step)."""
    return batches(
        data.train_x,
        data.train_y,
        train.batch_size,
        shuffle=train.shuffle,
        generator=epoch_generator(seed, epoch),
    )


def total_steps(train: Train, num_examples: int) -> tuple[int, int]:
    """``(total updates, updates per epoch)`` of a train table."""
    per_epoch = batches_per_epoch(num_examples, train.batch_size)
    return train.steps or train.epochs * per_epoch, per_epoch


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) over ``(x, y)``."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), EVAL_BATCH):
        logits = model(x[start : start + EVAL_BATCH])
        labels = y[start : start + EVAL_BATCH]
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(dim=1) == labels).sum()
    model.train(was_training)
    return loss_sum.item() / len(x), correct.item() / len(x)


def batch_norm_inputs(data: DatasetSplits, train: Train, seed: int) -> Iterator[torch.Tensor]:
    """The inputs over which a Schedule-Free evaluation recomputes batch-norm statistics (see
    ``runs.build.evaluation_mode``): the first ``BATCH_NORM_BATCHES`` mini-batches of
    ``train.batch_size`` of one permutation of the training split, ``torch.randperm`` drawn from
    :func:`epoch_generator` ``(seed, 0)`` (the order the first epoch trains in when
    ``train.shuffle`` is true; shuffled all the same when it is false), a last partial batch left
    out when there is a full one (a batch of one example fails in train-mode batch norm).

    The ``schedulefree`` README recomputes the statistics over ``islice(train_loader, 50)``, the
    (shuffled) training loader; a fixed permutation gives such batches whatever order the
    training split is stored in (in storage order, a split stored class by class, as
    ``ImageFolder`` gives it, would give statistics of its first classes only), and being a pure
    function of ``seed`` it keeps a resumed run's numbers those of an uninterrupted one. No
    random draw of the training's own generators is made."""
    drop_last = len(data.train_x) >= train.batch_size
    inputs = batches(
        data.train_x, data.train_y, train.batch_size, shuffle=True,
        generator=epoch_generator(seed, 0), drop_last=drop_last,
    )  # fmt: skip
    return (x for x, _ in itertools.islice(inputs, BATCH_NORM_BATCHES))


def plateau_cadence_problem(variant: Variant, num_examples: int) -> str | None:
    """Why ``variant``'s reduce-on-plateau schedule would not see the metric torch's loop feeds
    it, or None.

    On the epoch clock (``train.schedule_unit = "epoch"``) the schedule steps at each epoch end
    and observes the test loss of the evaluation made there; with an integer ``eval_every`` that
    does not divide the updates per epoch, an epoch end with no evaluation (one before the last
    update) makes no decision, and the learning rate changes late or never. Allowed then:
    ``eval_every = "epoch"``, a divisor of the updates per epoch, or ``schedule_unit = "step"``
    (each evaluation is observed). Variants without such a schedule have no problem."""
    train = variant.train
    if train.schedule_unit != "epoch" or train.eval_every == "epoch":
        return None
    if not observes_metric(variant.schedules):
        return None
    steps, per_epoch = total_steps(train, num_examples)
    if per_epoch % train.eval_every == 0 or steps <= per_epoch:
        return None
    return (
        f"variant {variant.name!r}: a reduce_on_plateau schedule with train.schedule_unit = "
        f'"epoch" observes the test loss of the evaluation at each epoch end, but '
        f"train.eval_every = {train.eval_every} does not evaluate at every epoch end (not at "
        f"update {per_epoch}, the first: {per_epoch} updates per epoch of {num_examples} "
        f"training examples at batch_size {train.batch_size}), so the schedule would miss "
        f'metrics; give eval_every = "epoch" or a divisor of {per_epoch}, or schedule_unit = '
        '"step" (each evaluation is observed)'
    )


def eval_metrics(model: torch.nn.Module, data: DatasetSplits, train: Train) -> dict[str, float]:
    """Loss and accuracy on the training split (its first ``eval_train_examples``) and the test
    split."""
    n = train.eval_train_examples or len(data.train_x)
    train_loss, train_acc = evaluate(model, data.train_x[:n], data.train_y[:n])
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y)
    return {
        "train_loss": train_loss,
        "train_accuracy": train_acc,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
    }


def grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of the gradients, ``sqrt(sum_p ||g_p||^2)``, kept on the device."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def update_ratio(params: list[torch.Tensor], before: list[torch.Tensor]) -> torch.Tensor:
    """Update-to-weight ratio ``||θ_new - θ_old|| / ||θ_old||`` over all parameters."""
    deltas = torch._foreach_sub([p.detach() for p in params], before)
    delta = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(deltas)))
    return delta / torch.linalg.vector_norm(torch.stack(torch._foreach_norm(before)))


def mini_batch_loss(
    net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, scale: float
) -> torch.Tensor:
    """``scale`` times the mean cross-entropy of ``net`` on ``(x, y)``; on an empty ``(x, y)``
    (a data-parallel rank with no share of a small last batch) an exact 0 that still depends on
    every parameter reached by ``net(x)``, whose gradients are zeros (the mean of no values
    would be NaN; the forward and backward passes are made all the same, so that
    DistributedDataParallel's gradient all-reduce matches across ranks)."""
    if len(y) == 0:
        return F.cross_entropy(net(x), y, reduction="sum")
    loss = F.cross_entropy(net(x), y)
    return loss if scale == 1 else loss * scale


def current_hypers(
    optimizer: torch.optim.Optimizer, driver: ScheduleDriver | None
) -> dict[str, list[float]]:
    """Every driven param-group key per group, and ``lr`` whenever the groups have one (SPS and
    SLS choose their own step and have none)."""
    values = dict(driver.last_values()) if driver is not None else {}
    groups = optimizer.param_groups
    if "lr" not in values and all("lr" in group for group in groups):
        values["lr"] = [float(group["lr"]) for group in groups]
    return values


def step_closure(
    loss: torch.Tensor,
    batch_loss: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    rng: dict[str, torch.Tensor],
    device: torch.device,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Callable[[], torch.Tensor]:
    """The ``closure`` of ``optimizer.step(closure)`` for one mini-batch, so that optimizers that
    evaluate the loss again (torch's ``LBFGS``, ``optim.SPS``, ``optim.SLS``) train here as in
    their documented loop.

    The first call returns ``loss``, whose gradients the loop has already computed: an optimizer
    that calls the closure once (every other one) costs nothing more. Each later call computes
    the loss and its gradients at the current parameters, from the random state ``rng`` the
    first evaluation started from: every evaluation of a step is one function of the parameters
    (one dropout mask), and the random stream after the step is the same however many
    evaluations the optimizer made. ``reduce`` (data-parallel training) turns this rank's share
    of the loss into the global batch's loss, which the closure returns: gradients are averaged
    by DistributedDataParallel, and an optimizer deciding on the loss (a step size, a line
    search) must see the same value on every rank, or the replicas part and the ranks' collective
    calls stop matching.
    """
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            value = loss
        else:
            set_rng_state(rng, device)
            optimizer.zero_grad(set_to_none=True)
            value = batch_loss()
            value.backward()
        return value if reduce is None else reduce(value.detach())

    return closure


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def train_run(
    variant: Variant,
    seed: int,
    data: DatasetSplits,
    run_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    quiet: bool = True,
    dist: DistContext | None = None,
    hparam_types: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Trains ``variant`` with ``seed`` (resuming from ``run_dir/checkpoint.pt`` if present),
    logs to ``run_dir``, and returns the run's result (also written to ``run_dir/result.json``).

    ``hparam_types`` (``runs.tensorboard.hparam_types`` over every variant of the experiment)
    types the run's HParams session as the experiment's configuration types its columns: a key
    typed ``"string"`` there (an option whose type differs across variants) is logged as text
    (``runs.tensorboard.flat_hparams``). Without it each value has its own setting's type.

    ``data`` must already be on ``device``. A non-finite training loss stops the run; the result
    then has ``status = "diverged"``, ``diverged = {"step": s, "value": v}`` (``s`` the first
    update whose mini-batch loss was not finite, ``v`` its value as a string: ``"nan"``,
    ``"inf"``) and no numbers for ``final`` (each metric ``None``; ``best`` is over the finite
    evaluations). When it is detected: on the CPU without ``dist``, at that update itself, before
    its parameters are changed (reading a CPU loss costs no sync), so the run, its history and its
    checkpoint do not depend on ``flush_every``; on an accelerator, or under ``dist`` (the ranks
    must agree), when the buffered losses are read (every ``flush_every`` updates, at a
    checkpoint and at the end: one host sync each), so up to ``flush_every - 1`` more updates and
    their evaluations are in the history. The weights the last update makes are checked by the
    final evaluation (whose numbers are read anyway: no sync is added): when its training or
    test loss is not finite, the run has diverged at ``s = steps`` (``v`` that loss; no
    mini-batch loss is computed there), as it would have at the next update of a longer run.
    """
    run_dir, device = Path(run_dir), torch.device(device)
    train, logging = variant.train, variant.logging
    rank, world = (dist.rank, dist.world_size) if dist else (0, 1)
    steps, per_epoch = total_steps(train, len(data.train_x))
    eval_every = per_epoch if train.eval_every == "epoch" else train.eval_every
    if (problem := plateau_cadence_problem(variant, len(data.train_x))) is not None:
        raise ValueError(problem)

    torch.manual_seed(seed)
    model = build_model(
        variant.model.name,
        data.input_shape,
        data.num_classes,
        **variant.model.options,
    ).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(variant.optimizer, params)
    driver = attach_schedules(optimizer, variant.schedules)
    net = model
    if dist is not None:
        net = torch.nn.parallel.DistributedDataParallel(model)

    step, elapsed, history = 0, 0.0, new_history()
    state = ckpt.load_checkpoint(run_dir)
    if state is not None and state["fingerprint"] != variant.fingerprint(seed):
        raise ValueError(
            f"{run_dir} holds a checkpoint of another configuration; "
            "delete it or choose another --logdir"
        )
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if driver is not None:
            driver.load_state_dict(state["driver"])
        set_rng_state(state["rng"], device)
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
    reduce = None
    if dist is not None:
        reduce = lambda values: _all_reduce_mean(values, world)  # noqa: E731
    # every session purges from the step it continues from (0 without a checkpoint), so that
    # TensorBoard hides what an interrupted session wrote from there on
    log = RunLogger(run_dir, history, purge_step=step, enabled=rank == 0, reduce=reduce)

    # what the numbers depend on besides the configuration (runs.tuning.check_task_dirs)
    session = {"threads": torch.get_num_threads(), "device": device.type}

    def save() -> None:
        if rank == 0:
            # the events of every step the checkpoint covers are on disk first: a resume
            # writes again only from the checkpoint's step on (RunLogger.sync)
            log.sync()
            ckpt.save_checkpoint(run_dir, {
                "fingerprint": variant.fingerprint(seed),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "driver": driver.state_dict() if driver is not None else {},
                "rng": rng_state(device),
                "step": step,
                "elapsed": elapsed + time.perf_counter() - started,
                "history": log.history,
                "session": session,
            })  # fmt: skip

    bar = tqdm(
        total=steps, initial=step, disable=quiet or None, leave=False,
        desc=f"{variant.name} seed {seed}", unit="step", dynamic_ncols=True,
    )  # fmt: skip
    started = time.perf_counter()
    diverged = None
    if step == 0:
        with evaluation_mode(optimizer):
            log.evaluation(0, eval_metrics(model, data, train))
        log.hypers(0, current_hypers(optimizer, driver))
    epoch, skip = divmod(step, per_epoch)
    step_sizes = getattr(optimizer, "step_sizes", None)  # a learning-rate-free optimizer's own
    norm_inputs = functools.partial(batch_norm_inputs, data, train, seed)
    model.train()
    # the CPU's losses are host values already: checked at every update (see the docstring)
    check_each_update = dist is None and device.type == "cpu"
    while step < steps and diverged is None:
        for xb, yb in itertools.islice(epoch_batches(data, train, seed, epoch), skip, None):
            local_x, local_y = xb[rank::world], yb[rank::world]
            scale = len(local_y) * world / len(yb)  # DDP averages: the global batch's mean
            batch_loss = functools.partial(mini_batch_loss, net, local_x, local_y, scale)
            rng = rng_state(device)
            loss = batch_loss()
            if check_each_update and not math.isfinite(loss.item()):
                log.train_loss(step, loss.detach())
                diverged = log.flush()
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with_stats = (step + 1) % logging.stats_every == 0
            if with_stats:
                norm, before = grad_norm(params), [p.detach().clone() for p in params]
            optimizer.step(step_closure(loss, batch_loss, optimizer, rng, device, reduce))
            if step_sizes is not None:
                log.step_sizes(step, step_sizes())
            if with_stats:
                log.stats(step, norm, update_ratio(params, before))
            log.train_loss(step, loss.detach())
            step += 1
            metric = None
            if step % eval_every == 0 or step == steps:
                with evaluation_mode(
                    optimizer, then_train=step < steps, model=model, inputs=norm_inputs
                ):
                    log.evaluation(step, eval_metrics(model, data, train))
                metric = log.history["eval"]["test_loss"][-1]
            if driver is not None and (train.schedule_unit == "step" or step % per_epoch == 0):
                # by keyword: a positional argument is torch's deprecated ``epoch`` (t = epoch)
                # for a driver without a reduce-on-plateau schedule, which ignores the metric;
                # a reduce-on-plateau schedule sees the evaluation of this step when there is
                # one: every evaluation on the step clock, every epoch end's on the epoch clock
                # (plateau_cadence_problem refuses an eval_every that misses one)
                driver.step(metric=metric)
                if step < steps:  # the values the next update uses
                    log.hypers(step, current_hypers(optimizer, driver))
            save_now = step % logging.checkpoint_every == 0 or step == steps
            if step % logging.flush_every == 0 or save_now:  # a checkpoint holds every value
                diverged = log.flush()
                bar.update(step - bar.n)
                postfix = {"loss": log.history["train_loss"]["value"][-1]}
                if "lr" in optimizer.param_groups[0]:
                    postfix["lr"] = f"{float(optimizer.param_groups[0]['lr']):.3g}"
                bar.set_postfix(postfix)
                if diverged is not None:
                    break
            if save_now:
                save()
            if step == steps:
                break
        epoch, skip = epoch + 1, 0
    diverged = diverged or log.flush()
    if diverged is None:  # the last update's weights, which no later mini-batch loss checks
        diverged = diverged_at_end(log.history["eval"])
    bar.close()
    elapsed += time.perf_counter() - started
    result = summarize(variant, seed, log.history, steps, elapsed, diverged)
    if rank == 0:
        final = {k: v for k, v in result["final"].items() if v is not None and math.isfinite(v)}
        hyper = flat_hparams(variant.to_dict(), seed, types=hparam_types)
        log.hparams(hyper, final, step, failed=bool(diverged))
    # every event on disk (the writer's error raised) before result.json, which makes the run
    # count as finished: a later command never writes its events again
    log.close()
    if rank == 0:
        ckpt.save_json(run_dir / ckpt.RESULT, result)
    if dist is not None:
        # Every rank ends the run once rank 0 has written its result.json, from which a search
        # chooses its rate on every rank (runs.parallel imports this module: imported here).
        from runs.parallel import barrier

        barrier(dist)
    return result


def diverged_at_end(evals: dict) -> tuple[int, float] | None:
    """``(step, value)`` of the last evaluation (the weights after the last update) when its
    training or test loss (checked in that order) is not finite, else None."""
    for name in ("train_loss", "test_loss"):
        value = evals[name][-1]
        if value is None or not math.isfinite(value):
            return evals["step"][-1], math.nan if value is None else value
    return None


def _all_reduce_mean(values: torch.Tensor, world: int) -> torch.Tensor:
    import torch.distributed as torch_dist

    values = values.clone()
    torch_dist.all_reduce(values)
    return values / world


def summarize(
    variant: Variant,
    seed: int,
    history: dict,
    steps: int,
    wall_time: float,
    diverged: tuple[int, float] | None,
) -> dict[str, Any]:
    """A run's result: final and best metrics, status, wall time, resolved config, history.

    A diverged run (one whose mini-batch loss, or whose final evaluation's loss, was not finite:
    see :func:`train_run`) has no final metrics (``None`` each: its last evaluation may be of
    weights that already diverged, and when it ran depends on when divergence was detected);
    ``best`` is over the finite evaluations (``None`` when there is none); the diverged loss is
    given as a string (``"nan"``, ``"inf"``, ``"-inf"``), as JSON has no such numbers.
    """
    evals = history["eval"]
    names = [name for name in evals if name != "step"]
    final = {name: None if diverged else evals[name][-1] for name in names}
    best = {}
    for name in names:
        finite = [v for v in evals[name] if v is not None and math.isfinite(v)]
        best[name] = (max if name.endswith("accuracy") else min)(finite) if finite else None
    return {
        "variant": variant.name,
        "seed": seed,
        "status": "diverged" if diverged else "finished",
        "diverged": {"step": diverged[0], "value": str(diverged[1])} if diverged else None,
        "steps": steps,
        "final_step": evals["step"][-1],
        "final": final,
        "best": best,
        "wall_time_s": wall_time,
        "fingerprint": variant.fingerprint(seed),
        "config": variant.to_dict(),
        "history": history,
    }
