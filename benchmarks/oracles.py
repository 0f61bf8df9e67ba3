"""The floor and ceiling of every separation table: mixture and IRM oracles on the generated test split.

    python benchmarks/oracles.py --data data/chorales_test --workers 2

Renders the whole test split first if ``--data`` does not hold it yet (resumable), then prints the
Markdown table that BENCHMARKS.md records, with the evaluation wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from stemkit.data.generate import GenerateConfig, generate
from stemkit.evaluation import evaluate_dataset, format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/chorales_test"))
    parser.add_argument("--ensemble", default="string")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    report = generate(GenerateConfig(out=args.data, ensemble=args.ensemble, split="test", workers=args.workers, progress=False))
    results, times = {}, {}
    for name, oracle in (("mixture (oracle)", "mixture"), ("IRM (oracle)", "irm")):
        start = time.perf_counter()
        results[name] = evaluate_dataset(args.data, oracle=oracle, workers=args.workers, progress=False)
        times[name] = time.perf_counter() - start
    tracks = len(report.written) + len(report.skipped)
    print(f"{tracks} test-split {args.ensemble} chorales in {args.data}")
    print(format_table(results))
    for name, seconds in times.items():
        print(f"{name}: evaluated in {seconds:.0f} s with {args.workers} worker(s)")


if __name__ == "__main__":
    main()
