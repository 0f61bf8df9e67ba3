"""``stemkit dismix``: pitch/timbre disentanglement (DisMix) — evaluate a model's swaps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stemkit.cli.common import Formatter, Parser, add_quiet, print_help_instead

#: The judges each disentanglement family is scored with when --classifier is not given.
DEFAULT_CLASSIFIERS = {"dismix-simple": "chords-classifier"}


def register(sub: argparse._SubParsersAction) -> None:
    dismix = sub.add_parser("dismix", help="disentangle each instrument's pitch and timbre (DisMix)",
                            description="Disentangle each instrument's pitch and timbre inside a mixture (DisMix).")
    dismix_sub = dismix.add_subparsers(dest="dismix_command", metavar="COMMAND", parser_class=Parser)
    _add_eval(dismix_sub)
    dismix.set_defaults(func=lambda _args: print_help_instead(dismix))


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score pitch swaps on a chord dataset (the paper's Table 1)",
        description=(
            "Swap the pitch latents among the sources of every mixture of a chord dataset (stemkit data chords), decode, "
            "and judge the result with a pitch and an instrument classifier: 'disentanglement' scores the decoded "
            "sources, 'mixture rendering' re-extracts them from the mixture rendered from the sum of their latents. "
            "Also compares each swapped source with the ground truth the note bank renders (the donor's notes on the "
            "source's own instrument)."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--dataset", type=Path, required=True, help="a folder made by stemkit data chords")
    p.add_argument("--model", required=True, help="a disentanglement model: a shipped name, .safetensors or .ckpt")
    p.add_argument("--classifier", default=None,
                   help="the judges (a mel-classifier model; default: the one shipped for the model's family)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"], help="which split to score")
    p.add_argument("--limit", type=int, default=None, help="score only the first N mixtures of the split")
    p.add_argument("--seed", type=int, default=0, help="seed of the queries and the swaps")
    p.add_argument("--json", type=Path, default=None, help="also write the results here (JSON)")
    add_quiet(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from stemkit.disentanglement.evaluation import evaluate_swaps, format_table
    from stemkit.errors import StemkitError
    from stemkit.models import load_model
    from stemkit.outputs import check_output_file

    if args.json is not None:
        check_output_file(args.json, "--json", (".json",))
    if args.limit is not None and args.limit < 1:
        raise StemkitError(f"--limit must be at least 1, got {args.limit}")
    model, _ = load_model(args.model, task="disentanglement")
    classifier_name = args.classifier or DEFAULT_CLASSIFIERS.get(model.family)
    if classifier_name is None:
        raise StemkitError(f"no classifier is known for {model.family} models: pass --classifier")
    classifier, _ = load_model(classifier_name, task="classification")
    result = evaluate_swaps(model, classifier, args.dataset, args.split, args.seed, args.limit, progress=not args.quiet)
    result.update({"model": str(args.model), "classifier": str(classifier_name), "dataset": str(args.dataset)})
    print(format_table(result))
    if args.json is not None:
        from stemkit.atomic import atomic_output

        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
