"""Where model files live and how they are written: safetensors weights + a JSON sidecar, never a pickle.

Shared by every model family (separators, synthesizers): a name resolves to a model shipped in
``stemkit/pretrained/``, otherwise it is a path; both files are written atomically, so an
interrupted export never leaves a weights file without its config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from stemkit.atomic import atomic_output
from stemkit.errors import StemkitError, first_line

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def pretrained_names(architectures: tuple[str, ...] | None = None) -> list[str]:
    """Names of the models shipped inside the package (of the given architectures, if any)."""
    names = []
    for meta in sorted(PRETRAINED_DIR.glob("*.json")):
        if architectures is None or json.loads(meta.read_text()).get("architecture") in architectures:
            names.append(meta.stem)
    return names


def resolve_model_path(name_or_path: str | Path, architectures: tuple[str, ...] | None = None) -> Path:
    """A shipped model's name, a ``.safetensors``/``.json`` pair, or a Lightning ``.ckpt``."""
    path = Path(name_or_path)
    if path.suffix in (".safetensors", ".json", ".ckpt") or path.exists():
        if not path.exists():
            raise StemkitError(f"model file not found: {path}")
        return path
    shipped = PRETRAINED_DIR / f"{name_or_path}.json"
    if shipped.exists():
        return shipped
    names = ", ".join(pretrained_names(architectures)) or "none"
    raise StemkitError(f"unknown model {name_or_path!r}: give a shipped name ({names}) or a .safetensors/.ckpt path")


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
