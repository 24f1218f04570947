"""Deterministic mini-batches over tensors held in memory (``runs.trainer`` draws each epoch's
order from a generator seeded by ``(seed, epoch)``, so a resumed run needs only the step)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from runs.checks import check_positive_int


def batches_per_epoch(num_examples: int, batch_size: int, *, drop_last: bool = False) -> int:
    """The number of mini-batches ``batches`` yields in one epoch:
    ``floor(N / B)`` with ``drop_last``, else ``ceil(N / B)``."""
    check_positive_int("batch_size", batch_size)
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 0:
        raise ValueError(
            f"num_examples must be a non-negative integer, got num_examples={num_examples!r}"
        )
    return num_examples // batch_size if drop_last else -(-num_examples // batch_size)


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield one epoch of mini-batches ``(x[i], y[i])``.

    Without ``shuffle`` the batches are consecutive slices in order, ``x[k*B : (k+1)*B]`` (views,
    no copy), as the MNIST-1D paper's training loop takes them. With ``shuffle`` one permutation
    ``torch.randperm(N, generator=generator)`` is drawn when this function is called, and batch
    ``k`` gathers the examples at positions ``perm[k*B : (k+1)*B]``: the same generator state
    gives the same batches (``generator=None`` draws from torch's global generator). The last
    batch holds the ``N mod B`` remaining examples unless ``drop_last``. Skipping the first ``j``
    batches (``itertools.islice``) resumes an epoch mid-way.

    Arguments are checked when this is called, before the first batch.
    """
    check_positive_int("batch_size", batch_size)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"x and y must be torch tensors, got {type(x).__name__} and {type(y).__name__}"
        )
    if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
        raise ValueError(
            f"x and y must hold the same number of examples along axis 0, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    count = batches_per_epoch(len(x), batch_size, drop_last=drop_last)
    order = None
    if shuffle:
        device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(len(x), generator=generator, device=device).to(x.device)
    return _epoch(x, y, batch_size, count, order)


def _epoch(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, count: int, order: torch.Tensor | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for k in range(count):
        window = slice(k * batch_size, (k + 1) * batch_size)
        if order is None:
            yield x[window], y[window]
        else:
            index = order[window]
            yield x[index], y[index.to(y.device)]
