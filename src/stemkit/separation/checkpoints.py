"""Save and load separator weights: safetensors + a JSON sidecar, never a pickle.

Why a sidecar: the model is rebuilt from its recorded config (as demucs' ``states.py`` does), so a
checkpoint can be inspected with a text editor and loading runs no code from the file. Lightning
``.ckpt`` files from ``stemkit fit`` load too (with ``weights_only=True``), so a run can be used before
it is exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stemkit.errors import StemkitError
from stemkit.model_files import read_lightning_checkpoint, read_model_files, write_model_files
from stemkit.model_files import pretrained_names as _pretrained_names
from stemkit.model_files import resolve_model_path as _resolve_model_path
from stemkit.separation.lasaft import LaSAFT, LaSAFTConfig

ARCHITECTURES = {"lasaft": (LaSAFT, LaSAFTConfig)}


def pretrained_names() -> list[str]:
    """Names of the separators shipped inside the package."""
    return _pretrained_names(tuple(ARCHITECTURES))


def save_model(model: LaSAFT, path: str | Path, name: str | None = None, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` sidecar atomically; returns the weights path."""
    path = Path(path)
    meta = {
        "name": name or path.name.removesuffix(".safetensors"),
        "architecture": "lasaft",
        "config": model.config.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "provenance": provenance or {},
    }
    return write_model_files(path, model.state_dict(), meta)


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped separator's name, a ``.safetensors``/``.json`` pair, or a Lightning ``.ckpt``."""
    return _resolve_model_path(name_or_path, tuple(ARCHITECTURES))


def load_model(name_or_path: str | Path) -> tuple[LaSAFT, dict[str, Any]]:
    """Rebuild a model from a name or a file; returns ``(model in eval mode, metadata)``."""
    path = resolve_model_path(name_or_path)
    if path.suffix == ".ckpt":
        return _load_lightning(path)
    state, meta = read_model_files(path)
    if meta.get("architecture") not in ARCHITECTURES:
        raise StemkitError(f"{path} is a {meta.get('architecture', 'unknown')} model, not a separator")
    try:
        model_cls, config_cls = ARCHITECTURES[meta["architecture"]]
        model = model_cls(config_cls(**meta["config"]))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise StemkitError(f"cannot load model from {path}: {exc}") from None
    return model.eval(), meta


def _load_lightning(path: Path) -> tuple[LaSAFT, dict[str, Any]]:
    ckpt = read_lightning_checkpoint(path)
    try:
        config = LaSAFTConfig(**ckpt["hyper_parameters"]["net"])
        model = LaSAFT(config)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise StemkitError(f"cannot load Lightning checkpoint {path}: {str(exc).splitlines()[0]}") from None
    meta = {"name": path.stem, "architecture": "lasaft", "config": config.to_dict(),
            "provenance": {"checkpoint": str(path), "global_step": ckpt.get("global_step")}}
    return model.eval(), meta
