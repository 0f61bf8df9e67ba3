"""The codec slot: what sits between the tensors a diffusion model samples and audio.

Why a slot: the families sample different things — VAE latents (the latent synthesizer), mel
spectrograms (spectrogram diffusion, decoded by a vocoder) — and the sampler, the denoiser and
guidance should not care which. A codec turns audio into the features that are sampled and back:

- ``features(audio [B, 1, T]) -> [B, C, T / hop]`` (deterministic: a VAE gives its posterior mean),
- ``decode(features) -> audio [B, 1, frames · hop]``,
- and says its ``sample_rate``, ``hop`` (samples per feature frame) and ``feature_channels``.

Codecs register by name like backbones and model families: ``audio-vae`` (:mod:`stemkit.synthesis.vae`)
``mel`` (:mod:`stemkit.synthesis.mel_codec`, log-mel features decoded by a trained vocoder when one is
named, else Griffin-Lim) and ``mel-vae`` (:mod:`stemkit.synthesis.mel_vae`, a VAE's latents of those mels).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Protocol, runtime_checkable

from torch import Tensor, nn

#: Modules that define the built-in codecs; imported on the first lookup.
CODEC_MODULES = ("stemkit.synthesis.vae", "stemkit.synthesis.mel_codec", "stemkit.synthesis.mel_vae")

CODECS: dict[str, tuple[type[nn.Module], type]] = {}


@runtime_checkable
class Codec(Protocol):
    sample_rate: int
    hop: int
    feature_channels: int

    def features(self, audio: Tensor) -> Tensor: ...

    def decode(self, features: Tensor) -> Tensor: ...


def register_codec(name: str, config_class: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make ``name`` buildable from a ``config_class`` (a dataclass) or its fields."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in CODECS and CODECS[name][0].__qualname__ != cls.__qualname__:
            raise ValueError(f"codec {name!r} is registered twice")
        CODECS[name] = (cls, config_class)
        return cls

    return add


def build_codec(name: str, fields: dict[str, Any] | Any) -> nn.Module:
    """A codec by registered name, from its config or config fields."""
    for module in CODEC_MODULES:
        importlib.import_module(module)
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}: choose one of {', '.join(sorted(CODECS))}")
    cls, config_class = CODECS[name]
    if not isinstance(fields, config_class):
        known = {f.name for f in dataclasses.fields(config_class)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"codec {name!r} has no setting {', '.join(unknown)}")
        fields = config_class(**fields)
    return cls(fields)
