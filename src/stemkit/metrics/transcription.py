"""Does synthesized audio play the notes it was asked to? Transcribe it, then score the notes.

The spectrogram-diffusion paper scored its renderings by transcribing them (MT3) and comparing the
notes with the input MIDI: a render that sounds rich but plays wrong notes scores low, which the
spectral distances cannot see. MT3 needs JAX; **basic-pitch** (Spotify, ICASSP 2022) ships its
weights inside its package and runs on onnxruntime, so it is the transcriber here. It is not a
dependency of stemkit (on Linux its package requires TensorFlow); install it for the benchmark with

    pip install onnxruntime resampy && pip install --no-deps basic-pitch==0.4.0

Scoring is mir_eval's note-level F1 with onsets within 50 ms, pitches within 50 cents and offsets
ignored (``offset_ratio=None``): the usual "onset F1" of multi-instrument transcription. Notes are
compared without their instrument (basic-pitch does not tell instruments apart).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stemkit.errors import StemkitError
from stemkit.midi.notes import Note

INSTALL_HINT = "pip install onnxruntime resampy && pip install --no-deps basic-pitch==0.4.0"


def note_f1(reference: Sequence[Note], estimate: Sequence[Note], onset_tolerance: float = 0.05) -> float:
    """Note-level onset F1 (0..1) of ``estimate`` against ``reference`` (mir_eval, offsets ignored).

    1.0 when both are empty (nothing asked, nothing played); 0.0 when exactly one is."""
    import mir_eval

    if not reference or not estimate:
        return float(not reference and not estimate)

    def arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
        intervals = np.array([[n.start, max(n.end, n.start + 1e-3)] for n in notes], dtype=float)
        hertz = 440.0 * 2.0 ** ((np.array([n.pitch for n in notes], dtype=float) - 69.0) / 12.0)
        return intervals, hertz

    ref_intervals, ref_hz = arrays(reference)
    est_intervals, est_hz = arrays(estimate)
    _, _, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals, ref_hz, est_intervals, est_hz, onset_tolerance=onset_tolerance, offset_ratio=None)
    return float(f1)


class BasicPitchTranscriber:
    """basic-pitch's ONNX model, loaded once: ``transcriber(audio, sample_rate) -> notes``."""

    def __init__(self) -> None:
        try:
            from basic_pitch import ICASSP_2022_MODEL_PATH
            from basic_pitch.inference import Model
        except ImportError as error:
            raise StemkitError(f"transcription F1 needs basic-pitch ({error}); install it with: {INSTALL_HINT}") from None
        self.model = Model(ICASSP_2022_MODEL_PATH)

    def __call__(self, audio: torch.Tensor | np.ndarray, sample_rate: int) -> list[Note]:
        """The notes basic-pitch hears in mono ``audio`` (``[samples]`` or ``[channels, samples]``)."""
        import soundfile
        from basic_pitch.inference import predict

        mono = np.asarray(audio.detach().cpu() if isinstance(audio, torch.Tensor) else audio, dtype=np.float32)
        mono = mono.mean(axis=0) if mono.ndim == 2 else mono
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "audio.wav"
            soundfile.write(path, mono, sample_rate)
            _, _, events = predict(str(path), self.model)
        return sorted((Note(int(pitch), float(start), float(end), max(1, min(127, int(round(amplitude * 127)))))
                       for start, end, pitch, amplitude, _ in events), key=lambda n: (n.start, n.pitch))
