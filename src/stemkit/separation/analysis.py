"""The progressive-inference analysis: SDR per step, between the one-pass floor and the oracle.

For every track of a dataset with references it records, per step and target, cSDR, SI-SDR and
uSDR of

- ``one-pass``: ordinary separation (step 1, the lower line);
- ``progressive:<schedule>``: each requested schedule's estimates after every step;
- ``refiner``: with a refiner (:mod:`stemkit.separation.refinement`), the base's pass refined at
  steps 2..N (it reads the mixture and every part's estimate apart, instead of a remix);
- ``oracle``: the seed's *oracle predictor* — step n separates the remix built from the **true**
  target, ``(1 − β_n)·y + β_n·x`` (or the ``remix-all`` analogue), which bounds from above what any
  progressive run with that schedule could reach if each step's estimate were perfect.

Rows go to ``progressive.csv`` after every track (so an interrupted run resumes where it stopped),
the per-step averages to ``summary.json``, and ``progressive.png`` plots cSDR and SI-SDR vs step.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from stemkit.atomic import atomic_output
from stemkit.plotting import save_figure
from stemkit.data.reference import open_reference_dataset
from stemkit.errors import StemkitError
from stemkit.metrics.separation import aggregate, evaluate_track
from stemkit.separation.progressive import ProgressiveSeparator
from stemkit.separation.schedules import beta_schedule, parse_schedule

COLUMNS = ["method", "step", "beta", "track", "target", "cSDR", "SI-SDR", "uSDR"]
PLOTTED = ("cSDR", "SI-SDR")


def check_analysis_options(steps: int, max_tracks: int | None, seconds: float | None, offset: float) -> None:
    """Refuse options that would analyse nothing (or forever) before any model is loaded."""
    if steps < 2:
        raise StemkitError("the analysis needs --steps of at least 2")
    if max_tracks is not None and max_tracks < 1:
        raise StemkitError(f"--tracks must be at least 1, got {max_tracks}")
    if seconds is not None and not seconds > 0:
        raise StemkitError(f"--seconds must be positive, got {seconds}")
    if not offset >= 0:
        raise StemkitError(f"--offset must be 0 or more, got {offset}")


def progressive_analysis(
    dataset: str | Path,
    separator,
    out: str | Path,
    steps: int = 4,
    schedules: list[str] | None = None,
    mode: str = "add-to-mixture",
    wiener: bool = False,
    oracle: bool = True,
    max_tracks: int | None = None,
    seconds: float | None = None,
    offset: float = 0.0,
    progress: bool = True,
    refiner=None,
) -> dict:
    """Run the analysis; returns ``summary`` (``{method: {step: {metric: average}}}`` plus settings)."""
    schedules = schedules or ["linear"]
    check_analysis_options(steps, max_tracks, seconds, offset)
    runs = {f"progressive:{s}": ProgressiveSeparator(separator, steps, s, mode, wiener) for s in schedules}
    if refiner is not None:
        from stemkit.separation.refinement import RefinedSeparator

        runs["refiner"] = RefinedSeparator(separator, refiner, steps, wiener)
    fixed = [s for s in schedules if parse_schedule(s)[0] != "adaptive"]
    oracle_betas = beta_schedule(fixed[0] if fixed else "linear", steps)
    tracks = open_reference_dataset(dataset)
    if max_tracks is not None:
        tracks = tracks[:max_tracks]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    refiner_name = getattr(refiner, "metadata", {}).get("name", "refiner") if refiner is not None else None
    settings = {"dataset": str(dataset), "model": separator.name, "steps": steps, "schedules": schedules, "mode": mode,
                "wiener": wiener, "oracle": oracle, "refiner": refiner_name, "oracle_betas": oracle_betas,
                "tracks": [t.name for t in tracks], "seconds": seconds, "offset": offset}
    rows = _resume(out, settings)
    done = {(r["method"], r["track"]) for r in rows}
    for track in tqdm(tracks, desc="tracks", unit="track", disable=not progress):
        todo = [m for m in ["one-pass", *runs] + (["oracle"] if oracle else []) if (m, track.name) not in done]
        if not todo:
            continue
        mix, references, rate = _load(track, seconds, offset)
        targets = list(references)
        if any(m != "oracle" for m in todo):
            rows = [r for r in rows if r["track"] != track.name or r["method"] == "oracle"]
            first = None  # step 1 is the same for every schedule: separated and scored once
            for method, runner in runs.items():
                # the refiner refines the base's unfiltered estimates: with Wiener it separates its own step 1
                shared = None if method == "refiner" and wiener else first
                for result in runner.iterate(mix, rate, targets, first=shared):
                    if result.step == 1:
                        if first is None:
                            first = result.estimates
                            one_pass = _score("one-pass", 1, 0.0, track.name, references, first, rate)
                            rows += one_pass
                        rows += [{**r, "method": method} for r in one_pass]
                    else:
                        rows += _score(method, result.step, _mean(result.betas), track.name, references, result.estimates, rate)
        if "oracle" in todo:  # step 1 of the oracle is one-pass separation: its rows are reused
            runner = runs[f"progressive:{schedules[0]}"]
            rows += [{**r, "method": "oracle"} for r in rows if r["method"] == "one-pass" and r["track"] == track.name]
            for step, beta in enumerate(oracle_betas[1:], start=2):
                mixtures = {t: runner.remix(mix, references, t, beta) for t in targets}
                estimates = runner.separate_each(mixtures, rate, {t: beta for t in targets})
                rows += _score("oracle", step, beta, track.name, references, estimates, rate)
        _write_csv(out / "progressive.csv", rows)
    summary = {"settings": settings, "results": summarize(rows)}
    with atomic_output(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    plot_progressive(summary, out / "progressive.png")
    return summary


def _mean(betas: dict[str, float]) -> float:
    return sum(betas.values()) / max(1, len(betas))


def _load(track, seconds: float | None, offset: float) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    rate = track.sample_rate
    start = int(round(offset * rate))
    stop = start + int(round(seconds * rate)) if seconds else None
    mix = track.load_mix()[:, start:stop]
    references = {t: track.load_target(t)[:, start:stop] for t in track.targets}
    if mix.shape[-1] == 0:
        raise StemkitError(f"{track.name}: nothing left after --offset {offset}")
    return mix, references, rate


def _score(method: str, step: int, beta: float, track: str, references: dict, estimates: dict, rate: int) -> list[dict]:
    scores = evaluate_track(references, {t: estimates[t] for t in references}, rate)
    return [{"method": method, "step": step, "beta": round(beta, 6), "track": track, "target": t,
             **{m: scores[t][m] for m in ("cSDR", "SI-SDR", "uSDR")}} for t in references]


def _resume(out: Path, settings: dict) -> list[dict]:
    """Rows of an interrupted run with the same settings; a different earlier run is an error."""
    saved, table = out / "settings.json", out / "progressive.csv"
    if saved.exists() and table.exists():
        if json.loads(saved.read_text()) != json.loads(json.dumps(settings)):
            raise StemkitError(f"{out} holds an analysis with other settings: choose another --out")
        with open(table, newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            row["step"] = int(row["step"])
            for key in ("beta", "cSDR", "SI-SDR", "uSDR"):
                row[key] = float(row[key])
        return rows
    with atomic_output(saved) as tmp:
        tmp.write_text(json.dumps(settings, indent=1) + "\n")
    return []


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_output(path) as tmp:
        tmp.write_text(buffer.getvalue())


def summarize(rows: list[dict]) -> dict[str, dict[int, dict[str, float]]]:
    """Per method and step, the benchmark averages (median over tracks for cSDR, mean for the rest,
    then the mean over targets — as ``stemkit eval`` reports them), plus the mean β."""
    grouped: dict[str, dict[int, dict]] = {}
    for row in rows:
        per_track = grouped.setdefault(row["method"], {}).setdefault(int(row["step"]), {"tracks": {}, "betas": []})
        per_track["tracks"].setdefault(row["track"], {})[row["target"]] = {m: row[m] for m in ("cSDR", "SI-SDR", "uSDR")}
        per_track["betas"].append(row["beta"])
    summary: dict[str, dict[int, dict[str, float]]] = {}
    for method, by_step in grouped.items():
        summary[method] = {}
        for step, entry in sorted(by_step.items()):
            _, average = aggregate(entry["tracks"])
            summary[method][step] = {"cSDR": average["cSDR"], "SI-SDR": average["SI-SDR"], "uSDR": average["uSDR"],
                                     "beta": sum(entry["betas"]) / len(entry["betas"]), "tracks": len(entry["tracks"])}
    return summary


def format_summary(summary: dict) -> str:
    """Markdown table: one row per method, one column per step (avg cSDR / SI-SDR)."""
    results = summary["results"]
    steps = summary["settings"]["steps"]
    lines = ["| method | " + " | ".join(f"step {n}" for n in range(1, steps + 1)) + " |", "|---|" + "---:|" * steps]
    for method, by_step in results.items():
        cells = []
        for n in range(1, steps + 1):
            entry = by_step.get(n) or by_step.get(str(n))
            cells.append(f"{entry['cSDR']:.2f} / {entry['SI-SDR']:.2f}" if entry else "")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_progressive(summary: dict, path: str | Path) -> Path:
    """cSDR and SI-SDR vs step: oracle dashed on top, one-pass as a dotted floor, runs in between."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = summary["results"]
    steps = list(range(1, summary["settings"]["steps"] + 1))
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(5.2 * len(PLOTTED), 3.8))
    for ax, metric in zip(axes, PLOTTED):
        for method, by_step in results.items():
            if method == "one-pass":
                ax.axhline(by_step[1][metric], color="gray", linestyle=":", label="one-pass")
                continue
            xs = [n for n in steps if n in by_step]
            style = dict(color="black", linestyle="--", marker="^") if method == "oracle" else dict(marker="o")
            ax.plot(xs, [by_step[n][metric] for n in xs], label=method.removeprefix("progressive:"), **style)
        ax.set_xlabel("step")
        ax.set_ylabel(f"{metric} (dB, avg over targets)")
        ax.set_xticks(steps)
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    settings = summary["settings"]
    fig.suptitle(f"{settings['model']}, {settings['mode']}{' + Wiener' if settings['wiener'] else ''}, "
                 f"{len(settings['tracks'])} track(s)")
    fig.tight_layout()
    return save_figure(fig, path)
