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


def to_complex_channels(audio: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """``[B, C, samples]`` → complex-as-channels ``[B, 2C, frames, n_fft // 2]`` (re, im per channel).

    The Nyquist bin is dropped so the frequency axis halves cleanly in a U-Net; the separation
    networks (LaSAFT, the refiner) all read spectrograms in this layout.
    """
    spec = torch.view_as_real(stft(audio, n_fft, hop_length)[..., :-1, :])  # [B, C, F, T, 2]
    batch, channels, freqs, frames, _ = spec.shape
    return spec.permute(0, 1, 4, 3, 2).reshape(batch, 2 * channels, frames, freqs)


def from_complex_channels(spec: torch.Tensor, n_fft: int, hop_length: int, length: int) -> torch.Tensor:
    """Inverse of :func:`to_complex_channels` (the Nyquist bin comes back as zero): ``[B, C, length]``."""
    batch, channels2, frames, freqs = spec.shape
    spec = spec.reshape(batch, channels2 // 2, 2, frames, freqs).permute(0, 1, 4, 3, 2)
    complex_spec = torch.nn.functional.pad(torch.view_as_complex(spec.contiguous()), (0, 0, 0, 1))
    return istft(complex_spec, n_fft, hop_length, length)


def complex_channels_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex product of two complex-as-channels tensors ``[B, 2C, T, F]`` (re, im interleaved per channel)."""
    batch, channels2, frames, freqs = b.shape
    x = a.view(batch, channels2 // 2, 2, frames, freqs)
    y = b.view(batch, channels2 // 2, 2, frames, freqs)
    real = x[:, :, 0] * y[:, :, 0] - x[:, :, 1] * y[:, :, 1]
    imag = x[:, :, 0] * y[:, :, 1] + x[:, :, 1] * y[:, :, 0]
    return torch.stack([real, imag], dim=2).view(batch, channels2, frames, freqs)


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


def framed_log_mel(audio: torch.Tensor, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
                   floor: float = 1e-5) -> torch.Tensor:
    """``[..., samples]`` → natural-log power mel ``[..., n_mels, frames]`` of *uncentred* frames (no padding:
    frame k covers samples ``k·hop … k·hop + n_fft``), floored at ``floor``. The chord set stores this and its
    classifiers read it, so a crop's frames never see audio outside the crop."""
    frames = audio.float().unfold(-1, n_fft, hop_length)  # [..., frames, n_fft]
    window = torch.hann_window(n_fft, periodic=True, device=audio.device)
    power = torch.fft.rfft(frames * window, dim=-1).abs() ** 2
    mel = torch.matmul(power, mel_filterbank(sample_rate, n_fft, n_mels).to(audio.device).T)
    return torch.log(mel.clamp_min(floor)).transpose(-1, -2)
