"""Leaks between the chorale splits: variants of one chorale and voice lines shared across splits.

The chorale split is a hash of the corpus key (:func:`stemkit.data.chorales.hash_split`), which keeps
the test set identical everywhere but knows nothing about music. music21's corpus holds several
versions of some movements (``bwv248.35-3`` / ``bwv248.35-3c``, ``bwv112.5`` / ``bwv112.5-sc``) and
Bach set many hymn tunes more than once (``bwv114.7`` and ``bwv258`` have the same soprano), so a
model trained on the train split could already know a test chorale. This module finds such pairs;
a chorale that collides with one of a more protected split is left out of its own split.

Finding shared lines means parsing every score (minutes), so it is done once by
``scripts/find_split_leaks.py``, which writes ``split_leaks.json`` next to this module; the
generator only reads that file (:func:`excluded_keys`).

Rules, and why:

- *Variants by name.* Keys with the same :func:`variant_base` are versions of one movement (another
  edition, the instrumental or simplified setting) and are near-identical.
- *Shared line.* A voice line's fingerprint (:func:`line_fingerprint`) is its interval sequence with
  tied and repeated notes merged: transposition-invariant, and blind to re-texting (one long note
  sung as two). Two chorales share a line when, for some voice of each, at least
  :data:`MIN_OVERLAP` of the shorter line's interval :data:`NGRAM`-grams (9-note phrases) occur in
  the other line (:func:`line_overlap`). Exact equality is not enough: on the corpus the same
  soprano often differs by one passing note (``bwv244.44`` / ``bwv271``, 0.97) or by a written-out
  repeat (``bwv347`` / ``bwv37.6``, 1.0); exact matching finds 12 leaks, this rule 75. Every
  cross-split pair from 0.5 up is the same tune with at most a few ornaments changed. Below 0.5 the
  pairs are mixed: more freely varied settings of a tune (``bwv153.5`` / ``bwv244.44``, 0.38) but
  also different tunes sharing one cadence phrase or an inner-voice figure (``bwv350`` alto /
  ``bwv268`` soprano, 0.33), so 0.5 is the lowest threshold at which every flagged pair is one tune.
  ``scripts/find_split_leaks.py`` prints the pairs from 0.3 up for review.
- *Direction.* The test split never changes. A valid or train chorale colliding with a test one is
  excluded; then a train chorale colliding with a valid one that is still kept is excluded. Pairs
  inside one split are harmless and kept. A chorale colliding with several is listed once, against
  the first in (test before valid, then key) order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

from stemkit.data.ensembles import PARTS

LEAKS_FILE = "split_leaks.json"  #: in the ``stemkit.data`` package; written by scripts/find_split_leaks.py
FORMAT_VERSION = 1
NGRAM = 8  #: intervals per compared phrase (9 notes): long enough that unrelated tunes rarely share one
MIN_OVERLAP = 0.5  #: share of the shorter line's phrases found in the other line that makes it "shared"

Fingerprint = tuple[int, ...]  #: successive melodic intervals in semitones


class Pitched(Protocol):
    """Anything with an onset and a MIDI pitch, e.g. :class:`stemkit.data.chorales.ScoreNote`."""

    @property
    def onset(self) -> float: ...

    @property
    def pitch(self) -> int: ...


@dataclass(frozen=True)
class Leak:
    """``key`` (of hash split ``split``) collides with ``other`` (of ``other_split``), so it is excluded."""

    key: str
    split: str
    other: str
    other_split: str
    reason: str  #: ``variant`` (same movement by name) or ``line`` (a shared voice line)
    voices: tuple[str, str] | None = None  #: for ``line``: the voice of ``key`` and of ``other``
    overlap: float | None = None  #: for ``line``: :func:`line_overlap`, rounded to 3 places


def variant_base(key: str) -> str:
    """The movement a corpus key belongs to: the key up to its first ``-``.

    music21 marks other versions of a movement with a dash suffix: ``-sc``, ``-a``, ``-lpz``,
    ``-lz``/``-w``, ``-inst``, ``-s``, and for the Christmas Oratorio the part number with an optional
    letter (``bwv248.35-3``, ``bwv248.35-3c``). The dot is the movement number (``bwv112.5`` is
    movement 5 of cantata 112), so it is kept: ``bwv145-a`` and ``bwv145.5`` are different movements.
    """
    return key.split("-", 1)[0]


def melody(voice: Sequence[Pitched]) -> list[int]:
    """The pitches of a voice in order, one per onset (the highest, for a rare divisi chord), with
    consecutive repeats merged so tied notes and re-texted repeated notes count once."""
    top: dict[float, int] = {}
    for note in voice:
        top[note.onset] = max(note.pitch, top.get(note.onset, note.pitch))
    pitches: list[int] = []
    for onset in sorted(top):
        if not pitches or pitches[-1] != top[onset]:
            pitches.append(top[onset])
    return pitches


def line_fingerprint(voice: Sequence[Pitched]) -> Fingerprint:
    """A transposition-invariant fingerprint of a voice line: the intervals between the successive
    pitches of its :func:`melody`. The same line in any key has the same fingerprint."""
    pitches = melody(voice)
    return tuple(b - a for a, b in zip(pitches, pitches[1:]))


def _phrases(fingerprint: Fingerprint, n: int = NGRAM) -> frozenset[Fingerprint]:
    return frozenset(fingerprint[i : i + n] for i in range(len(fingerprint) - n + 1))


def line_overlap(a: Fingerprint, b: Fingerprint, n: int = NGRAM) -> float:
    """Share of the shorter line's distinct interval ``n``-grams that also occur in the other line.

    Measured against the shorter line, so a line written with a repeat sign still matches the same
    line written out twice; one ornament changes only the few ``n``-grams around it. 0 when either
    line is shorter than ``n`` intervals (too short to tell).
    """
    pa, pb = _phrases(a, n), _phrases(b, n)
    if not pa or not pb:
        return 0.0
    return len(pa & pb) / min(len(pa), len(pb))


def fingerprint_digest(fingerprint: Fingerprint) -> str:
    """A short stable digest of a fingerprint, kept in the shipped JSON so a stale file is caught."""
    return hashlib.sha1(",".join(map(str, fingerprint)).encode()).hexdigest()[:16]


def collision(
    key: str,
    lines: Sequence[Fingerprint] | None,
    other: str,
    other_lines: Sequence[Fingerprint] | None,
    min_overlap: float = MIN_OVERLAP,
) -> tuple[str, tuple[str, str] | None, float | None] | None:
    """Why ``key`` collides with ``other`` as ``(reason, voices, overlap)``, or ``None`` if it does not.

    ``lines`` are a chorale's four voice fingerprints (SATB), ``None`` for a score that is not a
    four-voice chorale (never rendered, so only its name can collide). Every voice is compared with
    every voice, so a tune moved to another voice is caught too; the best pair is reported.
    ``min_overlap`` other than :data:`MIN_OVERLAP` is for reviewing near misses only.
    """
    if variant_base(key) == variant_base(other):
        return "variant", None, None
    best: tuple[float, int, int] = (0.0, 0, 0)
    for i, line in enumerate(lines or ()):
        for j, other_line in enumerate(other_lines or ()):
            overlap = line_overlap(tuple(line), tuple(other_line))
            if overlap > best[0]:
                best = (overlap, i, j)
    if best[0] < min_overlap:
        return None
    return "line", (PARTS[best[1]], PARTS[best[2]]), round(best[0], 3)


def find_leaks(splits: Mapping[str, str], fingerprints: Mapping[str, Sequence[Fingerprint] | None]) -> list[Leak]:
    """The chorales to leave out of train and valid, by the rules of the module docstring.

    ``splits`` maps every key to its hash split, ``fingerprints`` every key to its voice
    fingerprints (or ``None``). Returned in key order.
    """
    leaks: dict[str, Leak] = {}
    for target, victims in (("test", ("valid", "train")), ("valid", ("train",))):
        others = sorted(k for k, s in splits.items() if s == target and k not in leaks)
        for key in sorted(k for k, s in splits.items() if s in victims and k not in leaks):
            for other in others:
                found = collision(key, fingerprints.get(key), other, fingerprints.get(other))
                if found is not None:
                    leaks[key] = Leak(key, splits[key], other, target, *found)
                    break
    return [leaks[k] for k in sorted(leaks)]


def corpus_digest(keys: Iterable[str]) -> str:
    """A digest of the sorted corpus keys the leak file was computed over."""
    return hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()


def leaks_document(
    leaks: Iterable[Leak],
    fingerprints: Mapping[str, Sequence[Fingerprint] | None],
    music21_version: str,
) -> dict[str, Any]:
    """The JSON the script writes: the rule's parameters, the leaks, the line digests of every
    chorale involved (a test re-parses a few and compares) and a digest of the corpus key list."""
    leaks = list(leaks)
    involved = sorted({k for leak in leaks for k in (leak.key, leak.other)})
    return {
        "about": "chorales left out of train/valid (see stemkit.data.split_leaks); "
        "written by scripts/find_split_leaks.py, do not edit",
        "format": FORMAT_VERSION,
        "music21": music21_version,
        "ngram": NGRAM,
        "min_overlap": MIN_OVERLAP,
        "corpus_keys_sha1": corpus_digest(fingerprints),
        "excluded": [asdict(leak) for leak in leaks],
        "line_digests": {
            k: None if fingerprints.get(k) is None else [fingerprint_digest(tuple(f)) for f in fingerprints[k] or ()]
            for k in involved
        },
    }


@lru_cache(maxsize=1)
def load_leaks() -> dict[str, Any]:
    """The shipped leak file, parsed (cached for the process)."""
    text = resources.files("stemkit.data").joinpath(LEAKS_FILE).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    if document.get("format") != FORMAT_VERSION:
        raise ValueError(f"{LEAKS_FILE}: format {document.get('format')!r}, expected {FORMAT_VERSION}")
    return document


def shipped_leaks() -> list[Leak]:
    """The excluded chorales listed in the shipped file."""
    leaks = []
    for entry in load_leaks()["excluded"]:
        voices = entry.get("voices")
        leaks.append(Leak(**{**entry, "voices": tuple(voices) if voices else None}))
    return leaks


@lru_cache(maxsize=1)
def excluded_keys() -> frozenset[str]:
    """Keys of the chorales that belong to no split (see the module docstring for why)."""
    return frozenset(leak.key for leak in shipped_leaks())


def voice_fingerprints(voices: Sequence[Sequence[Pitched]] | None) -> list[Fingerprint] | None:
    """:func:`line_fingerprint` of each voice, or ``None`` for a score that is not a chorale."""
    return None if voices is None else [line_fingerprint(v) for v in voices]
