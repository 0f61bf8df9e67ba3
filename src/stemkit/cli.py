"""The one ``stemkit`` command. Each subcommand parses arguments and calls the Python API.

Errors a user can fix arrive as ``StemkitError`` and are printed as one line on stderr with a
non-zero exit and no traceback; so are argument mistakes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Sequence

from stemkit import __version__
from stemkit.errors import StemkitError, StemkitWarning
from stemkit.outputs import check_output_dir, check_output_file


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (plus a pointer to --help), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except where the help already says what the default means."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


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
        formatter_class=_Formatter,
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
    p.add_argument("--soundfont", type=Path, default=None, help="a .sf2/.sf3 General MIDI soundfont (default: system FluidR3_GM)")
    p.add_argument("--seed", type=int, default=0, help="seed of the performance variation (tempo, dynamics, timing)")
    p.add_argument("--renditions", type=int, default=1, help="performances per chorale (more data from the same scores)")
    p.add_argument("--workers", type=int, default=1, help="parallel rendering processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
            soundfont=args.soundfont,
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


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score separated stems (or an oracle) against a reference dataset",
        description=(
            "Compute cSDR (SiSEC18: BSSEval v4 via museval, 1 s windows, median over windows then tracks), uSDR "
            "(MDX: whole signal, mean over tracks), SI-SDR, SIR, SAR and ISR per target, and their average over "
            "targets. Estimates are read from EST_DIR/<track folder name>/<target>.wav; chorale targets are "
            "soprano, alto, tenor, bass; MUSDB targets vocals, drums, bass, other."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument("--reference", type=Path, required=True, help="dataset with references (chorale folders or MUSDB18 root)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--estimates", type=Path, help="folder of estimates: EST_DIR/<track>/<target>.wav")
    source.add_argument("--oracle", choices=("mixture", "irm"), help="score an oracle instead: the mixture (floor) or the ideal ratio mask (ceiling)")
    p.add_argument("--targets", default=None, help="comma-separated targets (default: all of the dataset's)")
    p.add_argument("--subset", default="test", help="MUSDB subset (train or test)")
    p.add_argument("--json", type=Path, default=None, help="write per-track, per-target and average figures here")
    p.add_argument("--frames", action="store_true", help="also keep per-window BSSEval values in the JSON")
    p.add_argument("--workers", type=int, default=1, help="tracks evaluated in parallel")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from stemkit.evaluation import evaluate_dataset, format_table, write_json

    if args.json:
        check_output_file(args.json, "--json", (".json",))
    _check_workers(args.workers)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else None
    result = evaluate_dataset(
        args.reference,
        estimates=args.estimates,
        oracle=args.oracle,
        targets=targets,
        subset=args.subset,
        workers=args.workers,
        keep_frames=args.frames,
        progress=not args.quiet,
    )
    name = f"{args.oracle} (oracle)" if args.oracle else str(args.estimates)
    print(format_table({name: result}))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


class _RawDescriptionFormatter(argparse.RawDescriptionHelpFormatter, _Formatter):
    """``_Formatter`` that keeps the description's line breaks (for a list of metrics)."""


def _add_eval_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-synth",
        help="score synthesized audio (MIDI → audio) against reference renderings of the same MIDI",
        description=(
            "Pair GEN_DIR/<name>.wav with the reference <name> and report each metric per item and as a mean over\n"
            "items (means skip nan). Generated audio is resampled to the reference rate, mixed to mono and cut or\n"
            "padded to the reference length; a length more than 5% off is an error.\n\n"
            "metrics:\n"
            "  log_mel_l1  mean |ln(mel_ref + 1e-5) - ln(mel_gen + 1e-5)| of 80-band magnitude mel spectrograms\n"
            "              (FFT 1024, hop 256): timbre and loudness envelope, blind to phase. Not gain invariant:\n"
            "              6 dB too quiet costs ~0.69 alone. Lower is better; 0 = identical.\n"
            "  mrstft      auraloss multi-resolution STFT distance (spectral convergence + log-magnitude L1 at FFT\n"
            "              sizes 1024/2048/512), the usual vocoder loss. Lower is better; 0 = identical.\n"
            "  si_sdr      scale-invariant SDR in dB: waveform match up to gain. Higher is better; near or below\n"
            "              0 dB for any generator whose phase differs from the reference, however good it sounds.\n"
            "  pitch_acc   share of frames inside MIDI notes where pYIN's f0 of the generated audio is within\n"
            "              50 cents of a sounding note (unvoiced = miss); nan without MIDI. 0..1, higher is better;\n"
            "              even the reference scores below 1 (attacks, note changes)."
        ),
        formatter_class=_RawDescriptionFormatter,
    )
    p.add_argument("--reference", type=Path, required=True,
                   help="folder of <name>.wav (or .flac) with the MIDI each renders beside it as <name>.mid, or a "
                        "CocoChorales-layout dataset, whose stems are the items <track folder>_<stem> (e.g. "
                        "string_track000123_0_violin) with MIDI from stems_MIDI/<stem>.mid")
    p.add_argument("--generated", type=Path, required=True, help="folder of generated <name>.wav (or .flac), one per reference item")
    p.add_argument("--instrument", default=None, help="score only this instrument's stems of a CocoChorales-layout reference (e.g. violin)")
    p.add_argument("--json", type=Path, default=None, help="write per-item and mean figures here (nan becomes null)")
    p.add_argument("--workers", type=int, default=1, help="items scored in parallel")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_eval_synth)


