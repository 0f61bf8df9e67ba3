"""``stemkit separate`` and ``stemkit progressive-analysis``: run a separator, once or progressively."""

from __future__ import annotations

import argparse
from pathlib import Path

from stemkit.cli.common import Formatter, add_batch_options, add_device, add_quiet, split_list
from stemkit.errors import StemkitError
from stemkit.outputs import check_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    _add_separate(sub)
    _add_progressive_analysis(sub)


def _add_separate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "separate",
        help="separate mixtures into their instruments with a trained model",
        description=(
            "Separate audio files (or every audio file of a folder, or every track of a chorale dataset) into "
            "OUT/<model>/<name>/<target>.<format>. Audio is resampled to the model's rate and back; long files run "
            "in overlapping windows with bounded memory. Inputs whose outputs all exist are skipped unless "
            "--overwrite, so an interrupted batch resumes."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders of audio files, or chorale datasets")
    _add_model_args(p)
    p.add_argument("--targets", default=None, help="comma-separated targets to write (default: all the model's targets, "
                                                    "or none with --query/--instrument)")
    p.add_argument("--query", type=Path, default=None, metavar="CLIP",
                   help="an audio clip of the wanted instrument (≥ 0.5 s): writes the part it plays as <CLIP name>.<format> "
                        "(models with a query encoder)")
    p.add_argument("--instrument", default=None, metavar="NAMES",
                   help="comma-separated instruments to write, each by the model's stored mean query of it "
                        "(an unknown name is an error that lists the model's instruments)")
    p.add_argument("--out", "-o", type=Path, default=Path("separated"), help="output folder")
    p.add_argument("--residual", action="store_true", help="also write residual = mix − sum of the written targets")
    add_batch_options(p, "output format")
    _add_progressive_args(p, default_steps=1)
    p.set_defaults(func=_run_separate)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """Which separator to run and how (shared by separate and progressive-analysis)."""
    p.add_argument("--model", "-n", default=None,
                   help="a shipped model name, a .safetensors/.ckpt file, a demucs .th package, or a BS-RoFormer "
                        "checkpoint with --model-config (default: lasaft-chorales-string-remix)")
    p.add_argument("--arch", choices=["auto", "lasaft", "htdemucs", "bs-roformer"], default="auto",
                   help="architecture of --model; auto: .th is HTDemucs, a checkpoint with --model-config is BS-RoFormer")
    p.add_argument("--model-config", type=Path, default=None, help="the training YAML of a BS-RoFormer checkpoint")
    p.add_argument("--segment", type=float, default=None, help="window length in seconds (default: the model's training window)")
    p.add_argument("--overlap", type=float, default=0.25, help="fraction of each window shared with the next")
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    p.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                   help="number format of the network: auto = bfloat16 on a CPU that computes it in hardware (AMX or "
                        "AVX-512 BF16: about 2x faster for LaSAFT; the stems agree with float32 to about 50 dB SNR), else float32; 32 = always float32")


def _add_progressive_args(p: argparse.ArgumentParser, default_steps: int) -> None:
    group = p.add_argument_group(
        "progressive inference",
        "Separate, remix the estimate into the mixture, separate again: step n separates "
        "(1 − β_n)·mix + β_n·(previous estimate). Remix-aware models are told β.")
    group.add_argument("--steps", type=int, default=default_steps,
                       help="passes N (1 = ordinary separation). With a refiner for the model (--refiner), steps 2..N "
                            "are refinements of all parts; without one, remixing progressive inference (--schedule, --mode)")
    group.add_argument("--refiner", default="auto", metavar="NAME",
                       help="auto: the installed refiner trained for --model, if any; none: remixing progressive "
                            "inference; or a refiner model name or file")
    group.add_argument("--schedule", default="linear",
                       help="β per step: linear, cosine, karras[:RHO], constant[:C], adaptive, or a list like 0,0.4,0.7")
    group.add_argument("--mode", choices=["add-to-mixture", "remix-all"], default="add-to-mixture",
                       help="add-to-mixture boosts the target's estimate in the mixture; remix-all rebuilds it from all estimates")
    group.add_argument("--wiener", action="store_true", help="Wiener-filter every step's estimates against the mixture (norbert)")


def _load_base(args: argparse.Namespace, progress: bool):
    """The separator named by the model arguments (ours by default, or a peer checkpoint)."""
    from stemkit.separation.adapters import load_separator

    return load_separator(args.model, args.arch, args.model_config, device=args.device, segment=args.segment,
                          overlap=args.overlap, batch_size=args.batch_size, progress=progress, precision=args.precision)


