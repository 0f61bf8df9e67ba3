"""The five transcription-dataset readers on tiny fixtures built in each dataset's real layout.

Each fixture writes real (tiny) audio and annotation files where the published dataset has them, so a
reader that expects another folder, file name, column or unit fails here, not on a 100 GB download.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from stemkit.audio.io import save_audio
from stemkit.data.note_datasets import DATASET_NAMES, READERS, find_recordings, hash_split
from stemkit.errors import StemkitError, StemkitWarning
from stemkit.midi.notes import MidiTrack, Note, read_midi, write_midi


def _audio(path: Path, sample_rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_audio(path, np.zeros((1, 64)), sample_rate)


def _midi(path: Path, tracks: list[MidiTrack]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_midi(path, tracks)


def _notes(track: MidiTrack) -> list[tuple[int, float, float, int]]:
    """Notes as comparable tuples; times rounded to the MIDI tick grid's precision."""
    return [(n.pitch, round(n.start, 4), round(n.end, 4), n.velocity) for n in track.notes]


# --- Slakh2100 ---------------------------------------------------------------------------------

PIANO = [Note(60, 0.5, 1.0, 90), Note(64, 0.5, 1.5, 70)]
KICK = [Note(36, 0.0, 0.25, 100), Note(38, 0.5, 0.75, 110)]
BASS = [Note(40, 1.0, 2.0, 80)]


def _slakh_track(root: Path, folder: str, track: str) -> Path:
    """A track with a rendered piano stem (whose MIDI file claims program 5, metadata says 1), a rendered
    drum stem (program_num 128, as Slakh writes it), and a stem with MIDI whose audio was not rendered."""
    base = root / folder / track
    _audio(base / "mix.flac", 44100)
    _midi(base / "MIDI" / "S00.mid", [MidiTrack("piano", 5, PIANO)])
    _midi(base / "MIDI" / "S01.mid", [MidiTrack("drums", 0, KICK, is_drum=True)])
    _midi(base / "MIDI" / "S02.mid", [MidiTrack("bass", 33, BASS)])
    _midi(base / "all_src.mid", [MidiTrack("piano", 1, PIANO), MidiTrack("bass", 33, BASS)])
    for stem in ("S00", "S01"):
        _audio(base / "stems" / f"{stem}.flac", 44100)
    stems = {
        "S00": {"audio_rendered": True, "inst_class": "Piano", "is_drum": False, "midi_program_name": "Bright Acoustic Piano",
                "midi_saved": True, "plugin_name": "grand.nkm", "program_num": 1},
        "S01": {"audio_rendered": True, "inst_class": "Drums", "is_drum": True, "midi_program_name": "Drums",
                "midi_saved": True, "plugin_name": "kit.nkm", "program_num": 128},
        "S02": {"audio_rendered": False, "inst_class": "Bass", "is_drum": False, "midi_program_name": "Electric Bass (finger)",
                "midi_saved": True, "plugin_name": "bass.nkm", "program_num": 33},
    }
    (base / "metadata.yaml").write_text(yaml.safe_dump({"UUID": "abc", "audio_dir": "stems", "midi_dir": "MIDI",
                                                        "normalized": True, "overall_gain": 0.5, "stems": stems}))
    return base


@pytest.fixture()
def slakh(tmp_path: Path) -> Path:
    root = tmp_path / "slakh2100_flac_redux"
    for folder, track in (("train", "Track00001"), ("train", "Track00002"), ("validation", "Track01501"),
                          ("test", "Track01876"), ("omitted", "Track00049")):
        _slakh_track(root, folder, track)
    return root


def test_slakh_splits_names_and_mix(slakh: Path):
    recordings = find_recordings("slakh", slakh)
    assert [(r.name, r.split) for r in recordings] == [
        ("Track00001", "train"), ("Track00002", "train"), ("Track01501", "valid"), ("Track01876", "test")]
    assert all(r.dataset == "slakh" and r.sample_rate == 44100 for r in recordings)
    assert recordings[2].audio == slakh / "validation" / "Track01501" / "mix.flac"
    assert [r.name for r in find_recordings("slakh", slakh, split="valid")] == ["Track01501"]


