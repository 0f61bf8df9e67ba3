"""What each `--steps` costs with a refiner: seconds of the base pass and of every refinement step.

    python benchmarks/refiner_cost.py --seconds 30 --steps 8 --repeats 3 --threads 2
    python benchmarks/refiner_cost.py --refiner lasaft-chorales-string-remix-refiner

Times ``RefinedSeparator.iterate`` on one mixture (a test chorale from ``--data``, or noise), step by
step, and prints the median over ``--repeats`` of each step's seconds, the total for ``--steps N``
and its speed in × real time. Without ``--refiner`` an untrained refiner of
``configs/refiner/chorales_small.yaml``'s sizes is timed (speed does not depend on the weights). The
remixing progressive inference is timed beside it for the same N: each of its steps is a full pass
of the base separator. Read the ratios: the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

from stemkit.separation.progressive import ProgressiveSeparator
from stemkit.separation.refinement import RefinedSeparator, load_refiner
from stemkit.separation.refiner import Refiner, RefinerConfig
from stemkit.separation.separator import DEFAULT_MODEL, Separator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from separation_speed import mixture  # noqa: E402  (the same test chorale as the speed table)

SAMPLE_RATE = 16000
SMALL = Path(__file__).resolve().parents[1] / "configs" / "refiner" / "chorales_small.yaml"


def step_seconds(run, mix: torch.Tensor) -> list[float]:
    """Seconds of each step of one ``iterate`` run."""
    times, last = [], time.perf_counter()
    for _ in run.iterate(mix, SAMPLE_RATE):
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the base separator")
    parser.add_argument("--refiner", default=None, help="a refiner model (default: an untrained one of the small config's sizes)")
    parser.add_argument("--data", default="data/robust/string-recital-fluidr3", help="chorales to take the mixture from")
    parser.add_argument("--noise", action="store_true", help="time on noise instead of a chorale")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data if Path(args.data).is_dir() else None
    mix = mixture(data, args.seconds, args.noise)
    base = Separator(args.model, device="cpu")
    if args.refiner:
        refiner = load_refiner(args.refiner)
    else:
        net = yaml.safe_load(SMALL.read_text())["model"]["init_args"]["net"]
        refiner = Refiner(RefinerConfig(**net)).eval()
    runs = {"refiner": RefinedSeparator(base, refiner, args.steps),
            "remix (linear)": ProgressiveSeparator(base, args.steps, "linear")}
    measured = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():  # interleaved, so the machine's noise hits both alike
            measured[name].append(step_seconds(run, mix))
    print(f"{args.seconds:g} s mixture, {torch.get_num_threads()} threads, median of {args.repeats}; "
          f"refiner {sum(p.numel() for p in refiner.parameters()):,} parameters\n")
    print("| N | " + " | ".join(f"{name}: step N (s) | {name}: total (× real time)" for name in runs) + " |")
    print("|---:|" + "---:|---:|" * len(runs))
    for n in range(args.steps):
        cells = []
        for name in runs:
            step = statistics.median(r[n] for r in measured[name])
            total = statistics.median(sum(r[: n + 1]) for r in measured[name])
            cells += [f"{step:.2f}", f"{total:.2f} ({args.seconds / total:.1f}×)"]
        print(f"| {n + 1} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
