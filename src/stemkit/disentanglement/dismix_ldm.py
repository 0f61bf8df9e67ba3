"""DisMix, latent-diffusion variant (Luo et al. 2024, §4.2 / Table 3): pitch and timbre of each chorale part.

Everything lives in the latent space of a frozen mel VAE (:mod:`stemkit.synthesis.mel_vae`, 8 × 16 × T/4
for a 64-band mel at 100 frames/s, flattened here to ``D = 128`` channels per latent frame):

- the **mixture embedding** is the VAE's latent of the mixture (the paper's frozen E_vae);
- a **query encoder** (2-D convolutions like the VAE encoder, trained) pools a clip of the wanted part,
  taken from elsewhere in the piece, over time into ``e_q`` (``D``);
- per source, ``e_m`` and the broadcast ``e_q`` are joined by a 1×1 convolution; from the join a
  **transcriber** (1-D convolutions, upsampled to the mel frame rate) predicts a 129-class pitch roll
  (128 MIDI pitches + "no note"), which is **stochastically binarised** (as in the simple variant) and
  projected back to the latent rate as the pitch latent ν (``D × T'``); a Gaussian **timbre encoder**
  pools the join over time into τ (``D``);
- the **decoder** is a diffusion transformer (:mod:`stemkit.diffusion.backbones.dit`) over all sources'
  latents at once, each source conditioned frame by frame on ``s_i = [ν_i; τ_i]``, with no positional
  encoding across sources (the set stays a set), trained with the project's EDM core. ``set=False``
  decodes each source alone (the paper's M0 row).

Swapping timbre is then: encode A (ν from A), take τ from B's parts, decode, VAE-decode, vocode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from stemkit.diffusion.backbones import backbone_config, build_backbone
from stemkit.diffusion.edm import EDMConfig, EDMDenoiser
from stemkit.disentanglement.dismix_simple import stochastic_binarize
from stemkit.registry import register_family
from stemkit.synthesis.mel_vae import MelVAE, MelVAEConfig

SOURCE = "source"
"""The name of the per-source condition s = [ν; τ] in the denoiser's condition mapping."""

NO_NOTE = 128
"""The pitch roll's class for frames where the part is silent."""


@dataclass
class DisMixLDMConfig:
    vae: dict = field(default_factory=dict)  #: the mel VAE's :class:`MelVAEConfig` fields (its weights are bundled)
    pitch_classes: int = 129  #: 128 MIDI pitches + no note
    query_channels: int = 32  #: width of the query encoder's first level
    hidden: int = 256  #: width of the transcriber, projector and timbre encoder
    layers: int = 3  #: convolution layers in each of them
    binarize: str = "stochastic"  #: "stochastic" (SB) or "none" (ν from probabilities)
    set_decoding: bool = True  #: decode all sources jointly (M1); False = each alone (M0)
    #: normalise ν per latent frame (LayerNorm over its channels, no affine), as τ's KL keeps τ near unit
    #: scale; not in the paper. Why: early training shrank the projector's output tenfold; with this, ν
    #: keeps its scale, but on its own the projector then collapses the pitches' directions instead
    #: (BENCHMARKS.md, "does the decoder read the pitch?")
    pitch_norm: bool = False
    backbone: str = "dit"
    network: dict = field(default_factory=lambda: {"patch": 4, "width": 512, "depth": 3, "heads": 4})
    edm: dict = field(default_factory=dict)  #: :class:`EDMConfig` fields; set ``sigma_data`` to the latents' std
    cond_dropout: float = 0.1  #: share of training items decoded with the null condition (guidance)

    def __post_init__(self) -> None:
        if self.binarize not in ("stochastic", "none"):
            raise ValueError(f"binarize must be 'stochastic' or 'none', got {self.binarize!r}")
        if min(self.pitch_classes, self.query_channels, self.hidden, self.layers) < 1:
            raise ValueError("pitch_classes, query_channels, hidden and layers must be positive")

    def vae_config(self) -> MelVAEConfig:
        return MelVAEConfig(**self.vae)

    @property
    def latent_dim(self) -> int:
        vae = self.vae_config()
        return vae.latent_channels * vae.latent_bands

    def backbone_config(self):
        d = self.latent_dim
        return backbone_config(self.backbone, dict(self.network, in_channels=d, conditions=[
            {"name": SOURCE, "kind": "frames", "dim": 2 * d}]))

    def edm_config(self) -> EDMConfig:
        return EDMConfig(**self.edm)

    def to_dict(self) -> dict[str, Any]:
        network = {k: v for k, v in self.backbone_config().to_dict().items() if k not in ("in_channels", "conditions")}
        return dict(asdict(self), vae=self.vae_config().to_dict(), network=network, edm=self.edm_config().to_dict())


