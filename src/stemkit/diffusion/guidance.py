"""Classifier-free guidance (Ho & Salimans 2022): trade diversity for fidelity to the condition.

A model trained with the condition sometimes replaced by a learned or fixed "null" condition knows
both ``D(x; σ, c)`` and ``D(x; σ, ∅)``; extrapolating from the second towards the first,

    D_w(x; σ, c) = D(x; σ, ∅) + w·(D(x; σ, c) − D(x; σ, ∅)),

sharpens the conditional distribution. The weight follows the diffusers convention: ``w = 1`` is the
plain conditional model, ``w = 0`` the unconditional one, ``w > 1`` guides. The guided object has the
denoiser signature, so every sampler takes it unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stemkit.diffusion.edm import Denoiser, sigma_per_item


class ClassifierFreeGuidance:
    """Wrap ``denoiser`` so that calling it returns the guided estimate ``D_w(x, sigma, cond)``.

    ``null_cond`` is the "no condition" input the model was trained with; it broadcasts to ``cond``'s
    shape (a single ``[1, …]`` or unbatched null serves any batch). Both branches run in one batched
    call — ``[x; x]`` with ``[cond; null]`` — which is what a GPU likes; at ``w = 1`` (or 0) only the
    branch that matters runs.
    """

    def __init__(self, denoiser: Denoiser, weight: float, null_cond: Tensor) -> None:
        self.denoiser = denoiser
        self.weight = float(weight)
        self.null_cond = null_cond

    def _null_like(self, cond: Tensor) -> Tensor:
        return self.null_cond.to(dtype=cond.dtype, device=cond.device).expand_as(cond)

    def __call__(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            raise ValueError("classifier-free guidance needs a condition; call the denoiser itself for unconditional sampling")
        if self.weight == 1.0:
            return self.denoiser(x, sigma, cond)
        if self.weight == 0.0:
            return self.denoiser(x, sigma, self._null_like(cond))
        sigma = sigma_per_item(sigma, x.shape[0], x)
        both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond, self._null_like(cond)]))
        conditional, unconditional = both.chunk(2)
        return unconditional + self.weight * (conditional - unconditional)

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidance(weight={self.weight:g}, denoiser={self.denoiser!r})"
