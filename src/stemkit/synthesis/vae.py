"""A waveform VAE for mono audio, after the seed's Stable-Audio-style autoencoder.

Why a VAE under the diffusion model: sampling 62.5 latent frames per second instead of 16 000
samples makes diffusion cheap, and a KL-regularised latent is smooth enough for a denoiser to
land on. The encoder divides time by ``prod(strides)`` (256) and outputs ``latent_dim`` (16)
channels, a 16× compression; ResNet-style dilated 1-D convolutions with Snake activations (a
periodic inductive bias that suits pitched audio) and a bi-LSTM before the two output
convolutions, which give the mean and the log-variance. The decoder mirrors the encoder.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from stemkit.diffusion.codecs import register_codec
from stemkit.registry import register_family


@dataclass
class VAEConfig:
    sample_rate: int = 16000
    channels: int = 32  #: width after the input convolution
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  #: width multiplier after each stride
    strides: list[int] = field(default_factory=lambda: [4, 4, 4, 4])  #: time downsampling per block
    latent_dim: int = 16
    dilations: list[int] = field(default_factory=lambda: [1, 3, 9])  #: residual units per block
    kernel_size: int = 7
    lstm: bool = True  #: bi-LSTM before the output convolutions of the encoder

    @property
    def hop(self) -> int:
        """Samples per latent frame."""
        return int(math.prod(self.strides))

    def to_dict(self) -> dict:
        return asdict(self)


class Snake(nn.Module):
    """``x + sin²(αx)/α`` with a learned per-channel frequency α (Ziyin et al. 2020)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.log_alpha.exp()
        return x + torch.sin(alpha * x).pow(2) / (alpha + 1e-9)


def _conv(c_in: int, c_out: int, kernel: int, dilation: int = 1, stride: int = 1, padding: int | None = None) -> nn.Module:
    if padding is None:
        padding = dilation * (kernel - 1) // 2
    return weight_norm(nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation, padding=padding))


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(Snake(channels), _conv(channels, channels, kernel, dilation), Snake(channels), _conv(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class EncoderBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int, cfg: VAEConfig) -> None:
        units = [ResidualUnit(c_in, d, cfg.kernel_size) for d in cfg.dilations]
        super().__init__(*units, Snake(c_in), _conv(c_in, c_out, 2 * stride, stride=stride, padding=stride // 2 + stride % 2))


class DecoderBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int, cfg: VAEConfig) -> None:
        up = weight_norm(nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=stride // 2 + stride % 2,
                                            output_padding=stride % 2))
        units = [ResidualUnit(c_out, d, cfg.kernel_size) for d in cfg.dilations]
        super().__init__(Snake(c_in), up, *units)


class BiLSTM(nn.Module):
    """A residual bidirectional LSTM over time: the whole crop's context for every latent frame."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels, channels // 2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(1, 2))
        return x + out.transpose(1, 2)


@register_codec("audio-vae", VAEConfig)
@register_family("vae", task="autoencoder", config_class=VAEConfig)
class AudioVAE(nn.Module):
    """``encode`` → (mean, log-variance) ``[B, latent_dim, T/hop]``; ``decode`` → audio ``[B, 1, T]``."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if len(config.strides) != len(config.channel_mults):
            raise ValueError("strides and channel_mults must have the same length")
        self.config = config
        widths = [config.channels] + [config.channels * m for m in config.channel_mults]
        enc: list[nn.Module] = [_conv(1, widths[0], config.kernel_size)]
        enc += [EncoderBlock(widths[i], widths[i + 1], s, config) for i, s in enumerate(config.strides)]
        enc += [Snake(widths[-1])]
        if config.lstm:
            enc.append(BiLSTM(widths[-1]))
        self.encoder = nn.Sequential(*enc)
        self.to_mean = _conv(widths[-1], config.latent_dim, 3)
        self.to_logvar = _conv(widths[-1], config.latent_dim, 3)
        dec: list[nn.Module] = [_conv(config.latent_dim, widths[-1], config.kernel_size)]
        dec += [DecoderBlock(widths[i + 1], widths[i], s, config) for i, s in reversed(list(enumerate(config.strides)))]
        dec += [Snake(widths[0]), _conv(widths[0], 1, config.kernel_size)]
        self.decoder = nn.Sequential(*dec)

    @property
    def hop(self) -> int:
        return self.config.hop

    def encode(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 1, T]`` with ``T`` a multiple of ``hop`` → mean and log-variance ``[B, D, T/hop]``."""
        if audio.shape[-1] % self.hop:
            raise ValueError(f"audio length {audio.shape[-1]} is not a multiple of the hop {self.hop}: use reconstruct() or pad")
        h = self.encoder(audio)
        return self.to_mean(h), self.to_logvar(h).clamp(-30.0, 20.0)

    @property
    def feature_channels(self) -> int:
        return self.config.latent_dim

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """The codec view (:mod:`stemkit.diffusion.codecs`): the posterior mean of ``audio``."""
        return self.encode(audio)[0]

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    @staticmethod
    def sample(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (0.5 * logvar).exp() * noise

    @staticmethod
    def kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q ‖ N(0, I)) summed over channels, averaged over batch and frames."""
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()

    @torch.no_grad()
    def reconstruct(self, audio: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Encode and decode audio of any length ``[..., T]`` (padded to the hop, trimmed back)."""
        lead, length = audio.shape[:-1], audio.shape[-1]
        flat = audio.reshape(-1, 1, length)
        pad = (-length) % self.hop
        mean, logvar = self.encode(torch.nn.functional.pad(flat, (0, pad)))
        latent = self.sample(mean, logvar) if sample else mean
        return self.decode(latent)[..., :length].reshape(*lead, length)


def load_vae(name_or_path: str | Path) -> AudioVAE:
    """An audio VAE (eval mode) from a VAE file, or the VAE inside a model that bundles one (a latent
    synthesizer carries the decoder its latents mean something to)."""
    from stemkit.errors import StemkitError
    from stemkit.models import load_model

    model, meta = load_model(name_or_path)
    vae = model if isinstance(model, AudioVAE) else getattr(model, "vae", None)
    if not isinstance(vae, AudioVAE):
        raise StemkitError(f"{name_or_path} is a {meta['family']} model and holds no audio VAE")
    return vae.eval()