def _run_eval_synth(args: argparse.Namespace) -> int:
    from stemkit.evaluation import write_json
    from stemkit.synthesis.evaluation import evaluate_synthesis, format_table

    if args.json:
        check_output_file(args.json, "--json", (".json",))
    _check_workers(args.workers)
    result = evaluate_synthesis(args.reference, args.generated, workers=args.workers, instrument=args.instrument,
                                progress=not args.quiet)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


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
        formatter_class=_Formatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders of audio files, or chorale datasets")
    _add_model_args(p)
    p.add_argument("--targets", default=None, help="comma-separated targets to write (default: all the model's targets)")
    p.add_argument("--out", "-o", type=Path, default=Path("separated"), help="output folder")
    p.add_argument("--format", choices=["wav", "flac"], default="wav", help="output format (16-bit)")
    p.add_argument("--residual", action="store_true", help="also write residual = mix − sum of the written targets")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    p.add_argument("--shard", default=None, help="I/N: separate only every N-th input starting at the I-th (parallel jobs)")
    _add_progressive_args(p, default_steps=1)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def _add_progressive_args(p: argparse.ArgumentParser, default_steps: int) -> None:
    group = p.add_argument_group(
        "progressive inference",
        "Separate, remix the estimate into the mixture, separate again: step n separates "
        "(1 − β_n)·mix + β_n·(previous estimate). Remix-aware models are told β.")
    group.add_argument("--steps", type=int, default=default_steps, help="separation passes N (1 = ordinary separation)")
    group.add_argument("--schedule", default="linear",
                       help="β per step: linear, cosine, karras[:RHO], constant[:C], adaptive, or a list like 0,0.4,0.7")
    group.add_argument("--mode", choices=["add-to-mixture", "remix-all"], default="add-to-mixture",
                       help="add-to-mixture boosts the target's estimate in the mixture; remix-all rebuilds it from all estimates")
    group.add_argument("--wiener", action="store_true", help="Wiener-filter every step's estimates against the mixture (norbert)")


def _load_base(args: argparse.Namespace, progress: bool):
    """The separator named by the model arguments (ours by default, or a peer checkpoint)."""
    from stemkit.separation.adapters import load_separator

    return load_separator(args.model, args.arch, args.model_config, device=args.device, segment=args.segment,
                          overlap=args.overlap, batch_size=args.batch_size, progress=progress)


def _build_separator(args: argparse.Namespace, progress: bool):
    from stemkit.separation.progressive import ProgressiveSeparator
    from stemkit.separation.schedules import check_schedule

    check_schedule(args.schedule, args.steps)  # an invalid --schedule is an error even for one pass
    base = _load_base(args, progress=progress and args.steps == 1)
    if args.steps == 1 and not args.wiener:
        return base
    return ProgressiveSeparator(base, args.steps, args.schedule, args.mode, args.wiener)


