"""Synthesis metrics (log-mel L1, MR-STFT, pitch accuracy) and ``stemkit eval-synth`` end to end."""

from __future__ import annotations

import json
import math

import librosa
import numpy as np
import pytest
import torch

from stemkit.audio.io import save_audio
from stemkit.cli import main
from stemkit.metrics import log_mel_l1, mrstft_distance, pitch_accuracy, pitch_report, synthesis_metrics
from stemkit.midi.notes import MidiTrack, Note, write_midi
from stemkit.synthesis.evaluation import mean_scores, reference_items

SR = 16000
#: A little violin line: four notes over 2 s, with a leap and a repeated-pitch-free path.
NOTES = [Note(67, 0.0, 0.5), Note(71, 0.5, 1.0), Note(74, 1.0, 1.5), Note(69, 1.5, 2.0)]


def harmonic_tone(notes: list[Note], seconds: float = 2.0, shift: float = 0.0, sr: int = SR) -> np.ndarray:
    """Sawtooth-like tone (8 harmonics, 1/k amplitudes) that follows ``notes``, ``shift`` semitones off."""
    t = np.arange(int(seconds * sr)) / sr
    cycles, sounding, done = np.zeros_like(t), np.zeros(t.shape, dtype=bool), 0.0
    for note in sorted(notes, key=lambda n: n.start):  # exact phase integral: the same tone at any rate
        inside = (t >= note.start) & (t < note.end)
        freq = librosa.midi_to_hz(note.pitch + shift)
        cycles[inside] = done + freq * (t[inside] - note.start)
        sounding |= inside
        done += freq * (note.end - note.start)
    tone = sum(np.sin(2 * np.pi * k * cycles) / k for k in range(1, 9))
    return (0.3 * tone * sounding).astype(np.float32)


def test_log_mel_l1_matches_librosa_and_is_zero_on_identical():
    rng = np.random.default_rng(0)
    ref, est = rng.normal(size=(2, SR)) * 0.1
    assert log_mel_l1(ref, ref, SR) == 0.0
    mel = [librosa.feature.melspectrogram(y=x, sr=SR, n_fft=1024, hop_length=256, n_mels=80, power=1.0, pad_mode="reflect") for x in (ref, est)]
    expected = np.mean(np.abs(np.log(mel[0] + 1e-5) - np.log(mel[1] + 1e-5)))
    assert log_mel_l1(torch.from_numpy(ref)[None], torch.from_numpy(np.concatenate([est, est[:500]])), SR) == pytest.approx(expected, rel=1e-6)
    # Gain is not ignored: 6 dB too quiet costs about ln 2 where the spectrum is far above the floor.
    assert log_mel_l1(ref, 0.5 * ref, SR) == pytest.approx(math.log(2), rel=0.02)
    # ... unless loudness is matched first: then only the spectrum's shape counts
    assert log_mel_l1(ref, 0.5 * ref, SR, match_loudness=True) == pytest.approx(0.0, abs=1e-6)
    assert log_mel_l1(ref, 3.0 * est, SR, match_loudness=True) == pytest.approx(log_mel_l1(ref, est * np.sqrt(np.mean(ref ** 2) / np.mean(est ** 2)), SR), rel=1e-6)


