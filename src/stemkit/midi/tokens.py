"""Note event tokens in the style of MT3 (Gardner et al. 2022), the input of spectrogram diffusion.

A piece is cut into segments of ``segment_seconds`` (5.12 s: 256 mel frames at 50 frames/s) and each
segment becomes one token sequence:

    [tie section: PROGRAM p, PITCH k ... for every note still sounding at the segment's start] TIE_END
    [events, in time order: TIME t (steps since the segment's start, when it changes),
     PROGRAM p / VELOCITY on|off (only when they change), PITCH k — or DRUM k for a drum hit] EOS

Why this codec and not one of MidiTok's: the model reads a fixed stretch of *audio time* per segment,
so times are absolute seconds on a 10 ms grid within the segment (MidiTok counts in beats), and a note
held across a boundary must be visible to the next segment on its own (the tie section; MidiTok has
no segmentation). Notes come from :mod:`stemkit.midi.notes` (pretty_midi), like every MIDI in the
project. Velocity is on/off only, as in the paper (``NUM_VELOCITY_BINS = 1``).

Decoding is exact on the grid: ``decode_piece(encode_piece(tracks))`` gives back the notes with times
rounded to 10 ms (tested), and a segment decodes on its own (its tied notes start at its start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pretty_midi

from stemkit.midi.notes import MidiTrack, Note

PAD, EOS, TIE_END = 0, 1, 2


@dataclass(frozen=True)
class NoteVocabulary:
    """Token ids: PAD, EOS, TIE_END, then TIME 1..max_time_steps, VELOCITY off/on, PITCH, DRUM, PROGRAM (128 each)."""

    steps_per_second: int = 100
    segment_seconds: float = 5.12
    max_tokens: int = 2048  #: longer segments are cut (and end with EOS); :func:`encode_piece` counts them

    @property
    def segment_steps(self) -> int:
        return round(self.segment_seconds * self.steps_per_second)

    @property
    def max_time_steps(self) -> int:
        return self.segment_steps - 1

    @property
    def time_base(self) -> int:
        return 3

    @property
    def velocity_base(self) -> int:
        return self.time_base + self.max_time_steps

    @property
    def pitch_base(self) -> int:
        return self.velocity_base + 2

    @property
    def drum_base(self) -> int:
        return self.pitch_base + 128

    @property
    def program_base(self) -> int:
        return self.drum_base + 128

    @property
    def size(self) -> int:
        return self.program_base + 128

    def time(self, step: int) -> int:
        if not 1 <= step <= self.max_time_steps:
            raise ValueError(f"time step {step} outside 1..{self.max_time_steps}")
        return self.time_base + step - 1

    def velocity(self, on: bool) -> int:
        return self.velocity_base + int(on)

    def pitch(self, key: int) -> int:
        return self.pitch_base + _midi_range(key)

    def drum(self, key: int) -> int:
        return self.drum_base + _midi_range(key)

    def program(self, program: int) -> int:
        return self.program_base + _midi_range(program)

    def describe(self, token: int) -> str:
        """A readable name (``TIME_12``, ``PROGRAM_40``, ...), for debugging and error messages."""
        for name, base, count in (("TIME", self.time_base, self.max_time_steps), ("VELOCITY", self.velocity_base, 2),
                                  ("PITCH", self.pitch_base, 128), ("DRUM", self.drum_base, 128),
                                  ("PROGRAM", self.program_base, 128)):
            if base <= token < base + count:
                return f"{name}_{token - base + (1 if name == 'TIME' else 0)}"
        return {PAD: "PAD", EOS: "EOS", TIE_END: "TIE_END"}.get(token, f"INVALID_{token}")


def _midi_range(value: int) -> int:
    if not 0 <= int(value) <= 127:
        raise ValueError(f"MIDI value {value} outside 0..127")
    return int(value)


@dataclass(frozen=True)
class _GridNote:
    program: int
    is_drum: bool
    pitch: int
    on: int  #: steps
    off: int  #: steps (> on)
    velocity: int


def _grid_notes(tracks: list[MidiTrack], steps_per_second: int) -> list[_GridNote]:
    """Every note on the 10 ms grid; a note shorter than a step lasts one step, and a note that starts while
    the same key of the same program still sounds ends the earlier one (MIDI cannot hold both)."""
    notes = []
    for track in tracks:
        drum = bool(getattr(track, "is_drum", False))
        for n in track.notes:
            on = round(n.start * steps_per_second)
            off = on + 1 if drum else max(on + 1, round(n.end * steps_per_second))
            notes.append(_GridNote(0 if drum else int(track.program), drum, int(n.pitch), on, off, int(n.velocity)))
    notes.sort(key=lambda n: (n.is_drum, n.program, n.pitch, n.on, n.off))
    fixed = []
    for i, note in enumerate(notes):
        nxt = notes[i + 1] if i + 1 < len(notes) else None
        if nxt is not None and not note.is_drum and (nxt.is_drum, nxt.program, nxt.pitch) == (False, note.program, note.pitch) \
                and nxt.on < note.off:
            if nxt.on == note.on:
                continue  # the same key struck twice at once: one note
            note = _GridNote(note.program, False, note.pitch, note.on, nxt.on, note.velocity)
        fixed.append(note)
    return fixed


def encode_segment(notes: list[_GridNote], start: int, vocab: NoteVocabulary) -> tuple[list[int], bool]:
    """The tokens of the segment starting at step ``start`` and whether it was cut at ``max_tokens``."""
    end = start + vocab.segment_steps
    tied = sorted((n.program, n.pitch) for n in notes if not n.is_drum and n.on < start < n.off)
    events = []  # (time, order, program, drum, pitch, on): offs before ons at the same step
    for n in notes:
        if start <= n.on < end:
            events.append((n.on, 1, n.program, n.is_drum, n.pitch, True))
        if not n.is_drum and start < n.off < end:  # a note ending on the boundary is closed by the next tie section
            events.append((n.off, 0, n.program, False, n.pitch, False))
    events.sort(key=lambda e: (e[0], e[1], e[3], e[2], e[4]))

    tokens: list[int] = []
    program = None
    for p, key in tied:
        if p != program:
            tokens.append(vocab.program(p))
            program = p
        tokens.append(vocab.pitch(key))
    tokens.append(TIE_END)
    now, program, velocity = start, None, None
    for time, _, p, drum, key, on in events:
        if time != now:
            tokens.append(vocab.time(time - start))
            now = time
        if drum:
            tokens.append(vocab.drum(key))
            continue
        if p != program:
            tokens.append(vocab.program(p))
            program = p
        if on != velocity:
            tokens.append(vocab.velocity(on))
            velocity = on
        tokens.append(vocab.pitch(key))
    cut = len(tokens) + 1 > vocab.max_tokens
    if cut:
        tokens = tokens[: vocab.max_tokens - 1]
    return tokens + [EOS], cut


@dataclass(frozen=True)
class _Event:
    """One note event of a segment's tokens: ``kind`` is ``tie`` (held from before, at step 0), ``on``, ``off``
    or ``drum``; ``index`` is the PITCH (or DRUM) token's position in the sequence."""

    kind: str
    index: int
    program: int
    pitch: int
    step: int  #: steps since the segment's start


