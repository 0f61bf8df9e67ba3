"""Sample-rate conversion with soxr (high quality, fast, no torchaudio)."""

from __future__ import annotations

import numpy as np
import soxr
import torch


def resample(audio: torch.Tensor, orig_rate: int, new_rate: int, quality: str = "HQ") -> torch.Tensor:
    """Resample ``audio`` ``[..., channels, samples]`` from ``orig_rate`` to ``new_rate``.

    soxr works on ``[samples, channels]`` float arrays, so leading dims are flattened into channels
    and restored afterwards. A no-op when the rates match.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    if orig_rate == new_rate:
        return audio
    lead = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1]).detach().cpu().numpy().astype(np.float32, copy=False)
    out = soxr.resample(np.ascontiguousarray(flat.T), orig_rate, new_rate, quality=quality)
    out = np.ascontiguousarray(out.T)
    return torch.from_numpy(out).reshape(*lead, out.shape[-1]).to(audio.device)
