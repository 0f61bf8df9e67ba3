"""Save, load, find and export models of every family: the one model-file API.

>>> from stemkit import load_pretrained
>>> model = load_pretrained("lasaft-chorales-string-remix")    # a shipped name
>>> model = load_pretrained("models/my-synth.safetensors")      # an export
>>> model = load_pretrained("runs/x/checkpoints/last.ckpt")     # a stemkit fit checkpoint

Every model is written the same way (:mod:`stemkit.model_files`): safetensors weights and a JSON
with its ``family`` (:mod:`stemkit.registry`), ``task``, resolved ``config``, ``sample_rate``,
``parameters``, ``provenance`` (data, steps, hardware, commit) and measured ``metrics`` with the
``headline`` one named. Loading reads the family and rebuilds the model; a training checkpoint
records its family too, so exporting one needs no guessing.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stemkit.errors import StemkitError, first_line
from stemkit.model_files import (
    family_name,
    read_lightning_checkpoint,
    read_model_files,
    resolve_model_path,
    write_model_files,
)
from stemkit.registry import Family, family_of, get_family, sample_rate_of

#: Lightning checkpoints written before systems recorded their family were all LaSAFT runs.
LEGACY_CHECKPOINT_FAMILY = "lasaft"
#: Where ``stemkit fit`` stores :func:`stemkit.provenance.runtime_facts` in a checkpoint.
CHECKPOINT_PROVENANCE_KEY = "stemkit_provenance"


def save_model(
    model: nn.Module,
    path: str | Path,
    name: str | None = None,
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    headline: str | None = None,
    sampling: dict[str, Any] | None = None,
) -> Path:
    """Write a model of any registered family as ``path`` (``.safetensors``) + ``.json``, atomically.

    ``metrics`` are measured figures (name → number); ``headline`` names the one ``stemkit models``
    shows (default: the first); ``sampling`` is a synthesis model's recommended sampling settings
    (:func:`sampling_settings`), which ``stemkit synth`` uses where its flags are not given."""
    family = family_of(model)
    path = Path(path)
    metrics = {k: float(v) for k, v in (metrics or {}).items()}
    if headline is not None and headline not in metrics:
        raise StemkitError(f"headline metric {headline!r} is not among the metrics {sorted(metrics)}")
    meta = {
        "name": name or path.name.removesuffix(".safetensors"),
        "family": family.name,
        "task": family.task,
        "sample_rate": sample_rate_of(model),
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": model.config.to_dict(),
        "provenance": provenance or {},
        "metrics": metrics,
        "headline": headline or next(iter(metrics), None),
    }
    if sampling:
        if family.task != "synthesis":
            raise StemkitError(f"sampling settings are for synthesis models; {family.name} is a {family.task} model")
        meta["sampling"] = sampling_settings(sampling)
    return write_model_files(path, model.state_dict(), meta)


def load_model(name_or_path: str | Path, task: str | None = None, family: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A model (eval mode) and its metadata, from a name, an export or a ``stemkit fit`` checkpoint.

    ``task``/``family``: what the caller can use; anything else is a one-line error that says what
    the file holds."""
    path = resolve_model_path(name_or_path)
    if path.suffix == ".ckpt":
        found, config, state, meta = _from_lightning(path)
    else:
        state, meta = read_model_files(path)
        found = get_family(family_name(meta))
        config = meta.get("config")
    _check_wanted(found, name_or_path, task, family)
    try:
        model = found.build(config)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise StemkitError(f"cannot load a {found.name} model from {path}: {first_line(exc)}") from None
    meta = dict(meta, family=found.name, task=found.task, sample_rate=sample_rate_of(model),
                parameters=sum(p.numel() for p in model.parameters()), config=model.config.to_dict())
    meta.pop("architecture", None)
    meta.setdefault("metrics", {})
    meta.setdefault("headline", next(iter(meta["metrics"]), None))
    return model.eval(), meta


