"""stemkit: make multi-instrument datasets, separate, disentangle and synthesize music stems.

The public API, loaded lazily so ``import stemkit`` (and the CLI's ``--help``) stays fast and torch-free
until needed:

- :func:`load_pretrained` / :func:`load_model` / :func:`save_model` — every model family, one format;
- :class:`Separator`, :class:`ProgressiveSeparator`, :class:`RefinedSeparator` (with :func:`find_refiner`,
  :func:`load_refiner`), :func:`load_separator` — separation;
- :class:`Synthesizer` — MIDI → audio;
- :class:`DisMixSimple`, :func:`evaluate_swaps` — pitch/timbre disentanglement (DisMix) and its Table-1 scoring;
  :class:`TimbreSwapper` — DisMix's latent variant on chorales: encode parts, decode latents, swap timbres.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_pretrained": "stemkit.models",
    "load_model": "stemkit.models",
    "save_model": "stemkit.models",
    "Separator": "stemkit.separation.separator",
    "ProgressiveSeparator": "stemkit.separation.progressive",
    "RefinedSeparator": "stemkit.separation.refinement",
    "find_refiner": "stemkit.separation.refinement",
    "load_refiner": "stemkit.separation.refinement",
    "load_separator": "stemkit.separation.adapters",
    "Synthesizer": "stemkit.synthesis.synthesize",
    "DisMixSimple": "stemkit.disentanglement.dismix_simple",
    "evaluate_swaps": "stemkit.disentanglement.evaluation",
    "TimbreSwapper": "stemkit.disentanglement.swap",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stemkit' has no attribute {name!r}")
