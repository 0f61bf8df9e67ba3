"""Where model files live and how they are written: safetensors weights + a JSON sidecar, never a pickle.

Why a sidecar: the model is rebuilt from its recorded family and config (as demucs' ``states.py``
does), so a model file can be read in a text editor and loading runs no code from the file. Both
files are written atomically, so an interrupted export never leaves weights without their config.

Where models are found, offline (nothing is ever downloaded at run time), in this order:

1. the package's ``stemkit/pretrained/`` (the shipped models, each with a model card ``NAME.md``);
2. the user folder: ``$STEMKIT_MODELS``, default ``~/.cache/stemkit/models``.

A name found in both is the shipped one (so the defaults mean the same everywhere); ``stemkit
models`` says when a user model is shadowed. Anything with a suffix, or that exists, is a path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from stemkit.atomic import atomic_output
from stemkit.errors import StemkitError, first_line

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
MODEL_SUFFIXES = (".safetensors", ".json", ".ckpt")


def user_models_dir() -> Path:
    """The user's model folder: ``$STEMKIT_MODELS`` or ``~/.cache/stemkit/models``."""
    return Path(os.environ.get("STEMKIT_MODELS") or Path.home() / ".cache" / "stemkit" / "models").expanduser()


def model_dirs() -> list[tuple[str, Path]]:
    """``(where, folder)`` in lookup order: ``shipped`` then ``user``."""
    return [("shipped", PRETRAINED_DIR), ("user", user_models_dir())]


@dataclass(frozen=True)
class ModelEntry:
    """One model found on disk (read from its JSON only: listing loads no weights)."""

    name: str
    path: Path  #: the weights file
    where: str  #: shipped or user
    meta: dict[str, Any]
    shadowed: bool = False  #: a user model hidden by a shipped one of the same name

    @property
    def family(self) -> str:
        return family_name(self.meta) or "?"

    @property
    def card(self) -> Path | None:
        card = self.path.with_suffix(".md")
        return card if card.is_file() else None


def family_name(meta: dict[str, Any]) -> str | None:
    """The family recorded in a model's metadata (``architecture`` in files written before the registry)."""
    return meta.get("family") or meta.get("architecture")


def find_models() -> list[ModelEntry]:
    """Every complete model (``.json`` + ``.safetensors``) in the model folders, shipped first, by name."""
    found: list[ModelEntry] = []
    seen: set[str] = set()
    for where, folder in model_dirs():
        if not folder.is_dir():
            continue
        for meta_path in sorted(folder.glob("*.json")):
            weights = meta_path.with_suffix(".safetensors")
            if not weights.is_file():
                continue
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue  # not ours, or damaged: listing skips it, loading it by path explains
            if not isinstance(meta, dict) or not family_name(meta):
                continue
            name = meta_path.stem
            found.append(ModelEntry(name, weights, where, meta, shadowed=name in seen))
            seen.add(name)
    return found


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model's name (in the model folders), a ``.safetensors``/``.json`` pair, or a Lightning ``.ckpt``."""
    path = Path(name_or_path)
    if path.suffix in MODEL_SUFFIXES or path.exists():
        if not path.exists():
            raise StemkitError(f"model file not found: {path}")
        return path
    for _, folder in model_dirs():
        candidate = folder / f"{name_or_path}.json"
        if candidate.is_file():
            return candidate
    names = ", ".join(sorted({e.name for e in find_models()})) or "none"
    raise StemkitError(f"unknown model {name_or_path!r}: give a model name ({names}; see stemkit models) "
                       "or a .safetensors/.ckpt path")


def write_model_files(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` sidecar atomically; returns the weights path.

    ``path`` may name the pair without suffix; a dot in the name (``my-model-v0.2``) is kept."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    with atomic_output(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_model_files(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and metadata of a ``.safetensors``/``.json`` pair (either path given)."""
    from safetensors.torch import load_file

    meta_path, weights_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    for p in (meta_path, weights_path):
        if not p.exists():
            raise StemkitError(f"incomplete checkpoint: {p} is missing")
    try:
        meta = json.loads(meta_path.read_text())
        state = load_file(str(weights_path))
    except Exception as exc:  # json and safetensors raise their own types for damaged or foreign files
        raise StemkitError(f"cannot read model files {path}: {first_line(exc)} (is it a stemkit export, complete and undamaged?)") from None
    if not isinstance(meta, dict):
        raise StemkitError(f"cannot read model files {path}: {meta_path.name} is not a JSON object")
    meta.setdefault("name", weights_path.stem)
    return state, meta


def read_lightning_checkpoint(path: Path) -> dict[str, Any]:
    """A ``stemkit fit`` checkpoint loaded without unpickling objects (``weights_only``)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for foreign files
        reason = "it is not a checkpoint written by stemkit fit, or it is damaged" if "Weights only load failed" in str(exc) else first_line(exc)
        raise StemkitError(f"cannot load Lightning checkpoint {path}: {reason}") from None
