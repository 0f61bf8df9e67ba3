"""The floor a learned synthesizer must beat: a sine wave with the MIDI's pitch and envelope.

Why this floor: it receives exactly the information the latent synthesizer receives (the same pitch
curve and the same modelled envelope), so anything the synthesizer scores above it comes from what
it learned about the instrument's sound — its partials, attacks and noise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from stemkit.midi.notes import Note
from stemkit.synthesis.conditioning import EnvelopeModel, frame_count, pitch_from_notes


def render_sine(notes: Sequence[Note], seconds: float, sample_rate: int, envelope: EnvelopeModel, hop: int = 256) -> torch.Tensor:
    """Mono ``[1, samples]``: a phase-continuous sine following the notes' pitch, shaped by ``envelope``.

    Curves are computed per frame exactly as the synthesizer's conditions are, then interpolated to
    the sample rate; the phase is the running sum of the instantaneous frequency, so note changes do
    not click.
    """
    samples = max(1, int(round(seconds * sample_rate)))
    frames = frame_count(samples, hop)
    pitch, voiced = pitch_from_notes(notes, frames, hop, sample_rate)
    level = envelope.curve(notes, frames, hop, sample_rate)
    centres = (np.arange(frames) + 0.5) * hop
    t = np.arange(samples)
    # hold the last sounding pitch through releases and rests, so the release tail keeps its pitch
    held = np.where(voiced > 0, pitch, np.nan)
    held = _fill_forward(held, fallback=69.0)
    hz = 440.0 * 2.0 ** ((np.interp(t, centres, held) - 69.0) / 12.0)
    amplitude = np.interp(t, centres, level)
    phase = 2.0 * np.pi * np.cumsum(hz) / sample_rate
    return torch.from_numpy((amplitude * np.sin(phase)).astype(np.float32))[None]


def _fill_forward(values: np.ndarray, fallback: float) -> np.ndarray:
    out = values.copy()
    last = next((v for v in out if not np.isnan(v)), fallback)
    for i, v in enumerate(out):
        if np.isnan(v):
            out[i] = last
        else:
            last = v
    return out
