"""The ``stepsize`` command.

Every subcommand lives in the module that owns its idea and exposes two functions:
``add_arguments(parser)`` to declare its options and ``run(args) -> int`` to do the work.
This file only mounts them, so ``stepsize --help`` costs no heavy import.

Errors a user can cause (``ValueError``, ``TypeError``, ``KeyError`` and ``OSError``: a missing,
unreadable or unwritable file) are printed as one line on stderr, ending with a newline, with exit
status 2, never as a traceback, also when a thread (a TensorBoard writer) raised it; so are usage
errors (``stepsize <command>: error: ...``, see :class:`Parser`). A closed pipe on stdout
(``stepsize list | head -1``) is not an error: the command stops quietly with status 141, as a
shell reports a command stopped by SIGPIPE. ``stepsize`` alone prints the help and runs nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import select
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from runs.catalog import DEFAULT_EXPERIMENT  # (light: argparse, tomllib, pathlib)

# name -> (module, one-line help). Modules are imported only when their subcommand runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("runs.catalog", "list the bundled experiments"),
    "run": ("runs.experiment", f"run an experiment (default: {DEFAULT_EXPERIMENT})"),
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


# A negative number, or comma-separated numbers starting with one (``--bound -1,1``): a value,
# never an option (no option of ``stepsize`` looks like a number).
_NEGATIVE_NUMBERS = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(,[-+]?[\d.eE+-]*)*$")


class Parser(argparse.ArgumentParser):
    """The parser of ``stepsize`` and of each of its subcommands: a usage error is the one line
    ``stepsize <command>: error: ...`` on stderr with exit status 2 (``--help`` prints the usual
    help); options must be spelled out (no abbreviations: ``--seed`` is not ``--seeds``); and a
    value that is a negative number, or numbers like ``-1,1``, is taken as a value."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBERS

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        """Prints the one error line and exits with status 2."""
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message}\n")


class _LazyModule:
    """Imports a subcommand's module the first time it is needed."""

    def __init__(self, module: str, command: str) -> None:
        self.module, self.command = module, command

    def load(self) -> ModuleType:
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
    parser = Parser(
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
        filename = err.filename
        if isinstance(filename, bytes):  # (TensorBoard's writer names its files in bytes)
            filename = os.fsdecode(filename)
        message = f"{filename}: {err.strerror}"
    else:
        message = str(err)
    message = " ".join(message.split()) or type(err).__name__
    return f"stepsize: error: {message}\n"


USER_ERRORS = (ValueError, TypeError, KeyError, OSError)


class _ThreadErrors:
    """A ``threading.excepthook`` that keeps, instead of printing as a traceback, the first user
    error (:data:`USER_ERRORS`: a writer thread that cannot write its file) raised in a thread;
    :func:`main` reports it as its one line. Other exceptions go to the previous hook."""

    def __init__(self) -> None:
        self.first: BaseException | None = None
        self.previous = threading.excepthook

    def __call__(self, hook_args) -> None:
        if isinstance(hook_args.exc_value, USER_ERRORS):
            self.first = self.first or hook_args.exc_value
        else:
            self.previous(hook_args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stepsize``; returns the process exit status."""
    thread_errors = _ThreadErrors()
    threading.excepthook = thread_errors
    try:
        status = _main(argv)
    finally:
        threading.excepthook = thread_errors.previous
    if thread_errors.first is not None and status == 0:
        sys.stderr.write(error_line(thread_errors.first))
        return 2
    return status


SIGPIPE_STATUS = 141
"""The exit status when the reader of standard output went away: 128 + SIGPIPE, what a shell
reports for a command that a closed pipe stopped (``stepsize list | head -1``)."""


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (``poll`` reports POLLERR on
    its write end), as opposed to a broken pipe elsewhere (a worker process's), which is an error
    to report. False where ``poll`` is missing (Windows): the error line, as before."""
    if not hasattr(select, "poll"):
        return False
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # (replaced or closed stdout)
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _reader_gone() -> int:
    """Stop quietly when standard output's reader has closed the pipe (``| head``), as command-line
    tools do, without an error line: the rest of the output is sent to ``os.devnull`` so that
    Python's flush at exit does not fail again (the recipe of Python's ``signal`` documentation,
    "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return SIGPIPE_STATUS


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        if not argv:  # nothing asked: say what can be asked, run nothing
            parser.print_help()
            return 0
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the (sub)command that was given them
            words = ("stepsize", getattr(args, "command", None), getattr(args, "benchmark", None))
            prog = " ".join(word for word in words if word)
            sys.stderr.write(f"{prog}: error: unrecognized arguments: {' '.join(extra)}\n")
            return 2
        lazy = getattr(args, "_lazy", None)
        if lazy is None:
            parser.print_help()
            return 2
        args.argv = argv  # (what `stepsize run` records as its command in experiment.json)
        status = int(lazy.load().run(args) or 0)
        sys.stdout.flush()  # (a closed pipe shows here, not in Python's flush at exit)
        return status
    except USER_ERRORS as err:
        if isinstance(err, BrokenPipeError) and _stdout_reader_gone():
            return _reader_gone()
        sys.stderr.write(error_line(err))
        sys.stderr.flush()
        return 2
    except KeyboardInterrupt:
        print("stepsize: interrupted", file=sys.stderr)
        return 130
