"""Readers for five public transcription datasets in their real on-disk layouts: audio plus notes.

Why these five: spectrogram diffusion (Hawthorne et al. 2022, "Multi-instrument music synthesis with
spectrogram diffusion") learns MIDI notes -> audio from exactly the corpora MT3 transcribes — Slakh2100,
MAESTRO, MusicNet, URMP and GuitarSet — because together they pair real or rendered audio with aligned
notes for many instruments. Each ships its notes differently (per-stem MIDI, one MIDI per piece,
sample-indexed CSV, Hz text files, JAMS), so every reader turns its dataset into the same thing: a list of
:class:`Recording` (the full mix, its split) whose :meth:`Recording.tracks` gives ``MidiTrack`` lists in
seconds, one per instrument, read only when asked so that listing thousands of recordings stays cheap.

The project's own generated chorales are read too, as whole mixes (``chorales``) and as each part alone
(``chorale_stems``).

Datasets without an official validation or test split get one from a hash of a stable key (never a
seeded shuffle), so everyone gets the same split whatever subset of the files they hold.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pretty_midi
import yaml

from stemkit.audio.io import audio_info
from stemkit.errors import StemkitError, StemkitWarning
from stemkit.midi.notes import MidiTrack, Note, read_midi

SPLITS = ("train", "valid", "test")
DATASET_NAMES = ("chorales", "chorale_stems", "slakh", "maestro", "musicnet", "urmp", "guitarset")


@dataclass(frozen=True)
class Recording:
    """One recording of a dataset: its full mix, its split, and a lazy reader of its notes.

    ``loader`` is a :func:`functools.partial` of a module-level function, so a recording pickles into
    DataLoader workers; it is left out of equality, so two listings of one dataset compare equal.
    """

    dataset: str
    name: str
    split: str  #: "train", "valid" or "test"
    audio: Path  #: the full mix
    sample_rate: int | None  #: read from the audio file's header
    loader: Callable[[], list[MidiTrack]] = field(repr=False, compare=False)

    def tracks(self) -> list[MidiTrack]:
        """The recording's notes, one ``MidiTrack`` per instrument (drums with ``is_drum``), read now."""
        return self.loader()


Reader = Callable[[Path], list[Recording]]
#: dataset name -> reader of a dataset root; filled by :func:`dataset_reader`
READERS: dict[str, Reader] = {}


def dataset_reader(name: str) -> Callable[[Reader], Reader]:
    """Register a reader under ``name`` in :data:`READERS`, so :func:`find_recordings` can reach it."""

    def register(reader: Reader) -> Reader:
        READERS[name] = reader
        return reader

    return register


def find_recordings(dataset: str, root: str | Path, split: str | None = None) -> list[Recording]:
    """The recordings of ``dataset`` under ``root`` (of one ``split`` if given), sorted by name.

    Raises ``StemkitError`` with one line for an unknown dataset or split, or a ``root`` that does not
    hold that dataset in its published layout.
    """
    reader = READERS.get(dataset)
    if reader is None:
        raise StemkitError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASET_NAMES)}")
    if split is not None and split not in SPLITS:
        raise StemkitError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    recordings = reader(Path(root))
    if split is not None:
        recordings = [r for r in recordings if r.split == split]
    return sorted(recordings, key=lambda r: r.name)


# --- shared helpers ----------------------------------------------------------------------------


def hash_bucket(key: str) -> int:
    """``sha1(key)`` mod 100: a split that depends on the key alone, the same on every machine."""
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 100


def hash_split(key: str) -> str:
    """Buckets 0-9 test, 10-19 valid, the rest train: about 10/10/80 for datasets without a split."""
    bucket = hash_bucket(key)
    return "test" if bucket < 10 else "valid" if bucket < 20 else "train"


def _require_folder(root: Path, title: str, expected: str) -> None:
    if not root.is_dir():
        raise StemkitError(f"{root} is not a folder (expected the {title} root, holding {expected})")


