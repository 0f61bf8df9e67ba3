"""The backbone registry: the raw networks ``F(x_in, c_noise, cond)`` that EDM preconditions.

Why a registry: a model family names its backbone and config in its own config (``backbone:
dit``), and the family code never imports a particular network. A new backbone is a module with a
config dataclass and a class decorated with :func:`register_backbone`; nothing else changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from torch import nn

BACKBONES: dict[str, tuple[type[nn.Module], type]] = {}


def register_backbone(name: str, config_class: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make ``name`` buildable from a ``config_class`` (a dataclass) or its fields."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in BACKBONES and BACKBONES[name][0] is not cls:
            raise ValueError(f"backbone {name!r} is registered twice")
        BACKBONES[name] = (cls, config_class)
        return cls

    return add


def backbone_config(name: str, fields: dict[str, Any] | Any) -> Any:
    """The config object of backbone ``name`` from a dict (unknown fields are an error) or a config."""
    _, config_class = _lookup(name)
    if isinstance(fields, config_class):
        return fields
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"backbone {name!r} has no setting {', '.join(unknown)}; it takes {', '.join(sorted(known))}")
    return config_class(**fields)


def build_backbone(name: str, fields: dict[str, Any] | Any) -> nn.Module:
    """A backbone by registered name, built from its config (or config fields)."""
    cls, _ = _lookup(name)
    return cls(backbone_config(name, fields))


def _lookup(name: str) -> tuple[type[nn.Module], type]:
    from stemkit.diffusion import backbones  # noqa: F401  (importing the package registers the built-in ones)

    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: choose one of {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]
