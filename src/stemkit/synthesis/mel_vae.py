"""A mel-spectrogram VAE: the latent space DisMix's diffusion decoder samples (Luo et al. 2024, after AudioLDM 2).

Why a VAE over mels: DisMix's latent variant renders each source by diffusion in a compressed
mel space — AudioLDM 2's VAE turns a 64-band, 100 frames/s log-mel into 8 channels at a quarter of
its bands and frames (8 × 16 × T/4), so a 4-s source is 8 × 16 × 100 numbers. We train our own (the
user may hold AudioLDM 2's weights, but nothing is downloaded): a 2-D convolutional encoder/decoder
with residual blocks, GroupNorm and SiLU, halving bands and frames at each level, a Gaussian posterior
with a small KL, and an L1 mel reconstruction. The mel comes from the project's mel codec
(:class:`~stemkit.synthesis.mel_codec.MelCodec`, features scaled to [−1, 1]), and its decoder — a
trained vocoder when named, else Griffin-Lim — turns decoded mels into audio.

As a codec (``mel-vae``, :mod:`stemkit.diffusion.codecs`) the latent ``[B, C, bands', T']`` is seen as
``[B, C · bands', T']``: channels × latent bands per latent frame, ``hop = 2^levels × mel hop`` samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from stemkit.diffusion.codecs import register_codec
from stemkit.registry import register_family
from stemkit.synthesis.mel_codec import MelCodec, MelCodecConfig
from stemkit.synthesis.vocoder import mel_settings

#: DisMix's mel (AudioLDM 2's): 64 bands, window 1024, hop 160 (100 frames/s) — what ``mel`` defaults to
DISMIX_MEL = {"n_mels": 64, "win_length": 1024, "hop": 160}


@dataclass
class MelVAEConfig:
    #: the mel it encodes: :class:`MelCodecConfig` fields over :data:`DISMIX_MEL` (``vocoder`` names the model that
    #: turns decoded mels into audio; None = Griffin-Lim)
    mel: dict = field(default_factory=dict)
    channels: int = 32
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 4])  #: one level per entry; all but the first halve
    latent_channels: int = 8
    groups: int = 8  #: GroupNorm groups

    def __post_init__(self) -> None:
        if len(self.channel_mults) < 1 or min(self.channel_mults) < 1:
            raise ValueError("channel_mults needs at least one positive entry")
        if any((self.channels * m) % self.groups for m in self.channel_mults):
            raise ValueError(f"every level's width (channels × mult) must be divisible by groups ({self.groups})")
        n_mels = self.mel_config().n_mels
        if n_mels % self.factor:
            raise ValueError(f"n_mels ({n_mels}) must be divisible by {self.factor} (2 per downsampling level)")

    @property
    def factor(self) -> int:
        """How much bands and frames shrink: 2 per level after the first."""
        return 2 ** (len(self.channel_mults) - 1)

    def mel_config(self) -> MelCodecConfig:
        return mel_settings(DISMIX_MEL, self.mel)

    @property
    def sample_rate(self) -> int:
        return self.mel_config().sample_rate

    @property
    def latent_bands(self) -> int:
        return self.mel_config().n_mels // self.factor

    def to_dict(self) -> dict:
        return dict(asdict(self), mel=self.mel_config().to_dict())


class ResBlock2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(groups, c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
                                  nn.GroupNorm(groups, c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


@register_codec("mel-vae", MelVAEConfig)
@register_family("mel-vae", task="autoencoder", config_class=MelVAEConfig)
class MelVAE(nn.Module):
    """``encode`` scaled log-mel ``[B, n_mels, F]`` → mean, log-variance ``[B, C, n_mels/f, F/f]``; ``decode_mel``
    back; ``features``/``decode`` are the codec's audio ↔ flat-latent view."""

    def __init__(self, config: MelVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.codec = MelCodec(config.mel_config())  # the mel front end and its vocoder; holds no weights of its own
        widths = [config.channels * m for m in config.channel_mults]
        g = config.groups
        enc: list[nn.Module] = [nn.Conv2d(1, widths[0], 3, padding=1), ResBlock2d(widths[0], widths[0], g)]
        for previous, width in zip(widths[:-1], widths[1:]):
            enc += [nn.Conv2d(previous, previous, 3, stride=2, padding=1), ResBlock2d(previous, width, g)]
        enc += [ResBlock2d(widths[-1], widths[-1], g), nn.GroupNorm(g, widths[-1]), nn.SiLU(),
                nn.Conv2d(widths[-1], 2 * config.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(config.latent_channels, widths[-1], 3, padding=1), ResBlock2d(widths[-1], widths[-1], g)]
        for width, following in zip(widths[:0:-1], widths[-2::-1]):
            dec += [ResBlock2d(width, following, g), nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(following, following, 3, padding=1)]
        dec += [ResBlock2d(widths[0], widths[0], g), nn.GroupNorm(g, widths[0]), nn.SiLU(), nn.Conv2d(widths[0], 1, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop(self) -> int:
        """Audio samples per latent frame."""
        return self.codec.hop * self.config.factor

    @property
    def feature_channels(self) -> int:
        return self.config.latent_channels * self.config.latent_bands

    def mel(self, audio: torch.Tensor) -> torch.Tensor:
        """The codec's scaled log-mel ``[B, n_mels, T // mel_hop]`` of audio ``[B, 1, T]``."""
        return self.codec.encode(audio)

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if mel.shape[-1] % self.config.factor:
            raise ValueError(f"{mel.shape[-1]} mel frames is not a multiple of {self.config.factor}: crop or pad the audio "
                             f"to a multiple of {self.hop} samples")
        mean, logvar = self.encoder(mel.unsqueeze(1)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode_mel(self, latent: torch.Tensor) -> torch.Tensor:
        """A latent ``[B, C, bands', frames']`` (or the codec's flat ``[B, C · bands', frames']``) → scaled log-mel."""
        if latent.dim() == 3:
            latent = latent.unflatten(1, (self.config.latent_channels, self.config.latent_bands))
        return self.decoder(latent).squeeze(1)

    @staticmethod
    def sample(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mean + (0.5 * logvar).exp() * torch.randn_like(mean)

    @staticmethod
    def kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q ‖ N(0, I)) summed over channels, averaged over batch, bands and frames."""
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()

    # --- the codec view ---------------------------------------------------------------------------
    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Posterior mean of ``audio`` ``[B, 1, T]`` (T a multiple of :attr:`hop`) as ``[B, C · bands', T / hop]``."""
        return self.encode(self.mel(audio))[0].flatten(1, 2)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent → mel → audio ``[B, 1, frames' · hop]`` through the mel codec's decoder (vocoder or Griffin-Lim)."""
        return self.codec.decode(self.decode_mel(latent).clamp(-1.0, 1.0))
