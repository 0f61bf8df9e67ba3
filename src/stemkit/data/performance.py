"""Performance and rendering styles: how a generated chorale is played, and in what room.

Why: a separator trained on one narrow way of playing learns that way, not the instruments. The
shipped model lost 2.2 dB of cSDR when the *same* chorales were played by another performance model
with the same soundfont, while the ideal ratio mask lost 0.9 dB. So the generator draws every factor
a real performance varies — tempo and rubato, dynamics (per-voice level, per-note spread, hairpins,
accents), articulation from staccato to overlapping legato, timing, tuning — and every factor of the
recording — FluidSynth's reverb and chorus, a simulated room (pyroomacoustics), EQ (pedalboard), the
balance between the parts, the soundfont of each part — from ranges set by a named style. Every drawn
value goes into the track's metadata.yaml, and a track is a pure function of its seed.

Styles:

- ``plain``: the original generator (fixed ranges, no effects), kept so existing datasets and the
  demo reproduce byte for byte; drawn by :func:`stemkit.data.chorales.perform`.
- ``varied``: the training distribution — wide ranges for everything, effects on at random.
- ``studio``: ``varied``'s playing (tempo, rubato, dynamics, accents, articulation, timing) recorded
  dry: no detuning, balance, reverb, chorus, room or EQ. Why: every factor it varies is written in the
  MIDI, so it is what a MIDI → audio synthesizer learns from — a model cannot know a room or a detune
  its notes do not say, and would learn them as noise.
- ``recital``: a held-out setting for robustness tests, never for training: slow, strongly rubato,
  overlapping legato with deep hairpins, in an algorithmic hall (pedalboard's reverb, an engine the
  training styles never use). A model that only learned ``varied``'s ranges meets it here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stemkit.data.chorales import ScoreNote, timed_note
from stemkit.errors import StemkitError
from stemkit.midi.notes import Note

Span = tuple[float, float]


@dataclass(frozen=True)
class PerformanceStyle:
    """Ranges each factor is drawn from (uniformly) per track, per voice or per note."""

    name: str
    tempo: Span = (60.0, 96.0)  #: quarter notes per minute, per track
    rubato: Span = (0.0, 0.0)  #: depth of the slow tempo wave (fraction of the tempo), per track
    velocity: Span = (62.0, 92.0)  #: base velocity, per voice
    velocity_spread: Span = (5.0, 5.0)  #: σ of the per-note velocity, per track
    hairpin: Span = (0.0, 0.0)  #: largest crescendo/diminuendo in velocity units over a phrase, per track
    accents: Span = (0.0, 0.0)  #: share of notes accented (+10..20 velocity), per track
    legato: Span = (0.85, 0.97)  #: sounding share of the written length (> 1 overlaps the next note), per track
    legato_spread: float = 0.06  #: per-note spread around the track's legato
    timing: Span = (0.008, 0.008)  #: σ of onset timing in seconds, per track
    detune_cents: float = 0.0  #: largest |detune| of a voice
    balance_db: float = 0.0  #: largest |level offset| of a part against the others
    reverb: float = 0.0  #: probability of FluidSynth's reverb on a track
    chorus: float = 0.0  #: probability of FluidSynth's chorus on a track
    room: float = 0.0  #: probability of a simulated room (image-source RIR per part)
    eq: float = 0.0  #: probability of a random EQ on each part
    hall: float = 0.0  #: probability of pedalboard's algorithmic hall reverb on the track
    notes: list[str] = field(default_factory=list)


STYLES: dict[str, PerformanceStyle] = {
    "plain": PerformanceStyle("plain"),
    "varied": PerformanceStyle(
        "varied", tempo=(50.0, 112.0), rubato=(0.0, 0.12), velocity=(40.0, 112.0), velocity_spread=(2.0, 12.0),
        hairpin=(0.0, 25.0), accents=(0.0, 0.15), legato=(0.45, 1.06), timing=(0.0, 0.025), detune_cents=12.0,
        balance_db=6.0, reverb=0.5, chorus=0.3, room=0.5, eq=0.7),
    "studio": PerformanceStyle(
        "studio", tempo=(50.0, 112.0), rubato=(0.0, 0.12), velocity=(40.0, 112.0), velocity_spread=(2.0, 12.0),
        hairpin=(0.0, 25.0), accents=(0.0, 0.15), legato=(0.45, 1.06), timing=(0.0, 0.025)),
    "recital": PerformanceStyle(
        "recital", tempo=(46.0, 60.0), rubato=(0.14, 0.2), velocity=(50.0, 100.0), velocity_spread=(6.0, 10.0),
        hairpin=(25.0, 35.0), accents=(0.0, 0.05), legato=(1.02, 1.12), legato_spread=0.03, timing=(0.01, 0.02),
        detune_cents=6.0, balance_db=3.0, hall=1.0),
}


def get_style(name: str) -> PerformanceStyle:
    if name not in STYLES:
        raise StemkitError(f"unknown performance style {name!r}: choose one of {', '.join(STYLES)}")
    return STYLES[name]


def _draw(rng: np.random.Generator, span: Span) -> float:
    return float(rng.uniform(span[0], span[1])) if span[1] > span[0] else float(span[0])


@dataclass
class StyledPerformance:
    tempo: float
    voices: list[list[Note]]
    factors: dict[str, Any]  #: every drawn value, for metadata.yaml


def perform_styled(voices: list[list[ScoreNote]], rng: np.random.Generator, style: PerformanceStyle,
                   max_seconds: float | None = None) -> StyledPerformance:
    """Timed notes for score voices, every factor drawn from ``style`` with ``rng``.

    Time: a base tempo with a slow sine wave of depth ``rubato`` (period 6–16 quarters, so phrases
    push and pull), integrated exactly, plus breaths after fermatas. Dynamics: per-voice base, a
    hairpin per phrase (phrases end at fermatas; each rises or falls linearly by up to ``hairpin``),
    accents and per-note spread. Articulation: each note sounds ``legato ± spread`` of its written
    length, so notes may touch or overlap the next one of the same voice.
    """
    tempo = _draw(rng, style.tempo)
    rubato = _draw(rng, style.rubato)
    period = float(rng.uniform(6.0, 16.0))
    phase = float(rng.uniform(0.0, 2 * math.pi))
    spread = _draw(rng, style.velocity_spread)
    hairpin = _draw(rng, style.hairpin)
    accents = _draw(rng, style.accents)
    legato = _draw(rng, style.legato)
    timing = _draw(rng, style.timing)
    seconds_per_quarter = 60.0 / tempo
    fermata_ends = sorted({n.onset + n.duration for v in voices for n in v if n.fermata})
    breaths = rng.uniform(0.3, 1.0, size=len(fermata_ends)) * seconds_per_quarter
    # one hairpin per phrase, shared by the voices (a choir swells together): start and end offsets
    phrase_bounds = [0.0] + fermata_ends + [math.inf]
    swells = rng.uniform(-1.0, 1.0, size=(len(phrase_bounds) - 1, 2)) * hairpin / 2

    def to_seconds(q: float) -> float:
        # ∫ 1 / (1 + r·sin(2πx/P + φ)) dq ≈ q − r·∫ sin(...) for small r: exact enough, monotone for r < 1
        wave = rubato * period / (2 * math.pi) * (math.cos(phase) - math.cos(2 * math.pi * q / period + phase))
        extra = sum(b for end, b in zip(fermata_ends, breaths) if end <= q + 1e-9)
        return (q - wave) * seconds_per_quarter + extra

    def swell(q: float) -> float:
        for i, (start, end) in enumerate(zip(phrase_bounds, phrase_bounds[1:])):
            if start <= q < end:
                if math.isinf(end):
                    end = start + 8.0
                share = min(1.0, (q - start) / max(end - start, 1e-9))
                return float(swells[i, 0] + (swells[i, 1] - swells[i, 0]) * share)
        return 0.0

    bases, detunes, performed = [], [], []
    for voice in voices:
        base = _draw(rng, style.velocity)
        detune = float(rng.uniform(-style.detune_cents, style.detune_cents)) if style.detune_cents else 0.0
        bases.append(round(base, 2))
        detunes.append(round(detune, 2))
        notes = []
        for note in voice:
            start = to_seconds(note.onset) + float(rng.normal(0.0, timing)) if timing else to_seconds(note.onset)
            written_end = to_seconds(note.onset + note.duration - (1e-6 if note.fermata else 0.0))
            share = max(0.2, legato + float(rng.uniform(-style.legato_spread, style.legato_spread)))
            end = start + (written_end - start) * share
            start = max(0.0, start)
            velocity = base + swell(note.onset) + float(rng.normal(0.0, spread))
            if accents and rng.random() < accents:
                velocity += float(rng.uniform(10.0, 20.0))
            timed = timed_note(note.pitch, start, end, int(np.clip(round(velocity), 20, 127)), max_seconds)
            if timed is not None:
                notes.append(timed)
        performed.append(notes)
    factors = {"style": style.name, "tempo": round(tempo, 3), "rubato": round(rubato, 4), "rubato_period_quarters": round(period, 3),
               "velocity_base": bases, "velocity_spread": round(spread, 3), "hairpin": round(hairpin, 3),
               "accents": round(accents, 4), "legato": round(legato, 4), "timing_sigma": round(timing, 5),
               "detune_cents": detunes}
    return StyledPerformance(tempo, performed, factors)


def draw_rendering(style: PerformanceStyle, rng: np.random.Generator, parts: int, sample_rate: int) -> dict[str, Any]:
    """The recording's factors for one track: synth effects, room, EQ per part, balance, hall."""
    out: dict[str, Any] = {}
    if style.reverb and rng.random() < style.reverb:
        out["reverb"] = {"roomsize": round(float(rng.uniform(0.2, 0.9)), 3), "damping": round(float(rng.uniform(0.0, 0.6)), 3),
                         "width": round(float(rng.uniform(0.5, 1.0)), 3), "level": round(float(rng.uniform(0.1, 0.6)), 3)}
    if style.chorus and rng.random() < style.chorus:
        out["chorus"] = {"nr": int(rng.integers(2, 5)), "level": round(float(rng.uniform(0.5, 2.0)), 3),
                         "speed": round(float(rng.uniform(0.3, 1.0)), 3), "depth": round(float(rng.uniform(2.0, 8.0)), 3)}
    if style.room and rng.random() < style.room:
        size = [round(float(rng.uniform(4.0, 20.0)), 2), round(float(rng.uniform(3.0, 15.0)), 2), round(float(rng.uniform(2.5, 8.0)), 2)]
        # Sabine: RT60 = 0.161·V / (S·a) with absorption a ≤ 1, so a large room cannot be very dry
        volume, surface = size[0] * size[1] * size[2], 2 * (size[0] * size[1] + size[0] * size[2] + size[1] * size[2])
        shortest = 0.161 * volume / surface
        rt60 = float(rng.uniform(max(0.2, 1.25 * shortest), max(1.2, 1.5 * shortest)))
        out["room"] = {"size_m": size, "rt60_s": round(rt60, 3),
                       "mic": [round(float(rng.uniform(0.2, 0.8)) * s, 2) for s in size],
                       "sources": [[round(float(rng.uniform(0.1, 0.9)) * s, 2) for s in size] for _ in range(parts)]}
    if style.eq:
        nyquist = sample_rate / 2
        out["eq"] = [{"low_hz": round(float(rng.uniform(80, 300)), 1), "low_db": round(float(rng.uniform(-6, 6)), 2),
                      "high_hz": round(float(min(rng.uniform(2500, 7000), 0.8 * nyquist)), 1), "high_db": round(float(rng.uniform(-6, 6)), 2),
                      "peak_hz": round(float(rng.uniform(300, min(3000, 0.7 * nyquist))), 1), "peak_db": round(float(rng.uniform(-4, 4)), 2)}
                     if rng.random() < style.eq else None for _ in range(parts)]
    out["balance_db"] = [round(float(rng.uniform(-style.balance_db, style.balance_db)), 2) if style.balance_db else 0.0
                         for _ in range(parts)]
    if style.hall and rng.random() < style.hall:
        out["hall"] = {"room_size": round(float(rng.uniform(0.75, 0.95)), 3), "damping": round(float(rng.uniform(0.2, 0.5)), 3),
                       "wet_level": round(float(rng.uniform(0.25, 0.4)), 3), "width": 1.0}
    return out