def _build_separator(args: argparse.Namespace, progress: bool):
    from stemkit.separation.progressive import ProgressiveSeparator
    from stemkit.separation.schedules import check_schedule

    check_schedule(args.schedule, args.steps)  # an invalid --schedule is an error even for one pass
    base = _load_base(args, progress=progress and args.steps == 1)
    refiner = _pick_refiner(args, base)
    if refiner is not None:
        from stemkit.separation.refinement import RefinedSeparator

        return RefinedSeparator(base, refiner, args.steps, args.wiener, overlap=args.overlap, batch_size=args.batch_size,
                                device=args.device, progress=progress)
    if args.steps == 1 and not args.wiener:
        return base
    return ProgressiveSeparator(base, args.steps, args.schedule, args.mode, args.wiener)


def _pick_refiner(args: argparse.Namespace, base):
    """The refiner ``--refiner`` asks for (``auto``: the one trained for the base, if installed), or None."""
    from stemkit.separation.refinement import find_refiner, load_refiner

    choice = args.refiner
    if choice == "none" or (choice == "auto" and args.steps < 2):
        return None
    if args.steps < 2:
        raise StemkitError("--refiner refines after the first pass: give --steps 2 or more")
    name = find_refiner(base.name) if choice == "auto" else choice
    return load_refiner(name) if name else None


def _run_separate(args: argparse.Namespace) -> int:
    from stemkit.jobs import parse_shard
    from stemkit.separation.batch import collect_audio, separate_many

    shard = parse_shard(args.shard)
    inputs = collect_audio(args.inputs)
    check_output_dir(args.out)
    targets = split_list(args.targets)
    instruments = split_list(args.instrument)
    by_example = args.query is not None or bool(instruments)
    if by_example and (args.steps != 1 or args.wiener):
        raise StemkitError("--query/--instrument separate in one pass: drop --steps and --wiener")
    if args.query is not None and not args.query.is_file():
        raise StemkitError(f"no query clip at {args.query}")
    separator = _build_separator(args, progress=not args.quiet)
    separator.check_targets(targets)
    if by_example:  # refuse before any work: a model without a query encoder, unknown names, clashing names
        separator.check_by_example(args.query is not None, instruments)
        separator.output_paths(args.out, targets, args.format, args.residual, args.query, instruments)
        if args.query is not None:  # a clip too short, silent or not finite is refused now, not at the first file
            from stemkit.audio.io import check_finite_file, load_audio

            check_finite_file(args.query)
            separator.query_conditions(*load_audio(args.query), None)
    report = separate_many(separator, inputs, args.out, targets, args.format, args.residual, args.overwrite, shard,
                           progress=not args.quiet, query=args.query, instruments=instruments)
    print(report.summary(args.out / separator.name))
    return 0


def _add_progressive_analysis(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "progressive-analysis",
        help="score progressive inference step by step against the oracle predictor and one-pass separation",
        description=(
            "On a dataset with references, separate every track progressively and score each step (cSDR, SI-SDR, "
            "uSDR). The oracle predictor remixes the true target instead of the estimate: the upper bound of that "
            "schedule; step 1 is one-pass separation, the lower line. Writes OUT/progressive.csv (one row per method, "
            "step, track and target), OUT/summary.json and OUT/progressive.png. Rerunning the same command resumes."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--dataset", type=Path, required=True, help="a chorale dataset (or MUSDB18 folder) with reference stems")
    p.add_argument("--out", "-o", type=Path, required=True, help="output folder")
    _add_model_args(p)
    add_device(p)
    _add_progressive_args(p, default_steps=4)
    p.add_argument("--compare", default=None, help="more schedules to run beside --schedule, separated by ';' (e.g. 'cosine;karras:3;adaptive')")
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle predictor (saves one separation per step)")
    p.add_argument("--tracks", type=int, default=None, help="use only the first N tracks")
    p.add_argument("--seconds", type=float, default=None, help="score an excerpt of this many seconds per track")
    p.add_argument("--offset", type=float, default=0.0, help="excerpt start in seconds")
    add_quiet(p)
    p.set_defaults(func=_run_progressive_analysis)


def _run_progressive_analysis(args: argparse.Namespace) -> int:
    from stemkit.separation.analysis import check_analysis_options, format_summary, progressive_analysis

    check_analysis_options(args.steps, args.tracks, args.seconds, args.offset)
    check_output_dir(args.out)
    separator = _load_base(args, progress=False)
    refiner = _pick_refiner(args, separator)
    schedules = [args.schedule] + [s.strip() for s in (args.compare or "").split(";") if s.strip()]
    summary = progressive_analysis(args.dataset, separator, args.out, args.steps, schedules, args.mode, args.wiener,
                                   oracle=not args.no_oracle, max_tracks=args.tracks, seconds=args.seconds, offset=args.offset,
                                   progress=not args.quiet, refiner=refiner)
    print(format_summary(summary))
    print(f"avg cSDR / SI-SDR (dB) per step; wrote {args.out / 'progressive.csv'}, summary.json and progressive.png")
    return 0
