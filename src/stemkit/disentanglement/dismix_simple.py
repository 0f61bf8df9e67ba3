"""DisMix, simple variant (Luo et al. 2024, §4.1 / Table 1): pitch and timbre of each source of a mel mixture.

The mixture and a *query* (a clip of the wanted instrument from elsewhere, any pitch) are encoded
to 64-d vectors. From the pair, a transcriber predicts the source's pitches (52 logits), which are
**stochastically binarised** (threshold h ~ U(0, 1) while training, 0.5 at evaluation, gradients
straight through) and projected to the pitch latent ν; a Gaussian timbre encoder gives τ. The source
latent is ``s = FiLM(τ → ν)`` and one decoder renders a mel from any latent: a source from ``s_i``,
the mixture from the mixture embedding — or, at test time, from ``Σ s_i``, because training pulls
``e_m`` towards ``Σ s_i`` (the paper's Eq. 9), which is how a mixture is re-rendered after editing.

Why the binarisation is the point: a continuous ν can carry timbre along with pitch (the −SB row of
Table 1 loses the instrument), while ν made of bits that only say which pitches sound cannot; the
KL prior on τ keeps pitch out of τ in turn (the −KLD row). So a pitch swap is swapping ν.

Shapes: mels ``[B, n_mels, frames]`` (natural-log mel, standardised inside with the config's
``mel_mean``/``mel_std``); queries ``[B, S, n_mels, frames]`` for S source slots, with a ``present``
mask ``[B, S]`` saying which slots hold a source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from stemkit.registry import register_family


@dataclass
class DisMixSimpleConfig:
    sample_rate: int = 16000
    n_mels: int = 128
    frames: int = 10
    num_pitches: int = 52
    lowest_pitch: int = 33  #: MIDI pitch of class 0
    instruments: list[str] = field(default_factory=lambda: ["piano", "violin", "flute"])
    embed_dim: int = 64  #: e_m, e_q, ν, τ and s
    conv_channels: int = 128
    conv_layers: int = 3
    hidden: int = 256  #: width of the transcriber, projector and timbre MLPs
    gru_hidden: int = 128
    #: "stochastic" (the paper's SB) or "none" (ν from the sigmoid probabilities: the −SB ablation)
    binarize: str = "stochastic"
    mel_mean: float = -6.0  #: log-mel standardisation (about the chord set's mean and deviation)
    mel_std: float = 4.3

    def __post_init__(self) -> None:
        if self.binarize not in ("stochastic", "none"):
            raise ValueError(f"binarize must be 'stochastic' or 'none', got {self.binarize!r}")
        if min(self.n_mels, self.frames, self.num_pitches, self.embed_dim, self.conv_layers) < 1:
            raise ValueError("n_mels, frames, num_pitches, embed_dim and conv_layers must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stochastic_binarize(logits: torch.Tensor, training: bool) -> torch.Tensor:
    """``1{sigmoid(logits) > h}`` with h ~ U(0, 1) per element when ``training`` (0.5 otherwise), whose
    gradient is the sigmoid's (straight-through): the forward pass is bits, the backward pass is smooth."""
    probs = torch.sigmoid(logits)
    threshold = torch.rand_like(probs) if training else torch.full_like(probs, 0.5)
    bits = (probs > threshold).to(probs.dtype)
    return probs + (bits - probs).detach()