def test_slakh_notes_come_from_rendered_stems_with_metadata_programs(slakh: Path):
    tracks = find_recordings("slakh", slakh)[0].tracks()
    assert [(t.name, t.program, t.is_drum) for t in tracks] == [("S00", 1, False), ("S01", 0, True)]
    assert _notes(tracks[0]) == [(60, 0.5, 1.0, 90), (64, 0.5, 1.5, 70)]
    assert _notes(tracks[1]) == [(36, 0.0, 0.25, 100), (38, 0.5, 0.75, 110)]


# --- MAESTRO -----------------------------------------------------------------------------------

MAESTRO_ROWS = [
    ("Alban Berg", "Sonata Op. 1", "train", 2018, "2018/MIDI-Unprocessed_Chamber3_MID--AUDIO_10_R3_2018_wav--1"),
    ("Frédéric Chopin", "Ballade No. 1", "validation", 2009, "2009/MIDI-Unprocessed_07_R1_2009_01-02_ORIG_MID--AUDIO_07_R1_2009_07_R1_2009_02_WAV"),
    ("Franz Liszt", "Sonata in B Minor", "test", 2004, "2004/MIDI-Unprocessed_SMF_02_R1_2004_01-05_ORIG_MID--AUDIO_02_R1_2004_05_Track05_wav"),
]
MAESTRO_NOTES = [Note(21, 0.0, 0.5, 40), Note(108, 0.25, 1.0, 127)]


def _maestro(root: Path, metadata: str) -> Path:
    """MAESTRO v3: year folders of .midi/.wav, and the metadata as csv, or as the column-oriented json."""
    rows = [{"canonical_composer": c, "canonical_title": t, "split": s, "year": y, "midi_filename": f"{stem}.midi",
             "audio_filename": f"{stem}.wav", "duration": 1.0} for c, t, s, y, stem in MAESTRO_ROWS]
    for row in rows:
        _midi(root / row["midi_filename"], [MidiTrack("Piano", 0, MAESTRO_NOTES)])
        _audio(root / row["audio_filename"], 48000)
    if metadata == "csv":
        with (root / "maestro-v3.0.0.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        columns = {key: {str(i): row[key] for i, row in enumerate(rows)} for key in rows[0]}
        (root / "maestro-v3.0.0.json").write_text(json.dumps(columns), encoding="utf-8")
    return root


@pytest.mark.parametrize("metadata", ["csv", "json"])
def test_maestro_reads_metadata_splits_and_piano_notes(tmp_path: Path, metadata: str):
    root = _maestro(tmp_path / "maestro-v3.0.0", metadata)
    recordings = find_recordings("maestro", root)
    expected = sorted((Path(stem).name, {"validation": "valid"}.get(s, s)) for _, _, s, _, stem in MAESTRO_ROWS)
    assert [(r.name, r.split) for r in recordings] == expected
    test = find_recordings("maestro", root, split="test")[0]
    assert test.audio == root / f"{MAESTRO_ROWS[2][4]}.wav" and test.sample_rate == 48000
    [piano] = test.tracks()
    assert (piano.program, piano.is_drum) == (0, False)
    assert _notes(piano) == [(21, 0.0, 0.5, 40), (108, 0.25, 1.0, 127)]


def test_maestro_skips_recordings_without_audio_with_a_warning(tmp_path: Path):
    root = _maestro(tmp_path / "maestro", "csv")
    (root / f"{MAESTRO_ROWS[0][4]}.wav").unlink()
    with pytest.warns(StemkitWarning, match="skipped 1 recording"):
        recordings = find_recordings("maestro", root)
    assert {r.split for r in recordings} == {"valid", "test"}


# --- MusicNet ----------------------------------------------------------------------------------

#: train ids 1727 and 1729 hash to valid, 1728 and 1730 to train; 1759 is in MusicNet's test set
MUSICNET_TRAIN = ("1727", "1728", "1729", "1730")
MUSICNET_TEST = ("1759",)
MUSICNET_LABELS = [  # start/end in samples at 44.1 kHz; instrument 1 = piano, 41 = violin (GM from 1)
    (44100, 66150, 1, 60, 0.0, 1.0, "Quarter"),
    (0, 22050, 41, 76, 0.0, 0.5, "Eighth"),
    (22050, 88200, 1, 48, 0.5, 2.0, "Half"),
]


@pytest.fixture()
def musicnet(tmp_path: Path) -> Path:
    root = tmp_path / "musicnet"
    for part, ids in (("train", MUSICNET_TRAIN), ("test", MUSICNET_TEST)):
        for rid in ids:
            _audio(root / f"{part}_data" / f"{rid}.wav", 44100)
            labels = root / f"{part}_labels" / f"{rid}.csv"
            labels.parent.mkdir(parents=True, exist_ok=True)
            with labels.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["start_time", "end_time", "instrument", "note", "start_beat", "end_beat", "note_value"])
                writer.writerows(MUSICNET_LABELS)
    return root