def _collect(root: Path, dataset: str, title: str, expected: str,
             entries: Iterable[tuple[str, str, Path, Callable[[], list[MidiTrack]]]]) -> list[Recording]:
    """Recordings from ``(name, split, audio, loader)`` entries, skipping (with one warning) those whose
    audio is missing — a partial download should still train — but refusing a root with none at all."""
    found: list[Recording] = []
    missing: list[Path] = []
    for name, split, audio, loader in entries:
        if not audio.is_file():
            missing.append(audio)
            continue
        found.append(Recording(dataset, name, split, audio, audio_info(audio).sample_rate, loader))
    if not found and not missing:
        raise StemkitError(f"{root} holds no {title} (expected {expected})")
    if not found:
        raise StemkitError(f"{root} holds {len(missing)} {title} but none of their audio (first missing: {missing[0]})")
    if missing:
        warnings.warn(f"{dataset}: skipped {len(missing)} recording(s) whose audio is missing under {root} "
                      f"(first: {missing[0]})", StemkitWarning, stacklevel=3)
    return found


def _note(pitch: float, start: float, end: float, velocity: int = 80) -> Note | None:
    """A ``Note`` with an integer MIDI pitch, or None for an annotation no MIDI note can hold
    (pitch outside 0..127, or no duration) — such rows exist in hand-made annotation files."""
    if not math.isfinite(pitch) or not 0 <= round(pitch) <= 127 or not end > start:
        return None
    return Note(int(round(pitch)), float(start), float(end), int(velocity))


def hz_to_midi(hz: float) -> float:
    """Fractional MIDI pitch of a frequency (A4 = 440 Hz = 69); -inf for a non-positive frequency."""
    return 69.0 + 12.0 * math.log2(hz / 440.0) if hz > 0 else -math.inf


def _sorted_notes(notes: Iterable[Note | None]) -> list[Note]:
    return sorted((n for n in notes if n is not None), key=lambda n: (n.start, n.pitch))


def _merged_notes(tracks: list[MidiTrack]) -> list[Note]:
    """Every note of ``tracks`` in one time-sorted list: a file's instruments read as one part."""
    return _sorted_notes(n for track in tracks for n in track.notes)


# --- Slakh2100 ---------------------------------------------------------------------------------

CHORALES_EXPECTED = "track folders from `stemkit data chorales` (mix.wav, mix.mid, stems_audio/, stems_MIDI/)"


@dataset_reader("chorales")
def read_chorales(root: Path) -> list[Recording]:
    """Chorales made by ``stemkit data chorales`` (CocoChorales layout): each track's ``mix.wav`` with the
    notes of ``mix.mid`` (one track per part, its General MIDI program). Split: the root's name when it is
    one (``data/varied/train``), else a hash of the track name; ``stemkit data chorales --split`` writes one
    split per folder, so the folder is the truth."""
    from stemkit.data.layout import list_tracks

    _require_folder(root, "chorale dataset", CHORALES_EXPECTED)
    split = root.name if root.name in SPLITS else None
    entries = [(t.name, split or hash_split(t.name), t.mix, functools.partial(_chorale_tracks, t.path / "mix.mid"))
               for t in list_tracks(root)]
    return _collect(root, "chorales", "chorale tracks", CHORALES_EXPECTED, entries)


def _chorale_tracks(midi: Path) -> list[MidiTrack]:
    return read_midi(midi)[0]


CHORALE_STEMS_EXPECTED = "track folders from `stemkit data chorales` (stems_audio/*.wav with stems_MIDI/*.mid)"


