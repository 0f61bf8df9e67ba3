"""EDM diffusion core (Karras et al. 2022), independent of audio: preconditioning and loss, the
Karras σ schedule, ODE samplers (Heun, Euler, DPM-Solver++(2M)) and classifier-free guidance.

The one interface is the denoiser ``D(x, sigma, cond) -> x0_hat``: :class:`EDMDenoiser` builds it
from a raw network, :class:`ClassifierFreeGuidance` wraps it, and every sampler consumes it.
"""

from stemkit.diffusion.edm import EDMConfig, EDMDenoiser, edm_scalings, loss_weight, sample_training_sigmas
from stemkit.diffusion.guidance import ClassifierFreeGuidance
from stemkit.diffusion.samplers import SAMPLERS, sample, sample_dpmpp_2m, sample_euler, sample_heun
from stemkit.diffusion.schedules import karras_sigmas

__all__ = [
    "SAMPLERS",
    "ClassifierFreeGuidance",
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
