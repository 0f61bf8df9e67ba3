"""``stemkit eval``: score estimates (or an oracle) against a reference dataset.

Reads ``EST_DIR/<track>/<target>.wav`` (or ``.flac``), resamples to the reference rate, computes every
metric per track in parallel, and aggregates with the conventions in :mod:`stemkit.metrics.separation`.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from stemkit.atomic import atomic_output
from stemkit.plotting import save_figure
from stemkit.audio.io import check_finite_file, load_audio
from stemkit.data.reference import ReferenceTrack, open_reference_dataset
from stemkit.errors import StemkitError, StemkitWarning
from stemkit.metrics.separation import METRICS, aggregate, evaluate_track
from stemkit.parallel import map_with_progress
from stemkit.separation.oracles import ideal_ratio_mask, mixture_oracle

ORACLES = ("mixture", "irm")
#: Largest accepted length difference between an estimate and its reference, in reference samples.
#: Resampling an estimate back to the reference rate can add or drop a sample or two; anything more
#: is a truncated or misaligned file, and padding it with zeros would score an incomplete estimate.
LENGTH_TOLERANCE_SAMPLES = 16


def find_estimate(est_dir: Path, track: str, target: str) -> Path:
    for suffix in (".wav", ".flac"):
        candidate = est_dir / track / f"{target}{suffix}"
        if candidate.is_file():
            return candidate
    raise StemkitError(f"missing estimate {est_dir / track / (target + '.wav')}: every track needs one file per target")


def check_estimate(path: Path, track: ReferenceTrack, target: str) -> None:
    """Refuse an estimate that cannot be scored fairly: non-finite samples, another channel count, or
    a length more than :data:`LENGTH_TOLERANCE_SAMPLES` off the reference's."""
    info = check_finite_file(path)
    channels, frames = track.shape
    if info.channels != channels:
        raise StemkitError(f"{path} has {info.channels} channel(s) but the reference {track.name}/{target} has {channels}: "
                           "estimates must have the reference's channels")
    at_reference_rate = round(info.frames * track.sample_rate / info.sample_rate)
    if abs(at_reference_rate - frames) > LENGTH_TOLERANCE_SAMPLES:
        raise StemkitError(f"{path} lasts {info.seconds:.3f} s but the reference {track.name} lasts "
                           f"{frames / track.sample_rate:.3f} s ({abs(at_reference_rate - frames)} samples apart, more than "
                           f"{LENGTH_TOLERANCE_SAMPLES}): an estimate must cover the whole track")


def _score_track(args: tuple) -> tuple[str, dict]:
    track, targets, est_dir, oracle, keep_frames = args
    sr = track.sample_rate
    references = {t: track.load_target(t) for t in targets}
    if oracle == "mixture":
        estimates = mixture_oracle(track.load_mix(), targets)
    elif oracle == "irm":
        estimates = ideal_ratio_mask(track.load_mix(), references, sr)
    else:
        estimates = {t: load_audio(find_estimate(est_dir, track.name, t), sample_rate=sr)[0] for t in targets}
    return track.name, evaluate_track(references, estimates, sr, keep_frames=keep_frames)


