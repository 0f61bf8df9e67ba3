"""``stemkit models`` and ``stemkit export``: list the models stemkit can find, ship a trained one."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from stemkit.cli.common import Formatter
from stemkit.errors import StemkitError
from stemkit.outputs import check_output_file

#: where a user picks the mel decoder of a model that samples mels, by the model's task
MEL_DECODER_FLAGS = {"synthesis": "stemkit synth --vocoder", "disentanglement": "stemkit dismix swap/decode/eval --vocoder"}


def register(sub: argparse._SubParsersAction) -> None:
    _add_models(sub)
    _add_export(sub)


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the models stemkit can find, or show one model's card",
        description=(
            "List every model in the package's pretrained/ folder and in the user folder ($STEMKIT_MODELS, default "
            "~/.cache/stemkit/models): name, task, family, parameters, sample rate, the headline metric of its card and "
            "where it lives. With NAME (a name or a model file), print that model's card. Nothing is downloaded: put an "
            "exported NAME.safetensors + NAME.json (and NAME.md) into the user folder to add a model."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="a model name or file: show its card")
    p.add_argument("--task", default=None, help="list only models of this task (separation, synthesis, autoencoder, ...)")
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from stemkit.model_files import find_models, user_models_dir

    if args.name:
        print(_card(args.name))
        return 0
    entries = [e for e in find_models() if args.task in (None, e.meta.get("task"))]
    if not entries:
        print(f"no models found{f' for task {args.task}' if args.task else ''} (user folder: {user_models_dir()})")
        return 0
    rows = [("name", "task", "family", "params", "rate", "headline metric", "where")]
    for e in entries:
        rows.append((e.name + (" (shadowed)" if e.shadowed else ""), e.meta.get("task", "?"), e.family,
                     _count(e.meta.get("parameters")), f"{e.meta['sample_rate']} Hz" if e.meta.get("sample_rate") else "?",
                     _headline(e.meta), e.where if e.where == "shipped" else str(e.path.parent)))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    if any(e.shadowed for e in entries):
        print("(shadowed: a user model with a shipped model's name; the shipped one is used — rename it)")
    return 0


def _card(name: str) -> str:
    """The model's card (``NAME.md``) under a summary of its JSON; a summary alone if it has no card."""
    import json

    from stemkit.models import load_model
    from stemkit.model_files import find_models

    entry = next((e for e in find_models() if e.name == name and not e.shadowed), None)
    if entry is not None:
        meta, card, where = entry.meta, entry.card, entry.path
    else:  # a path: load it, which also checks it
        _, meta = load_model(name)
        path = Path(name)
        card = path.with_suffix(".md") if path.with_suffix(".md").is_file() else None
        where = path
    lines = [f"{meta.get('name', name)}: {meta.get('family') or meta.get('architecture')} model for {meta.get('task', '?')}, "
             f"{_count(meta.get('parameters'))} parameters, {meta.get('sample_rate', '?')} Hz",
             f"file: {where}", f"headline: {_headline(meta)}"]
    if meta.get("sampling"):
        lines.append("recommended sampling: " + ", ".join(f"{k}={v}" for k, v in meta["sampling"].items()))
    config = meta.get("config") or {}
    mel = config.get("mel") or (config.get("vae") or {}).get("mel") or {}  # its own mel codec, or its VAE's
    picker = MEL_DECODER_FLAGS.get(meta.get("task"))  # models that turn the mels they make into audio
    if "vocoder" in mel and picker:
        lines.append(f"mel decoder: {mel['vocoder'] or 'Griffin-Lim'} ({picker} picks another)")
    if card is None:
        lines += ["(no model card; its recorded facts:)", json.dumps({k: meta.get(k) for k in ("provenance", "metrics")}, indent=2)]
        return "\n".join(lines)
    return "\n".join(lines) + "\n\n" + card.read_text().rstrip()


def _count(parameters) -> str:
    if not isinstance(parameters, (int, float)):
        return "?"
    return f"{parameters / 1e6:.2f}M" if parameters >= 1e6 else f"{parameters / 1e3:.0f}k"


def _headline(meta: dict) -> str:
    key = meta.get("headline")
    metrics = meta.get("metrics") or {}
    if not key or key not in metrics:
        return "-"
    return f"{key} = {metrics[key]:.3g}"


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="turn a training checkpoint of any model family into shippable safetensors weights + JSON",
        description=(
            "Export the inference model of a `stemkit fit` checkpoint (.ckpt) to NAME.safetensors and NAME.json in --out: "
            "weights without optimizer state (the EMA weights where the run keeps them, as validation scored), and a JSON "
            "with the family and config the model is rebuilt from, its sample rate, its provenance (the run's data, steps, "
            "hardware and commit, as the checkpoint recorded them, plus --note) and metrics (the run's monitored "
            "validation figure, plus --metric). The checkpoint records its family, so any model exports the same way; "
            "load the result by path, or by NAME after putting it into $STEMKIT_MODELS (see stemkit models)."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("checkpoint", type=Path, help="a .ckpt written by stemkit fit")
    p.add_argument("--name", required=True, help="model name (also the output folder name of stemkit separate)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder")
    p.add_argument("--note", action="append", default=[], metavar="KEY=VALUE", help="provenance to record (repeatable)")
    p.add_argument("--metric", action="append", default=[], metavar="NAME=VALUE",
                   help="a measured figure to record, e.g. 'test avg cSDR (dB)=7.1' (repeatable)")
    p.add_argument("--headline", default=None, help="the metric stemkit models shows (default: the first)")
    p.add_argument("--sampling", action="append", default=[], metavar="KEY=VALUE",
                   help="a synthesis model's recommended sampling setting (steps=N, sampler=NAME, cfg=W; repeatable), "
                        "what stemkit synth uses when its own flag is not given")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export of the same name")
    p.set_defaults(func=_run_export)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise StemkitError(f"{option} must be KEY=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


def _run_export(args: argparse.Namespace) -> int:
    from stemkit.models import export_checkpoint, sampling_settings

    provenance = _pairs(args.note, "--note")
    metrics = {}
    for key, value in _pairs(args.metric, "--metric").items():
        try:
            metrics[key] = float(value)
        except ValueError:
            metrics[key] = float("nan")
        if not math.isfinite(metrics[key]):  # NaN/inf would also make the JSON unreadable to strict parsers
            raise StemkitError(f"--metric {key}={value}: the value must be a finite number")
    sampling = sampling_settings(_pairs(args.sampling, "--sampling"))
    if args.headline is not None and args.headline not in metrics:
        raise StemkitError(f"--headline {args.headline!r} must name one of the --metric figures")
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise StemkitError(f"--name {args.name!r} must be a plain file name (no folders, not hidden)")
    for suffix in (".safetensors", ".json"):
        check_output_file(args.out / f"{args.name}{suffix}", "--out", overwrite=args.overwrite)
    if not args.checkpoint.is_file():
        raise StemkitError(f"checkpoint not found: {args.checkpoint}")
    path = export_checkpoint(args.checkpoint, args.out / args.name, provenance, metrics, args.headline, sampling)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0
