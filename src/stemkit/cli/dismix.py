"""``stemkit dismix``: pitch/timbre disentanglement (DisMix) — swap timbres, encode and decode latents, score swaps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stemkit.cli.common import Formatter, Parser, add_quiet, print_help_instead

#: The judges each disentanglement family is scored with when --classifier is not given.
DEFAULT_CLASSIFIERS = {"dismix-simple": "chords-classifier", "dismix-ldm": "chorales-classifier"}


def register(sub: argparse._SubParsersAction) -> None:
    dismix = sub.add_parser("dismix", help="disentangle each instrument's pitch and timbre (DisMix)",
                            description="Disentangle each instrument's pitch and timbre inside a mixture (DisMix).")
    dismix_sub = dismix.add_subparsers(dest="dismix_command", metavar="COMMAND", parser_class=Parser)
    _add_swap(dismix_sub)
    _add_encode(dismix_sub)
    _add_decode(dismix_sub)
    _add_eval(dismix_sub)
    dismix.set_defaults(func=lambda _args: print_help_instead(dismix))


DEFAULT_LDM = "dismix-chorales"
INPUT_HELP = ("a chorale track folder (CocoChorales layout: each part's query is cut from its own stem, outside the "
              "excerpt) or a mixture file (then give one query clip per part)")


def _add_sampling(p: argparse.ArgumentParser, model_help: str = f"(default: {DEFAULT_LDM})") -> None:
    from stemkit.cli.common import add_device

    p.add_argument("--model", default=None, help=f"a DisMix latent model (dismix-ldm family): name, .safetensors or .ckpt {model_help}")
    p.add_argument("--steps", type=int, default=32, help="the decoder's sampling steps (EDM)")
    p.add_argument("--sampler", default="heun", help="heun, euler or dpmpp2m")
    p.add_argument("--seed", type=int, default=0, help="seed of the decoder's noise: the same seed gives the same audio")
    _add_vocoder(p)
    add_device(p)


def _add_vocoder(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--vocoder", default=None, metavar="NAME|griffin-lim",
                   help=prefix + "the decoded mels' path to audio: a mel-vocoder model made for the model's mel settings (name or "
                        "file), or griffin-lim (default: the model's own, `stemkit models NAME` shows it)")


def _add_excerpt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=float, default=0.0, help="where the excerpt starts, in seconds")
    p.add_argument("--seconds", type=float, default=4.0, help="excerpt length in seconds (the models train on 4 s)")
    p.add_argument("--query-seconds", type=float, default=2.0, help="length of each part's query clip")


def _add_swap(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "swap",
        help="play A's notes with B's instruments, part by part",
        description=("Encode A and B into per-part pitch and timbre latents, give A's part i the timbre of B's part i, "
                     "and decode: DIR/<i>_<instrument of B>.wav per part of A and DIR/mix.wav."),
        formatter_class=Formatter,
    )
    p.add_argument("a", type=Path, metavar="A", help="whose notes: " + INPUT_HELP)
    p.add_argument("--timbre-from", type=Path, required=True, metavar="B", help="whose instruments: " + INPUT_HELP)
    p.add_argument("--queries", nargs="+", default=None, help="A's query clips, one per part (when A is a mixture file)")
    p.add_argument("--timbre-queries", nargs="+", default=None, help="B's query clips, one per part (when B is a mixture file)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_excerpt(p)
    _add_sampling(p)
    add_quiet(p)
    p.set_defaults(func=_run_swap)


def _add_encode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="a mixture's per-part pitch and timbre latents, to a file",
                       description="Encode each part of a mixture into its pitch latent ν and timbre latent τ (safetensors).",
                       formatter_class=Formatter)
    p.add_argument("mix", type=Path, metavar="MIX", help=INPUT_HELP)
    p.add_argument("--queries", nargs="+", default=None, help="query clips, one per part (when MIX is a mixture file)")
    p.add_argument("--out", type=Path, required=True, help="the latents file (.safetensors)")
    _add_excerpt(p)
    _add_sampling(p)
    add_quiet(p)
    p.set_defaults(func=_run_encode)


def _add_decode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="render latents from dismix encode (edited or not) to audio",
                       description="Decode per-part latents to DIR/<i>_<instrument>.wav and DIR/mix.wav.",
                       formatter_class=Formatter)
    p.add_argument("latents", type=Path, help="a .safetensors from stemkit dismix encode")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_sampling(p, "(default: the one named in the latents file)")
    add_quiet(p)
    p.set_defaults(func=_run_decode)


def _swapper(args: argparse.Namespace, model: str | None = None):
    from stemkit.disentanglement.swap import TimbreSwapper

    return TimbreSwapper(model or args.model or DEFAULT_LDM, device=args.device, steps=args.steps, sampler=args.sampler,
                         progress=not args.quiet, vocoder=args.vocoder)


def _run_swap(args: argparse.Namespace) -> int:
    from stemkit.disentanglement.swap import write_parts
    from stemkit.outputs import check_output_dir

    swapper = _swapper(args)  # first: a model or vocoder that cannot load leaves no output folder behind
    check_output_dir(args.out)
    excerpt = dict(start=args.start, seconds=args.seconds, query_seconds=args.query_seconds)
    a = swapper.read(args.a, args.queries, **excerpt)
    b = swapper.read(args.timbre_from, args.timbre_queries, **excerpt)
    audio, instruments = swapper.swap(a, b, seed=args.seed)
    for path in write_parts(args.out, audio, instruments, swapper.sample_rate):
        print(path)
    return 0


def _run_encode(args: argparse.Namespace) -> int:
    from stemkit.outputs import check_output_file

    check_output_file(args.out, "--out", (".safetensors",))
    swapper = _swapper(args)
    parts = swapper.read(args.mix, args.queries, start=args.start, seconds=args.seconds, query_seconds=args.query_seconds)
    print(swapper.encode(parts).save(args.out))
    return 0


def _run_decode(args: argparse.Namespace) -> int:
    from stemkit.disentanglement.swap import EncodedParts, write_parts
    from stemkit.outputs import check_output_dir

    parts = EncodedParts.load(args.latents)
    swapper = _swapper(args, args.model or parts.model or DEFAULT_LDM)
    check_output_dir(args.out)
    for path in write_parts(args.out, swapper.decode(parts, seed=args.seed), parts.instruments, swapper.sample_rate):
        print(path)
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score swaps: pitch swaps on chords (Table 1) or timbre swaps on chorales (Table 3)",
        description=(
            "dismix-simple models (Table 1): swap the pitch latents among the sources of every mixture of a chord "
            "dataset (stemkit data chords), decode, and judge the result with a pitch and an instrument classifier: "
            "'disentanglement' scores the decoded sources, 'mixture rendering' re-extracts them from the mixture "
            "rendered from the sum of their latents; each swapped source is also compared with the ground truth the "
            "note bank renders. dismix-ldm models (Table 3): give every part of each chorale of the set the timbre of "
            "the next chorale's same part, decode, and judge instrument (a 13-way classifier), pitch (pYIN against the "
            "MIDI) and a Fréchet distance on the classifier's embedding; each swapped part is also compared with "
            "FluidSynth's rendering of its notes by the new instrument."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--dataset", type=Path, required=True,
                   help="dismix-simple: a folder made by stemkit data chords; dismix-ldm: a chorale set (e.g. stemkit data "
                        "chorales --ensemble random --split test)")
    p.add_argument("--model", required=True, help="a disentanglement model: a shipped name, .safetensors or .ckpt")
    p.add_argument("--classifier", default=None,
                   help="the judges (a mel-classifier model; default: the one shipped for the model's family)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"], help="which split to score (chord sets)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N mixtures")
    p.add_argument("--steps", type=int, default=32, help="dismix-ldm: the decoder's sampling steps")
    p.add_argument("--start", type=float, default=0.0, help="dismix-ldm: where each excerpt starts (seconds)")
    p.add_argument("--seconds", type=float, default=4.0, help="dismix-ldm: excerpt length (seconds)")
    p.add_argument("--device", default="auto", help="dismix-ldm: auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--single", action="store_true",
                   help="dismix-ldm: decode each part alone instead of all parts of a mixture together (Table 3's "
                        "'Single' column)")
    p.add_argument("--seed", type=int, default=0, help="seed of the queries and the swaps")
    _add_vocoder(p, "dismix-ldm: ")
    p.add_argument("--json", type=Path, default=None, help="also write the results here (JSON)")
    add_quiet(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from stemkit.disentanglement.evaluation import evaluate_swaps, format_table
    from stemkit.errors import StemkitError
    from stemkit.models import load_model
    from stemkit.outputs import check_output_file
    from stemkit.synthesis.mel_codec import GRIFFIN_LIM

    if args.json is not None:
        check_output_file(args.json, "--json", (".json",))
    if args.limit is not None and args.limit < 1:
        raise StemkitError(f"--limit must be at least 1, got {args.limit}")
    model, _ = load_model(args.model, task="disentanglement")
    if args.vocoder is not None and model.family != "dismix-ldm":
        raise StemkitError(f"--vocoder is for DisMix latent models (dismix-ldm); {args.model} is a {model.family} model, "
                           "which decodes no mels")
    classifier_name = args.classifier or DEFAULT_CLASSIFIERS.get(model.family)
    if classifier_name is None:
        raise StemkitError(f"no classifier is known for {model.family} models: pass --classifier")
    classifier, _ = load_model(classifier_name, task="classification")
    if model.family == "dismix-ldm":
        from stemkit.disentanglement.swap import TimbreSwapper
        from stemkit.disentanglement.timbre_evaluation import evaluate_timbre_swaps, format_timbre_table

        swapper = TimbreSwapper(args.model, device=args.device, steps=args.steps, single=args.single, vocoder=args.vocoder)
        result = evaluate_timbre_swaps(swapper, classifier, args.dataset, args.limit, args.start, args.seconds, args.seed,
                                       progress=not args.quiet)
        table = format_timbre_table(result)
    else:
        result = evaluate_swaps(model, classifier, args.dataset, args.split, args.seed, args.limit, progress=not args.quiet)
        table = format_table(result)
    result.update({"model": str(args.model), "classifier": str(classifier_name), "dataset": str(args.dataset)})
    if model.family == "dismix-ldm":
        result.update({"steps": args.steps, "decoding": "single" if args.single or not model.config.set_decoding else "set",
                       "vocoder": swapper.model.vae.codec.config.vocoder or GRIFFIN_LIM})
    print(table)
    if args.json is not None:
        from stemkit.atomic import atomic_output

        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
