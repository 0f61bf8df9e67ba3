"""The MIDI-driven latent diffusion synthesizer: notes → pitch + envelope curves → EDM sampling of VAE
latents → VAE decode → audio (files: :mod:`stemkit.synthesis.synthesize`).

Why it carries its own VAE: a latent means nothing without the decoder it was trained against, so
one checkpoint holds both, and the facts measured on its training data that synthesis needs — the
envelope model (how loud a note of a given velocity is) and the pitch range it has seen. Notes
outside that range are refused rather than rendered as noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from stemkit.diffusion import ClassifierFreeGuidance, EDMConfig, EDMDenoiser, sample
from stemkit.diffusion.backbones import backbone_config, build_backbone
from stemkit.errors import StemkitError
from stemkit.midi.notes import MidiTrack, Note
from stemkit.synthesis.conditioning import COND_CHANNELS, EnvelopeModel, condition_tensor, frame_count, pitch_from_notes
from stemkit.registry import register_family
from stemkit.synthesis.vae import AudioVAE, VAEConfig

CURVES = "curves"
"""The name of the pitch/envelope condition in the denoiser's condition mapping."""


@dataclass
class LatentSynthConfig:
    vae: dict = field(default_factory=dict)  #: the VAE's :class:`VAEConfig` fields
    backbone: str = "unet1d"  #: the denoiser network, by registered name (:mod:`stemkit.diffusion.backbones`)
    network: dict = field(default_factory=dict)  #: the backbone's settings (its input and the curves condition are set here)
    edm: dict = field(default_factory=dict)  #: :class:`EDMConfig` fields (seed: σ_data = 1, no latent scaling)
    instrument: str = "violin"
    cond_dropout: float = 0.1  #: share of training items with the null condition (enables CFG)
    unet: dict | None = None  #: older name of ``network`` (models saved before the backbone registry)

    def __post_init__(self) -> None:
        if self.unet is not None:
            self.network, self.unet = dict(self.unet), None

    def vae_config(self) -> VAEConfig:
        return VAEConfig(**self.vae)

    def backbone_config(self):
        """The backbone's config: its settings, with the latent as input and the curves as a frame condition."""
        curves = {"name": CURVES, "kind": "frames", "dim": COND_CHANNELS}
        return backbone_config(self.backbone, dict(self.network, in_channels=self.vae_config().latent_dim, conditions=[curves]))

    def edm_config(self) -> EDMConfig:
        return EDMConfig(**self.edm)

    def to_dict(self) -> dict:
        """Every field resolved (defaults included), so a saved model never depends on today's defaults."""
        network = {k: v for k, v in self.backbone_config().to_dict().items() if k not in ("in_channels", "conditions")}
        fields = dict(asdict(self), network=network, edm=self.edm_config().to_dict())
        fields.pop("unet")
        return fields