def apply_recording(stems: list[np.ndarray], rendering: dict[str, Any], sample_rate: int) -> list[np.ndarray]:
    """Each part through its EQ, then the room (its own position) or the hall; lengths kept.

    Every step is linear and per part, so the mix of the processed parts is still the recording of
    the ensemble, and each processed part is the true target a separator should return.
    """
    out = []
    room_irs = _room_irs(rendering["room"], sample_rate) if "room" in rendering else None
    for i, stem in enumerate(stems):
        audio = stem.astype(np.float32)
        eq = (rendering.get("eq") or [None] * len(stems))[i]
        if eq:
            audio = _equalize(audio, eq, sample_rate)
        if room_irs is not None:
            from scipy.signal import fftconvolve

            audio = fftconvolve(audio, room_irs[i])[: len(stem)].astype(np.float32)
        if "hall" in rendering:
            audio = _hall(audio, rendering["hall"], sample_rate)
        out.append(audio.astype(np.float64))
    return out


def _equalize(audio: np.ndarray, eq: dict[str, float], sample_rate: int) -> np.ndarray:
    from pedalboard import HighShelfFilter, LowShelfFilter, Pedalboard, PeakFilter

    board = Pedalboard([LowShelfFilter(cutoff_frequency_hz=eq["low_hz"], gain_db=eq["low_db"]),
                        HighShelfFilter(cutoff_frequency_hz=eq["high_hz"], gain_db=eq["high_db"]),
                        PeakFilter(cutoff_frequency_hz=eq["peak_hz"], gain_db=eq["peak_db"], q=1.0)])
    return board(audio[None], sample_rate)[0]


