"""The one ``stemkit`` command: a module per command group, each registering its subcommands.

Each subcommand parses its arguments and calls the Python API; options several commands share are
defined once in :mod:`stemkit.cli.common`. A new command group is a module here with a
``register(subparsers)`` function, listed in :data:`COMMAND_MODULES`.

Errors a user can fix arrive as ``StemkitError`` and are printed as one line on stderr with a
non-zero exit and no traceback; so are argument mistakes.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import warnings
from typing import Sequence

from stemkit import __version__
from stemkit.cli.common import Parser
from stemkit.errors import StemkitError, StemkitWarning

#: In the order ``stemkit --help`` lists them.
COMMAND_MODULES = ("data", "separate", "synth", "dismix", "evaluate", "train", "models", "demo")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings as one line each; other libraries' warnings as Python prints them."""
    if issubclass(category, StemkitWarning):
        print(f"stemkit: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def _interrupt_on_sigterm(signum: int, frame) -> None:
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="stemkit",
        description="stemkit: make multi-instrument datasets, separate, disentangle and synthesize music stems.",
    )
    parser.add_argument("--version", action="version", version=f"stemkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"stemkit.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    warnings.simplefilter("always", StemkitWarning)  # before any filter from PYTHONWARNINGS
    warnings.showwarning = _show_warning
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)  # `kill` stops a job as Ctrl-C does: cleanly
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except StemkitError as exc:
        print(f"stemkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stemkit: interrupted; finished outputs are kept, unfinished ones were not written", file=sys.stderr)
        return 130
