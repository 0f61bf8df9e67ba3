"""Save and load separator weights: safetensors + a JSON sidecar, never a pickle.

Why a sidecar: the model is rebuilt from its recorded config (as demucs' ``states.py`` does), so a
checkpoint can be inspected with a text editor and loading runs no code from the file. Lightning
``.ckpt`` files from ``stemkit fit`` load too (with ``weights_only=True``), so a run can be used before
it is exported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from stemkit.atomic import atomic_output
from stemkit.errors import StemkitError
from stemkit.separation.lasaft import LaSAFT, LaSAFTConfig

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
ARCHITECTURES = {"lasaft": (LaSAFT, LaSAFTConfig)}


def pretrained_names() -> list[str]:
    """Names of the models shipped inside the package."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.json"))


def save_model(model: LaSAFT, path: str | Path, name: str | None = None, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` sidecar atomically; returns the weights path."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "name": name or path.stem,
        "architecture": "lasaft",
        "config": model.config.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "provenance": provenance or {},
    }
    with atomic_output(path) as tmp:
        save_file(state, str(tmp))
    with atomic_output(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model's name, a ``.safetensors``/``.json`` pair, or a Lightning ``.ckpt``."""
    path = Path(name_or_path)
    if path.suffix in (".safetensors", ".json", ".ckpt") or path.exists():
        if not path.exists():
            raise StemkitError(f"model file not found: {path}")
        return path
    shipped = PRETRAINED_DIR / f"{name_or_path}.json"
    if shipped.exists():
        return shipped
    names = ", ".join(pretrained_names()) or "none"
    raise StemkitError(f"unknown model {name_or_path!r}: give a shipped name ({names}) or a .safetensors/.ckpt path")


def load_model(name_or_path: str | Path) -> tuple[LaSAFT, dict[str, Any]]:
    """Rebuild a model from a name or a file; returns ``(model in eval mode, metadata)``."""
    path = resolve_model_path(name_or_path)
    if path.suffix == ".ckpt":
        return _load_lightning(path)
    meta_path, weights_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    for p in (meta_path, weights_path):
        if not p.exists():
            raise StemkitError(f"incomplete checkpoint: {p} is missing")
    try:
        meta = json.loads(meta_path.read_text())
        model_cls, config_cls = ARCHITECTURES[meta["architecture"]]
        model = model_cls(config_cls(**meta["config"]))
        model.load_state_dict(load_file(str(weights_path)))
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise StemkitError(f"cannot load model from {path}: {exc}") from None
    meta.setdefault("name", weights_path.stem)
    return model.eval(), meta


def _load_lightning(path: Path) -> tuple[LaSAFT, dict[str, Any]]:
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        config = LaSAFTConfig(**ckpt["hyper_parameters"]["net"])
        model = LaSAFT(config)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
    except Exception as exc:  # torch.load raises many types for foreign files
        raise StemkitError(f"cannot load Lightning checkpoint {path}: {str(exc).splitlines()[0]}") from None
    meta = {"name": path.stem, "architecture": "lasaft", "config": config.to_dict(),
            "provenance": {"checkpoint": str(path), "global_step": ckpt.get("global_step")}}
    return model.eval(), meta
