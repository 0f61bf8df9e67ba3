"""Peak memory and speed of `stemkit separate` on one long mixture (default 10 minutes).

    python benchmarks/long_input.py --minutes 10 --data data/chorales/test --batch-sizes 1 8 --threads 1

Builds the long mixture by concatenating test-split chorale mixes, then runs the real CLI in a child
process and reads the child's peak resident memory from the kernel (``RUSAGE_CHILDREN``), for a few
``--batch-size`` values. The chunker keeps only ``batch_size`` windows in flight and the full-length
outputs (one float32 buffer per target) on the CPU, so memory should grow with the length only by
those buffers. ``--model`` defaults to the shipped default of ``stemkit separate`` (printed with the
table); ``--threads`` sets ``OMP_NUM_THREADS`` for the child (torch's intra-op threads).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from stemkit.data.layout import list_tracks


def long_mixture(data: Path, minutes: float, path: Path) -> float:
    rate = None
    pieces, total = [], 0
    tracks = list_tracks(data)
    while total < minutes * 60 * (rate or 16000):
        for track in tracks:
            audio, rate = sf.read(track.mix, dtype="float32")
            pieces.append(audio)
            total += len(audio)
            if total >= minutes * 60 * rate:
                break
    audio = np.concatenate(pieces)[: int(minutes * 60 * rate)]
    sf.write(path, audio, rate, subtype="PCM_16")
    return len(audio) / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/chorales/test"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--model", default=None, help="separator (default: the default of `stemkit separate`)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the child (0: torch's default)")
    args = parser.parse_args()
    from stemkit.separation.separator import DEFAULT_MODEL

    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    with tempfile.TemporaryDirectory() as tmp:
        mix = Path(tmp) / "long.wav"
        seconds = long_mixture(args.data, args.minutes, mix)
        print(f"model {args.model or DEFAULT_MODEL}; threads {args.threads or 'default'}; {os.cpu_count()} cores")
        print(f"{seconds / 60:.1f} min mixture; peak RSS of `stemkit separate` (whole process: Python, torch, model, buffers)\n")
        print("| batch size | wall (s) | audio s / wall s | peak RSS (MiB) |")
        print("|---:|---:|---:|---:|")
        for batch in args.batch_sizes:
            cmd = [sys.executable, "-m", "stemkit", "separate", str(mix), "--out", str(Path(tmp) / f"out{batch}"),
                   "--batch-size", str(batch), "--quiet"] + (["--model", args.model] if args.model else [])
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            subprocess.run(cmd, check=True, env=env)
            wall = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            note = "" if peak > before else " (≤ previous run's peak)"
            print(f"| {batch} | {wall:.1f} | {seconds / wall:.1f} | {peak / 1024:.0f}{note} |", flush=True)


if __name__ == "__main__":
    main()
