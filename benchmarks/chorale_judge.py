"""How far the 13-way chorale instrument judge can be trusted: its accuracy on real test-split parts.

    python benchmarks/chorale_judge.py --classifier runs/chorales-classifier/checkpoints/best-step=1500.ckpt \\
        --sets data/robust/random-plain-fluidr3 data/robust/string-plain-fluidr3 data/robust/random-recital-musescore

Every part of every chorale in each set is cut into 2-s windows (the judge's training crops; windows below
-50 dBFS are skipped, as in training) and each window is classified; prints the accuracy per set and per
instrument. The MuseScore General sets are the unseen-timbre test (the judge trained on three other soundfonts).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from stemkit.atomic import atomic_output
from stemkit.audio.io import load_audio
from stemkit.data.layout import list_tracks
from stemkit.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", default="chorales-classifier")
    parser.add_argument("--sets", type=Path, nargs="+", required=True)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    judge, _ = load_model(args.classifier, task="classification")
    classes = list(judge.config.instruments)
    rate, size = judge.sample_rate, int(args.window * judge.sample_rate)
    results = {}
    print("| set | windows | accuracy | worst instruments |")
    print("|---|---:|---:|---|")
    for folder in args.sets:
        right: dict[str, list[bool]] = defaultdict(list)
        for track in list_tracks(folder):
            for stem, name in zip(track.stems, track.instruments):
                audio = load_audio(stem, rate, mono=True)[0][0]
                windows = audio[: audio.numel() // size * size].reshape(-1, size)
                loud = 20 * torch.log10(windows.pow(2).mean(dim=1).sqrt() + 1e-12) > -50
                if not loud.any():
                    continue
                with torch.no_grad():
                    heard = judge(judge.log_mel(windows[loud]))[1].argmax(dim=1)
                right[name] += [classes[int(i)] == name for i in heard]
        per = {name: float(np.mean(v)) for name, v in sorted(right.items())}
        total = float(np.mean([x for v in right.values() for x in v]))
        count = sum(len(v) for v in right.values())
        worst = ", ".join(f"{n} {100 * a:.0f} %" for n, a in sorted(per.items(), key=lambda kv: kv[1])[:3])
        print(f"| {folder} | {count} | {100 * total:.1f} % | {worst} |", flush=True)
        results[str(folder)] = {"windows": count, "accuracy": total, "by_instrument": per}
    if args.json:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps({"classifier": args.classifier, "window": args.window, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
