"""Separators measured where users will be: test-split chorales played and recorded in ways the
training never saw, by ensemble and soundfont.

    python benchmarks/robustness.py --sets data/robust --models lasaft-chorales-string-remix my-model \
        --json benchmarks/results/robustness.json

``--sets`` holds one chorale dataset per condition, named ``<ensemble>-<performance>-<soundfont>``
(the commands that make them are in BENCHMARKS.md, "Robustness"): e.g. ``string-recital-fluidr3``
is the string quartet played in the held-out ``recital`` style with FluidR3, ``random-recital-musescore``
the 13-instrument ensembles in the same style with MuseScore General (a soundfont no model here is
trained or selected on). Each model separates every set with `stemkit separate`'s code path and the
estimates are scored like `stemkit eval` (cSDR, museval); the mixture and IRM oracles give the floor
and ceiling per set. Prints a Markdown table (avg cSDR per model and set) and writes every figure to
``--json``. Estimates are kept under ``--work`` so a rerun only scores what is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from stemkit.data.layout import list_tracks
from stemkit.evaluation import evaluate_dataset
from stemkit.separation.adapters import load_separator
from stemkit.separation.batch import collect_audio, separate_many


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=Path, required=True, help="folder of chorale datasets, one per condition")
    parser.add_argument("--models", nargs="+", default=["lasaft-chorales-string-remix"], help="model names or files")
    parser.add_argument("--work", type=Path, default=Path("runs/robustness"), help="where estimates are kept")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--workers", type=int, default=2, help="tracks scored in parallel")
    parser.add_argument("--no-oracles", action="store_true", help="skip the mixture and IRM rows")
    parser.add_argument("--only", nargs="+", default=None, metavar="SET", help="only these condition folders")
    parser.add_argument("--overlap", type=float, default=0.25, help="window overlap of the separators (stemkit's default 0.25)")
    args = parser.parse_args(argv)

    sets = sorted(p for p in args.sets.iterdir() if p.is_dir() and list_tracks(p) and (not args.only or p.name in args.only))
    if not sets:
        print(f"no chorale datasets in {args.sets}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, dict]] = {}
    timing: dict[str, float] = {}
    default_overlap = args.overlap == 0.25
    work = args.work if default_overlap else args.work / f"overlap-{args.overlap}"
    for model in args.models:
        separator = load_separator(model, progress=False, overlap=args.overlap)
        label = separator.name if default_overlap else f"{separator.name} (overlap {args.overlap})"
        results[label] = {}
        for folder in sets:
            out = work / folder.name
            started = time.perf_counter()
            separate_many(separator, collect_audio([folder]), out, progress=False)
            timing[f"{label}/{folder.name}"] = time.perf_counter() - started
            results[label][folder.name] = evaluate_dataset(folder, estimates=out / separator.name, workers=args.workers,
                                                           progress=False)
            print(f"{label} on {folder.name}: {results[label][folder.name]['average']['cSDR']:.2f} dB", flush=True)
    if not args.no_oracles:
        for oracle in ("mixture", "irm"):
            results[f"{oracle} (oracle)"] = {f.name: evaluate_dataset(f, oracle=oracle, workers=args.workers, progress=False)
                                             for f in sets}
    names = [f.name for f in sets]
    print("\n| model | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for model, per_set in results.items():
        print(f"| {model} | " + " | ".join(f"{per_set[n]['average']['cSDR']:.2f}" for n in names) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {m: {n: {"average": r["average"], "per_target": r.get("per_target")} for n, r in per.items()}
                   for m, per in results.items()}
        args.json.write_text(json.dumps({"sets": names, "results": summary, "separation_seconds": timing}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