def _hall(audio: np.ndarray, hall: dict[str, float], sample_rate: int) -> np.ndarray:
    from pedalboard import Pedalboard, Reverb

    board = Pedalboard([Reverb(room_size=hall["room_size"], damping=hall["damping"], wet_level=hall["wet_level"],
                               dry_level=1.0 - hall["wet_level"], width=hall["width"])])
    return board(audio[None], sample_rate, reset=True)[0]


def _room_irs(room: dict[str, Any], sample_rate: int) -> list[np.ndarray]:
    """One impulse response per part from a shoebox room (image sources, pyroomacoustics), each
    scaled so its direct path has unit gain: the room colours and smears, balance stays the mix's."""
    import pyroomacoustics as pra

    size, rt60 = room["size_m"], room["rt60_s"]
    absorption, max_order = pra.inverse_sabine(rt60, size)
    shoebox = pra.ShoeBox(size, fs=sample_rate, materials=pra.Material(absorption), max_order=min(int(max_order), 10))
    for position in room["sources"]:
        shoebox.add_source(position)
    shoebox.add_microphone(room["mic"])
    shoebox.compute_rir()
    irs = []
    for ir in shoebox.rir[0]:
        ir = np.asarray(ir, dtype=np.float64)
        irs.append((ir / max(float(np.max(np.abs(ir))), 1e-9)).astype(np.float32))
    return irs
