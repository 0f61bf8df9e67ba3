"""Make a training or validation folder that mixes tracks of several chorale folders, without copying.

Each source is ``FOLDER`` (every track) or ``FOLDER:N`` (N tracks spread evenly over the folder's
sorted tracks). Tracks become symlinks named ``<ensemble>_track<k>``; existing links are kept, so the
command can be run again. Nothing is copied or deleted.

    python scripts/link_tracks.py --out data/mixed/train data/strings-varied/train data/random/train:130
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stemkit.data.layout import is_track_dir


def tracks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_track_dir(p) and "_track" in p.name)


def spread(items: list[Path], count: int | None) -> list[Path]:
    if count is None or count >= len(items):
        return items
    return [items[int(i * len(items) / count)] for i in range(count)]


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="FOLDER or FOLDER:N")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    chosen: list[Path] = []
    for source in args.sources:
        folder, _, count = source.partition(":")
        path = Path(folder)
        found = tracks(path) if path.is_dir() else []
        if not found:
            return fail(f"{folder} is not a folder of chorale tracks")
        if count and not (count.isdigit() and int(count) > 0):
            return fail(f"{source}: N must be a positive whole number")
        chosen += spread(found, int(count) if count else None)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return fail(f"cannot write {args.out}: {error.strerror}")
    counters: dict[str, int] = {}
    for track in chosen:
        ensemble = track.name.split("_track")[0]
        index = counters.get(ensemble, 0)
        counters[ensemble] = index + 1
        link = args.out / f"{ensemble}_track{index:06d}"
        if not link.exists():
            link.symlink_to(track.resolve(), target_is_directory=True)
    print(f"{len(chosen)} tracks linked in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