def _run_separate(args: argparse.Namespace) -> int:
    from stemkit.separation.batch import collect_inputs, parse_shard, separate_many

    shard = parse_shard(args.shard)
    inputs = collect_inputs(args.inputs)
    check_output_dir(args.out)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else None
    separator = _build_separator(args, progress=not args.quiet)
    separator.check_targets(targets)
    report = separate_many(separator, inputs, args.out, targets, args.format, args.residual, args.overwrite, shard,
                           progress=not args.quiet)
    files = len(report.written)
    print(f"wrote {files} file(s) to {args.out / separator.name}" + (
        f"; skipped {len(report.skipped)} input(s) already separated (pass --overwrite to redo)" if report.skipped else ""))
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
        formatter_class=_Formatter,
    )
    p.add_argument("--dataset", type=Path, required=True, help="a chorale dataset (or MUSDB18 folder) with reference stems")
    p.add_argument("--out", "-o", type=Path, required=True, help="output folder")
    _add_model_args(p)
    _add_progressive_args(p, default_steps=4)
    p.add_argument("--compare", default=None, help="more schedules to run beside --schedule, separated by ';' (e.g. 'cosine;karras:3;adaptive')")
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle predictor (saves one separation per step)")
    p.add_argument("--tracks", type=int, default=None, help="use only the first N tracks")
    p.add_argument("--seconds", type=float, default=None, help="score an excerpt of this many seconds per track")
    p.add_argument("--offset", type=float, default=0.0, help="excerpt start in seconds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_progressive_analysis)


def _run_progressive_analysis(args: argparse.Namespace) -> int:
    from stemkit.separation.analysis import check_analysis_options, format_summary, progressive_analysis

    check_analysis_options(args.steps, args.tracks, args.seconds, args.offset)
    check_output_dir(args.out)
    separator = _load_base(args, progress=False)
    schedules = [args.schedule] + [s.strip() for s in (args.compare or "").split(";") if s.strip()]
    summary = progressive_analysis(args.dataset, separator, args.out, args.steps, schedules, args.mode, args.wiener,
                                   oracle=not args.no_oracle, max_tracks=args.tracks, seconds=args.seconds, offset=args.offset,
                                   progress=not args.quiet)
    print(format_summary(summary))
    print(f"avg cSDR / SI-SDR (dB) per step; wrote {args.out / 'progressive.csv'}, summary.json and progressive.png")
    return 0


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


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="synthesize audio from MIDI with the latent diffusion synthesizer",
        description=(
            "Render MIDI to audio: notes → pitch and envelope curves → EDM sampling of VAE latents → VAE decode. Every "
            "track of a MIDI file is synthesized (overlapping notes become separate lines) and the lines are mixed; the "
            "output is as long as the MIDI. Inputs can be MIDI files, folders of them, or a chorale dataset (its "
            "--instrument stems, named as `stemkit eval-synth` names them). Existing outputs are skipped."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="MIDI files, folders of MIDI files, or chorale datasets")
    p.add_argument("--out", type=Path, default=None,
                   help="an output file (.wav/.flac) for one MIDI input, else a folder (default: synthesized/<model>/)")
    p.add_argument("--model", default=None, help="shipped name, .safetensors or a stemkit fit .ckpt (default: violin-ldm-chorales)")
    p.add_argument("--instrument", default=None, help="instrument to play (must be the model's; also picks a chorale dataset's stems; default: the model's)")
    p.add_argument("--steps", type=int, default=18, help="sampling steps (Heun uses 2·steps − 1 network calls)")
    p.add_argument("--sampler", default="heun", help="heun (EDM's 2nd order), euler or dpmpp2m")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance weight (1 = none, >1 follows the curves harder)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (same seed, same audio)")
    p.add_argument("--tracks", default=None, help="only these MIDI tracks, by name or number from 0 (e.g. 0,2 or violin1); default all")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--format", default="wav", choices=["wav", "flac"], help="output format of folder outputs (16-bit)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--shard", default=None, help="I/N: only every N-th input from the I-th (parallel jobs on one folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from stemkit.separation.batch import AUDIO_SUFFIXES, parse_shard
    from stemkit.synthesis.checkpoints import DEFAULT_SYNTH
    from stemkit.synthesis.synthesize import Synthesizer, collect_midi, synthesize_many

    shard = parse_shard(args.shard)
    for raw in args.inputs:  # before loading the model: a typo should fail at once
        if not Path(raw).exists():
            raise StemkitError(f"input not found: {raw}")
    # an audio suffix makes --out a file; one we cannot write (.mp3) is refused rather than made a folder
    single = args.out is not None and args.out.suffix.lower() in AUDIO_SUFFIXES
    if single:
        check_output_file(args.out, "--out", (".wav", ".flac"), overwrite=True)
    elif args.out is not None:
        check_output_dir(args.out)
    synth = Synthesizer(args.model or DEFAULT_SYNTH, device=args.device, steps=args.steps, sampler=args.sampler, cfg=args.cfg,
                        instrument=args.instrument, progress=not args.quiet)
    inputs = collect_midi(args.inputs, args.instrument or synth.model.config.instrument)
    if single and (len(inputs) != 1 or Path(args.inputs[0]).is_dir()):
        raise StemkitError(f"--out {args.out} is a file, but the inputs hold {len(inputs)} MIDI files: give a folder")
    out = args.out or check_output_dir(Path("synthesized") / synth.name)
    report = synthesize_many(synth, inputs, out, format=args.format, seed=args.seed, overwrite=args.overwrite, shard=shard,
                             single_file=single, tracks=args.tracks.split(",") if args.tracks else None, progress=not args.quiet)
    where = out if single else f"{out}/"
    print(f"wrote {len(report.written)} file(s) to {where}" + (f"; skipped {len(report.skipped)} already present (--overwrite replaces)" if report.skipped else ""))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="turn a training checkpoint into shippable safetensors weights + JSON config",
        description=(
            "Export the model of a `stemkit fit` checkpoint (.ckpt) to NAME.safetensors and NAME.json in --out: weights "
            "without optimizer state, and the config the model is rebuilt from. `stemkit separate --model` (separators) and "
            "`stemkit synth --model` (synthesizers; a VAE run exports a VAE, a latent-synth run its EMA weights) load either."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument("checkpoint", type=Path, help="a .ckpt written by stemkit fit")
    p.add_argument("--name", required=True, help="model name (also the output folder name of stemkit separate)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder")
    p.add_argument("--note", action="append", default=[], metavar="KEY=VALUE", help="provenance to record (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export of the same name")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from stemkit.separation.checkpoints import load_model, save_model
    from stemkit.synthesis.checkpoints import export_synthesis_model, is_synthesis_checkpoint

    provenance = {}
    for note in args.note:
        key, sep, value = note.partition("=")
        if not sep:
            raise StemkitError(f"--note must be KEY=VALUE, got {note!r}")
        provenance[key] = value
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise StemkitError(f"--name {args.name!r} must be a plain file name (no folders, not hidden)")
    for suffix in (".safetensors", ".json"):
        check_output_file(args.out / f"{args.name}{suffix}", "--out", overwrite=args.overwrite)
    if not args.checkpoint.is_file():
        raise StemkitError(f"checkpoint not found: {args.checkpoint}")
    if is_synthesis_checkpoint(args.checkpoint):
        path = export_synthesis_model(args.checkpoint, args.out / args.name, provenance)
        print(f"wrote {path} and {path.with_suffix('.json')}")
        return 0
    model, meta = load_model(args.checkpoint)
    provenance = {**meta.get("provenance", {}), **provenance}
    path = save_model(model, args.out / args.name, name=args.name, provenance=provenance)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


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
        formatter_class=_Formatter,
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("--num", type=int, default=3, help="number of test chorales")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per chorale")
    p.add_argument("--ensemble", default="string", help="string, brass, woodwind or random")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="parallel processes")
    p.add_argument("--soundfont", type=Path, default=None, help="a .sf2/.sf3 General MIDI soundfont")
    p.add_argument("--model", default=None, help="separator to demonstrate (default: the shipped lasaft-chorales-string-remix)")
    p.add_argument("--synth-model", default=None, help="synthesizer to demonstrate (default: the shipped violin-ldm-chorales)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from stemkit.demo import run_demo

    check_output_dir(args.out)
    _check_workers(args.workers)
    summary = run_demo(args.out, num=args.num, seconds=args.seconds, ensemble=args.ensemble, workers=args.workers, soundfont=args.soundfont,
                       model=args.model, device=args.device, synth_model=args.synth_model)
    print(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stemkit",
        description="stemkit: make multi-instrument datasets, separate, disentangle and synthesize music stems.",
    )
    parser.add_argument("--version", action="version", version=f"stemkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    data = sub.add_parser("data", help="make datasets (chorales)", description="Make datasets.")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATASET", parser_class=_Parser)
    _add_chorales(data_sub)
    data.set_defaults(func=lambda _args: _missing(data))
    _add_eval(sub)
    _add_eval_synth(sub)
    _add_separate(sub)
    _add_progressive_analysis(sub)
    _add_fit(sub)
    _add_synth(sub)
    _add_export(sub)
    _add_demo(sub)
    return parser


def _check_workers(workers: int) -> None:
    if workers < 1:
        raise StemkitError(f"--workers must be at least 1, got {workers}")


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings as one line each; other libraries' warnings as Python prints them."""
    if issubclass(category, StemkitWarning):
        print(f"stemkit: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def _interrupt_on_sigterm(signum: int, frame) -> None:
    raise KeyboardInterrupt


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


if __name__ == "__main__":
    sys.exit(main())