def test_musicnet_splits_carve_valid_from_train_by_hash(musicnet: Path):
    recordings = find_recordings("musicnet", musicnet)
    assert [(r.name, r.split) for r in recordings] == [
        ("1727", "valid"), ("1728", "train"), ("1729", "valid"), ("1730", "train"), ("1759", "test")]
    assert recordings[-1].audio == musicnet / "test_data" / "1759.wav"
    assert recordings[0].audio == musicnet / "train_data" / "1727.wav"


def test_musicnet_split_of_a_recording_does_not_depend_on_the_others(musicnet: Path):
    before = {r.name: r.split for r in find_recordings("musicnet", musicnet)}
    for rid in ("1728", "1729"):
        (musicnet / "train_data" / f"{rid}.wav").unlink()
    after = {r.name: r.split for r in find_recordings("musicnet", musicnet)}
    assert after == {k: v for k, v in before.items() if k in after} and len(after) == 3


def test_musicnet_notes_convert_samples_and_one_based_programs(musicnet: Path):
    tracks = find_recordings("musicnet", musicnet, split="test")[0].tracks()
    assert [(t.name, t.program, t.is_drum) for t in tracks] == [("Acoustic Grand Piano", 0, False), ("Violin", 40, False)]
    assert _notes(tracks[0]) == [(48, 0.5, 2.0, 80), (60, 1.0, 1.5, 80)]
    assert _notes(tracks[1]) == [(76, 0.0, 0.5, 80)]


def test_notes_are_read_lazily_and_bad_rows_name_the_file(musicnet: Path):
    (musicnet / "test_labels" / "1759.csv").write_text("start_time,end_time,instrument,note\nsoon,later,1,60\n")
    [recording] = find_recordings("musicnet", musicnet, split="test")  # listing does not parse labels
    with pytest.raises(StemkitError, match=r"1759\.csv:2 is not a MusicNet label row"):
        recording.tracks()


# --- URMP --------------------------------------------------------------------------------------

#: titles hash to: Jupiter train, Entertainer test (both of its pieces), Jerusalem valid
URMP_PIECES = {
    "01_Jupiter_vn_vc": [("1", "vn", ["0.5\t440.0\t0.5", "1.0\t466.16\t0.25"]), ("2", "vc", ["0.0\t130.81\t2.0"])],
    "05_Entertainer_tpt_tpt": [("1", "tpt", ["0.1\t523.25\t0.4"]), ("2", "tpt", ["0.1\t261.63\t0.4"])],
    "06_Entertainer_sax_sax": [("1", "sax", ["0.2\t311.13\t0.3"]), ("2", "sax", ["0.2\t233.08\t0.3"])],
    "38_Jerusalem_vn_vn_va_vc": [("1", "vn", ["0.0\t445.0\t1.0"]), ("2", "vn", []), ("3", "va", ["0.0\t0\t1.0"]),
                                 ("4", "vc", ["0.0\t98.0\t1.0"])],
}


