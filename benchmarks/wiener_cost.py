"""What the ``--wiener`` filter of progressive inference costs, next to one separation pass.

    python benchmarks/wiener_cost.py --test data/chorales/test --tracks 4 --seconds 20 --offset 5 --threads 1

On the first ``--tracks`` test-split chorales, ``--seconds`` from ``--offset`` (the excerpts of
``benchmarks/progressive.py``), times one separation pass of ``--model`` (all four parts) and one
multichannel Wiener filter of its estimates against the mixture
(``stemkit.separation.progressive.wiener_filter``, norbert, 1 EM iteration: what ``--wiener`` runs
after every step). Prints a Markdown table: seconds per excerpt, mean over the excerpts.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from stemkit.audio.io import load_audio
from stemkit.data.layout import list_tracks
from stemkit.separation.adapters import load_separator
from stemkit.separation.progressive import wiener_filter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", type=Path, default=Path("data/chorales/test"))
    parser.add_argument("--model", default=None, help="separator (default: the default of `stemkit separate`)")
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--offset", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    separator = load_separator(args.model, device="cpu")
    separate_s, wiener_s = [], []
    for track in list_tracks(args.test)[: args.tracks]:
        mix, rate = load_audio(track.mix)
        start = int(round(args.offset * rate))
        mix = mix[:, start : start + int(round(args.seconds * rate))]
        began = time.perf_counter()
        with torch.inference_mode():
            estimates = separator.separate(mix, rate)
        separate_s.append(time.perf_counter() - began)
        began = time.perf_counter()
        wiener_filter(mix, estimates, rate, iterations=1)
        wiener_s.append(time.perf_counter() - began)
    n = len(separate_s)
    print(f"model {separator.name}; {n} test chorales × {args.seconds:g} s from {args.offset:g} s; "
          f"{args.threads} torch thread(s); {os.cpu_count()} cores")
    print("| step | seconds per excerpt | × real time |")
    print("|---|---:|---:|")
    for label, times in (("one separation pass (4 parts)", separate_s), ("Wiener filter (norbert, 1 iteration)", wiener_s)):
        mean = sum(times) / n
        print(f"| {label} | {mean:.2f} | {args.seconds / mean:.1f} |")


if __name__ == "__main__":
    main()
