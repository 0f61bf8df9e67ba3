"""Classifier-free guidance (Ho & Salimans 2022): trade diversity for fidelity to the condition.

A model trained with the condition sometimes replaced by a learned or fixed "null" condition knows
both ``D(x; σ, c)`` and ``D(x; σ, ∅)``; extrapolating from the second towards the first,

    D_w(x; σ, c) = D(x; σ, ∅) + w·(D(x; σ, c) − D(x; σ, ∅)),

sharpens the conditional distribution. The weight follows the diffusers convention: ``w = 1`` is the
plain conditional model, ``w = 0`` the unconditional one, ``w > 1`` guides. The guided object has the
denoiser signature, so every sampler takes it unchanged.

Conditions come as a mapping (:mod:`stemkit.diffusion.conditions`) or, for a network that reads one
bare tensor, as that tensor. With a mapping no null tensor is needed: the unconditional branch is the
same mapping with :data:`~stemkit.diffusion.conditions.NULL` set, and each condition swaps in its own
null (zeros or learned), whatever its kind.
"""

from __future__ import annotations

import torch
from torch import Tensor

from collections.abc import Mapping

from stemkit.diffusion.conditions import concat_conditions, with_null
from stemkit.diffusion.edm import Denoiser, sigma_per_item


class ClassifierFreeGuidance:
    """Wrap ``denoiser`` so that calling it returns the guided estimate ``D_w(x, sigma, cond)``.

    ``null_cond`` is needed only for a bare-tensor condition: the "no condition" input the model was
    trained with, broadcast to ``cond``'s shape (a single ``[1, …]`` or unbatched null serves any
    batch). A mapping condition carries its null itself. Both branches run in one batched
    call — ``[x; x]`` with ``[cond; null]`` — which is what a GPU likes; at ``w = 1`` (or 0) only the
    branch that matters runs.
    """

    def __init__(self, denoiser: Denoiser, weight: float, null_cond: Tensor | None = None) -> None:
        self.denoiser = denoiser
        self.weight = float(weight)
        self.null_cond = null_cond

    def _null_like(self, cond: Tensor | Mapping[str, Tensor], x: Tensor):
        if isinstance(cond, Mapping):
            return with_null(cond, x.shape[0], x.device)
        if self.null_cond is None:
            raise ValueError("a bare-tensor condition needs null_cond; or pass the conditions as a mapping")
        return self.null_cond.to(dtype=cond.dtype, device=cond.device).expand_as(cond)

    def __call__(self, x: Tensor, sigma: float | Tensor, cond: Tensor | Mapping[str, Tensor] | None = None) -> Tensor:
        if cond is None:
            raise ValueError("classifier-free guidance needs a condition; call the denoiser itself for unconditional sampling")
        if self.weight == 1.0:
            return self.denoiser(x, sigma, cond)
        if self.weight == 0.0:
            return self.denoiser(x, sigma, self._null_like(cond, x))
        sigma = sigma_per_item(sigma, x.shape[0], x)
        batch = x.shape[0]
        if isinstance(cond, Mapping):
            both_cond = concat_conditions(cond, self._null_like(cond, x), (batch, batch), x.device)
        else:
            both_cond = torch.cat([cond, self._null_like(cond, x)])
        both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), both_cond)
        conditional, unconditional = both.chunk(2)
        return unconditional + self.weight * (conditional - unconditional)

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidance(weight={self.weight:g}, denoiser={self.denoiser!r})"
