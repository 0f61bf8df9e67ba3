#!/usr/bin/env python
"""Compute which chorales leak across the train/valid/test splits and write split_leaks.json.

Parsing every score of music21's Bach corpus takes minutes, so this runs once (again after a
music21 upgrade or a change of the rules in stemkit.data.split_leaks) and its small JSON ships in
the package; generation only reads it. It prints every excluded chorale with what it collides
with, and the cross-split line pairs just under the threshold, so the rule can be checked by eye.

    .venv/bin/python scripts/find_split_leaks.py              # writes src/stemkit/data/split_leaks.json
    .venv/bin/python scripts/find_split_leaks.py --workers 4 --out /tmp/leaks.json
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from stemkit.data.chorales import chorale_sources, extract_satb, hash_split
from stemkit.data.split_leaks import (
    LEAKS_FILE,
    MIN_OVERLAP,
    Fingerprint,
    collision,
    find_leaks,
    leaks_document,
    voice_fingerprints,
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "stemkit" / "data" / LEAKS_FILE


def _fingerprints_of(item: tuple[str, str]) -> tuple[str, list[Fingerprint] | None]:
    key, path = item
    return key, voice_fingerprints(extract_satb(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON to write (default: {DEFAULT_OUT})")
    parser.add_argument("--workers", type=int, default=1, help="processes parsing scores (default 1)")
    parser.add_argument("--near", type=float, default=0.3, help="also list cross-split line pairs from this overlap up")
    args = parser.parse_args(argv)

    import music21

    sources = chorale_sources()
    items = [(s.key, str(s.path)) for s in sources]
    print(f"parsing {len(items)} scores with music21 {music21.__version__} …", file=sys.stderr)
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            fingerprints = dict(pool.map(_fingerprints_of, items, chunksize=8))
    else:
        fingerprints = dict(map(_fingerprints_of, items))
    splits = {s.key: hash_split(s.key) for s in sources}

    leaks = find_leaks(splits, fingerprints)
    for leak in leaks:
        how = "variant" if leak.reason == "variant" else f"{'/'.join(leak.voices or ())} line, overlap {leak.overlap}"
        print(f"exclude {leak.key:<14} ({leak.split:<5}) ~ {leak.other:<14} ({leak.other_split}): {how}")

    print(f"\ncross-split line pairs with overlap in [{args.near}, {MIN_OVERLAP}) (kept):")
    order = {"test": 0, "valid": 1, "train": 2}
    for key in sorted(fingerprints):
        for other in sorted(fingerprints):
            if order[splits[other]] >= order[splits[key]]:
                continue
            found = collision_below(key, fingerprints, other, args.near)
            if found is not None:
                print(f"  {key} ({splits[key]}) ~ {other} ({splits[other]}): {found}")

    counts = {split: sum(1 for leak in leaks if leak.split == split) for split in ("valid", "train")}
    sizes = {split: sum(1 for s in splits.values() if s == split) for split in ("test", "valid", "train")}
    print(f"\nexcluded {counts['valid']} of {sizes['valid']} valid and {counts['train']} of {sizes['train']} train "
          f"chorales; test ({sizes['test']}) unchanged", file=sys.stderr)
    document = leaks_document(leaks, fingerprints, music21.__version__)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def collision_below(key: str, fingerprints: dict[str, list[Fingerprint] | None], other: str, near: float) -> str | None:
    """The best line overlap of two chorales when it is in [near, MIN_OVERLAP), for review."""
    found = collision(key, fingerprints[key], other, fingerprints[other], min_overlap=near)
    if found is None or found[0] != "line" or found[2] is None or found[2] >= MIN_OVERLAP:
        return None
    return f"{'/'.join(found[1] or ())} {found[2]:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
