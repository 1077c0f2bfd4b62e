"""Command line: ``wclust COMMAND ...``. Thin: parse, call the library, print.

Each command lives in ``wclust/commands/NAME.py`` with ``register(subparsers)`` setting
``func``; user errors print one line on stderr and exit 2 (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ["compress", "info", "eval", "sweep", "bench", "profile", "estimate", "study", "doctor"]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), like every other user error."""

    def error(self, message: str):
        self.exit(2, f"wclust: error: {message} (see: {self.prog} --help)\n")


def version_line() -> str:
    """wclust's version, torch's, and the C kernels' ISA level on this CPU."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from .kernels import cpu, machine

    try:
        v = version("wclust")
    except PackageNotFoundError:
        v = "unknown (not installed)"
    return (f"wclust {v}, torch {torch.__version__}, kernels {cpu.isa()}{' + AMX' if cpu.amx_available() else ''} "
            f"on {machine.describe()}")


class _Version(argparse.Action):
    """--version: computed only when asked (it loads torch and the C library)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wclust", description="Cluster transformer weights; measure what it costs and buys.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--version", action=_Version,
                   help="the version, torch's, and the kernels' ISA level on this CPU")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"wclust.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"wclust.commands.{name}":
                continue
            raise
        mod.register(sub)
    for cmd in sub.choices.values():  # --debug also after the command name
        cmd.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    return p


def _run(args) -> int:
    """The command; if it fails (or is interrupted), the output directories it made and left empty go."""
    from .commands.common import created_dirs, remove_created_dirs

    created_dirs.clear()
    try:
        return int(args.func(args) or 0)
    except BaseException:
        remove_created_dirs()
        raise
    finally:
        created_dirs.clear()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not sys.stderr.isatty():  # no download/loading progress bars in logs and pipes
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:  # already imported (in-process use): switch them off there too
            try:
                sys.modules["transformers"].utils.logging.disable_progress_bar()
            except AttributeError:
                pass
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(_run(args) or 0)
    except KeyboardInterrupt:
        print("wclust: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors: one line, exit 2
        from .errors import WclustError

        if args.debug:
            raise
        user = isinstance(e, (WclustError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
                              NotADirectoryError, TypeError, OSError))
        kind = "error" if user else f"internal error ({type(e).__name__})"
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"wclust: {kind}: {msg}", file=sys.stderr)
        if not user:
            print("wclust: run with --debug for the traceback", file=sys.stderr)
        return 2
