"""Separation by instrument next to separation by part, on random-ensemble chorales (issue 13, item 4).

    python benchmarks/by_instrument.py --set data/robust/random-recital-fluidr3 \
        --model lasaft-chorales-query --json benchmarks/results/by_instrument_recital_fluidr3.json

In a random ensemble each SATB part is played by one of 13 instruments, and one instrument may play
two parts. The target of "separate the oboe" is then the sum of every part the oboe plays. For each
track and each instrument in it, the model's estimate of that target is made four ways:

- ``--instrument``: conditioned on the model's stored mean query of the instrument (``stemkit separate
  --instrument oboe``);
- ``--query``: conditioned on a 3 s clip of the instrument from another track of the same set (the
  next track, in name order, where it plays; the loudest 3 s of its stem), as ``stemkit separate
  --query clip.wav`` would be;
- ``parts, summed``: the model's ordinary SATB separation, summing the parts the instrument plays
  (what a user who knows the score could do without any query);
- oracles: the mixture itself (floor) and the ideal ratio mask of the instrument groups (ceiling).

Every estimate is scored with museval's cSDR (1 s windows, median over windows), as ``stemkit eval``.
A figure is the median over tracks per instrument, and the table's "average" is the mean over
instruments of those medians (the by-part row: the same over SATB parts). An instrument that plays
all four parts of a track is left out there: its target is the mixture.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from stemkit.audio.io import load_audio
from stemkit.data.layout import ChoraleTrack, list_tracks
from stemkit.metrics.separation import evaluate_track
from stemkit.parallel import map_with_progress
from stemkit.separation.oracles import ideal_ratio_mask
from stemkit.separation.separator import Separator

QUERY_SECONDS = 3.0


def groups(track: ChoraleTrack) -> dict[str, list[int]]:
    """Instrument → the part slots it plays, leaving out an instrument that plays every part."""
    found: dict[str, list[int]] = defaultdict(list)
    for slot, instrument in enumerate(track.instruments):
        found[instrument].append(slot)
    return {name: slots for name, slots in found.items() if len(slots) < len(track.instruments)}


def loudest_clip(path: Path, seconds: float) -> tuple[torch.Tensor, int]:
    """The ``seconds`` of a stem with the most energy (0.5 s steps): a clip that surely holds the instrument."""
    audio, rate = load_audio(path)
    size, hop = int(seconds * rate), rate // 2
    if audio.shape[-1] <= size:
        return audio, rate
    energy = audio.pow(2).sum(0).cumsum(0)
    starts = torch.arange(0, audio.shape[-1] - size, hop)
    totals = energy[starts + size - 1] - torch.where(starts > 0, energy[(starts - 1).clamp(min=0)], torch.zeros(()))
    start = int(starts[int(totals.argmax())])
    return audio[:, start : start + size], rate


def query_clip(tracks: list[ChoraleTrack], index: int, instrument: str) -> tuple[torch.Tensor, int]:
    """A clip of ``instrument`` from the next track (cyclically, by name) where it plays."""
    for step in range(1, len(tracks)):
        other = tracks[(index + step) % len(tracks)]
        if instrument in other.instruments:
            return loudest_clip(other.stems[other.instruments.index(instrument)], QUERY_SECONDS)
    raise SystemExit(f"no other track of the set has {instrument}: a query needs one")


def estimates_of(separator: Separator, tracks: list[ChoraleTrack], index: int) -> dict:
    """Every method's estimates for one track (run in the main process: the model is loaded once)."""
    track = tracks[index]
    mix, rate = load_audio(track.mix)
    stems = [load_audio(p)[0] for p in track.stems]
    parts = separator.separate(mix, rate)
    by_group = groups(track)
    known = [name for name in by_group if name in separator.instruments]
    stored = separator.separate(mix, rate, instruments=known) if known else {}
    queried = {}
    for name in by_group:
        clip, clip_rate = query_clip(tracks, index, name)
        if clip_rate != rate:
            raise SystemExit(f"{track.name} is {rate} Hz but its query clip is {clip_rate} Hz: one set, one rate")
        queried[name] = separator.separate(mix, rate, query=clip)["query"]
    references = {name: sum(stems[s] for s in slots) for name, slots in by_group.items()}
    methods = {
        "--instrument": {name: stored[name] for name in known},
        "--query": queried,
        "parts, summed": {name: sum(parts[track.targets[s]] for s in slots) for name, slots in by_group.items()},
        "mixture (oracle)": {name: mix for name in by_group},
        "IRM (oracle)": ideal_ratio_mask(mix, references, rate) if references else {},
    }
    return {"track": track.name, "rate": rate, "references": references, "methods": methods,
            "part_references": dict(zip(track.targets, stems)), "parts": parts}


