"""Note F1 against mir_eval, the Fréchet distance against its closed form, and the transcriber's wiring."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from stemkit.errors import StemkitError
from stemkit.metrics.frechet import frechet_distance, mfcc_windows
from stemkit.metrics.transcription import BasicPitchTranscriber, note_f1
from stemkit.midi.notes import Note


def _random_notes(rng: np.random.Generator, count: int) -> list[Note]:
    starts = np.sort(rng.uniform(0, 10, count))
    return [Note(int(rng.integers(40, 80)), float(s), float(s + rng.uniform(0.1, 1.0)), 80) for s in starts]


def test_note_f1_is_mir_evals_onset_f1_on_random_notes():
    import mir_eval

    rng = np.random.default_rng(0)
    for _ in range(5):
        reference, estimate = _random_notes(rng, 30), _random_notes(rng, 25)
        estimate += [Note(n.pitch, n.start + 0.02, n.end, 80) for n in reference[:15]]  # some hits among the misses
        arrays = lambda notes: (np.array([[n.start, n.end] for n in notes]),  # noqa: E731
                                mir_eval.util.midi_to_hz(np.array([n.pitch for n in notes], dtype=float)))
        expected = mir_eval.transcription.precision_recall_f1_overlap(*arrays(reference), *arrays(estimate), offset_ratio=None)[2]
        assert note_f1(reference, estimate) == pytest.approx(expected) and 0.0 < expected < 1.0


def test_note_f1_counts_right_notes_and_rejects_late_or_wrong_ones():
    notes = [Note(60 + i, i * 0.5, i * 0.5 + 0.4, 80) for i in range(6)]
    assert note_f1(notes, notes) == 1.0
    assert note_f1(notes, [Note(n.pitch, n.start + 0.1, n.end, 80) for n in notes]) == 0.0  # 100 ms late
    assert note_f1(notes, [Note(n.pitch + 1, n.start, n.end, 80) for n in notes]) == 0.0  # a semitone off
    assert note_f1(notes, notes[:3]) == pytest.approx(2 / 3)  # precision 1, recall ½
    assert note_f1([], []) == 1.0 and note_f1(notes, []) == 0.0


def test_frechet_distance_matches_the_closed_form_of_two_gaussians():
    rng = np.random.default_rng(0)
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    std_a, std_b = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    a = mean_a + rng.normal(size=(200_000, 3)) * std_a
    b = mean_b + rng.normal(size=(200_000, 3)) * std_b
    # diagonal covariances: ‖μa − μb‖² + Σ (σa − σb)²
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((std_a - std_b) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same d"):
        frechet_distance(a, b[:, :2])


def test_mfcc_windows_are_one_row_per_whole_window():
    audio = np.random.default_rng(0).normal(size=16000 * 3 + 100).astype(np.float32) * 0.1
    rows = mfcc_windows(audio, 16000)
    assert rows.shape == (3, 40) and np.isfinite(rows).all()


def test_a_missing_transcriber_is_one_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_basic_pitch(name, *args, **kwargs):
        if name.startswith("basic_pitch"):
            raise ImportError("No module named 'basic_pitch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_basic_pitch)
    with pytest.raises(StemkitError, match="pip install --no-deps basic-pitch"):
        BasicPitchTranscriber()


def test_basic_pitch_hears_a_rendered_melody(one_thread):
    pytest.importorskip("basic_pitch", reason="basic-pitch is an optional benchmark dependency")
    from stemkit.data.render import FluidSynthRenderer, default_soundfont

    notes = [Note(pitch, 0.1 + 0.5 * i, 0.5 + 0.5 * i, 90) for i, pitch in enumerate([60, 64, 67, 72, 67, 64])]
    audio = FluidSynthRenderer(default_soundfont(), 16000).render(notes, 0)  # piano: sharp onsets
    assert note_f1(notes, BasicPitchTranscriber()(audio, 16000)) >= 0.8