def evaluate_dataset(
    reference: str | Path,
    estimates: str | Path | None = None,
    oracle: str | None = None,
    targets: list[str] | None = None,
    subset: str = "test",
    workers: int = 1,
    keep_frames: bool = False,
    progress: bool = True,
) -> dict:
    """Evaluate a method on every track of ``reference``; returns the JSON-ready result.

    Exactly one of ``estimates`` (a folder) or ``oracle`` (``mixture`` or ``irm``) is given.
    ``result["average"]["cSDR"]`` is the headline number.
    """
    if (estimates is None) == (oracle is None):
        raise StemkitError("give either --estimates DIR or --oracle mixture|irm")
    if oracle is not None and oracle not in ORACLES:
        raise StemkitError(f"unknown oracle {oracle!r}: choose mixture or irm")
    est_dir = Path(estimates) if estimates is not None else None
    if est_dir is not None and not est_dir.is_dir():
        raise StemkitError(f"estimates folder not found: {est_dir}")
    tracks: list[ReferenceTrack] = open_reference_dataset(reference, subset)
    targets = list(targets) if targets else tracks[0].targets
    for track in tracks:
        unknown = [t for t in targets if t not in track.targets and t != "accompaniment"]
        if unknown:
            raise StemkitError(f"track {track.name} has no target {unknown[0]!r}: it has {', '.join(track.targets)}")
    if est_dir is not None:
        for track in tracks:  # fail before hours of work, not after
            for t in targets:
                check_estimate(find_estimate(est_dir, track.name, t), track, t)
    jobs = [(track, targets, est_dir, oracle, keep_frames) for track in tracks]
    per_track = dict(map_with_progress(_score_track, jobs, workers, desc="evaluating", unit="track", progress=progress))
    per_target, average = aggregate({k: {t: {m: v[m] for m in METRICS} for t, v in s.items()} for k, s in per_track.items()})
    undefined = undefined_results(per_track)
    if undefined:
        first = undefined[0]
        warnings.warn(f"{len(undefined)} of {len(per_track) * len(targets)} track × target results have undefined (NaN) "
                      f"metrics and are left out of the averages, e.g. {first['track']}/{first['target']}: "
                      f"{', '.join(first['metrics'])} (a silent reference, or a perfect estimate, has no finite SDR); "
                      f"the JSON lists them under 'undefined'", StemkitWarning, stacklevel=2)
    return {
        "reference": str(reference),
        "method": f"oracle:{oracle}" if oracle else str(est_dir),
        "sample_rate": tracks[0].sample_rate,
        "targets": targets,
        "num_tracks": len(tracks),
        "aggregation": {
            "cSDR/SIR/SAR/ISR": "BSSEval v4 (museval), 1 s windows and hop; median over windows, then median over tracks",
            "uSDR": "whole-signal SDR, mean over tracks",
            "SI-SDR": "whole-signal scale-invariant SDR, mean over tracks",
            "average": "mean over targets of the per-target figures",
        },
        "tracks": per_track,
        "per_target": per_target,
        "average": average,
        "undefined": undefined,
    }


def undefined_results(per_track: dict[str, dict[str, dict]]) -> list[dict]:
    """Every track × target with NaN metrics (left out of the medians and means), so none goes unseen."""
    found = []
    for track, scores in per_track.items():
        for target, values in scores.items():
            bad = [m for m in METRICS if not math.isfinite(values[m])]
            if bad:
                found.append({"track": track, "target": target, "metrics": bad})
    return found


def format_table(results: dict[str, dict], metric: str = "cSDR") -> str:
    """A Markdown table: one row per method, ``metric`` per target and average, then the other averages."""
    first = next(iter(results.values()))
    targets = first["targets"]
    others = [m for m in METRICS if m != metric]
    header = ["method", *[f"{metric} {t}" for t in targets], f"{metric} avg", *[f"{m} avg" for m in others]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        row = [name, *[_fmt(result["per_target"][t][metric]) for t in targets], _fmt(result["average"][metric])]
        row += [_fmt(result["average"][m]) for m in others]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.2f}"


def write_json(path: str | Path, data: dict) -> Path:
    """Write JSON atomically (NaN becomes null, so any JSON reader can load it)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(_nan_to_none(data), indent=1))
    return path


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def plot_results(results: dict[str, dict], path: str | Path, metric: str = "cSDR") -> Path:
    """Grouped bar chart of ``metric`` per target (and average) for each method, saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    first = next(iter(results.values()))
    groups = [*first["targets"], "average"]
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(1.6 * len(groups) + 3.5, 4))
    for i, (name, result) in enumerate(results.items()):
        values = [result["per_target"][t][metric] for t in first["targets"]] + [result["average"][metric]]
        ax.bar(np.arange(len(groups)) + (i - (len(results) - 1) / 2) * width, values, width, label=name)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(f"{metric} (dB)")
    ax.set_title(f"{metric} on {first['num_tracks']} track(s) of {Path(first['reference']).name}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