@pytest.fixture()
def urmp(tmp_path: Path) -> Path:
    root = tmp_path / "URMP"
    for piece, parts in URMP_PIECES.items():
        number, title = piece.split("_")[:2]
        folder = root / "Dataset" / piece
        _audio(folder / f"AuMix_{piece}.wav", 48000)
        for part, inst, lines in parts:
            _audio(folder / f"AuSep_{part}_{inst}_{number}_{title}.wav", 48000)
            (folder / f"Notes_{part}_{inst}_{number}_{title}.txt").write_text("".join(f"{line}\n" for line in lines))
            (folder / f"F0s_{part}_{inst}_{number}_{title}.txt").write_text("0.0\t0.0\n")
        _midi(folder / f"Sco_{piece}.mid", [])
    return root


def test_urmp_splits_group_pieces_by_title(urmp: Path):
    recordings = find_recordings("urmp", urmp)
    assert [(r.name, r.split) for r in recordings] == [
        ("01_Jupiter_vn_vc", "train"), ("05_Entertainer_tpt_tpt", "test"), ("06_Entertainer_sax_sax", "test"),
        ("38_Jerusalem_vn_vn_va_vc", "valid")]
    assert recordings[0].audio == urmp / "Dataset" / "01_Jupiter_vn_vc" / "AuMix_01_Jupiter_vn_vc.wav"
    assert recordings[0].sample_rate == 48000
    assert find_recordings("urmp", urmp / "Dataset") == recordings  # the Dataset folder itself works too


def test_urmp_notes_round_hz_to_midi_with_instrument_programs(urmp: Path):
    recordings = {r.name: r for r in find_recordings("urmp", urmp)}
    jupiter = recordings["01_Jupiter_vn_vc"].tracks()
    assert [(t.name, t.program) for t in jupiter] == [("vn1", 40), ("vc2", 42)]
    assert _notes(jupiter[0]) == [(69, 0.5, 1.0, 80), (70, 1.0, 1.25, 80)]
    assert _notes(jupiter[1]) == [(48, 0.0, 2.0, 80)]
    quartet = recordings["38_Jerusalem_vn_vn_va_vc"].tracks()
    assert [(t.name, t.program, len(t.notes)) for t in quartet] == [("vn1", 40, 1), ("vn2", 40, 0), ("va3", 41, 0),
                                                                     ("vc4", 42, 1)]  # 0 Hz is no note
    assert quartet[0].notes[0].pitch == 69 and quartet[3].notes[0].pitch == 43  # 445 Hz is a sharp A4
    sax = recordings["06_Entertainer_sax_sax"].tracks()
    assert [(t.program, t.notes[0].pitch) for t in sax] == [(65, 63), (65, 58)]
    tpt = recordings["05_Entertainer_tpt_tpt"].tracks()
    assert [(t.program, t.notes[0].pitch) for t in tpt] == [(56, 72), (56, 60)]


# --- GuitarSet ---------------------------------------------------------------------------------

#: takes hash to: 00_BN1-129-Eb train, 05_BN1-129-Eb test, 03_Rock1-130-A valid
GUITARSET_EXCERPTS = ("00_BN1-129-Eb_comp", "00_BN1-129-Eb_solo", "05_BN1-129-Eb_comp", "05_BN1-129-Eb_solo",
                      "03_Rock1-130-A_comp")
STRING_NOTES = {0: [(0.5, 0.5, 40.02)], 4: [(0.25, 0.25, 66.96), (1.0, 0.5, 67.4)]}