def _segment_events(tokens: list[int], vocab: NoteVocabulary) -> list[_Event]:
    """The events of one segment's tokens in order: its tie section first, then its timed events.

    Why one reader: decoding to notes (:func:`decode_piece`) and placing notes on the frames they sound in
    (:func:`note_spans`) must read the codec the same way, so both walk these events."""
    events: list[_Event] = []
    position, program = 0, None
    while position < len(tokens) and tokens[position] not in (TIE_END, EOS):
        token = tokens[position]
        if vocab.program_base <= token < vocab.size:
            program = token - vocab.program_base
        elif vocab.pitch_base <= token < vocab.drum_base and program is not None:
            events.append(_Event("tie", position, program, token - vocab.pitch_base, 0))
        position += 1
    now, program, velocity = 0, None, True
    for index in range(position + 1, len(tokens)):
        token = tokens[index]
        if token == EOS:
            break
        if vocab.time_base <= token < vocab.velocity_base:
            now = token - vocab.time_base + 1
        elif vocab.program_base <= token < vocab.size:
            program = token - vocab.program_base
        elif vocab.velocity_base <= token < vocab.pitch_base:
            velocity = token == vocab.velocity(True)
        elif vocab.drum_base <= token < vocab.program_base:
            events.append(_Event("drum", index, 0, token - vocab.drum_base, now))
        elif vocab.pitch_base <= token < vocab.drum_base and program is not None:
            events.append(_Event("on" if velocity else "off", index, program, token - vocab.pitch_base, now))
    return events


