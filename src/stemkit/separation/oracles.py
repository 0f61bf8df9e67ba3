"""Oracle estimates that bracket every result table: the mixture (floor) and the IRM (ceiling).

The ideal ratio mask is sigsep's IRM2 ("generalised Wiener"): each source's share of the summed
*power* spectrogram, applied to the mixture's STFT. Its window scales with the sample rate
(sigsep uses 4096 samples at 44.1 kHz, ~93 ms; we take 2048 at 16–32 kHz), hop a quarter window.
"""

from __future__ import annotations

import torch

from stemkit.audio.spectral import istft, stft


def mixture_oracle(mix: torch.Tensor, targets: list[str]) -> dict[str, torch.Tensor]:
    """The mixture itself as every estimate: the score of doing nothing."""
    return {t: mix.clone() for t in targets}


def irm_window(sample_rate: int) -> int:
    return 4096 if sample_rate > 32000 else 2048 if sample_rate > 11025 else 1024


def ideal_ratio_mask(
    mix: torch.Tensor,
    references: dict[str, torch.Tensor],
    sample_rate: int,
    power: float = 2.0,
    n_fft: int | None = None,
    eps: float = 1e-10,
) -> dict[str, torch.Tensor]:
    """IRM estimates of every reference: mask_j = |S_j|^p / Σ_k |S_k|^p applied to the mixture STFT."""
    n_fft = n_fft or irm_window(sample_rate)
    hop = n_fft // 4
    mix64 = mix.double()
    mix_spec = stft(mix64, n_fft, hop)
    powers = {t: stft(r.double(), n_fft, hop).abs() ** power for t, r in references.items()}
    total = sum(powers.values()) + eps
    return {t: istft(mix_spec * (p / total), n_fft, hop, mix.shape[-1]).float() for t, p in powers.items()}
