"""STFT/iSTFT and mel spectrograms on torch tensors (no torchaudio).

Shapes: ``stft`` maps ``[..., samples]`` to complex ``[..., freqs, frames]`` and ``istft`` inverts it
given the original length, so separators can round-trip exactly (Hann window, centred frames).
"""

from __future__ import annotations

import functools

import librosa
import torch


def _window(n_fft: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)


def stft(audio: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """Complex STFT of ``[..., samples]`` audio → ``[..., n_fft // 2 + 1, frames]``."""
    lead = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1])
    spec = torch.stft(
        flat,
        n_fft=n_fft,
        hop_length=hop_length,
        window=_window(n_fft, audio.device, audio.dtype),
        center=True,
        pad_mode="reflect" if audio.shape[-1] > n_fft // 2 else "constant",
        return_complex=True,
    )
    return spec.reshape(*lead, *spec.shape[-2:])


def istft(spec: torch.Tensor, n_fft: int, hop_length: int, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: complex ``[..., freqs, frames]`` → real ``[..., length]``."""
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, *spec.shape[-2:])
    real_dtype = torch.float64 if flat.dtype == torch.complex128 else torch.float32
    audio = torch.istft(
        flat,
        n_fft=n_fft,
        hop_length=hop_length,
        window=_window(n_fft, flat.device, real_dtype),
        center=True,
        length=length,
    )
    return audio.reshape(*lead, length)


@functools.lru_cache(maxsize=16)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> torch.Tensor:
    return torch.from_numpy(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)).float()


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> torch.Tensor:
    """Slaney-normalised mel filterbank ``[n_mels, n_fft // 2 + 1]`` (librosa's, so numbers match it)."""
    return _mel_basis(sample_rate, n_fft, n_mels, fmin, fmax).clone()


def mel_spectrogram(
    audio: torch.Tensor,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
    fmin: float = 0.0,
    fmax: float | None = None,
    power: float = 2.0,
) -> torch.Tensor:
    """Mel spectrogram ``[..., n_mels, frames]`` of ``[..., samples]`` audio (power 2 = energy)."""
    mag = stft(audio, n_fft, hop_length).abs() ** power
    basis = _mel_basis(sample_rate, n_fft, n_mels, fmin, fmax).to(audio.device, mag.dtype)
    return torch.matmul(basis, mag)