def conv_stack(c_in: int, width: int, layers: int) -> nn.Sequential:
    """1-D convolutions (kernel 3) with GroupNorm and SiLU: the body of the transcriber, projector and timbre encoder."""
    out: list[nn.Module] = []
    for i in range(layers):
        out += [nn.Conv1d(c_in if i == 0 else width, width, 3, padding=1), nn.GroupNorm(8 if width % 8 == 0 else 1, width), nn.SiLU()]
    return nn.Sequential(*out)


class QueryEncoder(nn.Module):
    """A query's scaled log-mel ``[N, n_mels, F]`` → ``e_q`` ``[N, D]``: strided 2-D convolutions down to the
    VAE's latent grid (``C × bands'``), then the mean over time (a query is a timbre sample, not a timeline)."""

    def __init__(self, vae: MelVAEConfig, channels: int) -> None:
        super().__init__()
        levels = len(vae.channel_mults) - 1
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.SiLU()]
        width = channels
        for _ in range(levels):
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GroupNorm(8 if (2 * width) % 8 == 0 else 1, 2 * width), nn.SiLU()]
            width *= 2
        layers.append(nn.Conv2d(width, vae.latent_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(mel.unsqueeze(1)).mean(dim=-1).flatten(1)


@dataclass
class PartLatents:
    """What the encoders make of each (mixture, query) pair, ``[B, S, ...]``."""

    logits: torch.Tensor  #: pitch-roll logits ``[B, S, classes, F]`` (mel frame rate), before binarisation
    nu: torch.Tensor  #: pitch latent ``[B, S, D, T']``
    tau_mean: torch.Tensor  #: ``[B, S, D]``
    tau_logvar: torch.Tensor
    tau: torch.Tensor  #: a sample of the timbre posterior (its mean outside training)
    query_embedding: torch.Tensor  #: ``[B, S, D]``

    def condition(self, tau: torch.Tensor | None = None) -> torch.Tensor:
        """``s = [ν; τ]`` ``[B, S, 2D, T']`` — with another ``tau`` ``[B, S, D]`` for a timbre swap."""
        tau = self.tau if tau is None else tau
        return torch.cat([self.nu, tau.unsqueeze(-1).expand_as(self.nu)], dim=2)


@register_family("dismix-ldm", task="disentanglement", config_class=DisMixLDMConfig, ema_of="denoiser")
class DisMixLDM(nn.Module):
    def __init__(self, config: DisMixLDMConfig) -> None:
        super().__init__()
        self.config = config
        vae = config.vae_config()
        self.vae = MelVAE(vae)
        d, h, f = config.latent_dim, config.hidden, vae.factor
        self.query_encoder = QueryEncoder(vae, config.query_channels)
        self.join = nn.Conv1d(2 * d, d, 1)
        self.transcriber = nn.Sequential(conv_stack(d, h, config.layers), nn.ConvTranspose1d(h, h, f, stride=f), nn.SiLU(),
                                         nn.Conv1d(h, config.pitch_classes, 3, padding=1))
        self.projector = nn.Sequential(conv_stack(config.pitch_classes, h, 1), nn.Conv1d(h, h, f, stride=f), nn.SiLU(),
                                       conv_stack(h, h, max(1, config.layers - 1)), nn.Conv1d(h, d, 1))
        self.timbre_body = conv_stack(d, h, config.layers)
        self.timbre_head = nn.Linear(h, 2 * d)
        self.denoiser = EDMDenoiser(build_backbone(config.backbone, config.backbone_config()), config.edm_config())

    @property
    def sample_rate(self) -> int:
        return self.vae.config.sample_rate

    @property
    def hop(self) -> int:
        """Audio samples per latent frame."""
        return self.vae.hop

    # --- latents of audio (the frozen VAE) --------------------------------------------------------
    @torch.no_grad()
    def latent(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``[..., 1, T]`` (T a multiple of :attr:`hop`) → VAE posterior mean ``[..., D, T / hop]``."""
        lead = audio.shape[:-2]
        out = self.vae.features(audio.reshape(-1, 1, audio.shape[-1]))
        return out.reshape(*lead, *out.shape[1:])

    # --- the encoders -----------------------------------------------------------------------------
    def encode(self, mix_latent: torch.Tensor, query_mels: torch.Tensor) -> PartLatents:
        """Pitch and timbre latents of each query's part in the mixture whose VAE latent is ``mix_latent``
        ``[B, D, T']``; ``query_mels`` ``[B, S, n_mels, Fq]`` (scaled log-mels, any length a multiple of the factor)."""
        batch, sources = query_mels.shape[:2]
        frames = mix_latent.shape[-1]
        e_q = self.query_encoder(query_mels.flatten(0, 1))  # [B·S, D]
        e_m = mix_latent.unsqueeze(1).expand(-1, sources, -1, -1).flatten(0, 1)  # [B·S, D, T']
        joint = self.join(torch.cat([e_m, e_q.unsqueeze(-1).expand(-1, -1, frames)], dim=1))
        logits = self.transcriber(joint)  # [B·S, classes, F]
        nu = self.pitch_latent(logits, frames)
        mean, logvar = self.timbre_head(self.timbre_body(joint).mean(dim=-1)).chunk(2, dim=-1)
        logvar = logvar.clamp(-12.0, 8.0)
        tau = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean

        def per_source(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(batch, sources, *x.shape[1:])

        return PartLatents(per_source(logits), per_source(nu), per_source(mean), per_source(logvar), per_source(tau),
                           per_source(e_q))

    def pitch_latent(self, logits: torch.Tensor, frames: int) -> torch.Tensor:
        """ν ``[..., D, frames]`` from pitch-roll logits ``[..., classes, F]``: binarised (stochastically while
        training, at 0.5 otherwise; or the probabilities with ``binarize: none``), then projected."""
        lead = logits.shape[:-2]
        logits = logits.reshape(-1, *logits.shape[-2:])
        roll = stochastic_binarize(logits, self.training) if self.config.binarize == "stochastic" else torch.sigmoid(logits)
        return self.project_roll(roll, frames).reshape(*lead, self.config.latent_dim, frames)

    def project_roll(self, roll: torch.Tensor, frames: int) -> torch.Tensor:
        """A (binary) pitch roll ``[N, classes, F]`` → ν ``[N, D, frames]``: the projector (and ``pitch_norm``)."""
        nu = self.projector(roll)[..., :frames]
        if self.config.pitch_norm:
            nu = nn.functional.layer_norm(nu.transpose(-1, -2), (nu.shape[-2],)).transpose(-1, -2)
        return nu

    # --- the decoder ------------------------------------------------------------------------------
    def _as_decoded(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Sources decoded together (``[B, S, ...]``) or each alone (``[B·S, 1, ...]``), per the config."""
        batch, sources = x.shape[:2]
        if self.config.set_decoding:
            return x, (batch, sources)
        return x.reshape(batch * sources, 1, *x.shape[2:]), (batch, sources)

    def diffusion_loss(self, source_latents: torch.Tensor, condition: torch.Tensor, drop: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """EDM loss of the decoder on the sources' latents ``[B, S, D, T']`` given ``s`` ``[B, S, 2D, T']``;
        ``drop`` ``[B]`` marks items trained with the null condition; ``generator`` fixes σ and the noise."""
        x0, (batch, sources) = self._as_decoded(source_latents)
        cond_tensor, _ = self._as_decoded(condition)
        cond = {SOURCE: cond_tensor}
        if drop is not None:
            cond["null"] = drop if self.config.set_decoding else drop.repeat_interleave(sources)
        return self.denoiser.loss(x0, cond, generator=generator)

    @torch.no_grad()
    def decode(self, condition: torch.Tensor, steps: int = 32, sampler: str = "heun", cfg: float = 1.0,
               generator: torch.Generator | None = None, progress: bool = False, single: bool = False) -> torch.Tensor:
        """Sample the sources' latents ``[B, S, D, T']`` for ``s`` ``[B, S, 2D, T']``.

        ``single`` decodes each source as a set of its own even for a set-trained model (the paper's
        "Single" column: N_s separate passes); the noise drawn is the same as for the joint decoding.
        """
        from stemkit.diffusion.guidance import ClassifierFreeGuidance
        from stemkit.diffusion.samplers import sample

        if single and self.config.set_decoding:
            batch, sources = condition.shape[:2]
            alone = self.decode(condition.reshape(batch * sources, 1, *condition.shape[2:]), steps, sampler, cfg, generator, progress)
            return alone.reshape(batch, sources, *alone.shape[2:])
        cond_tensor, (batch, sources) = self._as_decoded(condition)
        denoiser = self.denoiser if cfg == 1.0 else ClassifierFreeGuidance(self.denoiser, cfg)
        shape = (*cond_tensor.shape[:2], self.config.latent_dim, cond_tensor.shape[-1])
        out = sample(denoiser, shape, steps=steps, sampler=sampler, cond={SOURCE: cond_tensor}, config=self.denoiser.config,
                     generator=generator, device=condition.device, progress=progress)
        return out.reshape(batch, sources, *out.shape[2:])

    @torch.no_grad()
    def render(self, source_latents: torch.Tensor) -> torch.Tensor:
        """Sources' latents ``[B, S, D, T']`` → audio ``[B, S, 1, T' · hop]`` (VAE decoder, then vocoder or Griffin-Lim)."""
        batch, sources = source_latents.shape[:2]
        audio = self.vae.decode(source_latents.flatten(0, 1))
        return audio.reshape(batch, sources, *audio.shape[1:])

    def pitch_roll(self, logits: torch.Tensor) -> torch.Tensor:
        """The most likely class per frame ``[..., F]`` (chorale parts are monophonic; ``NO_NOTE`` = silence)."""
        return logits.argmax(dim=-2)
