"""Samplers for the probability-flow ODE ``dx/dσ = (x − D(x; σ)) / σ`` (EDM eq. 3 with σ(t) = t).

Every sampler has the same shape, ``(denoiser, x, sigmas, cond=None, progress=False) -> x``:

- ``denoiser(x, sigma, cond) -> x0_hat`` with ``sigma`` a ``[B]`` tensor (an :class:`EDMDenoiser`, a
  :class:`ClassifierFreeGuidance`, or any closed-form denoiser in a test);
- ``x`` is the starting noise already scaled by ``sigmas[0]``;
- ``sigmas`` decreases and ends in 0 (:func:`stemkit.diffusion.schedules.karras_sigmas`).

They know nothing about audio, and they are deterministic: all randomness is in the starting ``x``.
Cost in denoiser calls (NFE) for ``N = len(sigmas) − 1`` steps: Euler N, Heun 2N − 1, DPM++(2M) N.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from stemkit.diffusion.edm import Denoiser, EDMConfig
from stemkit.diffusion.schedules import karras_sigmas


def _levels(sigmas: Tensor | Sequence[float]) -> list[float]:
    """The schedule as Python floats: step arithmetic stays exact and off the device."""
    levels = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, Tensor) else sigmas)]
    if len(levels) < 2 or levels[-1] != 0.0:
        raise ValueError("sigmas must hold at least two levels and end in 0")
    if any(b >= a for a, b in zip(levels, levels[1:])):
        raise ValueError("sigmas must be strictly decreasing")
    return levels


def _at(sigma: float, x: Tensor) -> Tensor:
    """σ as the ``[B]`` tensor the denoiser signature asks for."""
    return torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)


def _steps(levels: list[float], progress: bool, name: str):
    """Consecutive (σ, σ_next) pairs, behind a tqdm bar when asked."""
    pairs = list(zip(levels[:-1], levels[1:]))
    return tqdm(pairs, desc=name, disable=not progress, leave=False)


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], cond: Any = None, progress: bool = False
) -> Tensor:
    """First-order Euler on the ODE: ``x ← x + (σ_next − σ)·(x − D)/σ``. Simple, needs many steps."""
    for sigma, sigma_next in _steps(_levels(sigmas), progress, "euler"):
        slope = (x - denoiser(x, _at(sigma, x), cond)) / sigma
        x = x + (sigma_next - sigma) * slope
    return x


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], cond: Any = None, progress: bool = False
) -> Tensor:
    """EDM Algorithm 1: an Euler step, then a correction with the slope at its end (trapezoid rule).

    The last step ends at σ = 0, where the slope is undefined, so it stays a plain Euler step — which
    lands exactly on the denoised estimate.
    """
    for sigma, sigma_next in _steps(_levels(sigmas), progress, "heun"):
        slope = (x - denoiser(x, _at(sigma, x), cond)) / sigma
        x_next = x + (sigma_next - sigma) * slope
        if sigma_next > 0:
            slope_next = (x_next - denoiser(x_next, _at(sigma_next, x), cond)) / sigma_next
            x_next = x + (sigma_next - sigma) * (slope + slope_next) / 2
        x = x_next
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], cond: Any = None, progress: bool = False
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) in log-σ time ``t = −ln σ``.

    The ODE is solved exactly for its linear part, ``x_next = (σ_next/σ)·x − expm1(−h)·D`` with
    ``h = t_next − t``; the second order comes for free by extrapolating D linearly from the previous
    step's estimate (``r = h_last / h``, ``D' = (1 + 1/2r)·D − (1/2r)·D_prev``), so each step costs
    one call. The first step (no history) and the step to σ = 0 (where h is infinite) are first order.
    """
    previous: Tensor | None = None
    h_last = 0.0
    for sigma, sigma_next in _steps(_levels(sigmas), progress, "dpmpp2m"):
        denoised = denoiser(x, _at(sigma, x), cond)
        if sigma_next == 0.0:
            x = denoised  # the first-order step with h = ∞: (σ_next/σ)·x → 0, −expm1(−h) → 1
        else:
            h = math.log(sigma) - math.log(sigma_next)
            estimate = denoised
            if previous is not None:
                r = h_last / h
                estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (sigma_next / sigma) * x - math.expm1(-h) * estimate
            h_last = h
        previous = denoised
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "heun": sample_heun,
    "euler": sample_euler,
    "dpmpp2m": sample_dpmpp_2m,
}


def sample(
    denoiser: Denoiser,
    shape: Sequence[int],
    steps: int = 18,
    sampler: str = "heun",
    cond: Any = None,
    config: EDMConfig | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Tensor:
    """Draw samples of ``shape`` from pure noise: Karras schedule from ``config``, start at
    ``σ_max·ε`` (ε from ``generator``, float32), run ``sampler`` for ``steps`` steps."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: choose one of {', '.join(sorted(SAMPLERS))}")
    config = config if config is not None else EDMConfig()
    if device is None and generator is not None:
        device = generator.device
    sigmas = karras_sigmas(steps, config.sigma_min, config.sigma_max, config.rho, device=device)
    x = torch.randn(tuple(shape), generator=generator, device=device) * config.sigma_max
    return SAMPLERS[sampler](denoiser, x, sigmas, cond=cond, progress=progress)