def load_pretrained(name_or_path: str | Path, task: str | None = None) -> nn.Module:
    """The model alone (eval mode, on the CPU), with its metadata as ``model.metadata``."""
    model, meta = load_model(name_or_path, task=task)
    model.metadata = meta
    return model


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    headline: str | None = None,
    sampling: dict[str, Any] | None = None,
) -> Path:
    """Write the inference model of a ``stemkit fit`` checkpoint (any family; EMA weights where the
    run keeps them) to ``out`` (``.safetensors`` + ``.json``), with the run's recorded provenance
    and validation metrics plus the ones given."""
    out = Path(out)
    model, meta = load_model(checkpoint)
    return save_model(model, out, name=out.name.removesuffix(".safetensors"),
                      provenance={**meta.get("provenance", {}), **(provenance or {})},
                      metrics={**meta.get("metrics", {}), **(metrics or {})}, headline=headline, sampling=sampling)


def sampling_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Checked, typed sampling settings (``steps`` ≥ 1, ``sampler`` one of the EDM samplers, ``cfg`` ≥ 0)
    from strings or numbers — what a diffusion model's JSON may recommend.

    Why: how many steps and how much guidance a model wants is a property of that model (the guidance
    weight that puts a young model's notes in tune would over-drive a well-trained one), so it travels
    with the weights instead of being a flag every user must know."""
    from stemkit.diffusion import SAMPLERS

    settings: dict[str, Any] = {}
    for key, value in values.items():
        try:
            if key == "steps":
                settings[key] = int(value)
                ok = settings[key] >= 1
            elif key == "cfg":
                settings[key] = float(value)
                ok = math.isfinite(settings[key]) and settings[key] >= 0
            elif key == "sampler":
                settings[key] = str(value)
                ok = settings[key] in SAMPLERS
            else:
                raise StemkitError(f"unknown sampling setting {key!r}: steps, sampler or cfg")
        except ValueError:
            ok = False
        if not ok:
            raise StemkitError(f"sampling setting {key}={value!r} is not valid (steps ≥ 1, sampler one of {', '.join(SAMPLERS)}, cfg ≥ 0)")
    return settings


def system_weights(state: dict[str, torch.Tensor], ema_of: str | None) -> dict[str, torch.Tensor]:
    """The inference model's weights in a training system's state dict (the system keeps the model
    as ``model`` and, if it keeps one, the EMA of sub-module ``ema_of`` as ``ema``)."""
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    if ema_of:
        averaged = {f"{ema_of}.{k.removeprefix('ema.')}": v for k, v in state.items() if k.startswith("ema.")}
        if averaged:
            weights = {k: v for k, v in weights.items() if not k.startswith(f"{ema_of}.")}
            weights.update(averaged)
    return weights


def _from_lightning(path: Path) -> tuple[Family, dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    ckpt = read_lightning_checkpoint(path)
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or "net" not in hparams or "state_dict" not in ckpt:
        raise StemkitError(f"{path} is not a checkpoint of a stemkit fit run (it records no model)")
    family = get_family(hparams.get("family") or hparams.get("architecture") or LEGACY_CHECKPOINT_FAMILY)
    provenance: dict[str, Any] = {"checkpoint": str(path), "global_step": ckpt.get("global_step")}
    provenance.update(ckpt.get(CHECKPOINT_PROVENANCE_KEY) or {})
    data = _plain(ckpt.get("datamodule_hyper_parameters") or {})
    if data:
        provenance["data"] = data
    meta = {"name": path.stem, "provenance": provenance, "metrics": _validation_metrics(ckpt)}
    return family, hparams["net"], system_weights(ckpt["state_dict"], family.ema_of), meta


def _validation_metrics(ckpt: dict[str, Any]) -> dict[str, float]:
    """The monitored validation figure each checkpoint callback saw last (``valid/cSDR`` …)."""
    metrics = {}
    for state in (ckpt.get("callbacks") or {}).values():
        if not isinstance(state, dict) or not state.get("monitor"):
            continue
        score = state.get("current_score")
        if isinstance(score, torch.Tensor) and score.numel() == 1:
            score = float(score)
        if isinstance(score, numbers.Real) and math.isfinite(score):
            metrics[f"{state['monitor']} (validation)"] = float(score)
    return metrics


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly entries of a hyper-parameter dict (paths and numbers; no objects)."""
    return {k: v for k, v in values.items() if isinstance(v, (str, int, float, bool, list)) or v is None}


def _check_wanted(found: Family, source: str | Path, task: str | None, family: str | None) -> None:
    if family is not None and found.name != family:
        raise StemkitError(f"{source} is a {found.name} model ({found.task}), not a {family} model")
    if task is not None and found.task != task:
        raise StemkitError(f"{source} is a {found.name} model for {found.task}, not a {task} model")
