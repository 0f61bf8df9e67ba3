"""``stemkit demo``: the built-in default job, end to end."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stemkit.cli.common import Formatter, add_device, check_workers
from stemkit.outputs import check_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    _add_demo(sub)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the built-in default job: make test chorales, separate them with the shipped model, report metrics",
        description=(
            "Generate a few test-split string-quartet chorales, separate them with the shipped model, evaluate it next "
            "to the mixture (floor) and ideal-ratio-mask (ceiling) oracles, and write metrics.md, metrics.json and "
            "metrics.png to --out. Then synthesize the chorales' violin parts from their MIDI with the shipped synthesizer "
            "and score them against FluidSynth's renderings next to a sine-with-envelope floor (synthesis.md, synthesis.json)."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("--num", type=int, default=3, help="number of test chorales")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per chorale")
    p.add_argument("--ensemble", default="string", help="string, brass, woodwind or random")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="parallel processes")
    p.add_argument("--soundfont", type=Path, default=None, help="a .sf2/.sf3 General MIDI soundfont")
    p.add_argument("--model", default=None, help="separator to demonstrate (default: the shipped lasaft-chorales-string-remix)")
    p.add_argument("--synth-model", default=None, help="synthesizer to demonstrate (default: the shipped violin-ldm-chorales)")
    add_device(p)
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from stemkit.demo import run_demo

    check_output_dir(args.out)
    check_workers(args.workers)
    summary = run_demo(args.out, num=args.num, seconds=args.seconds, ensemble=args.ensemble, workers=args.workers, soundfont=args.soundfont,
                       model=args.model, device=args.device, synth_model=args.synth_model)
    print(summary)
    return 0
