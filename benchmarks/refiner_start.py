"""One refinement of a trained refiner against where it started, on a test set: the base's one pass,
norbert's Wiener filter of it, an untrained refiner of the same config (for ``output: mixture``, the
estimates' ratio mask of the mixture) and the trained refiner, each scored with museval (average over tracks).

    python benchmarks/refiner_start.py --dataset data/robust/string-plain-fluidr3 --tracks 5 \\
        --refiner /tmp/rmodels/lasaft-chorales-string-remix-refiner.safetensors

It answers "did training move the refiner away from a better start?", which validation alone hides.
"""

from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a chorale folder with reference stems")
    parser.add_argument("--refiner", required=True, help="a refiner model (name or .safetensors)")
    parser.add_argument("--tracks", type=int, default=5, help="the first N tracks")
    args = parser.parse_args(argv)
    if args.tracks < 1:
        print("error: --tracks must be at least 1", file=sys.stderr)
        return 2
    from stemkit.data.reference import open_reference_dataset
    from stemkit.errors import StemkitError
    from stemkit.metrics.separation import aggregate
    from stemkit.separation.refinement import load_refiner
    from stemkit.separation.refiner import Refiner
    from stemkit.separation.adapters import load_separator

    try:
        trained = load_refiner(args.refiner)
        tracks = open_reference_dataset(args.dataset)[: args.tracks]
        base = load_separator(trained.config.base)
    except (StemkitError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    untrained = Refiner(trained.config).eval()
    try:
        scores = score(tracks, base, untrained, trained)
    except StemkitError as error:  # e.g. NaN audio in a track
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.dataset}, first {len(tracks)} tracks, one refinement (average over tracks, dB)")
    print("| method | cSDR | uSDR | SI-SDR | SIR | SAR |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, by_track in scores.items():
        m = aggregate(by_track)[1]
        print(f"| {label} | {m['cSDR']:.2f} | {m['uSDR']:.2f} | {m['SI-SDR']:.2f} | {m['SIR']:.2f} | {m['SAR']:.2f} |")
    return 0


def score(tracks, base, untrained, trained) -> dict[str, dict]:
    """museval scores per method and track."""
    from stemkit.metrics.separation import evaluate_track
    from stemkit.separation.progressive import wiener_filter
    from stemkit.separation.refinement import RefinedSeparator

    scores: dict[str, dict] = {"one pass": {}, "Wiener filter": {}, "untrained refiner": {}, "trained refiner": {}}
    for track in tracks:
        mix = track.load_mix()
        references = {t: track.load_target(t) for t in track.targets}
        first = base.separate(mix, track.sample_rate)
        scores["one pass"][track.name] = evaluate_track(references, first, track.sample_rate)
        scores["Wiener filter"][track.name] = evaluate_track(references, wiener_filter(mix, first, track.sample_rate), track.sample_rate)
        for label, model in (("untrained refiner", untrained), ("trained refiner", trained)):
            with torch.no_grad():
                refined = RefinedSeparator(base, model, steps=2, device="cpu").refine(mix, track.sample_rate, first, 0)
            scores[label][track.name] = evaluate_track(references, refined, track.sample_rate)
    return scores


if __name__ == "__main__":
    sys.exit(main())
