"""``stemkit eval-synth``: score synthesized audio against reference renderings of the same MIDI.

Items are paired by name. The reference is either a plain folder of ``<name>.wav`` (or ``.flac``)
with the MIDI it renders beside it as ``<name>.mid``, or a CocoChorales-layout dataset whose stems
become items named ``<track folder>_<stem>`` (``string_track000123_0_violin``) with MIDI from
``stems_MIDI/<stem>.mid``. Generated files are ``GEN_DIR/<name>.wav`` (or ``.flac``).

Generated audio is resampled to the reference rate, averaged to mono and cut or zero-padded to the
reference length. A synthesizer must play as long as its MIDI, so a length off by more than 5 % is
an error rather than something to pad over: it usually means a wrong rate or a truncated render.
Every check runs on file headers before any metric, so a mistake fails in seconds, not at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stemkit.audio.io import check_finite_file, load_audio
from stemkit.data.monophonic import AUDIO_SUFFIXES
from stemkit.data.layout import is_dataset, list_stem_files
from stemkit.errors import StemkitError
from stemkit.metrics.synthesis import SYNTHESIS_METRICS, synthesis_metrics
from stemkit.midi.notes import Note, read_midi_tracks
from stemkit.parallel import map_with_progress


#: Largest accepted relative difference between generated and reference durations.
LENGTH_TOLERANCE = 0.05


@dataclass(frozen=True)
class SynthItem:
    """One reference rendering: its name (the pairing key), audio file, and MIDI (None if absent)."""

    name: str
    audio: Path
    midi: Path | None


def reference_items(reference: str | Path, instrument: str | None = None) -> list[SynthItem]:
    """The reference items of ``reference`` (either layout), sorted by name."""
    root = Path(reference)
    if not root.is_dir():
        raise StemkitError(f"reference folder not found: {root}")
    if is_dataset(root):
        return _layout_items(root, instrument)
    if instrument is not None:
        raise StemkitError(f"--instrument only applies to a CocoChorales-layout reference, and {root} holds no track folders")
    items = []
    for path in sorted(root.iterdir()):
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("."):
            midi = path.with_suffix(".mid")
            items.append(SynthItem(path.stem, path, midi if midi.is_file() else None))
    if not items:
        raise StemkitError(f"{root} holds no .wav/.flac references (nor CocoChorales track folders)")
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise StemkitError(f"{root} has both {twice}.wav and {twice}.flac: keep one reference per name")
    return items


def _layout_items(root: Path, instrument: str | None) -> list[SynthItem]:
    items = [SynthItem(stem.name, stem.audio, stem.midi) for stem in list_stem_files(root, instrument)]
    if not items:
        instruments = sorted({stem.instrument for stem in list_stem_files(root)})
        raise StemkitError(f"no {instrument} stems in {root}: its instruments are {', '.join(instruments)}")
    return items


def find_generated(generated: Path, name: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        candidate = generated / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def pair_items(items: list[SynthItem], generated: str | Path) -> list[tuple[SynthItem, Path]]:
    """Each reference item with its generated file; one error for all that are missing or too short/long."""
    generated = Path(generated)
    if not generated.is_dir():
        raise StemkitError(f"generated folder not found: {generated}")
    pairs, missing = [], []
    for item in items:
        path = find_generated(generated, item.name)
        if path is None:
            missing.append(item.name)
        else:
            pairs.append((item, path))
    if not pairs:
        raise StemkitError(
            f"no file in {generated} matches a reference name: expected e.g. {items[0].name}.wav "
            f"(names follow the reference: <name>.wav, or <track>_<stem>.wav for a chorale dataset)"
        )
    if missing:
        shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        raise StemkitError(f"{len(missing)} of {len(items)} generated file(s) missing from {generated}: {shown}")
    for item, path in pairs:
        _check_length(item.audio, path)
    return pairs


def _check_length(reference: Path, generated: Path) -> None:
    ref, gen = check_finite_file(reference), check_finite_file(generated)
    if ref.frames == 0:
        raise StemkitError(f"reference {reference} is empty")
    if abs(gen.seconds - ref.seconds) > LENGTH_TOLERANCE * ref.seconds:
        raise StemkitError(
            f"{generated} lasts {gen.seconds:.2f} s but its reference {reference.name} lasts {ref.seconds:.2f} s "
            f"(more than {LENGTH_TOLERANCE:.0%} apart): a synthesizer must render the whole MIDI at the right rate"
        )


def load_notes(midi: Path | None) -> list[Note] | None:
    """All notes of every (non-drum) track of ``midi``; None without a MIDI file."""
    if midi is None:
        return None
    return sorted((n for track in read_midi_tracks(midi) for n in track.notes), key=lambda n: (n.start, n.pitch))


def fit_length(audio: torch.Tensor, length: int) -> torch.Tensor:
    """Cut or zero-pad ``[..., samples]`` to ``length`` samples."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return torch.nn.functional.pad(audio, (0, length - audio.shape[-1]))


def score_item(pair: tuple[SynthItem, Path]) -> tuple[str, dict[str, float]]:
    """Metrics of one generated file against its reference (runs in a worker process)."""
    item, path = pair
    ref, sr = load_audio(item.audio, mono=True)
    gen, _ = load_audio(path, sample_rate=sr, mono=True)
    return item.name, synthesis_metrics(ref[0], fit_length(gen[0], ref.shape[-1]), sr, load_notes(item.midi))


def evaluate_synthesis(
    reference: str | Path,
    generated: str | Path,
    workers: int = 1,
    instrument: str | None = None,
    progress: bool = True,
) -> dict:
    """Score every generated item against its reference; returns the JSON-ready result.

    ``{"items": {name: {metric: value}}, "mean": {metric: value}, "count": n, ...}``. The mean of a
    metric skips NaN (e.g. pitch accuracy of items without MIDI) and is NaN when every item is NaN.
    """
    items = reference_items(reference, instrument)
    pairs = pair_items(items, generated)
    scores = dict(map_with_progress(score_item, pairs, workers, desc="scoring", unit="item", progress=progress))
    return {
        "reference": str(reference),
        "generated": str(generated),
        "instrument": instrument,
        "count": len(scores),
        "mean": mean_scores(scores),
        "items": scores,
    }


def mean_scores(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per-metric mean over items, skipping NaN."""
    means = {}
    for metric in SYNTHESIS_METRICS:
        values = np.array([s[metric] for s in scores.values()], dtype=np.float64)
        values = values[np.isfinite(values)]
        means[metric] = float(values.mean()) if values.size else float("nan")
    return means


#: How each metric reads, for tables and help text.
METRIC_NOTES = {
    "log_mel_l1": "lower is better",
    "mrstft": "lower is better",
    "si_sdr": "dB, higher is better",
    "pitch_acc": "0..1, higher is better",
}


def format_table(result: dict) -> str:
    """A small Markdown table of the means."""
    lines = [f"| metric | mean over {result['count']} item(s) | |", "|---|---|---|"]
    for metric in SYNTHESIS_METRICS:
        value = result["mean"][metric]
        lines.append(f"| {metric} | {'nan' if not math.isfinite(value) else f'{value:.4f}'} | {METRIC_NOTES[metric]} |")
    return "\n".join(lines)
