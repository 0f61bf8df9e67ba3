"""The model-family registry: one entry per kind of model stemkit can save, load and list.

Why one registry: a saved model records only its family name and config; whoever loads it — the
CLI, ``load_pretrained``, ``stemkit export``, a training run's ``init_from`` — looks the family up
here and rebuilds ``model_class(config_class(**config))``. So there is one loader, and a new family
adds itself by decorating its model class::

    @register_family("dismix", task="disentanglement", config_class=DisMixConfig)
    class DisMix(nn.Module): ...

and naming its module in :data:`FAMILY_MODULES` (or, from another package, in the
``stemkit.families`` entry-point group). Nothing else changes: no loader, no branch.

A family's model must have a ``config`` attribute (a dataclass with ``to_dict()``, every field
resolved), and a ``sample_rate`` (attribute, property or config field). ``ema_of`` names the
sub-module whose exponential moving average the family's training system keeps (as ``ema``): an
export takes those weights, the ones validation scored.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from torch import nn

from stemkit.errors import StemkitError

#: Modules that define the built-in families; imported on the first lookup.
FAMILY_MODULES = (
    "stemkit.separation.lasaft",
    "stemkit.separation.refiner",
    "stemkit.synthesis.vae",
    "stemkit.synthesis.latent_synth",
    "stemkit.disentanglement.dismix_simple",
    "stemkit.disentanglement.dismix_ldm",
    "stemkit.disentanglement.classifier",
    "stemkit.synthesis.vocoder",
    "stemkit.synthesis.mel_vae",
    "stemkit.synthesis.specdiff",
)

TASKS = ("separation", "refinement", "synthesis", "autoencoder", "disentanglement", "classification", "vocoding")


@dataclass(frozen=True)
class Family:
    name: str
    task: str
    model_class: type[nn.Module]
    config_class: type
    ema_of: str | None = None

    def build(self, config: dict[str, Any]) -> nn.Module:
        """A fresh model of this family from its config fields."""
        return self.model_class(self.config_class(**config))


_FAMILIES: dict[str, Family] = {}
_loaded = False


def register_family(name: str, task: str, config_class: type, ema_of: str | None = None) -> Callable[[type], type]:
    """Class decorator registering a model class as family ``name`` of ``task``."""
    if task not in TASKS:
        raise ValueError(f"family {name!r}: task must be one of {', '.join(TASKS)}, got {task!r}")

    def add(cls: type) -> type:
        known = _FAMILIES.get(name)
        if known is not None and known.model_class.__qualname__ != cls.__qualname__:
            raise ValueError(f"model family {name!r} is registered twice ({known.model_class.__name__}, {cls.__name__})")
        _FAMILIES[name] = Family(name, task, cls, config_class, ema_of)
        cls.family = name
        return cls

    return add


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in FAMILY_MODULES:
        importlib.import_module(module)
    for entry in entry_points(group="stemkit.families"):
        importlib.import_module(entry.value)


def families() -> dict[str, Family]:
    """Every registered family by name."""
    _load_builtins()
    return dict(_FAMILIES)


def get_family(name: str | None) -> Family:
    """The family called ``name``; a one-line error for an unknown one."""
    found = families()
    if name not in found:
        raise StemkitError(f"unknown model family {name!r}: stemkit knows {', '.join(sorted(found))}")
    return found[name]


def family_of(model: nn.Module) -> Family:
    """The registered family of a model instance."""
    name = getattr(model, "family", None)
    if name is None:
        raise StemkitError(f"{type(model).__name__} is not a registered stemkit model family")
    return get_family(name)


def sample_rate_of(model: nn.Module) -> int | None:
    """A model's sample rate, wherever its family keeps it."""
    rate = getattr(model, "sample_rate", None)
    if rate is None:
        rate = getattr(getattr(model, "config", None), "sample_rate", None)
    return int(rate) if rate is not None else None
