"""Load and save the synthesis models: the VAE alone, or the latent synthesizer with its VAE inside.

Accepted everywhere: a shipped name, an exported ``.safetensors`` (+ ``.json``), or a ``stemkit fit``
``.ckpt`` (read with ``weights_only``). A synthesizer exported from a run takes the EMA weights of
its denoiser — the ones validation scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stemkit.errors import StemkitError
from stemkit.model_files import read_lightning_checkpoint, read_model_files, resolve_model_path, write_model_files
from stemkit.synthesis.latent_synth import LatentSynth, LatentSynthConfig
from stemkit.synthesis.vae import AudioVAE, VAEConfig

ARCHITECTURES = ("vae", "latent-synth")
DEFAULT_SYNTH = "violin-ldm-chorales"


def _read(name_or_path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and metadata of any synthesis model file, in the exported layout."""
    path = resolve_model_path(name_or_path, ARCHITECTURES)
    if path.suffix != ".ckpt":
        return read_model_files(path)
    ckpt = read_lightning_checkpoint(path)
    hparams = ckpt.get("hyper_parameters", {})
    architecture = hparams.get("architecture")
    if architecture not in ARCHITECTURES:
        raise StemkitError(f"{path} is not a VAE or latent-synth training checkpoint")
    state = ckpt["state_dict"]
    if architecture == "vae":
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    else:
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.") and not k.startswith("model.denoiser.")}
        weights.update({"denoiser." + k.removeprefix("ema."): v for k, v in state.items() if k.startswith("ema.")})
    meta = {"name": path.stem, "architecture": architecture, "config": hparams["net"],
            "provenance": {"checkpoint": str(path), "global_step": ckpt.get("global_step")}}
    return weights, meta


def load_vae(name_or_path: str | Path) -> AudioVAE:
    """A VAE in eval mode, from a VAE file or from a synthesizer that bundles one."""
    return _build_vae(*_read(name_or_path), source=name_or_path)


def _build_vae(state: dict[str, torch.Tensor], meta: dict[str, Any], source: str | Path) -> AudioVAE:
    try:
        if meta.get("architecture") == "latent-synth":
            config = VAEConfig(**meta["config"]["vae"])
            state = {k.removeprefix("vae."): v for k, v in state.items() if k.startswith("vae.")}
        else:
            config = VAEConfig(**meta["config"])
        model = AudioVAE(config)
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise StemkitError(f"cannot load a VAE from {source}: {str(exc).splitlines()[0]}") from None
    return model.eval()


def load_synth(name_or_path: str | Path = DEFAULT_SYNTH) -> tuple[LatentSynth, dict[str, Any]]:
    """The latent synthesizer (eval mode) and its metadata."""
    state, meta = _read(name_or_path)
    return _build_synth(state, meta, name_or_path), meta


def _build_synth(state: dict[str, torch.Tensor], meta: dict[str, Any], source: str | Path) -> LatentSynth:
    if meta.get("architecture") != "latent-synth":
        raise StemkitError(f"{source} is a {meta.get('architecture', 'unknown')} model, not a synthesizer (latent-synth)")
    try:
        model = LatentSynth(LatentSynthConfig(**meta["config"]))
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise StemkitError(f"cannot load a synthesizer from {source}: {str(exc).splitlines()[0]}") from None
    return model.eval()


def export_synthesis_model(checkpoint: str | Path, out: Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``out`` (.safetensors + .json) from a synthesis training checkpoint."""
    state, meta = _read(checkpoint)
    build = _build_synth if meta.get("architecture") == "latent-synth" else _build_vae
    model = build(state, meta, checkpoint)
    meta = {
        "name": out.name.removesuffix(".safetensors"),
        "architecture": meta["architecture"],
        "config": model.config.to_dict(),  # resolved: defaults written out
        "parameters": sum(p.numel() for p in model.parameters()),
        "provenance": {**meta.get("provenance", {}), **(provenance or {})},
    }
    return write_model_files(out, model.state_dict(), meta)


def is_synthesis_checkpoint(path: str | Path) -> bool:
    """Whether a ``.ckpt`` came from a VAE or latent-synth run (so ``stemkit export`` knows which exporter)."""
    path = Path(path)
    if path.suffix != ".ckpt" or not path.is_file():
        return False
    return read_lightning_checkpoint(path).get("hyper_parameters", {}).get("architecture") in ARCHITECTURES
