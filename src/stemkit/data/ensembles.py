"""Instruments and ensembles of the chorale generator, after CocoChorales.

CocoChorales (Wu et al. 2022) renders Bach chorales with 13 orchestral instruments in four kinds of
ensemble. Each SATB voice is assigned an instrument; the random ensemble draws each voice's
instrument from a pool of instruments whose range suits that voice. Programs are General MIDI
(0-based), ranges are practical playing ranges in MIDI note numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARTS = ("soprano", "alto", "tenor", "bass")


@dataclass(frozen=True)
class Instrument:
    name: str  #: lower-case, underscores; used in file names (``0_violin.wav``)
    program: int  #: General MIDI program, 0-based
    low: int  #: lowest comfortable MIDI note
    high: int  #: highest comfortable MIDI note


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument("violin", 40, 55, 100),
        Instrument("viola", 41, 48, 88),
        Instrument("cello", 42, 36, 76),
        Instrument("double_bass", 43, 28, 67),
        Instrument("flute", 73, 60, 96),
        Instrument("oboe", 68, 58, 91),
        Instrument("clarinet", 71, 50, 91),
        Instrument("bassoon", 70, 34, 75),
        Instrument("trumpet", 56, 55, 82),
        Instrument("french_horn", 60, 41, 77),
        Instrument("tenor_trombone", 57, 40, 72),
        Instrument("bass_trombone", 57, 34, 67),
        Instrument("tuba", 58, 28, 58),
    )
}

ENSEMBLES: dict[str, tuple[str, str, str, str]] = {
    "string": ("violin", "violin", "viola", "cello"),
    "brass": ("trumpet", "french_horn", "tenor_trombone", "tuba"),
    "woodwind": ("flute", "oboe", "clarinet", "bassoon"),
}

#: Per-voice pools for the random ensemble: every instrument whose range covers that voice's tessitura.
RANDOM_POOLS: dict[str, tuple[str, ...]] = {
    "soprano": ("violin", "flute", "oboe", "clarinet", "trumpet"),
    "alto": ("violin", "viola", "oboe", "clarinet", "trumpet", "french_horn"),
    "tenor": ("viola", "cello", "clarinet", "bassoon", "french_horn", "tenor_trombone"),
    "bass": ("cello", "double_bass", "bassoon", "bass_trombone", "tuba"),
}

ENSEMBLE_CHOICES = (*ENSEMBLES, "random")


def choose_instruments(ensemble: str, rng: np.random.Generator) -> list[Instrument]:
    """The four instruments (SATB order) for one track of ``ensemble``."""
    if ensemble in ENSEMBLES:
        return [INSTRUMENTS[name] for name in ENSEMBLES[ensemble]]
    if ensemble == "random":
        return [INSTRUMENTS[str(rng.choice(RANDOM_POOLS[part]))] for part in PARTS]
    raise ValueError(f"unknown ensemble {ensemble!r}; choose one of {', '.join(ENSEMBLE_CHOICES)}")


def fit_to_range(pitches: list[int], instrument: Instrument) -> list[int]:
    """Move a voice by whole octaves into ``instrument``'s range.

    First the whole voice moves by the octave shift that puts the most notes in range (ties: the
    smallest shift), so the line keeps its shape; then any note still outside moves alone by octaves.
    """
    if not pitches:
        return []
    best_shift, best_inside = 0, -1
    for shift in sorted(range(-48, 49, 12), key=abs):
        inside = sum(instrument.low <= p + shift <= instrument.high for p in pitches)
        if inside > best_inside:
            best_shift, best_inside = shift, inside
    moved = []
    for p in pitches:
        q = p + best_shift
        while q < instrument.low:
            q += 12
        while q > instrument.high:
            q -= 12
        moved.append(q)
    return moved