def note_spans(tokens: list[int], vocab: NoteVocabulary | None = None) -> list[tuple[int, int]]:
    """For each token of one segment, the steps ``[start, end)`` during which the note it starts sounds —
    ``(0, 0)`` for every token that starts no note (times, programs, note-offs, padding).

    A tied PITCH token's note sounds from the segment's start, a note-on's from its time; each lasts until
    its note-off, a new onset of the same key, or the segment's end; a drum hit lasts one step. Read alone,
    exactly as :func:`decode_piece` reads a segment. Why: a model can then hand each frame the notes
    sounding in it (``note_spans`` in :class:`~stemkit.synthesis.specdiff.SpecDiffConfig`)."""
    vocab = vocab or NoteVocabulary()
    spans = [(0, 0)] * len(tokens)
    sounding: dict[tuple[int, int], tuple[int, int]] = {}  # (program, pitch) → (token index, onset step)

    def close(key: tuple[int, int], at: int) -> None:
        index, onset = sounding.pop(key)
        if at > onset:
            spans[index] = (onset, at)

    for event in _segment_events(tokens, vocab):
        key = (event.program, event.pitch)
        if event.kind == "drum":
            spans[event.index] = (event.step, event.step + 1)
            continue
        if key in sounding:
            close(key, event.step)
        if event.kind in ("tie", "on"):
            sounding[key] = (event.index, event.step)
    for key in list(sounding):
        close(key, vocab.segment_steps)
    return spans


@dataclass
class _Decoder:
    """Decoding state carried from segment to segment: the notes still sounding, and those finished."""

    vocab: NoteVocabulary
    open: dict[tuple[int, int], int] = field(default_factory=dict)  #: (program, pitch) → onset step
    done: list[_GridNote] = field(default_factory=list)

    def close(self, key: tuple[int, int], at: int) -> None:
        on = self.open.pop(key)
        if at > on:
            self.done.append(_GridNote(key[0], False, key[1], on, at, 100))

    def segment(self, tokens: list[int], start: int) -> None:
        events = _segment_events(tokens, self.vocab)
        tied = {(e.program, e.pitch) for e in events if e.kind == "tie"}
        for key in [k for k in self.open if k not in tied]:
            self.close(key, start)  # not carried over: it ended at the boundary
        for key in tied - set(self.open):
            self.open[key] = start  # a segment read on its own: its tied notes start here
        for event in events:
            key, now = (event.program, event.pitch), start + event.step
            if event.kind == "drum":
                self.done.append(_GridNote(0, True, event.pitch, now, now + 1, 100))
            elif event.kind != "tie":
                if key in self.open:
                    self.close(key, now)
                if event.kind == "on":
                    self.open[key] = now

    def finish(self, end: int) -> list[_GridNote]:
        for key in list(self.open):
            self.close(key, end)
        return self.done


@dataclass
class EncodedPiece:
    segments: list[list[int]]
    cut: int  #: segments cut at ``max_tokens``


def encode_piece(tracks: list[MidiTrack], vocab: NoteVocabulary | None = None, seconds: float | None = None) -> EncodedPiece:
    """Every segment of a piece, from 0 s to ``seconds`` (default: the last note's end)."""
    vocab = vocab or NoteVocabulary()
    notes = _grid_notes(tracks, vocab.steps_per_second)
    last = max((n.off for n in notes), default=0) if seconds is None else round(seconds * vocab.steps_per_second)
    count = max(1, math.ceil(last / vocab.segment_steps))
    segments, cut = [], 0
    for k in range(count):
        tokens, was_cut = encode_segment(notes, k * vocab.segment_steps, vocab)
        segments.append(tokens)
        cut += was_cut
    return EncodedPiece(segments, cut)


def decode_piece(segments: list[list[int]], vocab: NoteVocabulary | None = None) -> list[MidiTrack]:
    """The notes of consecutive segments as one track per program (and one for drums), times in seconds;
    notes still sounding at the end close with the last segment."""
    vocab = vocab or NoteVocabulary()
    decoder = _Decoder(vocab)
    for k, tokens in enumerate(segments):
        decoder.segment(list(tokens), k * vocab.segment_steps)
    notes = decoder.finish(len(segments) * vocab.segment_steps)
    step = 1.0 / vocab.steps_per_second
    tracks: dict[tuple[bool, int], list[Note]] = {}
    for n in notes:
        tracks.setdefault((n.is_drum, n.program), []).append(Note(n.pitch, n.on * step, n.off * step, n.velocity))
    out = []
    for (drum, program), found in sorted(tracks.items()):
        name = "Drums" if drum else pretty_midi.program_to_instrument_name(program)
        out.append(MidiTrack(name, program, sorted(found, key=lambda n: (n.start, n.pitch)), is_drum=drum))
    return out
