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
spectrograms. It has two ways to turn its features into estimates (``output``):

- ``residual``: two complex masks per part ``s``, applied as ``ŷ_s = (1 + A_s) ⊙ x̂_s + B_s ⊙ X``
  (``x̂_s`` the previous estimate, ``X`` the mixture). An untrained refiner returns its input exactly.
  Measured (BENCHMARKS, issue 14): it can re-separate where the base is weak, but it also learns to
  re-separate where the base is good, and what it learns follows the training style.
- ``mixture``: the parts are masks *of the mixture* that always sum to one,
  ``ŷ_s = (softmax_s(log |x̂_s|² + L_s) + C_s − mean_s C) ⊙ X``, with real logits ``L_s`` and complex
  corrections ``C_s``. An untrained refiner is the estimates' ratio (Wiener) mask of the mixture, the
  post-filter that gives the measured +0.5 dB; training moves the masks from there. The estimates sum to
  the mixture by construction, so no step can invent energy the mixture does not have — a constraint
  that does not depend on the style it was trained on. The ratio masks are also input channels.

The last layer starts at zero in both, so training only moves away from the starting point where that
helps. The step (how many refinements the input has had) is an embedding that scales and
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


OUTPUTS = ("residual", "mixture")
#: added to every power before the log of the ratio mask: a bin no estimate claims is shared evenly
POWER_FLOOR = 1e-8


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
    #: ``residual`` (masks of the estimate and of the mixture) or ``mixture`` (masks of the mixture that sum to one)
    output: str = "residual"

    def __post_init__(self) -> None:
        self.check_shape()
        if not self.targets:
            raise ValueError("a refiner needs the parts it refines (targets)")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")

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


def estimate_power(specs: torch.Tensor) -> torch.Tensor:
    """``|x̂|²`` of complex-as-channels spectrograms ``[..., 2C, T, F]`` → ``[..., C, T, F]``."""
    *lead, channels2, frames, freqs = specs.shape
    pairs = specs.reshape(*lead, channels2 // 2, 2, frames, freqs)
    return pairs.square().sum(dim=-3)


@register_family("refiner", task="refinement", config_class=RefinerConfig)
class Refiner(nn.Module):
    """``forward(mix [B, C, T], estimates [B, S, C, T], step [B]) → refined estimates [B, S, C, T]``."""

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        self.config = cfg = config
        ch, parts = cfg.internal_channels, len(cfg.targets)
        spec_channels = 2 * cfg.audio_channels
        freqs = cfg.n_fft // 2
        ratio_channels = cfg.audio_channels * parts if cfg.output == "mixture" else 0
        self.first_conv = nn.Sequential(nn.Conv2d(spec_channels * (1 + parts) + ratio_channels, ch, 1), nn.BatchNorm2d(ch), nn.ReLU())
        self.encoders = nn.ModuleList(StepBlock(ch, cfg, freqs >> level) for level in range(cfg.depth))
        self.downs = nn.ModuleList(_down(ch) for _ in range(cfg.depth))
        self.middle = StepBlock(ch, cfg, freqs >> cfg.depth)
        self.ups = nn.ModuleList(_up(ch) for _ in range(cfg.depth))
        self.decoders = nn.ModuleList(StepBlock(2 * ch, cfg, freqs >> level) for level in reversed(range(cfg.depth)))
        # residual: two complex masks per part, A (on the previous estimate) and B (on the mixture);
        # mixture: one real logit and one complex correction per part and channel
        per_part = 2 * spec_channels if cfg.output == "residual" else 3 * cfg.audio_channels
        self.last_conv = nn.Conv2d(ch, per_part * parts, 1)
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
        inputs = [mix_spec, estimate_specs.flatten(1, 2)]
        if self.config.output == "mixture":
            log_power = estimate_power(estimate_specs).add(POWER_FLOOR).log()  # [B, S, C, T, F]
            inputs.append(log_power.softmax(dim=1).flatten(1, 2))
        x = torch.cat(inputs, dim=1)
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
        if self.config.output == "mixture":
            return self._mixture_masks(self.last_conv(x)[:, :, :frames], log_power, mix_spec)
        masks = self.last_conv(x)[:, :, :frames].reshape(batch * parts, 2, channels2, frames, freqs)
        previous = estimate_specs.reshape(batch * parts, channels2, frames, freqs)
        mixture = mix_spec.repeat_interleave(parts, dim=0)
        refined = previous + complex_channels_multiply(masks[:, 0], previous) + complex_channels_multiply(masks[:, 1], mixture)
        return refined.view(batch, parts, channels2, frames, freqs)

    def _mixture_masks(self, out: torch.Tensor, log_power: torch.Tensor, mix_spec: torch.Tensor) -> torch.Tensor:
        """Masks of the mixture that sum to one over the parts, applied to it: ``[B, S, 2C, T, F]``."""
        batch, parts, channels, frames, freqs = log_power.shape
        out = out.reshape(batch, parts, 3, channels, frames, freqs)
        ratio = (log_power + out[:, :, 0]).softmax(dim=1)  # [B, S, C, T, F], sums to 1 over S
        correction = out[:, :, 1:].transpose(2, 3)  # [B, S, C, 2, T, F]: re, im per channel
        correction = correction - correction.mean(dim=1, keepdim=True)  # sums to 0 over S
        mask = correction + torch.stack([ratio, torch.zeros_like(ratio)], dim=3)  # complex, sums to 1 over S
        mask = mask.reshape(batch * parts, 2 * channels, frames, freqs)
        refined = complex_channels_multiply(mask, mix_spec.repeat_interleave(parts, dim=0))
        return refined.view(batch, parts, 2 * channels, frames, freqs)

    def forward(self, mix: torch.Tensor, estimates: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        batch, parts, channels, length = estimates.shape
        specs = self.spectrogram(estimates.reshape(batch * parts, channels, length))
        refined = self.refine_spec(self.spectrogram(mix), specs.view(batch, parts, *specs.shape[1:]), step)
        audio = from_complex_channels(refined.flatten(0, 1), self.config.n_fft, self.config.hop_length, length)
        return audio.view(batch, parts, channels, length)
