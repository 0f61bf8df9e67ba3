"""Peer separators behind our interface: HTDemucs (``demucs`` package) and BS-RoFormer
(``bs-roformer`` package), loaded from the user's own checkpoints.

Why adapters and not re-implementations: progressive inference, ``stemkit separate`` and the
benchmarks should run the peers exactly as their authors built them, so the architecture classes
are the packages' own and only the plumbing (resampling, channels, windows, files) is ours.

Checkpoint formats are the ones those projects write:

- **HTDemucs**: a demucs package (``.th``), the dict of ``klass``, ``args``, ``kwargs`` and ``state``
  that ``demucs.states.serialize_model`` saves. It stores the model class, so it is a pickle and
  is loaded with ``weights_only=False``: load only files you trust.
- **BS-RoFormer** / **Mel-Band RoFormer**: a state dict (``.ckpt``/``.pt``/``.pth``, optionally under
  ``state_dict``) and the YAML config of the training run, in the layout of the widely used
  music-source-separation-training recipes: ``model:`` holds the constructor arguments,
  ``training.instruments`` the stem names, ``audio.sample_rate`` and ``audio.chunk_size`` the rate
  and window; ``model_type: mel_band_roformer`` at the top selects the mel-band variant.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from stemkit.errors import StemkitError
from stemkit.separation.separator import WindowedSeparator

ARCHES = ("lasaft", "htdemucs", "bs-roformer")


class ModuleSeparator(WindowedSeparator):
    """A peer network that maps windows ``[B, C, T]`` to all its stems ``[B, S, C, T]``.

    ``normalize`` standardises each input by the mixture's mean and standard deviation and undoes it
    on the output, as ``demucs.separate`` does for the models it trains.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        name: str,
        targets: list[str],
        sample_rate: int,
        channels: int,
        segment_samples: int,
        normalize: bool = False,
        device: str | torch.device = "auto",
        segment: float | None = None,
        overlap: float = 0.25,
        batch_size: int = 4,
        progress: bool = False,
        precision: str = "auto",
    ) -> None:
        self._set_options(device, segment, overlap, batch_size, progress, precision)
        self.module = module.to(self.device).eval()
        self.name = name
        self._targets = list(targets)
        self.sample_rate = int(sample_rate)
        self.model_channels = int(channels)
        self.segment_samples = int(segment_samples)
        self.normalize = normalize

    @property
    def targets(self) -> list[str]:
        return self._targets

    def separate(self, mix: torch.Tensor, sample_rate: int, targets: list[str] | None = None,
                 query: torch.Tensor | None = None, beta: float | None = None,
                 instruments: list[str] | None = None) -> dict[str, torch.Tensor]:
        if not self.normalize:
            return super().separate(mix, sample_rate, targets, query, beta, instruments)
        reference = mix.float().mean(dim=0)
        mean, std = reference.mean(), reference.std().clamp_min(1e-8)
        stems = super().separate((mix - mean) / std, sample_rate, targets, query, beta, instruments)
        return {t: s * std + mean for t, s in stems.items()}

    def separate_windows(self, chunks: torch.Tensor, indices: list[int], beta: float | None) -> torch.Tensor:
        out = self.module(chunks)
        batch, channels, length = chunks.shape
        out = out.reshape(batch, len(self._targets), channels, out.shape[-1])[..., :length]
        return out[:, indices]


