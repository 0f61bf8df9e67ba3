"""A training run's curves as one small CSV to ship beside its model card.

    python benchmarks/curves.py runs/lasaft-chorales-small --out src/stemkit/pretrained/lasaft-chorales-string.curves.csv
    python benchmarks/curves.py runs/violin-ldm-small --columns 'valid/*' train/loss --out src/stemkit/pretrained/violin-ldm-chorales.curves.csv

Reads every ``metrics.csv`` that Lightning's ``CSVLogger`` wrote under the run folder (``stemkit fit``
configs log to ``<run>/logs/version_N/``; a resumed run adds a version), keeps the ``step`` column and
the columns matching ``--columns`` (shell-style patterns, default ``valid/*``), merges rows by step
(a later version wins) and drops steps where every kept column is empty. The model cards cite the
resulting file; nothing is typed in by hand.

A run warm-started from a shipped model (``init_from``) continues that model's curve: ``--after`` its
earlier curve CSV puts those rows first and shifts this run's steps past them (by ``--offset``, default
the earlier curve's last step + 1; give the shipped checkpoint's step when the earlier run went on
past it, and its later rows are dropped)::

    python benchmarks/curves.py runs/specdiff-cpu2 --columns train/loss 'valid/*' \
        --after src/stemkit/pretrained/specdiff-chorales.curves.csv --offset 6000 --out curve.csv
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run folder (trainer.default_root_dir), or one metrics.csv")
    parser.add_argument("--columns", nargs="+", default=["valid/*"], help="column patterns to keep")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=None, help="an earlier curve CSV this run continues (its init_from)")
    parser.add_argument("--offset", type=int, default=None, help="steps to add to this run's (default: --after's last step + 1)")
    args = parser.parse_args()
    files = [args.run] if args.run.is_file() else sorted(args.run.rglob("metrics.csv"), key=lambda p: (p.parent.name, str(p)))
    if not files:
        raise SystemExit(f"no metrics.csv under {args.run}")
    by_step: dict[int, dict[str, str]] = {}
    columns: list[str] = []
    for path in files:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                kept = {k: v for k, v in row.items() if k != "step" and v not in ("", None)
                        and any(fnmatch.fnmatch(k, pattern) for pattern in args.columns)}
                if not kept or not row.get("step"):
                    continue
                for key in kept:
                    if key not in columns:
                        columns.append(key)
                by_step.setdefault(int(float(row["step"])), {}).update(kept)
    if not by_step:
        raise SystemExit(f"no values for {' '.join(args.columns)} in {len(files)} metrics.csv file(s)")
    if args.after is not None:
        with args.after.open(newline="") as f:
            earlier = {int(row["step"]): {k: v for k, v in row.items() if k != "step" and v} for row in csv.DictReader(f)}
        if not earlier:
            raise SystemExit(f"{args.after} holds no steps")
        offset = max(earlier) + 1 if args.offset is None else args.offset
        # the earlier run may have gone on past the checkpoint that was shipped: those steps are not this run's past
        earlier = {step: values for step, values in earlier.items() if step < offset}
        by_step = {**earlier, **{step + offset: values for step, values in by_step.items()}}
        columns += [c for row in earlier.values() for c in row if c not in columns]
    columns = sorted(set(columns))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *columns])
        for step in sorted(by_step):
            writer.writerow([step, *(by_step[step].get(c, "") for c in columns)])
    print(f"wrote {len(by_step)} steps × {len(columns)} columns from {len(files)} file(s) to {args.out}")


if __name__ == "__main__":
    main()
