"""Bach chorales from music21's corpus: SATB extraction, deterministic splits and performances.

The chorale corpus ships with music21, so a multi-instrument dataset can be made with no download.
This module turns a corpus file into four voices of notes in *seconds*, with a reproducible
performance (tempo, fermata breaths, dynamics, timing and articulation jitter) drawn from a seed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemkit.data.ensembles import PARTS
from stemkit.data.split_leaks import excluded_keys
from stemkit.midi.notes import Note

SPLITS = ("train", "valid", "test")
EXCLUDED = "excluded"  #: split of a chorale left out of train/valid because it leaks a test/valid one
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")  # .rntxt files are harmonic analyses, not scores


@dataclass(frozen=True)
class ChoraleSource:
    key: str  #: the corpus file's stem, e.g. ``bwv269``
    path: Path
    index: int  #: position in the sorted list of all chorales (excluded ones too); stable track numbering

    @property
    def split(self) -> str:
        """``train``, ``valid``, ``test`` or ``excluded`` (see :func:`split_of`); recorded in track metadata."""
        return split_of(self.key)


@dataclass(frozen=True)
class ScoreNote:
    """A note in musical time (quarter lengths), before any performance is applied."""

    onset: float
    duration: float
    pitch: int
    fermata: bool


def hash_split(key: str) -> str:
    """The split a key hashes to: sha1(key) mod 10 → 0 test, 1 valid, 2–9 train.

    Hashing the key (not shuffling with a seed) means everyone everywhere gets the same test set,
    whatever subset of the corpus their music21 version ships.
    """
    bucket = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def split_of(key: str) -> str:
    """The split of a chorale: its :func:`hash_split`, or ``excluded`` for a valid or train chorale
    that is a variant of, or shares a voice line with, a test chorale (or, for train, a valid one).

    Test is always exactly the hash rule. Exclusion keeps near-copies of held-out chorales out of
    training and validation; the list is precomputed in ``split_leaks.json`` (see
    :mod:`stemkit.data.split_leaks`), because finding shared lines means parsing every score.
    """
    split = hash_split(key)
    if split != "test" and key in excluded_keys():
        return EXCLUDED
    return split


def chorale_sources() -> list[ChoraleSource]:
    """Every Bach score in music21's corpus, one per key (MusicXML preferred), sorted by key.

    Excluded chorales are listed too, so ``index`` (and so track folder names) does not depend on
    the exclusion list.
    """
    from music21 import corpus

    by_key: dict[str, Path] = {}
    for raw in corpus.getComposer("bach"):
        path = Path(raw)
        if path.suffix.lower() not in SCORE_SUFFIXES:
            continue
        key = path.stem
        if key not in by_key or _preference(path) < _preference(by_key[key]):
            by_key[key] = path
    return [ChoraleSource(key, by_key[key], i) for i, key in enumerate(sorted(by_key))]


def _preference(path: Path) -> int:
    return SCORE_SUFFIXES.index(path.suffix.lower())


def select_sources(split: str, sources: list[ChoraleSource] | None = None) -> list[ChoraleSource]:
    """The chorales of ``split`` (``train``, ``valid``, ``test`` or ``excluded``), in key order.

    ``all`` gives every chorale of the corpus, excluded ones included: it already mixes test with
    train, so it is no clean training set anyway, and each track's metadata records its ``split``
    (``excluded`` for those) for anyone who wants to filter.
    """
    sources = chorale_sources() if sources is None else sources
    return [s for s in sources if split == "all" or s.split == split]


def extract_satb(path: str | Path) -> list[list[ScoreNote]] | None:
    """Four voices (SATB order) of the score at ``path``, or ``None`` when it is not a 4-voice chorale.

    The voices are the parts whose names start with Soprano, Alto, Tenor and Bass; failing that, a
    score with exactly four parts, in order. Ties are merged; chords (rare) contribute every pitch.
    """
    from music21 import converter, expressions

    score = converter.parse(str(path))
    parts = list(score.parts)
    named = []
    for voice in PARTS:
        match = [p for p in parts if (p.partName or "").strip().lower().startswith(voice)]
        named.append(match[0] if match else None)
    if all(p is not None for p in named):
        chosen = named
    elif len(parts) == 4:
        chosen = parts
    else:
        return None
    voices = []
    for part in chosen:
        notes = []
        for element in part.stripTies().flatten().notes:
            fermata = any(isinstance(e, expressions.Fermata) for e in element.expressions)
            onset = float(element.offset)
            duration = float(element.quarterLength)
            if duration <= 0:
                continue  # grace notes carry no time of their own
            for pitch in element.pitches:
                notes.append(ScoreNote(onset, duration, int(pitch.midi), fermata))
        if not notes:
            return None
        voices.append(sorted(notes, key=lambda n: (n.onset, n.pitch)))
    return voices


@dataclass(frozen=True)
class Performance:
    tempo: float  #: quarter notes per minute
    voices: list[list[Note]]


def perform(voices: list[list[ScoreNote]], rng: np.random.Generator, max_seconds: float | None = None) -> Performance:
    """Turn score voices into timed notes with a reproducible human-ish performance.

    - tempo drawn per track (60–96 quarter notes a minute);
    - a breath after each fermata (0.3–1.0 beats), the same for every voice, as choirs do;
    - per voice a base velocity, per note ±jitter and a gentle phrase arch;
    - per note onset jitter (σ 8 ms) and articulation (sounding 85–97 % of the written length).
    Notes starting at or after ``max_seconds`` are dropped and the rest cut at it.
    """
    tempo = float(rng.uniform(60.0, 96.0))
    seconds_per_quarter = 60.0 / tempo
    fermata_ends = sorted({n.onset + n.duration for v in voices for n in v if n.fermata})
    breaths = rng.uniform(0.3, 1.0, size=len(fermata_ends)) * seconds_per_quarter

    def to_seconds(q: float) -> float:
        extra = sum(b for end, b in zip(fermata_ends, breaths) if end <= q + 1e-9)
        return q * seconds_per_quarter + extra

    total_quarters = max(n.onset + n.duration for v in voices for n in v)
    performed = []
    for voice in voices:
        base_velocity = rng.uniform(62, 92)
        notes = []
        for note in voice:
            start = to_seconds(note.onset) + rng.normal(0.0, 0.008)
            written_end = to_seconds(note.onset + note.duration)
            if note.fermata:
                written_end = to_seconds(note.onset + note.duration - 1e-6)  # hold through, breathe after
            end = start + (written_end - start) * rng.uniform(0.85, 0.97)
            start = max(0.0, start)
            arch = 8.0 * math.sin(math.pi * min(1.0, note.onset / max(total_quarters, 1e-9)))
            velocity = int(np.clip(round(base_velocity + arch + rng.normal(0.0, 5.0)), 30, 120))
            timed = timed_note(note.pitch, start, end, velocity, max_seconds)
            if timed is not None:
                notes.append(timed)
        performed.append(notes)
    return Performance(tempo, performed)


def timed_note(pitch: int, start: float, end: float, velocity: int, max_seconds: float | None) -> Note | None:
    """A performed note cut at ``max_seconds``; None if it starts after it or is shorter than 20 ms."""
    if max_seconds is not None:
        if start >= max_seconds:
            return None
        end = min(end, max_seconds)
    if end - start < 0.02:
        return None
    return Note(pitch, round(start, 6), round(end, 6), velocity)


def track_seed(seed: int, key: str, ensemble: str, rendition: int) -> int:
    """A per-track seed, stable across runs, worker counts and subsets of the corpus."""
    digest = hashlib.sha1(f"{seed}/{key}/{ensemble}/{rendition}".encode()).hexdigest()
    return int(digest[:16], 16)