def _jams(path: Path, dense_notes: bool) -> None:
    """A GuitarSet-style JAMS: per string a pitch_contour (dense) and a note_midi annotation, plus a
    tempo annotation. note_midi data is a list of observations as GuitarSet ships it, or (``dense_notes``)
    the column form JAMS also writes."""
    annotations = [{"namespace": "tempo", "annotation_metadata": {"data_source": ""},
                    "data": [{"time": 0.0, "duration": 2.0, "value": 129.0, "confidence": 1.0}]}]
    for string in range(6):
        meta = {"data_source": str(string), "curator": {"name": "", "email": ""}}
        annotations.append({"namespace": "pitch_contour", "annotation_metadata": meta,
                            "data": {"time": [0.5], "duration": [0.0], "value": [{"index": 0, "frequency": 82.4, "voiced": True}],
                                     "confidence": [None]}})
        observations = STRING_NOTES.get(string, [])
        if dense_notes:
            data = {"time": [o[0] for o in observations], "duration": [o[1] for o in observations],
                    "value": [o[2] for o in observations], "confidence": [None] * len(observations)}
        else:
            data = [{"time": t, "duration": d, "value": v, "confidence": None} for t, d, v in observations]
        annotations.append({"namespace": "note_midi", "annotation_metadata": meta, "data": data})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"annotations": annotations, "file_metadata": {"duration": 2.0}, "sandbox": {}}))


@pytest.fixture()
def guitarset(tmp_path: Path) -> Path:
    root = tmp_path / "GuitarSet"
    for i, name in enumerate(GUITARSET_EXCERPTS):
        _jams(root / "annotation" / f"{name}.jams", dense_notes=i == 1)
        _audio(root / "audio_mono-mic" / f"{name}_mic.wav", 44100)
        _audio(root / "audio_mono-pickup_mix" / f"{name}_mix.wav", 44100)
    return root


def test_guitarset_splits_keep_comp_and_solo_of_a_take_together(guitarset: Path):
    recordings = find_recordings("guitarset", guitarset)
    assert [(r.name, r.split) for r in recordings] == [
        ("00_BN1-129-Eb_comp", "train"), ("00_BN1-129-Eb_solo", "train"), ("03_Rock1-130-A_comp", "valid"),
        ("05_BN1-129-Eb_comp", "test"), ("05_BN1-129-Eb_solo", "test")]
    assert recordings[0].audio == guitarset / "audio_mono-mic" / "00_BN1-129-Eb_comp_mic.wav"
    assert recordings[0].sample_rate == 44100


@pytest.mark.parametrize("name", ["00_BN1-129-Eb_comp", "00_BN1-129-Eb_solo"])  # observation list, then columns
def test_guitarset_notes_merge_strings_into_one_guitar(guitarset: Path, name: str):
    recording = {r.name: r for r in find_recordings("guitarset", guitarset)}[name]
    [guitar] = recording.tracks()
    assert (guitar.program, guitar.is_drum) == (25, False)
    assert _notes(guitar) == [(67, 0.25, 0.5, 80), (40, 0.5, 1.0, 80), (67, 1.0, 1.5, 80)]


def _as_split(chorale_dir: Path, split_root: Path) -> list:
    """The session's chorale tracks linked into a folder named after a split; their track listing."""
    from stemkit.data.layout import list_tracks

    tracks = list_tracks(chorale_dir)
    split_root.mkdir()
    for track in tracks:
        (split_root / track.name).symlink_to(track.path, target_is_directory=True)
    return tracks


def test_generated_chorales_read_with_their_programs_and_the_folder_as_split(chorale_dir: Path, tmp_path: Path):
    split_root = tmp_path / "test"
    tracks = _as_split(chorale_dir, split_root)
    recordings = find_recordings("chorales", split_root)
    assert [r.name for r in recordings] == sorted(t.name for t in tracks)
    assert {r.split for r in recordings} == {"test"} and all(r.audio.name == "mix.wav" for r in recordings)
    parts = recordings[0].tracks()
    expected, _ = read_midi(tracks[0].path / "mix.mid")
    assert [(p.program, p.notes) for p in parts] == [(e.program, e.notes) for e in expected] and len(parts) == 4
    assert {r.split for r in find_recordings("chorales", chorale_dir)} <= {"train", "valid", "test"}  # hashed elsewhere


