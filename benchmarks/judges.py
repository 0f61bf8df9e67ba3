"""How far the judges of DisMix's Table 1 can be trusted: a mel classifier's accuracy on real test sources.

    python benchmarks/judges.py --classifier chords-classifier --dataset data/chords/train-fonts data/chords/musescore

Prints, per chord set, the exact-set pitch accuracy (every pitch right, none extra) and the instrument
accuracy of the classifier on every present source of the split, by soundfont as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from stemkit.data.chords import dataset_settings, load_split
from stemkit.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", default="chords-classifier")
    parser.add_argument("--dataset", type=Path, nargs="+", required=True)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    model, _ = load_model(args.classifier, task="classification")
    print("| chord set | soundfont | sources | pitch exact set | instrument |")
    print("|---|---|---:|---:|---:|")
    for root in args.dataset:
        fonts = dataset_settings(root)["soundfonts"]
        arrays = load_split(root, args.split)
        m, k = np.nonzero(arrays["present"])
        pitch, instrument = model.predict(torch.from_numpy(arrays["sources"][m, k].astype(np.float32)))
        exact = (pitch.numpy() == arrays["pitch"][m, k]).all(axis=1)
        right = instrument.numpy() == k
        font = arrays["soundfont"][m, k]
        rows = [("all", np.ones(len(m), bool))] + [(name, font == i) for i, name in enumerate(fonts)] * (len(fonts) > 1)
        for name, chosen in rows:
            print(f"| {root} | {name} | {chosen.sum()} | {100 * exact[chosen].mean():.2f} % | {100 * right[chosen].mean():.2f} % |")


if __name__ == "__main__":
    main()