def load_htdemucs(path: str | Path, **options: Any) -> ModuleSeparator:
    """An HTDemucs (or any demucs model) from a demucs ``.th`` package."""
    try:
        from demucs.states import load_model as demucs_load
    except ImportError:
        raise StemkitError("HTDemucs checkpoints need the demucs package: pip install 'stemkit[bench]'") from None
    path = _existing(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = demucs_load(path)
    except Exception as exc:
        raise StemkitError(f"cannot load demucs checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    segment = int(float(getattr(model, "segment", 8.0)) * model.samplerate)
    return ModuleSeparator(model, path.stem, list(model.sources), model.samplerate, model.audio_channels, segment,
                           normalize=options.pop("normalize", True), **options)


def save_htdemucs(model: torch.nn.Module, path: str | Path) -> Path:
    """Write a demucs model as a demucs package (what ``demucs.states.serialize_model`` stores, minus
    training arguments), so checkpoints made here load in demucs and in :func:`load_htdemucs`."""
    from stemkit.atomic import atomic_output

    args, kwargs = model._init_args_kwargs
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    package = {"klass": model.__class__, "args": args, "kwargs": kwargs, "state": state, "training_args": {}}
    path = Path(path)
    with atomic_output(path) as tmp:
        torch.save(package, str(tmp))
    return path


def load_bs_roformer(checkpoint: str | Path, config: str | Path, **options: Any) -> ModuleSeparator:
    """A BS-RoFormer or Mel-Band RoFormer from a state dict and its training YAML."""
    try:
        import bs_roformer
    except ImportError:
        raise StemkitError("BS-RoFormer checkpoints need the bs-roformer package: pip install 'stemkit[bench]'") from None
    checkpoint, config = _existing(checkpoint), _existing(config)
    try:
        settings = yaml.safe_load(config.read_text()) or {}
        model_args = dict(settings["model"])
        instruments = list(settings["training"]["instruments"])
        audio = settings.get("audio", {})
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise StemkitError(f"{config}: not a RoFormer training config (need model: and training.instruments): {exc}") from None
    target = settings["training"].get("target_instrument")
    klass = bs_roformer.MelBandRoformer if settings.get("model_type") == "mel_band_roformer" else bs_roformer.BSRoformer
    accepted = inspect.signature(klass).parameters
    dropped = sorted(k for k in model_args if k not in accepted)
    if dropped:
        warnings.warn(f"{config}: ignoring settings this {klass.__name__} does not take: {', '.join(dropped)}")
    model_args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in model_args.items() if k in accepted}
    try:
        model = klass(**model_args)
        state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
    except Exception as exc:
        raise StemkitError(f"cannot load RoFormer checkpoint {checkpoint} with {config}: {str(exc).splitlines()[0]}") from None
    # the package calls torch.stft without a window in its loss path; the warning is noise for inference
    warnings.filterwarnings("ignore", message="A window was not provided")
    stems = [target] if target else instruments
    if len(stems) != getattr(model, "num_stems", 1):
        raise StemkitError(f"{config}: {len(stems)} instruments listed, but the model has {model.num_stems} stems")
    channels = 2 if model_args.get("stereo", False) else 1
    segment = int(audio.get("chunk_size", 8 * 44100))
    return ModuleSeparator(model, checkpoint.stem, stems, int(audio.get("sample_rate", 44100)), channels, segment, **options)


def load_separator(
    model: str | Path | None = None,
    arch: str = "auto",
    config: str | Path | None = None,
    **options: Any,
) -> WindowedSeparator:
    """Any separator stemkit runs: ours by name or path, or a peer's checkpoint.

    ``model=None`` is the shipped default. ``arch="auto"`` reads the file: a ``.th`` is a demucs package, a checkpoint with a YAML
    ``config`` is a RoFormer, everything else ours (a shipped name, ``.safetensors`` or ``.ckpt``).
    """
    from stemkit.separation.separator import DEFAULT_MODEL, Separator

    model = DEFAULT_MODEL if model is None else model
    if arch == "auto":
        if str(model).endswith(".th"):
            arch = "htdemucs"
        elif config is not None:
            arch = "bs-roformer"
        else:
            arch = "lasaft"
    if arch not in ARCHES:
        raise StemkitError(f"unknown architecture {arch!r}: use auto, {', '.join(ARCHES)}")
    if arch == "bs-roformer":
        if config is None:
            raise StemkitError("a BS-RoFormer checkpoint needs its training YAML: pass --model-config")
        return load_bs_roformer(model, config, **options)
    if config is not None:
        raise StemkitError(f"--model-config is only for BS-RoFormer checkpoints, not {arch}")
    if arch == "htdemucs":
        return load_htdemucs(model, **options)
    return Separator(model, **options)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise StemkitError(f"file not found: {path}")
    return path