def score(job: dict) -> dict:
    """cSDR of every method per instrument, and of the by-part separation per part."""
    rate, references = job["rate"], job["references"]
    result = {"track": job["track"], "by_instrument": {}, "by_part": {}}
    for method, estimates in job["methods"].items():
        wanted = {name: ref for name, ref in references.items() if name in estimates}
        if wanted:
            scores = evaluate_track(wanted, {n: estimates[n] for n in wanted}, rate)
            result["by_instrument"][method] = {n: s["cSDR"] for n, s in scores.items()}
    scores = evaluate_track(job["part_references"], job["parts"], rate)
    result["by_part"] = {n: s["cSDR"] for n, s in scores.items()}
    return result


def median(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return statistics.median(finite) if finite else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, required=True, help="a random-ensemble chorale dataset (stemkit data chorales --ensemble random)")
    parser.add_argument("--model", required=True, help="a query-by-example model: shipped name, .safetensors or .ckpt")
    parser.add_argument("--tracks", type=int, default=None, help="only the first N tracks")
    parser.add_argument("--workers", type=int, default=2, help="tracks scored in parallel")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)

    tracks = list_tracks(args.set)
    if not tracks:
        print(f"no chorale tracks in {args.set}", file=sys.stderr)
        return 2
    separator = Separator(args.model, device="cpu")
    if separator.model.query_encoder is None:
        print(f"{separator.name} has no query encoder: give a query-by-example model", file=sys.stderr)
        return 2
    count = min(args.tracks or len(tracks), len(tracks))
    jobs = [estimates_of(separator, tracks, i) for i in range(count)]
    scored = map_with_progress(score, jobs, args.workers, desc="scoring", unit="track")

    per_instrument: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for item in scored:
        for method, values in item["by_instrument"].items():
            for name, value in values.items():
                per_instrument[method][name].append(value)
    per_part: dict[str, list[float]] = defaultdict(list)
    for item in scored:
        for name, value in item["by_part"].items():
            per_part[name].append(value)

    instruments = sorted({n for m in per_instrument.values() for n in m})
    table = {method: {n: median(v) for n, v in by_name.items()} for method, by_name in per_instrument.items()}
    averages = {method: float(np.nanmean([table[method].get(n, np.nan) for n in instruments])) for method in table}
    part_medians = {n: median(v) for n, v in per_part.items()}
    print(f"\n{separator.name} on {args.set} ({count} tracks): avg cSDR, by part {np.mean(list(part_medians.values())):.2f} dB")
    print("\n| method | average | " + " | ".join(instruments) + " |")
    print("|---|---:|" + "---:|" * len(instruments))
    for method in table:
        cells = " | ".join(f"{table[method].get(n, float('nan')):.2f}" for n in instruments)
        print(f"| {method} | {averages[method]:.2f} | {cells} |")
    counts = {n: len(per_instrument["--query"][n]) for n in instruments}
    print("\ntracks per instrument: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "set": str(args.set), "model": separator.name, "tracks": count, "query_seconds": QUERY_SECONDS,
            "by_part": {"per_part": part_medians, "average": float(np.mean(list(part_medians.values())))},
            "by_instrument": {"per_instrument": table, "average": averages, "tracks_per_instrument": counts},
            "per_track": scored,
        }, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
