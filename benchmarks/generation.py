"""Chorale generation speed: seconds of rendered audio per wall-clock second, by worker count.

    python benchmarks/generation.py --num 12 --workers 1 2

Each run renders the same chorales into a fresh folder, so the runs compare like for like; the
table goes into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from pathlib import Path

from stemkit.data.generate import GenerateConfig, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=12, help="chorales per run")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seconds", type=float, default=None, help="cut tracks (default: whole chorales)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        out = Path(tempfile.mkdtemp(prefix=f"stemkit-bench-w{workers}-"))
        try:
            report = generate(
                GenerateConfig(out=out, num=args.num, split=args.split, seconds=args.seconds, sample_rate=args.sample_rate, workers=workers, progress=False)
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)
        rows.append((workers, len(report.written), report.audio_seconds, report.wall_seconds))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print("| workers | tracks | audio (s) | wall (s) | audio s / wall s | speed-up |")
    print("|---|---|---|---|---|---|")
    base = rows[0][2] / rows[0][3]
    for workers, tracks, audio, wall in rows:
        speed = audio / wall
        print(f"| {workers} | {tracks} | {audio:.1f} | {wall:.1f} | {speed:.1f} | {speed / base:.2f}× |")


if __name__ == "__main__":
    main()
