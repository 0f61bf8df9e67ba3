"""The judges of DisMix's evaluation: a pitch classifier and an instrument classifier on one source's mel.

Why trained classifiers: a swap is right when the decoded source *sounds like* the new pitches on
the old instrument, and there is no ground-truth recording to compare with in general (the paper
judges with classifiers trained on the same data; so do we, and report their own test accuracy so
a reader knows how far to trust them). One network with two heads over a shared convolutional
trunk: a multi-label pitch head (52 sigmoids) and an instrument head (softmax). The trunk pools over
time, so one design judges the chord set's 10-frame crops (Table 1) and chorale parts of any length
(Table 3: 13 instruments, ``num_pitches: 0`` — pitch there is judged by pYIN against the MIDI).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from stemkit.registry import register_family


@dataclass
class MelClassifierConfig:
    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 1024  #: the log-mel the classifier reads (:meth:`MelClassifier.log_mel`): the chord set's by default
    hop: int = 512
    frames: int = 10  #: frames of the crops it was trained on (the trunk pools over time: any length is read)
    num_pitches: int = 52
    lowest_pitch: int = 33
    instruments: list[str] = field(default_factory=lambda: ["piano", "violin", "flute"])
    channels: int = 256
    layers: int = 3
    mel_mean: float = -6.0
    mel_std: float = 4.3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@register_family("mel-classifier", task="classification", config_class=MelClassifierConfig)
class MelClassifier(nn.Module):
    def __init__(self, config: MelClassifierConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = config.n_mels
        for _ in range(config.layers):
            layers += [nn.Conv1d(channels, config.channels, 3, padding=1), nn.GroupNorm(1, config.channels), nn.ReLU()]
            channels = config.channels
        self.trunk = nn.Sequential(*layers)
        with warnings.catch_warnings():  # num_pitches 0 (no pitch head): torch warns that an empty weight has no init
            warnings.simplefilter("ignore", UserWarning)
            self.pitch_head = nn.Linear(2 * channels, config.num_pitches)
        self.instrument_head = nn.Linear(2 * channels, len(config.instruments))

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``[..., samples]`` at :attr:`sample_rate` → the log-mel this classifier reads ``[..., mels, frames]``."""
        from stemkit.audio.spectral import framed_log_mel

        cfg = self.config
        return framed_log_mel(audio, cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels)

    def embed(self, log_mel: torch.Tensor) -> torch.Tensor:
        """The pooled trunk features ``[N, 2·channels]`` both heads read: the embedding of the Fréchet distances."""
        h = self.trunk((log_mel - self.config.mel_mean) / self.config.mel_std)
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)

    def forward(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pitch logits ``[N, num_pitches]`` and instrument logits ``[N, instruments]`` of log-mels ``[N, mels, frames]``."""
        pooled = self.embed(log_mel)
        return self.pitch_head(pooled), self.instrument_head(pooled)

    @torch.no_grad()
    def predict(self, log_mel: torch.Tensor, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """Multi-hot pitches (sigmoid > 0.5) and instrument indices, in batches."""
        pitches, instruments = [], []
        for chunk in log_mel.split(batch):
            p, i = self(chunk)
            pitches.append(torch.sigmoid(p) > 0.5)
            instruments.append(i.argmax(dim=-1))
        return torch.cat(pitches), torch.cat(instruments)
