"""Denoiser backbones, each registered by name (:mod:`.registry`): ``F(x_in, c_noise, cond) -> x_out``.

- ``unet1d``: a 1-D U-Net over latent frames; frame-aligned curves concatenated, vectors as FiLM.
- ``dit``: a diffusion transformer over patches of a *set* of sources, adaLN-Zero driven by per-source
  (or global) conditions, no positional encoding across sources (DisMix's decoder).
- ``t5film``: T5 encoders over token sequences, a decoder that cross-attends to their concatenated
  encodings and takes the noise level by FiLM (Hawthorne et al. 2022, spectrogram diffusion).

A sixth network goes in a new module here, registered with :func:`register_backbone`.
"""

from stemkit.diffusion.backbones.registry import BACKBONES, backbone_config, build_backbone, register_backbone
from stemkit.diffusion.backbones.unet1d import UNet1D, UNet1DConfig
from stemkit.diffusion.backbones.dit import DiT, DiTConfig
from stemkit.diffusion.backbones.t5film import T5FiLM, T5FiLMConfig

__all__ = [
    "BACKBONES",
    "DiT",
    "DiTConfig",
    "T5FiLM",
    "T5FiLMConfig",
    "UNet1D",
    "UNet1DConfig",
    "backbone_config",
    "build_backbone",
    "register_backbone",
]
