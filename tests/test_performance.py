"""Performance and rendering styles: each factor drawn, bounded, recorded, and the result still a
correct dataset (the mix is the sum of the stems; a seed gives the same bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from stemkit.data.chorales import ScoreNote, select_sources, extract_satb
from stemkit.data.layout import list_tracks
from stemkit.data.performance import STYLES, apply_recording, draw_rendering, get_style, perform_styled
from stemkit.errors import StemkitError

SOUNDFONTS = [Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/TimGM6mb.sf2")]


def _voices():
    return extract_satb(select_sources("test")[0].path)


def test_styles_draw_their_ranges_and_the_recital_lies_outside_training():
    voices = _voices()
    varied, recital = STYLES["varied"], STYLES["recital"]
    legatos, rubatos = [], []
    for seed in range(12):
        styled = perform_styled(voices, np.random.default_rng(seed), varied)
        f = styled.factors
        assert varied.tempo[0] <= f["tempo"] <= varied.tempo[1] and all(abs(d) <= 12 for d in f["detune_cents"])
        assert all(20 <= n.velocity <= 127 and n.end > n.start >= 0 for v in styled.voices for n in v)
        legatos.append(f["legato"])
        rubatos.append(f["rubato"])
        # time runs forwards whatever the rubato: onsets of a voice keep the score's order
        for voice in styled.voices:
            starts = [n.start for n in voice]
            assert starts == sorted(starts) or f["timing_sigma"] > 0
    assert min(legatos) < 0.7 and max(legatos) > 0.95  # staccato to legato across tracks
    assert max(rubatos) <= varied.rubato[1] < recital.rubato[0]  # the held-out setting is never trained on
    assert varied.legato[1] < recital.legato[1] and varied.hall == 0 and recital.hall == 1


def test_studio_plays_like_varied_and_records_only_what_the_midi_says():
    """A synthesizer's training style: varied's playing, and nothing its notes cannot tell (no detuning,
    balance, synth effects, room, EQ or hall), so a part's audio is its MIDI's rendering."""
    voices = _voices()
    studio, varied = STYLES["studio"], STYLES["varied"]
    for factor in ("tempo", "rubato", "velocity", "velocity_spread", "hairpin", "accents", "legato", "timing"):
        assert getattr(studio, factor) == getattr(varied, factor), factor
    legatos = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        styled = perform_styled(voices, rng, studio)
        legatos.append(styled.factors["legato"])
        assert styled.factors["detune_cents"] == [0.0] * len(voices)
        assert draw_rendering(studio, rng, len(voices), 16000) == {"balance_db": [0.0] * len(voices)}
    assert min(legatos) < 0.7 and max(legatos) > 0.95  # the playing still varies from staccato to legato
    dry = apply_recording([np.ones(100, dtype=np.float32)], {"balance_db": [0.0]}, 16000)
    np.testing.assert_array_equal(dry[0], np.ones(100, dtype=np.float32))


def test_overlapping_legato_makes_notes_of_a_voice_overlap():
    voice = [[ScoreNote(float(q), 1.0, 60 + q % 5, False) for q in range(8)]]
    styled = perform_styled(voice, np.random.default_rng(0), get_style("recital"))
    notes = styled.voices[0]
    assert sum(a.end > b.start for a, b in zip(notes, notes[1:])) >= 5


def test_hairpins_move_the_dynamics_over_a_phrase():
    voice = [[ScoreNote(float(q), 1.0, 60, q == 15) for q in range(16)]]
    from dataclasses import replace

    style = replace(get_style("varied"), velocity_spread=(0.0, 0.0), accents=(0.0, 0.0), hairpin=(40.0, 40.0))
    velocities = [n.velocity for n in perform_styled(voice, np.random.default_rng(3), style).voices[0]]
    assert max(velocities) - min(velocities) >= 5
    flat = replace(style, hairpin=(0.0, 0.0))
    assert len({n.velocity for n in perform_styled(voice, np.random.default_rng(3), flat).voices[0]}) == 1


def test_recording_is_linear_per_part_and_keeps_lengths():
    rng = np.random.default_rng(1)
    style = STYLES["varied"]
    rendering = {}
    while "room" not in rendering or not any(rendering.get("eq") or []):
        rendering = draw_rendering(style, rng, 2, 16000)
    parts = [np.random.default_rng(i).standard_normal(16000) * 0.1 for i in range(2)]
    out = apply_recording(parts, rendering, 16000)
    assert [len(p) for p in out] == [16000, 16000]
    doubled = apply_recording([2 * p for p in parts], rendering, 16000)
    for a, b in zip(out, doubled):
        np.testing.assert_allclose(2 * a, b, atol=1e-4)  # linear, so each part stays the mix's true component
    assert not np.allclose(out[0], parts[0], atol=1e-3)


def test_unknown_style_is_one_line(cli, tmp_path):
    with pytest.raises(StemkitError, match="unknown performance style"):
        get_style("jazz")
    result = cli("data", "chorales", "--out", tmp_path / "x", "--num", "1", "--performance", "jazz")
    assert result.returncode == 1 and "unknown performance style 'jazz'" in result.stderr


def test_varied_tracks_record_every_factor_sum_exactly_and_reproduce(cli, tmp_path):
    fonts = ",".join(str(f) for f in SOUNDFONTS if f.is_file())
    args = ["data", "chorales", "--split", "test", "--num", "2", "--seconds", "3", "--ensemble", "random",
            "--performance", "varied", "--soundfont", fonts, "--quiet"]
    cli(*args, "--out", tmp_path / "a", check=True)
    cli(*args, "--out", tmp_path / "b", "--workers", "2", check=True)
    for track in list_tracks(tmp_path / "a"):
        meta = yaml.safe_load((track.path / "metadata.yaml").read_text())
        assert meta["performance"]["style"] == "varied" and len(meta["performance"]["velocity_base"]) == 4
        assert len(meta["rendering"]["balance_db"]) == 4 and len(meta["stem_soundfont"]) == 4
        mix = sf.read(track.mix, dtype="int16")[0].astype(np.int64)
        stems = [sf.read(p, dtype="int16")[0].astype(np.int64) for p in track.stems]
        assert np.array_equal(mix, np.sum(stems, axis=0))
        twin = tmp_path / "b" / track.name / "mix.wav"
        assert twin.read_bytes() == track.mix.read_bytes()  # same seed, same bytes, whatever the workers


def test_a_track_does_not_depend_on_what_its_process_did_before(tmp_path):
    """FluidSynth fills its dither table from the C library's rand() when its first synthesizer is
    made; a process that drew from rand() before (the room simulator does) used to render other bits."""
    import subprocess
    import sys

    script = ("import ctypes, sys\n"
              "if sys.argv[2] == 'draw':\n"
              "    [ctypes.CDLL(None).rand() for _ in range(7)]\n"
              "from stemkit.cli import main\n"
              "sys.exit(main(['data', 'chorales', '--out', sys.argv[1], '--split', 'test', '--num', '1', '--seconds', '2', '--quiet']))\n")
    for name in ("fresh", "draw"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name), name], check=True, capture_output=True)
    fresh, drawn = (list_tracks(tmp_path / n)[0] for n in ("fresh", "draw"))
    assert fresh.mix.read_bytes() == drawn.mix.read_bytes()


def test_every_drawn_room_is_physically_possible():
    """A large room cannot be very dry (Sabine, absorption ≤ 1): the draw must respect that, or the
    room simulator refuses the track half way through a dataset."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(0)
    rooms = [r["room"] for r in (draw_rendering(STYLES["varied"], rng, 4, 16000) for _ in range(600)) if "room" in r]
    assert len(rooms) > 200
    for room in rooms:
        absorption, _ = pra.inverse_sabine(room["rt60_s"], room["size_m"])
        assert 0 < absorption <= 1
