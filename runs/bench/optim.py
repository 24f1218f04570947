"""``stepsize bench optim``: our optimizers' ``step()`` against torch.optim, in the same process.

For each optimizer and each model shape (fp32 tensors), the median time of one ``step()`` with
gradients already in place, for torch.optim's single-tensor, foreach and fused implementations and
for ours (foreach, flat, flat compiled). The effective bandwidth is the bytes the update must read
and write (parameters, gradient and state, once each) divided by the time, compared with the
machine's in-place bandwidth measured here (``x.add_(y)`` on 64 MiB buffers).

Targets (issue 2, 2-core CPU): Adam, AdamW, SGD with momentum and Adagrad within 1.1x of torch's
``fused=True`` on 4x4M and at least 5x faster on 2000x1k; RMSprop and Adadelta at least 2x faster
than torch's foreach on every shape.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import optim

MODELS = {"4x4M": (4, 4_000_000), "400x40k": (400, 40_000), "2000x1k": (2000, 1_000)}
OPTIMIZERS: dict[str, tuple[dict, int]] = {
    # name: (hyperparameters, tensors read + written per element: parameter, gradient, state)
    "SGD": ({"lr": 1e-3, "momentum": 0.9}, 5),
    "Adam": ({"lr": 1e-3}, 7),
    "AdamW": ({"lr": 1e-3}, 7),
    "Adagrad": ({"lr": 1e-2}, 5),
    "RMSprop": ({"lr": 1e-2}, 5),
    "Adadelta": ({}, 7),
}
TORCH_FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stepsize bench optim``."""
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma-separated")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated shapes")
    parser.add_argument("--repeat", type=int, default=15, help="timed steps per measurement")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled flat path")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")


def parse_model(spec: str) -> tuple[int, int]:
    """A shape: a name from MODELS or ``COUNTxNUMEL`` with optional k/M suffixes (``8x2k``)."""
    if spec in MODELS:
        return MODELS[spec]
    scale = {"k": 1_000, "M": 1_000_000}
    try:
        count, numel = spec.split("x")
        factor = scale.get(numel[-1], 1)
        shape = int(count), int(numel.rstrip("kM")) * factor
    except ValueError:
        shape = (0, 0)
    if min(shape) < 1:
        raise ValueError(
            f"--models: bad shape {spec!r}; allowed: {', '.join(MODELS)} or COUNTxNUMEL like 8x2k"
        )
    return shape


def _median_ms(step: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _params(count: int, numel: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    params = []
    for _ in range(count):
        p = torch.randn(numel, generator=generator).requires_grad_()
        p.grad = torch.randn(numel, generator=generator) * 1e-2
        params.append(p)
    return params


def machine_bandwidth_gbs(repeat: int = 10) -> float:
    """In-place bandwidth of this machine: ``x.add_(y)`` reads 2 and writes 1 float per element."""
    x, y = torch.ones(16 * 2**20), torch.ones(16 * 2**20)
    ms = _median_ms(lambda: x.add_(y, alpha=1e-9), repeat)
    return 3 * x.numel() * 4 / (ms * 1e-3) / 1e9


def measure(name: str, model: str, repeat: int, compile_flat: bool) -> dict[str, float]:
    """Median ``step()`` milliseconds of every implementation for one optimizer and shape."""
    kwargs, _ = OPTIMIZERS[name]
    count, numel = parse_model(model)
    variants: dict[str, Callable[[list], torch.optim.Optimizer]] = {
        "torch single": lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kwargs),
        "torch foreach": lambda ps: getattr(torch.optim, name)(ps, foreach=True, **kwargs),
    }
    if name in TORCH_FUSED:
        variants["torch fused"] = lambda ps: getattr(torch.optim, name)(ps, fused=True, **kwargs)
    variants["ours foreach"] = lambda ps: getattr(optim, name)(ps, impl="foreach", **kwargs)
    variants["ours flat"] = lambda ps: getattr(optim, name)(ps, impl="flat", **kwargs)
    if compile_flat:
        variants["ours flat+compile"] = lambda ps: getattr(optim, name)(
            ps, impl="flat", compile=True, **kwargs
        )
    results = {}
    for label, make in variants.items():
        optimizer = make(_params(count, numel))
        results[label] = _median_ms(optimizer.step, repeat)
        del optimizer
    return results


def run(args: argparse.Namespace) -> int:
    """Print the table: medians, ratios against torch, effective bandwidth."""
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(OPTIMIZERS))
    if unknown:
        raise ValueError(f"--optimizers: unknown {unknown}; allowed: {', '.join(OPTIMIZERS)}")
    for model in models:
        parse_model(model)
    if args.repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
    bandwidth = machine_bandwidth_gbs()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    print(f"machine in-place bandwidth (x.add_(y), 64 MiB): {bandwidth:.1f} GB/s\n")
    header = (
        "| optimizer | model | torch single | torch foreach | torch fused | ours foreach "
        "| ours flat | ours flat+compile | best ours / fused | best ours / foreach "
        "| GB/s (% of machine) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in names:
        for model in models:
            ms = measure(name, model, args.repeat, not args.no_compile)
            ours_best = min(v for k, v in ms.items() if k.startswith("ours"))
            fused = ms.get("torch fused")
            count, numel = parse_model(model)
            gbs = OPTIMIZERS[name][1] * 4 * count * numel / (ours_best * 1e-3) / 1e9
            cells = [
                f"{ms[k]:.2f}" if k in ms else "n/a"
                for k in (
                    "torch single",
                    "torch foreach",
                    "torch fused",
                    "ours foreach",
                    "ours flat",
                    "ours flat+compile",
                )
            ]
            vs_fused = f"{ours_best / fused:.2f}x" if fused else "n/a"
            vs_foreach = f"{ours_best / ms['torch foreach']:.2f}x"
            print(
                f"| {name} | {model} | " + " | ".join(cells)
                + f" | {vs_fused} | {vs_foreach} | {gbs:.1f} ({100 * gbs / bandwidth:.0f}%) |",
                flush=True,
            )  # fmt: skip
    print("\ntimes are median ms per step(); ratios < 1 mean ours is faster")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m runs.bench.optim", description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
