"""A refiner: reads the mixture and a separator's estimates of every part, and returns better estimates.

Why not remix the estimate into the mixture and separate again (``stemkit.separation.progressive``)?
A separator handed ``(1 − β)·mix + β·x̂`` sees one signal in which its own estimate and the
mixture are already summed: it cannot tell what it said from what is there, and measured gains
stay near +0.2 dB (issue 14). The refiner takes them **apart**: the mixture spectrogram and the
previous estimate of each part are separate input channels, so it can see where two parts claim
the same energy, or where energy of the mixture went unclaimed, and move it. It is trained on chains
of real estimates — the base separator's output, then its own output after k refinement steps —
with the loss on the true stems, so what it learns is how *this* separator errs (DiCoSe and GeCo
refine separators the same way; here it is deterministic, one pass per step).

The network is a small TFC-TDF U-Net (the building blocks of LaSAFT) over complex-as-channels
spectrograms. Its output per part ``s`` is two complex masks, applied as

    ŷ_s = (1 + A_s) ⊙ x̂_s + B_s ⊙ X

(``x̂_s`` the previous estimate, ``X`` the mixture). The last layer starts at zero, so an untrained
refiner returns its input exactly and training can only move away from the base separator where
that helps. The step (how many refinements the input has had) is an embedding that scales and
shifts each block's features (FiLM), so a later step may correct less, or differently.

It refines any separator: the base only has to return all parts of a mixture. The config records
the base's name (``base``) so ``stemkit separate --steps N`` finds the refiner of its model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from stemkit.audio.spectral import complex_channels_multiply, from_complex_channels, to_complex_channels
from stemkit.registry import register_family
from stemkit.separation.lasaft import TDF, TFC, SpectrogramUNetShape, _down, _up


@dataclass
class RefinerConfig(SpectrogramUNetShape):
    """Signal settings (those of the data it refines) and the U-Net's sizes."""

    sample_rate: int = 16000
    audio_channels: int = 1
    targets: list[str] = field(default_factory=lambda: ["soprano", "alto", "tenor", "bass"])
    #: the separator whose estimates it was trained to refine (a model name, or a path)
    base: str = ""
    n_fft: int = 1024
    hop_length: int = 512
    num_frames: int = 64  #: STFT frames per training/inference window
    n_blocks: int = 5  #: encoder blocks + middle + decoder blocks (odd)
    internal_channels: int = 16
    n_internal_layers: int = 2
    kernel_t: int = 3
    kernel_f: int = 3
    bn_factor: int = 16
    min_bn_units: int = 16
    tdf_bias: bool = True
    #: step embeddings: inputs refined this many times or more share the last one
    max_steps: int = 8

    def __post_init__(self) -> None:
        self.check_shape()
        if not self.targets:
            raise ValueError("a refiner needs the parts it refines (targets)")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepBlock(nn.Module):
    """``y = TFC(x)``, scaled and shifted by the step's FiLM, then ``y + TDF(y)``."""

    def __init__(self, in_channels: int, cfg: RefinerConfig, freqs: int) -> None:
        super().__init__()
        ch = cfg.internal_channels
        self.tfc = TFC(in_channels, cfg.n_internal_layers, ch, cfg.kernel_t, cfg.kernel_f)
        self.tdf = TDF(ch, freqs, cfg.bn_factor, cfg.min_bn_units, cfg.tdf_bias)
        self.film = nn.Embedding(cfg.max_steps, 2 * ch)
        nn.init.zeros_(self.film.weight)  # every step starts as the identity modulation

    def forward(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        x = self.tfc(x)
        scale, shift = self.film(step)[:, :, None, None].chunk(2, dim=1)
        x = x * (1.0 + scale) + shift
        return x + self.tdf(x)


@register_family("refiner", task="refinement", config_class=RefinerConfig)
class Refiner(nn.Module):
    """``forward(mix [B, C, T], estimates [B, S, C, T], step [B]) → refined estimates [B, S, C, T]``."""

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        self.config = cfg = config
        ch, parts = cfg.internal_channels, len(cfg.targets)
        spec_channels = 2 * cfg.audio_channels
        freqs = cfg.n_fft // 2
        self.first_conv = nn.Sequential(nn.Conv2d(spec_channels * (1 + parts), ch, 1), nn.BatchNorm2d(ch), nn.ReLU())
        self.encoders = nn.ModuleList(StepBlock(ch, cfg, freqs >> level) for level in range(cfg.depth))
        self.downs = nn.ModuleList(_down(ch) for _ in range(cfg.depth))
        self.middle = StepBlock(ch, cfg, freqs >> cfg.depth)
        self.ups = nn.ModuleList(_up(ch) for _ in range(cfg.depth))
        self.decoders = nn.ModuleList(StepBlock(2 * ch, cfg, freqs >> level) for level in reversed(range(cfg.depth)))
        # two complex masks per part: A (on the previous estimate) and B (on the mixture)
        self.last_conv = nn.Conv2d(ch, 2 * spec_channels * parts, 1)
        nn.init.zeros_(self.last_conv.weight)
        nn.init.zeros_(self.last_conv.bias)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        return to_complex_channels(audio, self.config.n_fft, self.config.hop_length)

    def refine_spec(self, mix_spec: torch.Tensor, estimate_specs: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """``mix_spec [B, 2C, T, F]`` and ``estimate_specs [B, S, 2C, T, F]`` → refined ``[B, S, 2C, T, F]``."""
        batch, parts, channels2, frames, freqs = estimate_specs.shape
        step = step.clamp(max=self.config.max_steps - 1)
        x = torch.cat([mix_spec, estimate_specs.flatten(1, 2)], dim=1)
        pad = (-frames) % (2 ** self.config.depth)
        x = self.first_conv(torch.nn.functional.pad(x, (0, 0, 0, pad)) if pad else x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x, step)
            skips.append(x)
            x = down(x)
        x = self.middle(x, step)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(torch.cat([up(x), skip], dim=1), step)
        masks = self.last_conv(x)[:, :, :frames].reshape(batch * parts, 2, channels2, frames, freqs)
        previous = estimate_specs.reshape(batch * parts, channels2, frames, freqs)
        mixture = mix_spec.repeat_interleave(parts, dim=0)
        refined = previous + complex_channels_multiply(masks[:, 0], previous) + complex_channels_multiply(masks[:, 1], mixture)
        return refined.view(batch, parts, channels2, frames, freqs)

    def forward(self, mix: torch.Tensor, estimates: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        batch, parts, channels, length = estimates.shape
        specs = self.spectrogram(estimates.reshape(batch * parts, channels, length))
        refined = self.refine_spec(self.spectrogram(mix), specs.view(batch, parts, *specs.shape[1:]), step)
        audio = from_complex_channels(refined.flatten(0, 1), self.config.n_fft, self.config.hop_length, length)
        return audio.view(batch, parts, channels, length)
