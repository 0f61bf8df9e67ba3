"""Synthesis metrics: how close generated audio is to a reference rendering of the same MIDI.

A MIDI → audio synthesizer is judged against a reference rendering (FluidSynth) of the same notes.
No single number says it all, so we report four that fail in different ways:

- **log-mel L1** (lower is better): timbre and loudness envelope as a mel spectrogram sees them;
  blind to phase, so a faithful resynthesis with another phase still scores well.
- **MR-STFT** (lower is better): auraloss' multi-resolution STFT distance (spectral convergence +
  log-magnitude L1 at three resolutions), the standard vocoder/synthesis loss, so numbers compare
  with papers that report it.
- **SI-SDR** (dB, higher is better): waveform match up to gain. A generative model that gets the
  phase "wrong but plausible" scores near or below 0 dB however good it sounds; it is reported for
  completeness and to catch models that copy the reference exactly.
- **pitch accuracy** (0..1, higher is better): share of note frames where pYIN hears the MIDI
  pitch; needs only the notes, not the reference audio, so it also scores audio that no reference
  rendering matches sample for sample.

Every function takes mono audio as ``[samples]`` or ``[channels, samples]`` (channels are averaged)
as a torch tensor or numpy array, plus one explicit sample rate. Resampling is the caller's job.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from stemkit.audio.spectral import mel_spectrogram
from stemkit.metrics.separation import si_sdr
from stemkit.midi.notes import Note

#: Keys of :func:`synthesis_metrics`, in table order.
SYNTHESIS_METRICS = ("log_mel_l1", "mrstft", "si_sdr", "pitch_acc")

#: Floor added before the log in :func:`log_mel_l1`; silence sits at log(1e-5) ≈ −11.5.
LOG_MEL_EPS = 1e-5

#: Seconds between pYIN frames when no hop is given: fine enough for short notes, cheap enough to run.
PITCH_HOP_SECONDS = 0.01

#: pYIN searches the notes' range widened by this many semitones on each side.
PITCH_MARGIN_SEMITONES = 3.0

AudioLike = torch.Tensor | np.ndarray


def _mono(audio: AudioLike) -> torch.Tensor:
    """``[samples]`` float64 tensor; channels of ``[channels, samples]`` are averaged."""
    x = audio.detach().cpu() if isinstance(audio, torch.Tensor) else torch.from_numpy(np.asarray(audio))
    x = x.to(torch.float64)
    if x.ndim == 2:
        x = x.mean(dim=0)
    if x.ndim != 1:
        raise ValueError(f"expected [samples] or [channels, samples] audio, got shape {tuple(x.shape)}")
    return x


def _common(reference: AudioLike, estimate: AudioLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Both signals mono and cut to the shorter length: a missing tail is not what these metrics judge."""
    ref, est = _mono(reference), _mono(estimate)
    n = min(ref.shape[-1], est.shape[-1])
    if n == 0:
        raise ValueError("cannot compare empty audio")
    return ref[:n], est[:n]


def log_mel_l1(
    reference: AudioLike,
    estimate: AudioLike,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
    match_loudness: bool = False,
) -> float:
    """Mean ``|log(mel_ref + 1e-5) − log(mel_est + 1e-5)|`` over bins and frames (lower is better).

    Magnitude (power 1) Slaney mel spectrograms of :func:`stemkit.audio.spectral.mel_spectrogram`
    (Hann, centred, reflect padding), natural log, over the common length. It is *not* gain
    invariant: where the mel energy is well above the floor a gain ``g`` shifts every bin by
    ``|ln g|``, so an estimate 6 dB too quiet costs about 0.69 on its own. Normalise loudness first
    if only timbre should count (``match_loudness=True`` scales the estimate to the reference's RMS
    first); keep it if level is part of what the synthesizer must get right.

    The floor of 1e-5 (about −100 dB) also makes near-empty bins count as much as loud ones: a faint
    noise floor the reference lacks is expensive. A clean harmonic tone plus white noise 30 dB down
    scores about 2.4 against the clean tone, close to the same tone at the wrong pitches (about 2.6).
    """
    ref, est = _common(reference, estimate)
    if match_loudness:
        est = est * (ref.pow(2).mean().sqrt() / est.pow(2).mean().sqrt().clamp_min(1e-8))
    mels = mel_spectrogram(torch.stack([ref, est]), sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=1.0)
    logs = torch.log(mels + LOG_MEL_EPS)
    return float((logs[0] - logs[1]).abs().mean())


