"""The diffusion core (EDM, Karras et al. 2022), shared by every diffusion family and independent of audio.

The one interface is the denoiser ``D(x, sigma, cond) -> x0_hat``, with ``cond`` a mapping of named
conditions (:mod:`.conditions`: frame-aligned curves, token sequences with masks, global or
per-source vectors, each with a zero or learned null for classifier-free guidance).

- :mod:`.edm` — :class:`EDMDenoiser` wraps a raw network ``F(x_in, c_noise, cond)`` in EDM
  preconditioning and holds the training loss;
- :mod:`.backbones` — the raw networks by registered name: ``unet1d``, ``dit``, ``t5film``;
- :mod:`.guidance` — :class:`ClassifierFreeGuidance` wraps any denoiser;
- :mod:`.samplers`, :mod:`.schedules` — Heun, Euler, DPM-Solver++(2M) over the Karras σ schedule;
- :mod:`.codecs` — the slot between sampled features and audio (an audio VAE, a mel spectrogram).

A family composes these: e.g. ``EDMDenoiser(build_backbone("dit", cfg), EDMConfig(...))``, sampled
with ``sample(ClassifierFreeGuidance(denoiser, 2.0), shape, cond={...})`` and decoded by its codec.
"""

from stemkit.diffusion.conditions import NULL, ConditionSpec
from stemkit.diffusion.edm import EDMConfig, EDMDenoiser, edm_scalings, loss_weight, sample_training_sigmas
from stemkit.diffusion.guidance import ClassifierFreeGuidance
from stemkit.diffusion.samplers import SAMPLERS, sample, sample_dpmpp_2m, sample_euler, sample_heun
from stemkit.diffusion.schedules import karras_sigmas

__all__ = [
    "NULL",
    "SAMPLERS",
    "ClassifierFreeGuidance",
    "ConditionSpec",
    "EDMConfig",
    "EDMDenoiser",
    "edm_scalings",
    "karras_sigmas",
    "loss_weight",
    "sample",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_heun",
    "sample_training_sigmas",
]
