"""DisMix's Table 1 on the chord set: each model (the full one and its ablations) next to the paper's numbers.

    python benchmarks/dismix_table1.py --dataset data/chords/train-fonts \
        --model DisMix=runs/dismix-chords-small/checkpoints/last.ckpt \
        --model "-L_BT=runs/dismix-chords-small-nobt/checkpoints/last.ckpt" ... \
        --classifier runs/chords-classifier/checkpoints/last.ckpt --json benchmarks/results/dismix_table1.json

Each row is ``stemkit dismix eval`` (same seed, same queries, same swaps for every model), so the rows
differ only by the model. Prints a markdown table; ``--json`` keeps every figure, the ground-truth
check per instrument pair included.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stemkit.disentanglement.evaluation import evaluate_swaps
from stemkit.models import load_model

#: Table 1 of Luo et al. 2024 (arXiv 2408.10807): disentanglement pitch / instrument, mixture rendering pitch / instrument (%).
PAPER = {
    "DisMix": (93.39, 100.00, 90.69, 100.00),
    "-L_BT": (93.18, 99.92, 87.92, 100.00),
    "-KLD": (69.41, 100.00, 35.10, 100.00),
    "-SB": (93.46, 46.71, 40.23, 98.91),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, action="append", required=True, help="a chord set (repeatable)")
    parser.add_argument("--model", action="append", required=True, help="ROW=MODEL (repeatable)")
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    classifier, _ = load_model(args.classifier, task="classification")
    results = {}
    for dataset in args.dataset:
        for item in args.model:
            row, path = item.split("=", 1)
            model, _ = load_model(path, task="disentanglement")
            found = evaluate_swaps(model, classifier, dataset, args.split, args.seed, args.limit, progress=False)
            results.setdefault(str(dataset), {})[row] = dict(found, model=path)

    for dataset, rows in results.items():
        first = next(iter(rows.values()))
        print(f"\n{dataset} ({args.split}: {first['mixtures']} mixtures, {first['sources']} sources; classifier on real "
              f"sources: pitch {100 * first['classifier_pitch']:.2f} %, instrument {100 * first['classifier_instrument']:.2f} %)\n")
        print("| model | disent. pitch | disent. inst. | mix-render pitch | mix-render inst. | closer to truth | paper |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for row, r in rows.items():
            paper = " / ".join(f"{v:.2f}" for v in PAPER.get(row, ())) or "–"
            print(f"| {row} | {100 * r['disentangle_pitch']:.2f} | {100 * r['disentangle_instrument']:.2f} | "
                  f"{100 * r['render_pitch']:.2f} | {100 * r['render_instrument']:.2f} | "
                  f"{100 * r['ground_truth']['closer_to_truth']:.1f} % | {paper} |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"split": args.split, "seed": args.seed, "classifier": args.classifier,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