def mrstft_distance(reference: AudioLike, estimate: AudioLike, sample_rate: int) -> float:
    """auraloss ``MultiResolutionSTFTLoss`` with its defaults (lower is better, 0 for identical audio).

    Spectral convergence ``‖|S_ref| − |S_est|‖_F / ‖|S_ref|‖_F`` plus log-magnitude L1, averaged over
    FFT sizes 1024/2048/512 (hops 120/240/50, windows 600/1200/240): the usual vocoder loss, so our
    numbers line up with papers that use the same library. The window sizes are in samples whatever
    the rate, so ``sample_rate`` is only checked, not used. Signals shorter than the largest FFT are
    zero-padded (identically) so the reflect padding of ``torch.stft`` is defined.

    Like :func:`log_mel_l1` it depends on gain, and its log term (magnitudes floored at 1e-4) weighs
    near-empty bins fully, so a noise floor the reference lacks costs a lot.
    """
    from auraloss.freq import MultiResolutionSTFTLoss

    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    ref, est = _common(reference, estimate)
    loss = MultiResolutionSTFTLoss()
    longest = max(loss.fft_sizes)
    if ref.shape[-1] < longest:
        ref = torch.nn.functional.pad(ref, (0, longest - ref.shape[-1]))
        est = torch.nn.functional.pad(est, (0, longest - est.shape[-1]))
    # auraloss builds float32 windows; its (input, target) order puts the reference in the denominator.
    with torch.no_grad():
        value = loss(est.float()[None, None], ref.float()[None, None])
    return float(value)


@dataclass(frozen=True)
class PitchReport:
    """What :func:`pitch_report` measured: the accuracy, its frame count, and the per-frame evidence.

    ``times``/``f0``/``note_frames``/``hits`` have one entry per pYIN frame; ``f0`` is NaN where pYIN
    heard no pitch. ``accuracy = hits.sum() / note_frames.sum()`` (NaN when there are no note frames).
    """

    accuracy: float
    n_frames: int
    times: np.ndarray
    f0: np.ndarray
    note_frames: np.ndarray
    hits: np.ndarray


def _pyin_frame_length(sample_rate: int, fmin: float) -> int:
    """Power of two holding two periods of ``fmin`` (pYIN's own advice) and at least ~40 ms of audio."""
    need = max(2.0 * sample_rate / fmin + 2.0, 0.04 * sample_rate)
    return 1 << math.ceil(math.log2(need))