def test_chorale_stems_are_each_part_alone_with_its_own_notes_in_its_tracks_split(chorale_dir: Path, tmp_path: Path):
    """Each part of each chorale is one recording: its stem audio and only its own MIDI track (its program),
    in the split of the track it belongs to — so a model can learn what one instrument alone sounds like."""
    split_root = tmp_path / "valid"
    tracks = _as_split(chorale_dir, split_root)
    recordings = find_recordings("chorale_stems", split_root)
    assert len(recordings) == sum(len(t.stems) for t in tracks) and {r.split for r in recordings} == {"valid"}
    mixes = {r.name: r.tracks() for r in find_recordings("chorales", split_root)}
    for r in recordings:
        track = r.audio.parent.parent.name
        assert r.audio.parent.name == "stems_audio" and r.name.startswith(track + "_")
        [part] = r.tracks()
        assert any((part.program, part.notes) == (m.program, m.notes) for m in mixes[track])
    hashed = find_recordings("chorale_stems", chorale_dir)  # outside a split folder: the track's hashed split
    splits = {r.name: r.split for r in find_recordings("chorales", chorale_dir)}
    assert all(r.split == splits[r.audio.parent.parent.name] for r in hashed)


# --- shared behaviour --------------------------------------------------------------------------


def test_every_dataset_has_a_reader():
    assert set(READERS) == set(DATASET_NAMES) == {"chorales", "chorale_stems", "slakh", "maestro", "musicnet", "urmp", "guitarset"}


def test_hash_split_is_pinned():
    """Changing the hash would move recordings between splits and leak test pieces into training."""
    assert [hash_split(k) for k in ("urmp/Jupiter", "urmp/Entertainer", "urmp/Jerusalem")] == ["train", "test", "valid"]


def test_recordings_pickle_with_their_note_loader(guitarset: Path):
    recording = find_recordings("guitarset", guitarset)[0]
    copy = pickle.loads(pickle.dumps(recording))
    assert copy == recording and copy.tracks() == recording.tracks()


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_a_root_without_the_dataset_is_refused_in_one_line(tmp_path: Path, dataset: str):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "Dataset").mkdir()  # URMP's top folder alone is not URMP
    expected = {"chorales": "stemkit data chorales", "chorale_stems": "stemkit data chorales", "slakh": "train/TrackNNNNN/metadata.yaml", "maestro": "maestro-v3.0.0.csv",
                "musicnet": "train_data/NNNN.wav", "urmp": "AuMix_", "guitarset": "annotation/*.jams"}[dataset]
    for root in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(StemkitError) as error:
            find_recordings(dataset, root)
        assert "\n" not in str(error.value) and str(root) in str(error.value) and expected in str(error.value)


def test_audio_missing_everywhere_is_an_error_not_an_empty_list(musicnet: Path):
    for wav in musicnet.glob("*_data/*.wav"):
        wav.unlink()
    with pytest.raises(StemkitError, match="holds no MusicNet recordings"):
        find_recordings("musicnet", musicnet)


def test_unknown_dataset_and_split_list_the_known_ones(tmp_path: Path):
    known = "chorales, chorale_stems, slakh, maestro, musicnet, urmp, guitarset"
    with pytest.raises(StemkitError, match=f"unknown dataset 'medleydb': choose one of {known}$"):
        find_recordings("medleydb", tmp_path)
    with pytest.raises(StemkitError, match="unknown split 'validation': choose one of train, valid, test$"):
        find_recordings("slakh", tmp_path, split="validation")
