"""``stemkit synth``: render MIDI with a synthesis model."""

from __future__ import annotations

import argparse
from pathlib import Path

from stemkit.cli.common import Formatter, add_batch_options, split_list
from stemkit.errors import StemkitError
from stemkit.outputs import check_output_dir, check_output_file


def register(sub: argparse._SubParsersAction) -> None:
    _add_synth(sub)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="synthesize audio from MIDI with a synthesis model (latent diffusion or spectrogram diffusion)",
        description=(
            "Render MIDI to audio with a synthesis model. The latent synthesizer (violin-ldm-chorales): notes → pitch and "
            "envelope curves → EDM sampling of VAE latents → VAE decode; every track of a MIDI file is synthesized "
            "(overlapping notes become separate lines) and the lines are mixed. Spectrogram diffusion (family specdiff): "
            "every track's notes (General MIDI programs, drums included) → MT3-style tokens → mel, 5.12 s at a time → "
            "vocoder. The output is as long as the MIDI. Inputs can be MIDI files, folders of them, or a chorale dataset (its "
            "--instrument stems, named as `stemkit eval-synth` names them). Existing outputs are skipped."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="MIDI files, folders of MIDI files, or chorale datasets")
    p.add_argument("--out", type=Path, default=None,
                   help="an output file (.wav/.flac) for one MIDI input, else a folder (default: synthesized/<model>/)")
    p.add_argument("--model", default=None, help="shipped name, .safetensors or a stemkit fit .ckpt (default: violin-ldm-chorales)")
    p.add_argument("--instrument", default=None, help="instrument to play (must be a one-instrument model's; also picks a chorale dataset's stems; default: the model's, or every stem for a many-instrument model)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps (Heun uses 2·steps − 1 network calls; default: the model's recommendation, "
                        "`stemkit models NAME` shows it, else 18)")
    p.add_argument("--sampler", default=None, help="heun (EDM's 2nd order), euler or dpmpp2m (default: the model's, else heun)")
    p.add_argument("--cfg", type=float, default=None,
                   help="classifier-free guidance weight (1 = none, >1 follows the notes/curves harder; default: the model's, else 1)")
    p.add_argument("--vocoder", default=None, metavar="NAME|griffin-lim",
                   help="mel models only (spectrogram diffusion): the mel → audio decoder, a mel-vocoder model's name or "
                        "file, or griffin-lim (default: the model's own, `stemkit models NAME` shows it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (same seed, same audio)")
    p.add_argument("--tracks", default=None, help="only these MIDI tracks, by name or number from 0 (e.g. 0,2 or violin1); default all")
    add_batch_options(p, "output format of folder outputs")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from stemkit.jobs import check_inputs_exist, parse_shard
    from stemkit.separation.batch import AUDIO_SUFFIXES
    from stemkit.synthesis.synthesize import DEFAULT_SYNTH, Synthesizer, collect_midi, synthesize_many

    shard = parse_shard(args.shard)
    check_inputs_exist(args.inputs)  # before loading the model: a typo should fail at once
    # an audio suffix makes --out a file; one we cannot write (.mp3) is refused rather than made a folder
    single = args.out is not None and args.out.suffix.lower() in AUDIO_SUFFIXES
    if single:
        check_output_file(args.out, "--out", (".wav", ".flac"), overwrite=True)
    elif args.out is not None:
        check_output_dir(args.out)
    synth = Synthesizer(args.model or DEFAULT_SYNTH, device=args.device, steps=args.steps, sampler=args.sampler, cfg=args.cfg,
                        instrument=args.instrument, progress=not args.quiet, vocoder=args.vocoder)
    inputs = collect_midi(args.inputs, args.instrument or synth.instrument)
    if single and (len(inputs) != 1 or Path(args.inputs[0]).is_dir()):
        raise StemkitError(f"--out {args.out} is a file, but the inputs hold {len(inputs)} MIDI files: give a folder")
    out = args.out or check_output_dir(Path("synthesized") / synth.name)
    report = synthesize_many(synth, inputs, out, format=args.format, seed=args.seed, overwrite=args.overwrite, shard=shard,
                             single_file=single, tracks=split_list(args.tracks), progress=not args.quiet)
    print(report.summary(out if single else f"{out}/"))
    return 0