@dataset_reader("chorale_stems")
def read_chorale_stems(root: Path) -> list[Recording]:
    """Each *part* of the chorales made by ``stemkit data chorales`` as a recording of its own: its stem audio
    with its own MIDI (one instrument). Why: a synthesizer trained only on the four-part mixes never sees one
    instrument alone, yet renders single-instrument MIDI and is judged on each part rendered alone (issue 16);
    name the same folder under ``chorales`` and ``chorale_stems`` to train on both. Split as ``chorales`` (a
    track's parts stay in its split);
    stems without a MIDI file are skipped."""
    from stemkit.data.layout import list_stem_files

    _require_folder(root, "chorale dataset", CHORALE_STEMS_EXPECTED)
    split = root.name if root.name in SPLITS else None
    entries = [(stem.name, split or hash_split(stem.audio.parent.parent.name), stem.audio,
                functools.partial(_chorale_tracks, stem.midi)) for stem in list_stem_files(root) if stem.midi is not None]
    return _collect(root, "chorale_stems", "chorale stems", CHORALE_STEMS_EXPECTED, entries)


SLAKH_SPLITS = {"train": "train", "validation": "valid", "test": "test"}  #: "omitted" (duplicates) is left out
SLAKH_EXPECTED = "train/TrackNNNNN/metadata.yaml with mix.flac beside it"


@dataset_reader("slakh")
def read_slakh(root: Path) -> list[Recording]:
    """Slakh2100 (``slakh2100_flac_redux`` or the original): ``<root>/{train,validation,test,omitted}/
    TrackNNNNN/`` with ``mix.flac``, ``stems/SNN.flac``, ``MIDI/SNN.mid``, ``all_src.mid`` and
    ``metadata.yaml``.

    Split: the folder (``validation`` -> valid); ``omitted`` holds the redux release's duplicates and is
    skipped. Notes come from the per-stem MIDI files, not ``all_src.mid``, because only the stems whose
    ``audio_rendered`` is true are in the mix: a stem that was not rendered (or has no MIDI) is left out,
    so the notes describe exactly the audio. Program and drum flag come from ``metadata.yaml``.
    """
    _require_folder(root, "Slakh2100", SLAKH_EXPECTED)
    entries = []
    for folder, split in SLAKH_SPLITS.items():
        for metadata in sorted((root / folder).glob("Track*/metadata.yaml")):
            track_dir = metadata.parent
            entries.append((track_dir.name, split, _slakh_mix(track_dir), functools.partial(_slakh_tracks, track_dir)))
    return _collect(root, "slakh", "Slakh2100 tracks", SLAKH_EXPECTED, entries)


def _slakh_mix(track_dir: Path) -> Path:
    """``mix.flac`` as released, or the ``mix.wav`` of a copy converted to wav (a common resampling step)."""
    wav = track_dir / "mix.wav"
    return wav if wav.is_file() and not (track_dir / "mix.flac").is_file() else track_dir / "mix.flac"


def _slakh_tracks(track_dir: Path) -> list[MidiTrack]:
    """One track per rendered stem with a MIDI file, in stem order."""
    metadata_path = track_dir / "metadata.yaml"
    try:
        stems = (yaml.safe_load(metadata_path.read_text()) or {}).get("stems") or {}
    except yaml.YAMLError as exc:
        raise StemkitError(f"{metadata_path} is not readable YAML: {str(exc).splitlines()[0]}") from None
    tracks = []
    for stem_id, info in sorted(stems.items()):
        midi = track_dir / "MIDI" / f"{stem_id}.mid"
        if not info.get("audio_rendered", True) or not midi.is_file():
            continue
        is_drum = bool(info.get("is_drum", False))
        program = 0 if is_drum else _slakh_program(info, metadata_path, stem_id)
        tracks.append(MidiTrack(stem_id, program, _merged_notes(read_midi(midi, drums=True)[0]), is_drum=is_drum))
    return tracks


def _slakh_program(info: dict, metadata_path: Path, stem_id: str) -> int:
    """A pitched stem's General MIDI program (drum kits carry 128, which is no program at all)."""
    try:
        program = int(info["program_num"])
    except (KeyError, TypeError, ValueError):
        program = -1
    if not 0 <= program <= 127:
        raise StemkitError(f"{metadata_path}: stem {stem_id} has no program_num in 0..127 and is not a drum stem")
    return program


