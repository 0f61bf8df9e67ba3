"""Which number format a network runs in at inference: float32, or bfloat16 where the hardware does it.

Why: on a CPU with bfloat16 units (Intel AMX or AVX-512 BF16, e.g. Xeon Sapphire Rapids and later), oneDNN
runs convolutions and matrix products in bfloat16 much faster than in float32 (LaSAFT separates
1.8–2.0× faster), and a separator's output moves by less than the metrics can see (BENCHMARKS.md, "Separation speed"). On a CPU
without those units bfloat16 is emulated and slower, so ``auto`` takes it only where it is native. Only
the network runs under autocast: STFTs, masks' application by the caller, overlap-add and the written
audio stay float32. ``auto`` keeps float32 on GPUs and MPS, where stemkit has not measured bfloat16 yet;
``bf16`` asks for it on any device.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from stemkit.errors import StemkitError

PRECISIONS = ("auto", "32", "bf16")


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AMX tiles or AVX-512 BF16)."""
    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """``auto``/``32``/``bf16`` on ``device`` → the autocast dtype (None: plain float32)."""
    if precision not in PRECISIONS:
        raise StemkitError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.device(device).type == "cpu" and cpu_has_native_bf16() else None


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> ContextManager:
    """Autocast to ``dtype`` on ``device``'s type, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
