"""The ``stepsize`` command.

Every subcommand lives in the module that owns its idea and exposes two functions:
``add_arguments(parser)`` to declare its options and ``run(args) -> int`` to do the work.
This file only mounts them, so ``stepsize --help`` costs no heavy import.

Errors a user can cause (``ValueError``, ``TypeError``, ``KeyError`` and ``OSError``: a missing,
unreadable or unwritable file) are printed as one line on stderr, ending with a newline, with exit
status 2, never as a traceback. ``stepsize`` alone prints the help and runs nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Modules are imported only when their subcommand runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("runs.catalog", "list the bundled experiments"),
    "run": ("runs.experiment", "run an experiment (default: the default comparison)"),
    "report": ("runs.report", "regenerate tables and figures from run directories"),
    "plot": ("runs.plot", "draw learning-rate schedules to a PNG (--bound: beside their bound)"),
    "lr-find": ("runs.lr_find", "LR range test beside the curvature estimate"),
    "score": ("runs.score", "time-to-target scoring and performance profiles (AlgoPerf-style)"),
}
BENCHMARKS: dict[str, tuple[str, str]] = {
    "optim": ("runs.bench.optim", "optimizer step() against torch.optim"),
    "schedulers": ("runs.bench.schedulers", "schedule driving and evaluation against torch"),
    "runner": ("runs.bench.runner", "runner with logging against a bare training loop"),
}


class _LazyModule:
    """Imports a subcommand's module the first time it is needed."""

    def __init__(self, module: str, command: str) -> None:
        self.module, self.command = module, command

    def load(self):
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as err:
            if err.name and self.module.startswith(err.name):
                raise ValueError(
                    f"subcommand {self.command!r} is not available in this version "
                    f"(module {self.module} is missing)"
                ) from None
            raise


def _mount(sub, name: str, module: str, help_: str, prefix: str = "") -> None:
    lazy = _LazyModule(module, (prefix + " " + name).strip())
    parser = sub.add_parser(name, help=help_, description=help_)
    parser.set_defaults(_lazy=lazy, _name=name)
    try:
        mod = lazy.load()
    except ValueError:
        return
    mod.add_arguments(parser)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The argument parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="stepsize",
        description="Adaptive optimizers and learning-rate schedules: run paper-style comparisons.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        if name == chosen:
            _mount(sub, name, module, help_)
        else:
            sub.add_parser(name, help=help_, add_help=False)
    bench = sub.add_parser("bench", help="benchmarks against torch, measured in the same process")
    bench_sub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    rest = [a for a in argv if not a.startswith("-")]
    chosen_bench = rest[1] if len(rest) > 1 and rest[0] == "bench" else None
    for name, (module, help_) in BENCHMARKS.items():
        if name == chosen_bench:
            _mount(bench_sub, name, module, help_, prefix="bench")
        else:
            bench_sub.add_parser(name, help=help_, add_help=False)
    return parser


def version() -> str:
    """The installed package's version (``unknown`` when it is not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("stepsize")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def error_line(err: BaseException) -> str:
    """The one line ``stepsize: error: ...`` (with its newline) that reports ``err``."""
    if isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    elif isinstance(err, OSError) and err.strerror and err.filename is not None:
        message = f"{err.filename}: {err.strerror}"
    else:
        message = str(err)
    message = " ".join(message.split()) or type(err).__name__
    return f"stepsize: error: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stepsize``; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        if not argv:  # nothing asked: say what can be asked, run nothing
            parser.print_help()
            return 0
        args = parser.parse_args(argv)
        lazy = getattr(args, "_lazy", None)
        if lazy is None:
            parser.print_help()
            return 2
        return int(lazy.load().run(args) or 0)
    except (ValueError, TypeError, KeyError, OSError) as err:
        sys.stderr.write(error_line(err))
        sys.stderr.flush()
        return 2
    except KeyboardInterrupt:
        print("stepsize: interrupted", file=sys.stderr)
        return 130
