"""What every command shares: the parser and help formatter, and the options several commands take.

One place for the common options, so ``--device``, ``--shard``, ``--overwrite``, ``--quiet`` and
``--workers`` read and behave the same in every command.
"""

from __future__ import annotations

import argparse
import sys

from stemkit.errors import StemkitError


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (plus a pointer to --help), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except where the help already says what the default means."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class RawDescriptionFormatter(argparse.RawDescriptionHelpFormatter, Formatter):
    """``Formatter`` that keeps the description's line breaks (for a list of metrics)."""


def check_workers(workers: int) -> None:
    if workers < 1:
        raise StemkitError(f"--workers must be at least 1, got {workers}")


def print_help_instead(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_workers(p: argparse.ArgumentParser, default: int, what: str) -> None:
    p.add_argument("--workers", type=int, default=default, help=f"{what} in parallel processes")


def add_batch_options(p: argparse.ArgumentParser, output_help: str) -> None:
    """The options of every many-inputs → files command (separate, synth, …; see :mod:`stemkit.jobs`)."""
    p.add_argument("--format", choices=["wav", "flac"], default="wav", help=f"{output_help} (16-bit)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist (default: skip those inputs, so a rerun resumes)")
    p.add_argument("--shard", default=None, help="I/N: only every N-th input from the I-th, for parallel jobs on one input list")
    add_device(p)
    add_quiet(p)


def split_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` → ``["a", "b", "c"]``; None or empty → None (meaning all)."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    return items or None
