"""``stemkit eval`` and ``stemkit eval-synth``: score separations and syntheses against references."""

from __future__ import annotations

import argparse
from pathlib import Path

from stemkit.cli.common import Formatter, RawDescriptionFormatter, add_quiet, add_workers, check_workers, split_list
from stemkit.outputs import check_output_file


def register(sub: argparse._SubParsersAction) -> None:
    _add_eval(sub)
    _add_eval_synth(sub)


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
        formatter_class=Formatter,
    )
    p.add_argument("--reference", type=Path, required=True, help="dataset with references (chorale folders or MUSDB18 root)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--estimates", type=Path, help="folder of estimates: EST_DIR/<track>/<target>.wav")
    source.add_argument("--oracle", choices=("mixture", "irm"), help="score an oracle instead: the mixture (floor) or the ideal ratio mask (ceiling)")
    p.add_argument("--targets", default=None, help="comma-separated targets (default: all of the dataset's)")
    p.add_argument("--subset", default="test", help="MUSDB subset (train or test)")
    p.add_argument("--json", type=Path, default=None, help="write per-track, per-target and average figures here")
    p.add_argument("--frames", action="store_true", help="also keep per-window BSSEval values in the JSON")
    add_workers(p, 1, "tracks evaluated")
    add_quiet(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from stemkit.evaluation import evaluate_dataset, format_table, write_json

    if args.json:
        check_output_file(args.json, "--json", (".json",))
    check_workers(args.workers)
    targets = split_list(args.targets)
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
        formatter_class=RawDescriptionFormatter,
    )
    p.add_argument("--reference", type=Path, required=True,
                   help="folder of <name>.wav (or .flac) with the MIDI each renders beside it as <name>.mid, or a "
                        "CocoChorales-layout dataset, whose stems are the items <track folder>_<stem> (e.g. "
                        "string_track000123_0_violin) with MIDI from stems_MIDI/<stem>.mid")
    p.add_argument("--generated", type=Path, required=True, help="folder of generated <name>.wav (or .flac), one per reference item")
    p.add_argument("--instrument", default=None, help="score only this instrument's stems of a CocoChorales-layout reference (e.g. violin)")
    p.add_argument("--json", type=Path, default=None, help="write per-item and mean figures here (nan becomes null)")
    add_workers(p, 1, "items scored")
    add_quiet(p)
    p.set_defaults(func=_run_eval_synth)


def _run_eval_synth(args: argparse.Namespace) -> int:
    from stemkit.evaluation import write_json
    from stemkit.synthesis.evaluation import evaluate_synthesis, format_table

    if args.json:
        check_output_file(args.json, "--json", (".json",))
    check_workers(args.workers)
    result = evaluate_synthesis(args.reference, args.generated, workers=args.workers, instrument=args.instrument,
                                progress=not args.quiet)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