def _numpy_mrstft(ref: np.ndarray, est: np.ndarray) -> float:
    """Spectral convergence + mean |log mag| at auraloss' three default resolutions, written out in numpy."""
    total = 0.0
    for n_fft, hop, win in ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240)):
        window = np.zeros(n_fft)
        left = (n_fft - win) // 2
        window[left : left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)

        def magnitude(x: np.ndarray) -> np.ndarray:
            x = np.pad(x, n_fft // 2, mode="reflect")
            frames = np.stack([x[i : i + n_fft] for i in range(0, len(x) - n_fft + 1, hop)])
            return np.sqrt(np.maximum(np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2, 1e-8))

        r, e = magnitude(ref), magnitude(est)
        total += np.linalg.norm(r - e) / np.linalg.norm(r) + np.mean(np.abs(np.log(r) - np.log(e)))
    return total / 3


def test_mrstft_matches_a_numpy_implementation():
    rng = np.random.default_rng(1)
    ref, est = (rng.normal(size=(2, SR)) * 0.1).astype(np.float32)
    assert mrstft_distance(ref, ref, SR) == pytest.approx(0.0, abs=1e-6)
    assert mrstft_distance(ref, est, SR) == pytest.approx(_numpy_mrstft(ref.astype(np.float64), est.astype(np.float64)), rel=1e-4)
    assert mrstft_distance(ref, ref + 0.01 * est, SR) < mrstft_distance(ref, est, SR)
    assert math.isfinite(mrstft_distance(ref[:300], est[:300], SR))  # shorter than the largest FFT


def test_pitch_accuracy_hears_right_and_wrong_notes():
    tone = harmonic_tone(NOTES)
    report = pitch_report(tone, SR, NOTES)
    assert report.accuracy > 0.9 and report.n_frames == report.note_frames.sum() > 150
    assert report.f0.shape == report.times.shape == report.hits.shape
    assert pitch_accuracy(harmonic_tone(NOTES, shift=1.0), SR, NOTES) < 0.1
    noise = np.random.default_rng(2).normal(size=2 * SR).astype(np.float32) * 0.1
    assert pitch_accuracy(noise, SR, NOTES) < 0.2
    assert math.isnan(pitch_accuracy(tone, SR, []))


def test_synthesis_metrics_keys():
    tone = torch.from_numpy(harmonic_tone(NOTES[:1], seconds=0.5))
    scores = synthesis_metrics(tone[None], tone, SR)
    assert list(scores) == ["log_mel_l1", "mrstft", "si_sdr", "pitch_acc"]
    assert scores["log_mel_l1"] == 0.0 and scores["si_sdr"] > 60 and math.isnan(scores["pitch_acc"])
    assert mean_scores({"a": {**scores, "pitch_acc": 0.5}, "b": scores})["pitch_acc"] == 0.5


def test_reference_items_of_a_chorale_layout(tmp_path):
    track = tmp_path / "string_track000007"
    for stem in ("0_violin", "1_viola"):
        save_audio(track / "stems_audio" / f"{stem}.wav", np.zeros((1, 160)), SR)
    write_midi(track / "stems_MIDI" / "0_violin.mid", [MidiTrack("violin", 40, NOTES)])
    items = reference_items(tmp_path, instrument="Violin")
    assert [(i.name, i.midi.name) for i in items] == [("string_track000007_0_violin", "0_violin.mid")]
    assert [i.midi for i in reference_items(tmp_path)][1] is None


def _make_folders(tmp_path):
    """Two 2 s references with MIDI; generated = same + noise 30 dB down (one at 22.05 kHz stereo), one off by a fifth."""
    ref, gen = tmp_path / "ref", tmp_path / "gen"
    rng = np.random.default_rng(3)
    other = [Note(n.pitch - 5, n.start, n.end) for n in NOTES]
    for name, notes in (("good", NOTES), ("bad", other)):
        tone = harmonic_tone(notes)
        save_audio(ref / f"{name}.wav", tone[None], SR, "FLOAT")
        write_midi(ref / f"{name}.mid", [MidiTrack("violin", 40, notes)])
    good, bad = harmonic_tone(NOTES, sr=22050), harmonic_tone(NOTES)  # bad plays the other item's notes
    level = np.sqrt(np.mean(good**2)) * 10 ** (-30 / 20)
    save_audio(gen / "good.wav", good[None] + rng.normal(size=(2, good.size)) * level, 22050, "FLOAT")
    save_audio(gen / "bad.flac", bad[None] + rng.normal(size=(1, bad.size)) * level, SR, "24")
    return ref, gen


def test_eval_synth_cli_end_to_end(tmp_path, capsys):
    ref, gen = _make_folders(tmp_path)
    out = tmp_path / "r" / "synth.json"
    assert main(["eval-synth", "--reference", str(ref), "--generated", str(gen), "--json", str(out), "--workers", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "pitch_acc" in printed and "lower is better" in printed and str(out) in printed
    result = json.loads(out.read_text())
    assert result["count"] == 2 and set(result["items"]) == {"good", "bad"}
    good, bad = result["items"]["good"], result["items"]["bad"]
    assert set(good) == set(result["mean"]) == {"log_mel_l1", "mrstft", "si_sdr", "pitch_acc"}
    assert good["pitch_acc"] > 0.9 > 0.1 > bad["pitch_acc"]
    assert good["si_sdr"] > 25 and bad["si_sdr"] < 0
    assert good["log_mel_l1"] < 0.75 * bad["log_mel_l1"] and good["mrstft"] < 0.75 * bad["mrstft"]
    for metric, value in result["mean"].items():
        assert value == pytest.approx((good[metric] + bad[metric]) / 2)


def test_eval_synth_errors_are_one_line(tmp_path, capsys):
    ref, gen = _make_folders(tmp_path)
    (gen / "bad.flac").unlink()
    assert main(["eval-synth", "--reference", str(ref), "--generated", str(gen), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 of 2 generated file(s) missing" in err and "bad" in err
    save_audio(gen / "bad.wav", harmonic_tone(NOTES, seconds=1.8)[None], SR)  # 10 % short
    assert main(["eval-synth", "--reference", str(ref), "--generated", str(gen), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.wav" in err and "1.80 s" in err
    assert main(["eval-synth", "--reference", str(ref), "--generated", str(tmp_path / "ref"), "--instrument", "violin"]) == 1
    assert "CocoChorales-layout" in capsys.readouterr().err