# --- MAESTRO -----------------------------------------------------------------------------------

MAESTRO_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
MAESTRO_EXPECTED = "maestro-v3.0.0.csv (or .json) with audio and MIDI in year folders"


@dataset_reader("maestro")
def read_maestro(root: Path) -> list[Recording]:
    """MAESTRO (v3, also v1/v2): ``<root>/maestro-vX.Y.Z.csv`` (columns canonical_composer,
    canonical_title, split, year, midi_filename, audio_filename, duration) or the ``.json`` that ships
    beside it, with ``YYYY/*.midi`` and ``YYYY/*.wav`` under ``<root>``.

    Split: the metadata's ``split`` column (``validation`` -> valid), which keeps every performance of
    a composition in one split. All notes are piano (program 0). The MIDI files' sustain pedal is not
    applied: notes end at key release, as the files have them.
    """
    _require_folder(root, "MAESTRO", MAESTRO_EXPECTED)
    entries = []
    for row in _maestro_rows(root):
        split = MAESTRO_SPLITS.get(row["split"])
        if split is None:
            raise StemkitError(f"MAESTRO metadata in {root} has unknown split {row['split']!r} "
                               f"(expected one of {', '.join(MAESTRO_SPLITS)})")
        audio = root / row["audio_filename"]
        entries.append((Path(row["audio_filename"]).stem, split, audio,
                        functools.partial(_maestro_tracks, root / row["midi_filename"])))
    return _collect(root, "maestro", "MAESTRO recordings", MAESTRO_EXPECTED, entries)


