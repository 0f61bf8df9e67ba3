"""Frame-rate pitch and envelope curves: what the latent synthesizer is conditioned on.

One frame is one latent step of the VAE (``hop`` samples, 256 at 16 kHz = 62.5 frames/s), so frame
``i`` covers samples ``[i·hop, (i+1)·hop)`` and its time is the window's centre.

Why curves from two sources: in training the curves are measured on the audio (the envelope is
``max |x|`` over each window; the pitch comes from the stems' MIDI when a dataset has it, else from
the STFT peak), while at synthesis there is only MIDI. The :class:`EnvelopeModel` bridges the gap:
it turns notes into the envelope a performance of them would have, with levels fitted on the
training data, so the model sees at synthesis the kind of curve it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from stemkit.midi.notes import Note

#: The pitch roll covers the 88 piano keys, MIDI 21 (A0) to 108 (C8).
PITCH_LOW, PITCH_BINS = 21, 88
#: Channels of the condition tensor: the pitch roll, then normalised pitch, voiced flag, envelope,
#: log-envelope and a "present" flag.
COND_CHANNELS = PITCH_BINS + 5
_PITCH_CENTER, _PITCH_SCALE = 69.0, 12.0


def frame_count(samples: int, hop: int) -> int:
    """Frames covering ``samples`` (the last one partial)."""
    return -(-int(samples) // int(hop))


def envelope_from_audio(audio: torch.Tensor, hop: int) -> torch.Tensor:
    """``max |x|`` over each ``hop``-sample window: ``[..., samples]`` → ``[..., frames]``."""
    frames = frame_count(audio.shape[-1], hop)
    pad = frames * hop - audio.shape[-1]
    padded = torch.nn.functional.pad(audio.abs(), (0, pad))
    return padded.reshape(*audio.shape[:-1], frames, hop).amax(dim=-1)


def _frame_times(frames: int, hop: int, sample_rate: int) -> np.ndarray:
    return (np.arange(frames) + 0.5) * hop / sample_rate


def pitch_from_notes(notes: Sequence[Note], frames: int, hop: int, sample_rate: int, start: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """MIDI pitch per frame (float, 0 where silent) and a voiced flag, from notes in seconds.

    ``start`` is the time of frame 0's window start (for crops). Where notes overlap, the one that
    started last wins — a monophonic line played legato.
    """
    times = start + _frame_times(frames, hop, sample_rate)
    pitch = np.zeros(frames, dtype=np.float32)
    onset = np.full(frames, -np.inf)
    for note in notes:
        lo, hi = np.searchsorted(times, [note.start, note.end])
        span = slice(lo, hi)
        later = note.start >= onset[span]
        pitch[span] = np.where(later, note.pitch, pitch[span])
        onset[span] = np.where(later, note.start, onset[span])
    return pitch, (pitch > 0).astype(np.float32)


def pitch_from_audio(audio: torch.Tensor, sample_rate: int, hop: int, n_fft: int = 2048, threshold_db: float = -45.0,
                     fmin: float = 50.0, fmax: float = 2000.0) -> tuple[np.ndarray, np.ndarray]:
    """MIDI pitch per frame from the STFT peak, for recordings without MIDI.

    The peak is taken on a harmonic sum (each bin plus its 2nd and 3rd multiples, weighted ½ and ⅓)
    so that a strong second partial does not read as an octave jump, then refined by parabolic
    interpolation. Frames more than ``threshold_db`` below the loudest frame are unvoiced.
    """
    mono = audio.reshape(-1, audio.shape[-1]).mean(dim=0).double()
    frames = frame_count(mono.shape[-1], hop)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    padded = torch.nn.functional.pad(mono, (n_fft // 2 - hop // 2, n_fft // 2 + frames * hop))
    spec = torch.stft(padded, n_fft, hop, window=window, center=False, return_complex=True).abs()[:, :frames].numpy()
    bins = spec.shape[0]
    harmonic = spec.copy()
    for k, weight in ((2, 0.5), (3, 1.0 / 3.0)):
        harmonic[: (bins - 1) // k + 1] += weight * spec[::k][: (bins - 1) // k + 1]
    freqs = np.arange(bins) * sample_rate / n_fft
    band = (freqs >= fmin) & (freqs <= fmax)
    lo = int(np.argmax(band))
    peak = lo + np.argmax(harmonic[band], axis=0)
    left, centre, right = (harmonic[np.clip(peak + d, 0, bins - 1), np.arange(frames)] for d in (-1, 0, 1))
    denom = left - 2 * centre + right
    offset = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    hz = (peak + np.clip(offset, -0.5, 0.5)) * sample_rate / n_fft
    energy = 20 * np.log10(spec.max(axis=0) + 1e-12)
    voiced = energy > energy.max() + threshold_db
    pitch = np.where(voiced, 69.0 + 12.0 * np.log2(np.maximum(hz, 1e-3) / 440.0), 0.0).astype(np.float32)
    return pitch, voiced.astype(np.float32)


def pitch_roll(pitch: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """``[..., frames]`` → ``[..., PITCH_BINS, frames]``: a one-hot over MIDI keys, a fractional pitch
    shared linearly between its two nearest keys (so 60.25 is ¾ key 60, ¼ key 61), zero when unvoiced.

    Why a roll and not one number: a semitone is 1/12 of a normalised scalar, too fine a step for
    a convolutional net to resolve into the right partials (measured: 37 % of note frames within 50
    cents with the scalar alone, median error 90 cents); a roll lets the first layer look each key's
    sound up directly.
    """
    keys = torch.arange(PITCH_BINS, dtype=pitch.dtype, device=pitch.device) + PITCH_LOW
    distance = (pitch.unsqueeze(-2) - keys.reshape(-1, 1)).abs()
    return (1.0 - distance).clamp_min(0.0) * (voiced.unsqueeze(-2) > 0)


def condition_tensor(pitch: torch.Tensor | np.ndarray, voiced: torch.Tensor | np.ndarray, envelope: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Stack curves ``[..., frames]`` into the condition ``[..., COND_CHANNELS, frames]``.

    The last channel is 1 ("conditioned"); the null condition of classifier-free guidance is all
    zeros, which the network can tell apart from a silent, conditioned frame.
    """
    pitch, voiced, envelope = (torch.as_tensor(v, dtype=torch.float32) for v in (pitch, voiced, envelope))
    norm_pitch = torch.where(voiced > 0, (pitch - _PITCH_CENTER) / _PITCH_SCALE, torch.zeros_like(pitch))
    log_env = (torch.log10(envelope.clamp_min(1e-4)) + 4.0) / 4.0  # 1e-4 → 0, 1 → 1
    curves = torch.stack([norm_pitch, voiced, envelope, log_env, torch.ones_like(pitch)], dim=-2)
    return torch.cat([pitch_roll(pitch, voiced), curves], dim=-2)