@register_family("latent-synth", task="synthesis", config_class=LatentSynthConfig, ema_of="denoiser")
class LatentSynth(nn.Module):
    """VAE + EDM denoiser over its latents, with the envelope model and pitch range as buffers."""

    def __init__(self, config: LatentSynthConfig) -> None:
        super().__init__()
        self.config = config
        self.vae = AudioVAE(config.vae_config())
        self.denoiser = EDMDenoiser(build_backbone(config.backbone, config.backbone_config()), config.edm_config())
        defaults = EnvelopeModel()
        self.register_buffer("envelope_params", torch.tensor([defaults.intercept, defaults.slope, defaults.attack, defaults.release]))
        self.register_buffer("pitch_range", torch.tensor([0.0, 127.0]))

    @property
    def sample_rate(self) -> int:
        return self.vae.config.sample_rate

    @property
    def hop(self) -> int:
        return self.vae.hop

    @property
    def envelope_model(self) -> EnvelopeModel:
        intercept, slope, attack, release = (float(v) for v in self.envelope_params)
        return EnvelopeModel(intercept, slope, attack, release)

    def set_data_facts(self, envelope: EnvelopeModel, low: int, high: int) -> None:
        """Record what synthesis needs to know about the training data."""
        self.envelope_params.copy_(torch.tensor([envelope.intercept, envelope.slope, envelope.attack, envelope.release]))
        self.pitch_range.copy_(torch.tensor([float(low), float(high)]))

    def condition_from_notes(self, notes: Sequence[Note], frames: int) -> torch.Tensor:
        """``[1, COND_CHANNELS, frames]`` from MIDI notes: exact pitch, modelled envelope."""
        pitch, voiced = pitch_from_notes(notes, frames, self.hop, self.sample_rate)
        envelope = self.envelope_model.curve(notes, frames, self.hop, self.sample_rate)
        return condition_tensor(pitch, voiced, envelope)[None].to(self.envelope_params.device)

    def check_notes(self, notes: Sequence[Note], name: str = "the MIDI") -> None:
        """A one-line error for input this model cannot render."""
        if not notes:
            raise StemkitError(f"{name} has no notes to synthesize")
        low, high = (int(v) for v in self.pitch_range)
        outside = sorted({n.pitch for n in notes if not low <= n.pitch <= high})
        if outside:
            raise StemkitError(f"{name} has notes {outside[:5]} outside the {self.config.instrument} model's range {low}-{high} (MIDI numbers)")

    plays_drums = False  #: drum tracks are not read from MIDI for this family

    def check_tracks(self, tracks: Sequence[MidiTrack], source: str = "the MIDI") -> None:
        """A one-line error for any track this model cannot render (see :meth:`check_notes`)."""
        for i, track in enumerate(tracks):
            if track.notes:
                self.check_notes(track.notes, name=f"{source} track {track.name or i!r}")

    def render_tracks(self, tracks: Sequence[MidiTrack], seconds: float, steps: int = 18, sampler: str = "heun",
                      cfg: float = 1.0, generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
        """The tracks' sum ``[1, samples]``, ``seconds`` long: every track split into monophonic lines, all lines
        sampled in one batch (the family's side of :class:`~stemkit.synthesis.synthesize.Synthesizer`)."""
        lines = [line for track in tracks for line in split_voices(track.notes)]
        samples = max(1, int(round(seconds * self.sample_rate)))
        frames = frame_count(samples, self.hop)
        cond = torch.cat([self.condition_from_notes(line, frames) for line in lines])
        return self.render_condition(cond, samples, steps, sampler, cfg, generator, progress)

    @torch.no_grad()
    def render_condition(self, cond: torch.Tensor, samples: int, steps: int = 18, sampler: str = "heun", cfg: float = 1.0,
                         generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
        """The sum ``[1, samples]`` of the lines conditioned by ``cond`` ``[lines, COND_CHANNELS, frames]``."""
        cond = cond.to(self.envelope_params.device)
        latent = self.generate_latent(cond, steps, sampler, cfg, generator, progress)
        return self.vae.decode(latent)[:, 0, :samples].sum(dim=0, keepdim=True)

    @torch.no_grad()
    def generate_latent(self, cond: torch.Tensor, steps: int = 18, sampler: str = "heun", cfg: float = 1.0,
                        generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
        """Sample latents ``[B, latent_dim, frames]`` for condition curves ``[B, COND_CHANNELS, frames]``."""
        denoiser = self.denoiser if cfg == 1.0 else ClassifierFreeGuidance(self.denoiser, cfg)
        shape = (cond.shape[0], self.vae.config.latent_dim, cond.shape[-1])
        return sample(denoiser, shape, steps=steps, sampler=sampler, cond={CURVES: cond}, config=self.denoiser.config,
                      generator=generator, device=cond.device, progress=progress)


def split_voices(notes: Sequence[Note]) -> list[list[Note]]:
    """Greedy voice allocation: each note goes to the first voice that is free at its start.

    Why: the model plays one line at a time, so a chord or overlapping notes in one MIDI track are
    rendered as several lines and mixed, rather than refused.
    """
    voices: list[list[Note]] = []
    for note in sorted(notes, key=lambda n: (n.start, -n.pitch)):
        for voice in voices:
            if voice[-1].end <= note.start + 1e-6:
                voice.append(note)
                break
        else:
            voices.append([note])
    return voices


def note_range(all_notes: Sequence[Sequence[Note]]) -> tuple[int, int]:
    pitches = np.asarray([n.pitch for notes in all_notes for n in notes])
    if not len(pitches):
        raise StemkitError("the training data has no notes")
    return int(pitches.min()), int(pitches.max())