class MelEncoder(nn.Module):
    """Conv1D over time (mel bins as channels) → per-frame features → mean over frames → ``[B, embed_dim]``."""

    def __init__(self, cfg: DisMixSimpleConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = cfg.n_mels
        for _ in range(cfg.conv_layers):
            layers += [nn.Conv1d(channels, cfg.conv_channels, 3, padding=1), nn.GroupNorm(1, cfg.conv_channels), nn.ReLU()]
            channels = cfg.conv_channels
        layers.append(nn.Conv1d(channels, cfg.embed_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(mel).mean(dim=-1)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with LayerNorm + ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(b), nn.ReLU()]
    return nn.Sequential(*layers)


class MelDecoder(nn.Module):
    """A latent broadcast over the crop's frames → 2-layer bidirectional GRU → linear → mel ``[B, n_mels, frames]``."""

    def __init__(self, cfg: DisMixSimpleConfig) -> None:
        super().__init__()
        self.frames = cfg.frames
        self.gru = nn.GRU(cfg.embed_dim, cfg.gru_hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.gru_hidden, cfg.n_mels)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        lead = latent.shape[:-1]
        x = latent.reshape(-1, 1, latent.shape[-1]).expand(-1, self.frames, -1)
        y = self.out(self.gru(x.contiguous())[0])  # [N, frames, n_mels]
        return y.transpose(1, 2).reshape(*lead, -1, self.frames)


@dataclass
class SourceLatents:
    """What the encoders make of each (mixture, query) pair: ``[B, S, ...]``."""

    logits: torch.Tensor  #: pitch logits, before binarisation
    nu: torch.Tensor  #: pitch latent
    tau_mean: torch.Tensor
    tau_logvar: torch.Tensor
    tau: torch.Tensor  #: a sample of the timbre posterior (its mean outside training)
    query_embedding: torch.Tensor


@register_family("dismix-simple", task="disentanglement", config_class=DisMixSimpleConfig)
class DisMixSimple(nn.Module):
    def __init__(self, config: DisMixSimpleConfig) -> None:
        super().__init__()
        self.config = config
        d, h = config.embed_dim, config.hidden
        self.mixture_encoder = MelEncoder(config)
        self.query_encoder = MelEncoder(config)
        self.transcriber = mlp([2 * d, h, h, config.num_pitches])
        self.projector = mlp([config.num_pitches, h, d])
        self.timbre = mlp([2 * d, h, 2 * d])
        self.film = nn.Linear(d, 2 * d)
        self.decoder = MelDecoder(config)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    # --- mel scaling ----------------------------------------------------------------------------
    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.config.mel_mean) / self.config.mel_std

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        return mel * self.config.mel_std + self.config.mel_mean

    # --- the pieces -----------------------------------------------------------------------------
    def embed_mixture(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.mixture_encoder(self.normalize(log_mel))

    def encode(self, e_m: torch.Tensor, queries: torch.Tensor) -> SourceLatents:
        """Pitch and timbre latents of each query's source in the mixture whose embedding is ``e_m``."""
        batch, slots = queries.shape[:2]
        e_q = self.query_encoder(self.normalize(queries).flatten(0, 1)).view(batch, slots, -1)
        joint = torch.cat([e_m.unsqueeze(1).expand(-1, slots, -1), e_q], dim=-1)
        logits = self.transcriber(joint)
        if self.config.binarize == "stochastic":
            pitch = stochastic_binarize(logits, self.training)
        else:
            pitch = torch.sigmoid(logits)
        nu = self.projector(pitch)
        mean, logvar = self.timbre(joint).chunk(2, dim=-1)
        logvar = logvar.clamp(-12.0, 8.0)
        tau = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
        return SourceLatents(logits, nu, mean, logvar, tau, e_q)

    def combine(self, tau: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
        """The source latent s = FiLM(τ → ν): τ scales and shifts ν."""
        scale, shift = self.film(tau).chunk(2, dim=-1)
        return (1.0 + scale) * nu + shift

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[..., n_mels, frames]`` from any latent (a source's s, a mixture's e_m or Σ s)."""
        return self.denormalize(self.decoder(latent))

    def mixture_latent(self, sources: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Σ s_i over the present sources: the latent the decoder renders the mixture from."""
        return (sources * present.unsqueeze(-1).to(sources.dtype)).sum(dim=1)

    # --- everything at once ---------------------------------------------------------------------
    def forward(self, mix: torch.Tensor, queries: torch.Tensor, present: torch.Tensor,
                render_mixture: bool = False) -> dict[str, Any]:
        """Latents and decodings of a batch. Only present slots are decoded (absent ones stay zero); the
        mixture rendered from Σ s_i (``mix_from_sources``) is made when ``render_mixture`` (validation, editing)."""
        e_m = self.embed_mixture(mix)
        latents = self.encode(e_m, queries)
        s = self.combine(latents.tau, latents.nu)
        mask = present.bool()
        sources = s.new_zeros(*s.shape[:2], self.config.n_mels, self.config.frames)
        sources[mask] = self.decode(s[mask])
        out = {"e_m": e_m, "latents": latents, "s": s, "sources": sources, "mix_from_embedding": self.decode(e_m)}
        if render_mixture:
            out["mix_from_sources"] = self.decode(self.mixture_latent(s, present))
        return out

    def pitch_sets(self, logits: torch.Tensor) -> torch.Tensor:
        """Predicted multi-hot pitches (threshold 0.5)."""
        return torch.sigmoid(logits) > 0.5
