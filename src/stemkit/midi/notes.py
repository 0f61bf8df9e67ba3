"""Notes in seconds and MIDI files made of them (pretty_midi underneath).

Everything downstream (rendering, pitch curves, note F1) works on plain ``Note`` lists in seconds,
so the score's musical time is resolved exactly once, when a performance is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pretty_midi

from stemkit.atomic import atomic_output
from stemkit.errors import StemkitError


@dataclass(frozen=True)
class Note:
    pitch: int
    start: float  #: seconds
    end: float  #: seconds
    velocity: int = 80


@dataclass(frozen=True)
class MidiTrack:
    name: str
    program: int
    notes: list[Note]
    is_drum: bool = False


def write_midi(path: str | os.PathLike, tracks: list[MidiTrack], tempo: float = 120.0) -> Path:
    """Write ``tracks`` (one MIDI instrument each) to ``path`` atomically.

    ``tempo`` only sets the file's tick grid and its tempo event; note times are absolute seconds.
    """
    path = Path(path)
    midi = pretty_midi.PrettyMIDI(initial_tempo=float(tempo))
    for track in tracks:
        inst = pretty_midi.Instrument(program=int(track.program), is_drum=track.is_drum, name=track.name)
        inst.notes = [pretty_midi.Note(int(n.velocity), int(n.pitch), float(n.start), float(n.end)) for n in track.notes]
        midi.instruments.append(inst)
    with atomic_output(path) as tmp:
        midi.write(str(tmp))
    return path


def read_midi_tracks(path: str | os.PathLike) -> list[MidiTrack]:
    """The non-drum tracks of a MIDI file as ``MidiTrack`` lists; a clear error if it is not MIDI."""
    return read_midi(path)[0]


def read_midi(path: str | os.PathLike, drums: bool = False) -> tuple[list[MidiTrack], float]:
    """The tracks of a MIDI file (drum tracks only if ``drums``) and its length in seconds (its last event)."""
    path = Path(path)
    if not path.is_file():
        raise StemkitError(f"MIDI file not found: {path}")
    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception:
        raise StemkitError(f"{path} is not a readable MIDI file") from None
    tracks = []
    for inst in midi.instruments:
        if inst.is_drum and not drums:
            continue
        notes = sorted((Note(n.pitch, n.start, n.end, n.velocity) for n in inst.notes), key=lambda n: (n.start, n.pitch))
        tracks.append(MidiTrack(inst.name, inst.program, notes, is_drum=inst.is_drum))
    return tracks, float(midi.get_end_time())