def pitch_report(
    audio: AudioLike,
    sample_rate: int,
    notes: Sequence[Note],
    tolerance_cents: float = 50.0,
    hop_length: int | None = None,
) -> PitchReport:
    """Frame-level pitch accuracy of ``audio`` against the MIDI ``notes`` it should play.

    A *note frame* is a pYIN frame whose centre time lies strictly inside some note
    (``start < t < end``). It is a hit when pYIN's f0 there is within ``tolerance_cents`` of the
    pitch of *any* note sounding then (so chords and overlaps are not penalised); an unvoiced frame
    (f0 NaN) inside a note is a miss, because a synthesizer that stays silent has not played it.
    Frames outside every note are ignored: releases and reverb tails are free.

    Nothing is excluded after onsets, on purpose: a late or smeared attack is a synthesis error we
    want counted. The consequence is that even the reference rendering scores below 1 (pYIN's
    ~40–64 ms frames straddle note changes, and attacks are noisy); score the reference itself for
    the ceiling on a given dataset. pYIN searches only the notes' range ± 3 semitones, which is
    faster and makes octave errors less likely. ``hop_length`` defaults to 10 ms.
    """
    x = _mono(audio).numpy()
    hop = int(hop_length) if hop_length else max(1, round(PITCH_HOP_SECONDS * sample_rate))
    notes = [n for n in notes if n.end > n.start]
    if not notes:
        empty = np.zeros(0)
        return PitchReport(float("nan"), 0, empty, empty, empty.astype(bool), empty.astype(bool))
    import librosa

    low = min(n.pitch for n in notes) - PITCH_MARGIN_SEMITONES
    high = max(n.pitch for n in notes) + PITCH_MARGIN_SEMITONES
    fmin = float(librosa.midi_to_hz(low))
    fmax = min(float(librosa.midi_to_hz(high)), 0.49 * sample_rate)
    if fmin >= fmax:
        raise ValueError(f"notes up to MIDI {high - PITCH_MARGIN_SEMITONES:.0f} cannot be heard at {sample_rate} Hz")
    frame_length = _pyin_frame_length(sample_rate, fmin)
    if x.shape[-1] < frame_length:
        x = np.pad(x, (0, frame_length - x.shape[-1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # silent input makes pYIN warn; it answers NaN, which is what we want
        f0, _, _ = librosa.pyin(x, fmin=fmin, fmax=fmax, sr=sample_rate, frame_length=frame_length, hop_length=hop, center=True)
    times = np.arange(f0.shape[-1]) * hop / sample_rate

    starts = np.array([n.start for n in notes])[:, None]
    ends = np.array([n.end for n in notes])[:, None]
    sounding = (starts < times[None]) & (times[None] < ends)  # [notes, frames]
    note_frames = sounding.any(axis=0)
    midi_hz = librosa.midi_to_hz(np.array([n.pitch for n in notes], dtype=np.float64))[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        cents = np.abs(1200.0 * np.log2(f0[None] / midi_hz))  # NaN where unvoiced: a miss
    hits = (sounding & (cents <= tolerance_cents)).any(axis=0)
    n_frames = int(note_frames.sum())
    accuracy = float(hits.sum() / n_frames) if n_frames else float("nan")
    return PitchReport(accuracy, n_frames, times, f0, note_frames, hits)


def pitch_accuracy(
    audio: AudioLike,
    sample_rate: int,
    notes: Sequence[Note],
    tolerance_cents: float = 50.0,
    hop_length: int | None = None,
) -> float:
    """Share of note frames whose pYIN f0 is within ``tolerance_cents`` of a sounding MIDI note.

    Higher is better; NaN when ``notes`` leave no frame to judge. See :func:`pitch_report` for the
    exact rules and the per-frame evidence.
    """
    return pitch_report(audio, sample_rate, notes, tolerance_cents, hop_length).accuracy


def synthesis_metrics(
    reference: AudioLike,
    estimate: AudioLike,
    sample_rate: int,
    notes: Sequence[Note] | None = None,
) -> dict[str, float]:
    """All synthesis metrics of ``estimate`` against ``reference`` (same rate, mono or averaged).

    Keys: ``log_mel_l1`` and ``mrstft`` (lower is better), ``si_sdr`` (dB, higher is better) and
    ``pitch_acc`` of the *estimate* against ``notes`` (higher is better; NaN without notes).
    """
    ref, est = _common(reference, estimate)
    return {
        "log_mel_l1": log_mel_l1(ref, est, sample_rate),
        "mrstft": mrstft_distance(ref, est, sample_rate),
        "si_sdr": si_sdr(ref.numpy(), est.numpy()),
        "pitch_acc": pitch_accuracy(est, sample_rate, notes) if notes is not None else float("nan"),
    }
