"""``stemkit fit``: train any model family from a YAML config (LightningCLI)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    _add_fit(sub)


def _add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit",
        help="train a model from a YAML config (LightningCLI; see stemkit fit --help)",
        add_help=False,
        prefix_chars="\x00",
    )
    p.add_argument("lightning_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_run_fit)


def _run_fit(args: argparse.Namespace) -> int:
    from stemkit.training.fit import run_fit

    return run_fit(args.lightning_args)
