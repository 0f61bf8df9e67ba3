"""MT3-style note tokens: segments, ties, and round trips through tokens and MIDI files."""

from __future__ import annotations

import random

import pytest

from stemkit.midi.notes import MidiTrack, Note, read_midi, write_midi
from stemkit.midi.tokens import EOS, TIE_END, NoteVocabulary, decode_piece, encode_piece, note_spans

VOCAB = NoteVocabulary()


def _grid(tracks: list[MidiTrack]) -> set[tuple]:
    """Every note as (drum, program, pitch, onset step, offset step): what the tokens keep."""
    out = set()
    for t in tracks:
        for n in t.notes:
            on = round(n.start * 100)
            out.add((t.is_drum, 0 if t.is_drum else t.program, n.pitch, on, on + 1 if t.is_drum else max(on + 1, round(n.end * 100))))
    return out


def _random_piece(seed: int, seconds: float = 14.0) -> list[MidiTrack]:
    """Three programs and a drum track, notes anywhere (across segment boundaries too, some very long, some
    shorter than a step), no two overlapping on the same key of the same program."""
    rng = random.Random(seed)
    tracks = []
    for program in (0, 40, 73):
        notes, free = [], {}
        for _ in range(60):
            pitch = rng.randint(40, 90)
            start = round(rng.uniform(0, seconds), 3)
            if start < free.get(pitch, 0.0):
                continue
            length = rng.choice([0.004, 0.05, 0.3, 1.0, 6.0])
            notes.append(Note(pitch, start, start + length, rng.randint(30, 120)))
            free[pitch] = start + length + 0.02
        tracks.append(MidiTrack(f"p{program}", program, notes))
    hits = [Note(rng.choice([36, 38, 42]), round(rng.uniform(0, seconds), 2), 0, 100) for _ in range(30)]
    hits = [Note(n.pitch, n.start, n.start + 0.1, 100) for n in hits]
    tracks.append(MidiTrack("drums", 0, hits, is_drum=True))
    return tracks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tokens_decode_to_the_notes_on_the_10_ms_grid(seed):
    piece = _random_piece(seed)
    encoded = encode_piece(piece)
    assert encoded.cut == 0
    assert len(encoded.segments) == 3 or len(encoded.segments) == 4  # 14 s (+ long tails) in 5.12-s segments
    assert all(s[-1] == EOS and TIE_END in s and len(s) <= VOCAB.max_tokens for s in encoded.segments)
    assert all(0 <= t < VOCAB.size for s in encoded.segments for t in s)
    assert _grid(decode_piece(encoded.segments)) == _grid(piece)


def test_tokens_to_midi_to_tokens_round_trips(tmp_path):
    piece = _random_piece(3)
    first = encode_piece(piece).segments
    path = write_midi(tmp_path / "piece.mid", decode_piece(first))
    tracks, _ = read_midi(path, drums=True)
    assert encode_piece(tracks).segments == first


def test_a_note_held_across_a_boundary_is_in_the_next_segments_tie_section_and_a_segment_decodes_alone():
    held = MidiTrack("violin", 40, [Note(60, 4.0, 7.0), Note(64, 5.12, 5.5)])
    first, second = encode_piece([held]).segments
    tie = second[: second.index(TIE_END)]
    assert [VOCAB.describe(t) for t in tie] == ["PROGRAM_40", "PITCH_60"]
    # the note that starts exactly on the boundary is an onset of the second segment, not a tie
    assert VOCAB.pitch(64) in second[second.index(TIE_END):]
    alone = decode_piece([second])
    assert {(n.pitch, round(n.start, 2), round(n.end, 2)) for n in alone[0].notes} == {(60, 0.0, 1.88), (64, 0.0, 0.38)}


def test_a_note_ending_on_the_boundary_ends_there_without_an_event():
    piece = [MidiTrack("flute", 73, [Note(70, 1.0, 5.12), Note(71, 6.0, 6.5)])]
    first, second = encode_piece(piece).segments
    assert TIE_END == second[0]  # nothing tied
    assert _grid(decode_piece([first, second])) == _grid(piece)


def test_state_tokens_are_written_only_when_they_change():
    chord = MidiTrack("piano", 0, [Note(60, 0.5, 1.0), Note(64, 0.5, 1.0), Note(67, 0.5, 1.0)])
    tokens = encode_piece([chord]).segments[0]
    names = [VOCAB.describe(t) for t in tokens]
    assert names == ["TIE_END", "TIME_50", "PROGRAM_0", "VELOCITY_1", "PITCH_60", "PITCH_64", "PITCH_67",
                     "TIME_100", "VELOCITY_0", "PITCH_60", "PITCH_64", "PITCH_67", "EOS"]


def test_dense_segments_are_cut_at_max_tokens_and_counted():
    vocab = NoteVocabulary(max_tokens=32)
    dense = MidiTrack("piano", 0, [Note(30 + i % 60, i * 0.01, i * 0.01 + 0.5) for i in range(200)])
    encoded = encode_piece([dense], vocab)
    assert encoded.cut >= 1 and all(len(s) <= 32 and s[-1] == EOS for s in encoded.segments)


def test_out_of_range_values_are_refused():
    with pytest.raises(ValueError):
        VOCAB.pitch(128)
    with pytest.raises(ValueError):
        VOCAB.time(VOCAB.segment_steps)


@pytest.mark.parametrize("seed", [0, 1])
def test_note_spans_place_each_segments_notes_where_its_decoding_puts_them(seed):
    """Every note a segment decodes to, read alone, is the span of exactly one of its tokens — a PITCH (or
    DRUM) token — with the same program, pitch, start and end; every other token has no span."""
    for segment in encode_piece(_random_piece(seed)).segments:
        spans = note_spans(segment)
        assert len(spans) == len(segment)
        from_spans = set()
        for token, (start, end) in zip(segment, spans):
            if end == start:
                continue
            name = VOCAB.describe(token)
            assert name.startswith(("PITCH_", "DRUM_")) and 0 <= start < end <= VOCAB.segment_steps
            from_spans.add((name.startswith("DRUM_"), int(name.split("_")[1]), start, end))
        decoded = {(drum, pitch, on, off) for drum, _, pitch, on, off in _grid(decode_piece([segment]))}
        assert from_spans == decoded


def test_a_held_note_spans_from_the_segments_start_and_a_note_off_token_has_no_span():
    held = MidiTrack("violin", 40, [Note(60, 4.0, 7.0), Note(64, 5.62, 6.0)])
    second = encode_piece([held]).segments[1]
    named = [(VOCAB.describe(t), span) for t, span in zip(second, note_spans(second))]
    assert named[1] == ("PITCH_60", (0, 188))  # tied: from the start to its note-off at 1.88 s
    assert ("PITCH_64", (50, 88)) in named
    assert [span for name, span in named if name == "PITCH_64"] == [(50, 88), (0, 0)]  # its note-off token: none
