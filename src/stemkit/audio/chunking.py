"""One overlap-add chunker for every model that processes long audio in fixed segments.

Why one place: separators, vocoders and enhancers all need the same thing — run a function on
overlapping windows of a long signal and cross-fade the results — and bugs in window weighting or
edge padding are easy to make and hard to see. Memory stays bounded: only ``batch_size`` windows
are in flight, and the full-length output buffer lives on the CPU (as demucs learned the hard way
with long tracks on small GPUs).
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm


def _fade_weights(segment: int, overlap: int) -> torch.Tensor:
    """A window that is 1 in the middle with linear ramps of ``overlap`` samples at both ends.

    Consecutive windows placed ``segment - overlap`` apart sum to a constant over their shared span;
    we still divide by the accumulated weight, which also makes the ragged first/last windows exact.
    """
    weight = torch.ones(segment)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        weight[:overlap] = ramp
        weight[-overlap:] = ramp.flip(0)
    return weight


def overlap_add(
    fn: Callable[[torch.Tensor], torch.Tensor],
    audio: torch.Tensor,
    segment: int,
    overlap: float = 0.25,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    progress: bool = False,
    desc: str = "chunks",
) -> torch.Tensor:
    """Apply ``fn`` to overlapping windows of ``audio`` ``[channels, samples]`` and cross-fade.

    ``fn`` maps a batch ``[batch, channels, segment]`` to ``[batch, *out_shape, segment]`` (for a
    separator ``out_shape = (sources, channels)``); the result is ``[*out_shape, samples]`` on the
    CPU. Each window gets real signal as context wherever it exists; only the end of the signal is
    zero-padded. ``overlap`` is the fraction of a window shared with its neighbour (0 ≤ overlap < 1).
    """
    if audio.dim() != 2:
        raise ValueError(f"expected [channels, samples], got shape {tuple(audio.shape)}")
    if segment <= 0:
        raise ValueError("segment must be a positive number of samples")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    length = audio.shape[-1]
    overlap_samples = int(round(segment * overlap))
    stride = segment - overlap_samples
    starts = list(range(0, max(length - overlap_samples, 1), stride))
    weight = _fade_weights(segment, overlap_samples)
    out: torch.Tensor | None = None
    total_weight = torch.zeros(length)
    device = torch.device(device) if device is not None else audio.device
    bar = tqdm(total=len(starts), desc=desc, unit="chunk", disable=not progress, leave=False)
    for first in range(0, len(starts), batch_size):
        batch_starts = starts[first : first + batch_size]
        chunks = []
        for start in batch_starts:
            chunk = audio[:, start : start + segment]
            if chunk.shape[-1] < segment:
                chunk = torch.nn.functional.pad(chunk, (0, segment - chunk.shape[-1]))
            chunks.append(chunk)
        with torch.inference_mode():
            result = fn(torch.stack(chunks).to(device)).detach().to("cpu", torch.float32)
        if result.shape[0] != len(batch_starts) or result.shape[-1] != segment:
            raise ValueError(f"fn returned shape {tuple(result.shape)} for a batch of {len(batch_starts)} windows of {segment}")
        if out is None:
            out = torch.zeros(*result.shape[1:-1], length)
        for item, start in zip(result, batch_starts):
            valid = min(segment, length - start)
            out[..., start : start + valid] += item[..., :valid] * weight[:valid]
            total_weight[start : start + valid] += weight[:valid]
        bar.update(len(batch_starts))
    bar.close()
    assert out is not None
    return out / total_weight.clamp_min(1e-8)