def _maestro_rows(root: Path) -> list[dict[str, str]]:
    """The metadata rows: the newest ``maestro-v*.csv``, else the newest ``maestro-v*.json``."""
    csvs = sorted(root.glob("maestro-v*.csv"))
    if csvs:
        with csvs[-1].open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    jsons = sorted(root.glob("maestro-v*.json"))
    if not jsons:
        return []
    try:
        data = json.loads(jsons[-1].read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StemkitError(f"{jsons[-1]} is not valid JSON: {exc}") from None
    return _json_rows(data)


def _json_rows(data: object) -> list[dict[str, str]]:
    """Rows from MAESTRO JSON: v1/v2 is a list of row objects, v3 is column-oriented
    (``{column: {row_index: value}}``, as pandas writes it)."""
    if isinstance(data, list):
        return [dict(row) for row in data]
    if isinstance(data, dict) and data:
        columns = {name: values for name, values in data.items() if isinstance(values, dict)}
        indices = sorted(next(iter(columns.values())), key=int) if columns else []
        return [{name: values[i] for name, values in columns.items()} for i in indices]
    return []


def _maestro_tracks(midi: Path) -> list[MidiTrack]:
    return [MidiTrack("piano", 0, _merged_notes(read_midi(midi)[0]))]


# --- MusicNet ----------------------------------------------------------------------------------

MUSICNET_LABEL_RATE = 44100  #: label times are sample indices at 44.1 kHz, whatever the audio's rate
MUSICNET_VALID_PERCENT = 10
MUSICNET_EXPECTED = "train_data/NNNN.wav and train_labels/NNNN.csv (and test_*)"


@dataset_reader("musicnet")
def read_musicnet(root: Path) -> list[Recording]:
    """MusicNet: ``<root>/{train,test}_data/NNNN.wav`` with ``<root>/{train,test}_labels/NNNN.csv``
    (columns start_time, end_time, instrument, note, start_beat, end_beat, note_value; times in samples
    at 44.1 kHz; instrument = General MIDI program numbered from 1).

    Split: test from ``test_data``; ``train_data`` is train except about 10% carved out as valid by a
    hash of the recording id (MusicNet ships no validation set). A recording without its label file is
    skipped. One track per instrument.
    """
    _require_folder(root, "MusicNet", MUSICNET_EXPECTED)
    entries = []
    for part in ("train", "test"):
        for audio in sorted((root / f"{part}_data").glob("*.wav")):
            labels = root / f"{part}_labels" / f"{audio.stem}.csv"
            if labels.is_file():
                split = "test" if part == "test" else _musicnet_train_split(audio.stem)
                entries.append((audio.stem, split, audio, functools.partial(_musicnet_tracks, labels)))
    return _collect(root, "musicnet", "MusicNet recordings", MUSICNET_EXPECTED, entries)


def _musicnet_train_split(recording_id: str) -> str:
    return "valid" if hash_bucket(f"musicnet/{recording_id}") < MUSICNET_VALID_PERCENT else "train"


def _musicnet_tracks(labels: Path) -> list[MidiTrack]:
    notes: dict[int, list[Note | None]] = defaultdict(list)
    with labels.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                program = int(row["instrument"]) - 1
                start, end = int(row["start_time"]) / MUSICNET_LABEL_RATE, int(row["end_time"]) / MUSICNET_LABEL_RATE
                notes[program].append(_note(int(row["note"]), start, end))
            except (KeyError, TypeError, ValueError):
                raise StemkitError(f"{labels}:{line} is not a MusicNet label row "
                                   "(expected start_time,end_time,instrument,note,... as integers)") from None
    return [MidiTrack(pretty_midi.program_to_instrument_name(p), p, _sorted_notes(notes[p])) for p in sorted(notes)]


# --- URMP --------------------------------------------------------------------------------------

#: URMP's instrument abbreviations as General MIDI programs (the saxophone's kind is not given: alto)
URMP_PROGRAMS = {abbr: pretty_midi.instrument_name_to_program(name) for abbr, name in {
    "vn": "Violin", "va": "Viola", "vc": "Cello", "db": "Contrabass", "fl": "Flute", "ob": "Oboe",
    "cl": "Clarinet", "sax": "Alto Sax", "bn": "Bassoon", "tpt": "Trumpet", "hn": "French Horn",
    "tbn": "Trombone", "tba": "Tuba"}.items()}
URMP_PIECE = re.compile(r"^(\d+)_([^_]+)_(.+)$")  #: NN_Title_inst1_inst2...
URMP_NOTES = re.compile(r"^Notes_(\d+)_([a-z]+)_")  #: Notes_K_inst_NN_Title.txt
URMP_EXPECTED = "Dataset/NN_Title_inst1_inst2/AuMix_*.wav and Notes_K_inst_*.txt"


@dataset_reader("urmp")
def read_urmp(root: Path) -> list[Recording]:
    """URMP: ``<root>/Dataset/NN_Title_inst1_inst2.../`` (``<root>`` may also be ``Dataset`` itself)
    with ``AuMix_NN_Title_....wav``, ``AuSep_K_inst_NN_Title.wav`` and ``Notes_K_inst_NN_Title.txt``;
    each notes line is ``onset_seconds  frequency_Hz  duration_seconds``.

    Split: URMP has none, so it is a hash of the piece's title, not its number — the title, because
    URMP records some compositions twice with other instruments (05/06 Entertainer, 17/18 Nocturne,
    19/20 Pavane...) and the same score must not be in train and test. One track per part, its
    program from the part's instrument abbreviation.
    """
    _require_folder(root, "URMP", URMP_EXPECTED)
    dataset = root / "Dataset" if (root / "Dataset").is_dir() else root
    entries = []
    for piece in sorted(p for p in dataset.iterdir() if p.is_dir()):
        match = URMP_PIECE.match(piece.name)
        if match is None or not any(piece.glob("Notes_*.txt")):
            continue
        mix = piece / f"AuMix_{piece.name}.wav"
        split = hash_split(f"urmp/{match.group(2)}")
        entries.append((piece.name, split, mix, functools.partial(_urmp_tracks, piece)))
    return _collect(root, "urmp", "URMP pieces", URMP_EXPECTED, entries)


def _urmp_tracks(piece: Path) -> list[MidiTrack]:
    parts = []
    for notes_file in piece.glob("Notes_*.txt"):
        match = URMP_NOTES.match(notes_file.name)
        if match is None:
            continue
        part, abbr = int(match.group(1)), match.group(2)
        if abbr not in URMP_PROGRAMS:
            raise StemkitError(f"{notes_file} names instrument {abbr!r}, not one of URMP's {', '.join(URMP_PROGRAMS)}")
        parts.append((part, MidiTrack(f"{abbr}{part}", URMP_PROGRAMS[abbr], _urmp_notes(notes_file))))
    return [track for _, track in sorted(parts, key=lambda p: p[0])]


def _urmp_notes(path: Path) -> list[Note]:
    notes = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            onset, hz, duration = (float(v) for v in line.split()[:3])
        except ValueError:
            raise StemkitError(f"{path}:{line_number} is not a URMP note line (expected onset, Hz, duration)") from None
        notes.append(_note(hz_to_midi(hz), onset, onset + duration))
    return _sorted_notes(notes)


# --- GuitarSet ---------------------------------------------------------------------------------

GUITARSET_PROGRAM = pretty_midi.instrument_name_to_program("Acoustic Guitar (steel)")
GUITARSET_EXPECTED = "annotation/*.jams and audio_mono-mic/*_mic.wav"


@dataset_reader("guitarset")
def read_guitarset(root: Path) -> list[Recording]:
    """GuitarSet: ``<root>/annotation/PP_StyleN-BPM-Key_{comp,solo}.jams`` with the microphone
    recording ``<root>/audio_mono-mic/PP_StyleN-BPM-Key_{comp,solo}_mic.wav``. Each JAMS holds six
    ``note_midi`` annotations (one per string, the string in ``annotation_metadata.data_source``) whose
    observations are time, duration and a fractional MIDI pitch.

    Split: GuitarSet has none; a hash of the take (player and lead sheet, ``PP_StyleN-BPM-Key``) keeps a
    comp and the solo played over it together. All strings form one acoustic-guitar track (program 25).
    """
    _require_folder(root, "GuitarSet", GUITARSET_EXPECTED)
    entries = []
    for jams in sorted((root / "annotation").glob("*.jams")):
        take = jams.stem.rsplit("_", 1)[0]
        audio = root / "audio_mono-mic" / f"{jams.stem}_mic.wav"
        entries.append((jams.stem, hash_split(f"guitarset/{take}"), audio, functools.partial(_guitarset_tracks, jams)))
    return _collect(root, "guitarset", "GuitarSet excerpts", GUITARSET_EXPECTED, entries)


def _guitarset_tracks(jams: Path) -> list[MidiTrack]:
    try:
        annotations = json.loads(jams.read_text()).get("annotations", [])
    except (json.JSONDecodeError, AttributeError):
        raise StemkitError(f"{jams} is not a JAMS (JSON) file") from None
    notes = [_note(value, time, time + duration)
             for annotation in annotations if annotation.get("namespace") == "note_midi"
             for time, duration, value in _jams_observations(annotation.get("data"))]
    return [MidiTrack("guitar", GUITARSET_PROGRAM, _sorted_notes(notes))]


def _jams_observations(data: object) -> list[tuple[float, float, float]]:
    """``(time, duration, value)`` of a JAMS annotation's data, which JAMS writes either as a list of
    observation objects (sparse namespaces such as note_midi) or as parallel columns (dense ones)."""
    if isinstance(data, dict):
        data = [dict(zip(("time", "duration", "value"), row))
                for row in zip(data.get("time", []), data.get("duration", []), data.get("value", []))]
    if not isinstance(data, list):
        return []
    return [(float(o["time"]), float(o["duration"]), float(o["value"]))
            for o in data if isinstance(o.get("value"), (int, float))]
