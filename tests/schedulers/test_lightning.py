"""The driver in PyTorch Lightning: accepted by ``configure_optimizers``, stepped per update, per
epoch and with a monitored metric, logged by ``LearningRateMonitor``, and resumed from a
checkpoint to the same parameters and learning rates as an uninterrupted run.

References: the uninterrupted Lightning run, and torch's own ``StepLR`` / ``ReduceLROnPlateau``
trained by the same Lightning loop.
"""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

import optim
import schedulers as S

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning:lightning.*",
    "ignore::UserWarning:pytorch_lightning.*",
    "ignore::DeprecationWarning",
)

BATCHES_PER_EPOCH = 4
HALF, EPOCHS = 2, 4


class MemoryLogger(Logger):
    """Keeps what Lightning logs: ``(step, {name: value})`` rows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, {k: float(v) for k, v in metrics.items()}))

    def learning_rates(self) -> list[tuple[int, float]]:
        return [(step, row["lr-Adam"]) for step, row in self.rows if "lr-Adam" in row]


def _data() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8 * BATCHES_PER_EPOCH, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(len(x), generator=generator)
    dataset = TensorDataset(x, y)
    return DataLoader(dataset, batch_size=8), DataLoader(dataset, batch_size=16)


class Regression(pl.LightningModule):
    """A linear model trained by our Adam under a schedule built by ``make_scheduler``."""

    def __init__(self, make_scheduler) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(3, 1)
        self.make_scheduler = make_scheduler

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self):
        optimizer = optim.Adam(self.parameters(), lr=1.0)
        scheduler = self.make_scheduler(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _fit(make_scheduler, epochs: int, ckpt_path=None, save_to=None):
    model, logger = Regression(make_scheduler), MemoryLogger()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=logger,
        callbacks=[LearningRateMonitor()],
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    train, val = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and log intervals
        trainer.fit(model, train, val, ckpt_path=ckpt_path)
    if save_to is not None:
        trainer.save_checkpoint(save_to)
    return model, trainer, logger


def _state(model, trainer):
    optimizer = trainer.optimizers[0]
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    return (
        [p.detach().clone() for p in model.parameters()],
        [group["lr"] for group in optimizer.param_groups],
        scheduler.state_dict(),
    )


def _check_resume(make_scheduler, tmp_path):
    """Train EPOCHS epochs at once, and HALF + (EPOCHS - HALF) through a checkpoint."""
    full_model, full_trainer, full_log = _fit(make_scheduler, EPOCHS)
    _, _, first_log = _fit(make_scheduler, HALF, save_to=tmp_path / "half.ckpt")
    model, trainer, second_log = _fit(make_scheduler, EPOCHS, ckpt_path=tmp_path / "half.ckpt")

    params, lrs, scheduler_state = _state(model, trainer)
    full_params, full_lrs, full_scheduler_state = _state(full_model, full_trainer)
    assert all(torch.equal(a, b) for a, b in zip(params, full_params))
    assert lrs == full_lrs
    assert scheduler_state == full_scheduler_state
    resumed = first_log.learning_rates() + second_log.learning_rates()
    assert resumed == full_log.learning_rates()
    return full_trainer, full_log


def test_the_driver_is_a_torch_lr_scheduler_lightning_accepts():
    opt = optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    driver = S.attach(opt, lr=S.constant(0.1))
    assert isinstance(driver, torch.optim.lr_scheduler.LRScheduler)
    assert not isinstance(driver, torch.optim.lr_scheduler.ReduceLROnPlateau)
    plateau = S.attach(opt, lr=S.reduce_on_plateau(S.constant(0.1)))
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau)


def test_per_step_schedule_resumes_exactly_and_is_logged_at_every_update(tmp_path):
    schedule = S.linear_warmup(S.cosine_decay(0.05, 12), warmup_steps=3)

    def per_step(optimizer):
        return {"scheduler": S.attach(optimizer, lr=schedule), "interval": "step"}

    trainer, log = _check_resume(per_step, tmp_path)
    steps = EPOCHS * BATCHES_PER_EPOCH
    assert trainer.lr_scheduler_configs[0].scheduler.t == steps
    # LearningRateMonitor logs the rate of each update: the schedule at that update's t
    assert log.learning_rates() == [(k, schedule(k)) for k in range(steps)]


def test_per_epoch_schedule_resumes_exactly_and_matches_torch_step_lr(tmp_path):
    def ours(optimizer):
        return {"scheduler": S.attach(optimizer, lr=S.step_lr(0.05, 1, 0.5)), "interval": "epoch"}

    def torchs(optimizer):
        for group in optimizer.param_groups:
            group["lr"] = 0.05
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

    trainer, log = _check_resume(ours, tmp_path)
    assert trainer.lr_scheduler_configs[0].scheduler.t == EPOCHS
    reference_model, reference_trainer, reference_log = _fit(torchs, EPOCHS)
    assert log.learning_rates() == reference_log.learning_rates()
    params, _, _ = _state(reference_model, reference_trainer)
    ours_params, _, _ = _state(trainer.lightning_module, trainer)
    assert all(torch.equal(a, b) for a, b in zip(ours_params, params))


def test_plateau_schedule_takes_lightnings_monitor_like_reduce_lr_on_plateau(tmp_path):
    # an improvement must exceed 1.0 (absolute): the validation loss (4.9, 3.8, 2.9, ...) soon
    # improves by less, and each such epoch halves the rate
    settings = {"patience": 0, "factor": 0.5, "threshold": 1.0, "threshold_mode": "abs"}

    def ours(optimizer):
        plateau = S.reduce_on_plateau(S.constant(0.05), **settings)
        return {"scheduler": S.attach(optimizer, lr=plateau), "monitor": "val_loss"}

    def torchs(optimizer):
        for group in optimizer.param_groups:
            group["lr"] = 0.05
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **settings)
        return {"scheduler": scheduler, "monitor": "val_loss"}

    trainer, log = _check_resume(ours, tmp_path)
    config = trainer.lr_scheduler_configs[0]
    assert config.reduce_on_plateau  # recognised by type: Lightning passes the monitored value
    assert config.scheduler.state_dict()["reactive"][0]["multiplier"] < 1.0
    reference_model, reference_trainer, reference_log = _fit(torchs, EPOCHS)
    assert log.learning_rates() == reference_log.learning_rates()
    assert [lr for _, lr in log.learning_rates()] != [0.05] * len(log.learning_rates())
    params, _, _ = _state(reference_model, reference_trainer)
    ours_params, _, _ = _state(trainer.lightning_module, trainer)
    assert all(torch.equal(a, b) for a, b in zip(ours_params, params))
