"""The Karras noise schedule (EDM eq. 5): where a sampler spends its steps.

``σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`` for ``i = 0 … N−1``, then ``σ_N = 0``.
Spacing the steps uniformly in ``σ^{1/ρ}`` crowds them towards small σ, where the denoiser's output
changes fastest and truncation error would otherwise dominate; ρ = 7 is EDM's choice and ρ = 1 is a
linear ramp. The final 0 lets the last step land on the clean estimate.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor


def karras_sigmas(
    steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """``steps + 1`` decreasing noise levels (float32): ``σ_max`` first, ``σ_min`` last before the final 0.

    ``steps = 1`` gives ``[σ_max, 0]`` (one jump straight to the clean estimate). The formula is
    evaluated in float64 and rounded once, so ``σ_min`` and ``σ_max`` come out exact.
    """
    try:
        steps = operator.index(steps)
    except TypeError:
        raise ValueError(f"steps must be an integer, got {steps!r}") from None
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if not rho > 0.0:
        raise ValueError(f"rho must be positive, got {rho}")
    if steps == 1:
        ramp = torch.zeros(1, dtype=torch.float64)
    else:
        ramp = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    top, bottom = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    sigmas = (top + ramp * (bottom - top)) ** rho
    sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas.to(dtype=torch.float32, device=device)
