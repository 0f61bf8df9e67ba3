"""The chorale generator end to end through the real CLI: layout, loudness, resumability, errors."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import yaml

from stemkit.data.layout import list_tracks
from stemkit.audio.loudness import integrated_loudness

METADATA_KEYS = {
    "midi_file", "tempo", "ensemble", "instrument_name", "midi_program_number", "normalization_factor",
    "target_peak", "normalized", "overall_gain", "stem_integrated_loudness", "source_chorale", "split", "soundfont", "seed",
}


def test_layout_metadata_and_mix_equals_sum(chorale_dir):
    tracks = list_tracks(chorale_dir)
    assert len(tracks) == 3
    for track in tracks:
        assert track.name.startswith("string_track") and len(track.name) == len("string_track000000")
        meta = yaml.safe_load((track.path / "metadata.yaml").read_text())
        assert METADATA_KEYS <= set(meta) and meta["split"] == "test"
        assert meta["instrument_name"] == ["violin", "violin", "viola", "cello"]
        assert meta["midi_program_number"] == [40, 40, 41, 42]
        assert [p.name for p in track.stems] == ["0_violin.wav", "1_violin.wav", "2_viola.wav", "3_cello.wav"]
        assert sorted(p.name for p in (track.path / "stems_MIDI").iterdir()) == ["0_violin.mid", "1_violin.mid", "2_viola.mid", "3_cello.mid"]
        assert (track.path / "mix.mid").is_file()
        mix, sr = sf.read(track.mix, dtype="int16")
        stems = [sf.read(p, dtype="int16")[0].astype(np.int64) for p in track.stems]
        assert sr == 16000 and mix.shape == (4 * 16000,)
        assert np.array_equal(mix.astype(np.int64), np.sum(stems, axis=0))  # exactly, sample by sample
        assert 20 * np.log10(np.abs(mix).max() / 32768) == pytest.approx(-1.0, abs=0.01)
        # stems were normalised to -13 LUFS before one shared gain: their loudness differences vanish
        louds = [integrated_loudness(s[None] / 32768.0, sr) for s in stems]
        assert max(louds) - min(louds) < 1.0


def test_generation_is_deterministic_and_resumable(cli, tmp_path, chorale_dir):
    out = tmp_path / "again"
    out.mkdir()
    (out / "user_notes.txt").write_text("mine")  # a user's file must survive
    first = cli("data", "chorales", "--out", str(out), "--num", "1", "--split", "test", "--seconds", "4", "--quiet", check=True)
    assert "wrote 1 track" in first.stdout
    name = list_tracks(out)[0].name
    original = list_tracks(chorale_dir)[0]
    assert name == original.name
    assert (out / name / "mix.wav").read_bytes() == original.mix.read_bytes()  # same seed, same audio
    # a crashed run leaves a partial folder; the next run removes it and skips the finished track
    (out / f".{name}.partial-crashed").mkdir()
    again = cli("data", "chorales", "--out", str(out), "--num", "2", "--split", "test", "--seconds", "4", "--quiet", check=True)
    assert "wrote 1 track(s), skipped 1" in again.stdout
    assert (out / "user_notes.txt").read_text() == "mine"
    assert not list(out.glob(".*partial*"))
    other = cli("data", "chorales", "--out", str(tmp_path / "seed1"), "--num", "1", "--split", "test", "--seconds", "4", "--seed", "1", "--quiet", check=True)
    assert other.returncode == 0
    assert (tmp_path / "seed1" / name / "mix.wav").read_bytes() != original.mix.read_bytes()


def test_random_ensemble_brass_and_woodwind(cli, tmp_path):
    for ensemble in ("random", "brass", "woodwind"):
        cli("data", "chorales", "--out", str(tmp_path / ensemble), "--ensemble", ensemble, "--num", "1", "--split", "valid", "--seconds", "2", "--quiet", check=True)
        track = list_tracks(tmp_path / ensemble)[0]
        assert track.name.startswith(f"{ensemble}_track") and len(track.stems) == 4
        assert yaml.safe_load((track.path / "metadata.yaml").read_text())["split"] == "valid"


def _one_line_error(result):
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--soundfont", "/nonexistent/font.sf2"], "soundfont not found"),
        (["--ensemble", "kazoo"], "unknown ensemble"),
        (["--num", "100000"], "--num 100000 is more than"),
        (["--split", "holdout"], "unknown split"),
        (["--num", "zero"], "invalid int value"),
    ],
)
def test_bad_input_gives_one_line(cli, tmp_path, extra, expected):
    result = cli("data", "chorales", "--out", str(tmp_path / "o"), "--split", "test", *extra)
    assert expected in _one_line_error(result)


def test_unwritable_output_is_one_line(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _one_line_error(cli("data", "chorales", "--out", str(blocker / "sub"), "--num", "1"))
    assert "cannot write to" in line
    assert blocker.read_text() == "x"


def test_missing_fluidsynth_library_is_one_line(tmp_path):
    code = (
        "import sys; sys.modules['fluidsynth'] = None\n"  # makes `import fluidsynth` raise ImportError
        "from stemkit.cli import main; sys.exit(main(['data', 'chorales', '--out', sys.argv[1], '--num', '1']))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o")], capture_output=True, text=True)
    assert "FluidSynth library is not installed" in _one_line_error(result)


def test_rendered_stems_play_their_midi(chorale_dir):
    """The audio is the MIDI: pyin's f0 on each stem matches the sounding MIDI note in most voiced frames."""
    import librosa

    from stemkit.midi.notes import read_midi_tracks

    track = list_tracks(chorale_dir)[0]
    for stem in track.stems:
        audio, sr = sf.read(stem, dtype="float32")
        notes = read_midi_tracks(track.path / "stems_MIDI" / f"{stem.stem}.mid")[0].notes
        f0, voiced, _ = librosa.pyin(audio, fmin=50, fmax=2000, sr=sr, frame_length=2048, hop_length=512)
        times = librosa.times_like(f0, sr=sr, hop_length=512)
        hits = total = 0
        for t, hz, v in zip(times, f0, voiced):
            sounding = [n.pitch for n in notes if n.start + 0.05 <= t <= n.end - 0.05]
            if not v or len(sounding) != 1:
                continue
            total += 1
            hits += abs(librosa.hz_to_midi(hz) - sounding[0]) < 0.5
        assert total > 20 and hits / total > 0.8, (stem.name, hits, total)
