"""``stemkit data``: make datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from stemkit.cli.common import Formatter, Parser, add_quiet, add_workers, print_help_instead


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="make datasets (chorales, chords)", description="Make datasets.")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATASET", parser_class=Parser)
    _add_chorales(data_sub)
    _add_chords(data_sub)
    data.set_defaults(func=lambda _args: print_help_instead(data))


def _add_chorales(sub: argparse._SubParsersAction) -> None:
    from stemkit.data.ensembles import ENSEMBLE_CHOICES

    p = sub.add_parser(
        "chorales",
        help="render Bach chorales from music21's corpus into a CocoChorales-layout dataset",
        description=(
            "Render the Bach chorales that ship with music21 into multi-instrument stems with FluidSynth, in the "
            "CocoChorales layout (<ensemble>_track<6 digits>/{metadata.yaml, mix.mid, mix.wav, stems_MIDI/, "
            "stems_audio/}). Splits are fixed by chorale (sha1 of the corpus key), so test sets agree everywhere. "
            "Resumable: finished tracks are skipped, unfinished ones never appear."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    p.add_argument("--ensemble", default="string", help=f"one of {', '.join(ENSEMBLE_CHOICES)}")
    p.add_argument("--num", type=int, default=None,
                   help="tracks in the folder: the first N of the split in key order, counting those already there "
                        "(default: every chorale of the split)")
    p.add_argument("--split", default="train",
                   help="train, valid, test, all, or excluded (the chorales left out of train/valid because they are "
                        "variants of, or share a voice line with, a held-out chorale)")
    p.add_argument("--seconds", type=float, default=None, help="cut each track to this many seconds (default: whole chorale)")
    p.add_argument("--sample-rate", type=int, default=16000, help="sample rate in Hz")
    p.add_argument("--soundfont", default=None,
                   help="a .sf2/.sf3 General MIDI soundfont, or several separated by commas (each part then draws one) "
                        "(default: the system's FluidR3_GM)")
    p.add_argument("--performance", default="plain",
                   help="how the chorales are played and recorded: plain (the original generator), varied (the training "
                        "distribution: tempo, rubato, dynamics, articulation, tuning, balance, reverb/chorus, rooms, EQ "
                        "drawn per track), studio (varied's playing recorded dry, for MIDI synthesizers: everything it varies is in the "
                        "MIDI) or recital (a held-out setting for robustness tests: slow, rubato, legato, in a "
                        "hall); every drawn value is recorded in metadata.yaml")
    p.add_argument("--seed", type=int, default=0, help="seed of the performance variation (tempo, dynamics, timing)")
    p.add_argument("--renditions", type=int, default=1, help="performances per chorale (more data from the same scores)")
    add_workers(p, 1, "tracks rendered")
    add_quiet(p)
    p.set_defaults(func=_run_chorales)


def _run_chorales(args: argparse.Namespace) -> int:
    from stemkit.data.generate import GenerateConfig, generate

    report = generate(
        GenerateConfig(
            out=args.out,
            ensemble=args.ensemble,
            num=args.num,
            split=args.split,
            seconds=args.seconds,
            sample_rate=args.sample_rate,
            soundfont=[Path(f.strip()) for f in args.soundfont.split(",") if f.strip()] if args.soundfont else None,
            performance=args.performance,
            seed=args.seed,
            workers=args.workers,
            renditions=args.renditions,
            progress=not args.quiet,
        )
    )
    speed = report.audio_seconds / report.wall_seconds if report.wall_seconds > 0 else 0.0
    print(
        f"wrote {len(report.written)} track(s), skipped {len(report.skipped)} already present, "
        f"{report.audio_seconds:.1f} s of audio in {report.wall_seconds:.1f} s ({speed:.1f}× real time) → {args.out}"
    )
    return 0


def _add_chords(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chords",
        help="the chord set of DisMix's simple variant: chorale chords shared among piano, violin and flute",
        description=(
            "Every distinct chord of the Bach chorales, shared among 2-3 of piano, violin and flute (one source = all "
            "the notes one instrument plays, labelled multi-hot over 52 pitches), rendered with FluidSynth at 16 kHz; "
            "stored as 128-band log-mels of a 320 ms crop from the sustain phase (window 1024, hop 512, 10 frames), "
            "for each source and the mixture. Split 70/20/10 by chord (sha1 of its pitches). Written in shards, each "
            "atomically: an interrupted run resumes, and the bytes do not depend on --workers."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    p.add_argument("--soundfont", default=None,
                   help="a .sf2/.sf3 General MIDI soundfont, or several separated by commas (each source draws one) "
                        "(default: the system's FluidR3_GM)")
    p.add_argument("--mixtures-per-chord", type=int, default=6,
                   help="ways each chord is shared among the instruments (6 gives about 32,000 mixtures)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sharing, velocities, soundfonts and crops")
    add_workers(p, 2, "note banks and shards made")
    add_quiet(p)
    p.set_defaults(func=_run_chords)


def _run_chords(args: argparse.Namespace) -> int:
    from stemkit.data.chords import ChordsConfig, make_chords

    soundfonts = [Path(f.strip()) for f in args.soundfont.split(",") if f.strip()] if args.soundfont else []
    report = make_chords(ChordsConfig(args.out, soundfonts, args.mixtures_per_chord, args.seed, args.workers,
                                      progress=not args.quiet))
    splits = ", ".join(f"{s} {report.chords[s]} chords / {report.mixtures[s]} mixtures" for s in report.chords)
    print(f"wrote {report.written} shard(s), skipped {report.skipped} already present: {splits} → {args.out}")
    return 0
