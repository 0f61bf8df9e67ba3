"""Integrated loudness (ITU-R BS.1770 via pyloudnorm) and loudness normalisation."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import torch


def integrated_loudness(audio: torch.Tensor | np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``[channels, samples]`` audio; ``-inf`` for silence.

    pyloudnorm needs at least one 400 ms gating block; shorter clips are zero-padded, which leaves
    the gated loudness of the real content unchanged (silent blocks fall below the absolute gate).
    """
    data = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 1:
        data = data[None]
    block = int(math.ceil(0.4 * sample_rate)) + 1
    if data.shape[-1] < block:
        data = np.pad(data, ((0, 0), (0, block - data.shape[-1])))
    if not np.any(data):
        return float("-inf")
    meter = pyloudnorm.Meter(sample_rate)
    with np.errstate(divide="ignore"):
        return float(meter.integrated_loudness(data.T))


def normalize_loudness(
    audio: torch.Tensor | np.ndarray, sample_rate: int, target_lufs: float
) -> tuple[torch.Tensor | np.ndarray, float, float]:
    """Scale ``audio`` to ``target_lufs``; returns (scaled audio, gain factor, measured loudness).

    Silent input is returned unchanged with gain 1, because no gain can give it a loudness.
    """
    loudness = integrated_loudness(audio, sample_rate)
    if not math.isfinite(loudness):
        return audio, 1.0, loudness
    gain = 10.0 ** ((target_lufs - loudness) / 20.0)
    return audio * gain, gain, loudness