@dataclass
class EnvelopeModel:
    """Envelope of a note from its velocity: ``level = exp(intercept + slope·ln(velocity/127))`` with
    linear attack and release ramps (seconds). Fitted on training data by :func:`fit_envelope_model`."""

    intercept: float = float(np.log(0.25))
    slope: float = 1.0
    attack: float = 0.04
    release: float = 0.08

    def level(self, velocity: int) -> float:
        return float(np.exp(self.intercept + self.slope * np.log(max(velocity, 1) / 127.0)))

    def curve(self, notes: Sequence[Note], frames: int, hop: int, sample_rate: int, start: float = 0.0) -> np.ndarray:
        """The envelope a performance of ``notes`` would have, per frame (max over overlapping notes)."""
        times = start + _frame_times(frames, hop, sample_rate)
        env = np.zeros(frames, dtype=np.float32)
        for note in notes:
            lo, hi = np.searchsorted(times, [note.start, note.end + self.release])
            if hi <= lo:
                continue
            t = times[lo:hi]
            rise = np.clip((t - note.start) / max(self.attack, 1e-6), 0.0, 1.0)
            fall = np.clip(1.0 - (t - note.end) / max(self.release, 1e-6), 0.0, 1.0)
            env[lo:hi] = np.maximum(env[lo:hi], self.level(note.velocity) * np.minimum(rise, fall))
        return env

    def to_dict(self) -> dict:
        return asdict(self)


def fit_envelope_model(examples: Iterable[tuple[Sequence[Note], torch.Tensor]], sample_rate: int, hop: int) -> EnvelopeModel:
    """Fit the level-vs-velocity law on (notes, audio) pairs: the median envelope over each note's
    middle half, regressed in log–log on its velocity. Attack and release keep their defaults."""
    velocities, levels = [], []
    for notes, audio in examples:
        env = envelope_from_audio(audio.reshape(-1, audio.shape[-1]).mean(dim=0), hop).numpy()
        times = _frame_times(len(env), hop, sample_rate)
        for note in notes:
            quarter = (note.end - note.start) / 4
            lo, hi = np.searchsorted(times, [note.start + quarter, note.end - quarter])
            if hi > lo:
                velocities.append(max(note.velocity, 1))
                levels.append(max(float(np.median(env[lo:hi])), 1e-4))
    if len(levels) < 2:
        return EnvelopeModel()
    x, y = np.log(np.asarray(velocities) / 127.0), np.log(np.asarray(levels))
    if np.ptp(x) < 1e-6:
        return EnvelopeModel(intercept=float(y.mean()), slope=0.0)
    slope, intercept = np.polyfit(x, y, 1)
    return EnvelopeModel(intercept=float(intercept), slope=float(slope))
