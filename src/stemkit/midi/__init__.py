"""MIDI notes, files and curves derived from them."""

from stemkit.midi.notes import Note, read_midi_tracks, write_midi

__all__ = ["Note", "read_midi_tracks", "write_midi"]
