"""The ``Separator``: a trained model plus everything between it and audio files.

One object serves the CLI, the Python API, validation during training and the benchmarks, so they
all separate the same way: resample to the model's rate, fit the channel count, run overlapping
windows through the network (bounded memory on any length), resample back.
"""

from __future__ import annotations

from pathlib import Path
import torch

from stemkit.audio.chunking import overlap_add
from stemkit.audio.io import load_audio, save_audio
from stemkit.audio.resample import resample
from stemkit.errors import StemkitError
from stemkit.separation.checkpoints import load_model
from stemkit.separation.lasaft import LaSAFT

DEFAULT_MODEL = "lasaft-chorales-string"


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if str(device) != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise StemkitError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise StemkitError("--device cuda asked for, but no CUDA GPU is available")
        if chosen.type == "mps" and not torch.backends.mps.is_available():
            raise StemkitError("--device mps asked for, but Apple MPS is not available")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def separate_with_model(
    model: LaSAFT,
    mix: torch.Tensor,
    target_indices: list[int],
    segment: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """``mix [C, samples]`` at the model's rate → ``[len(target_indices), C, samples]``.

    A mono model separates each channel of a multichannel mix on its own; a stereo model given mono
    audio sees it duplicated and its output is averaged back to mono.
    """
    model_channels = model.config.audio_channels
    channels = mix.shape[0]
    device = torch.device(device) if device is not None else next(model.parameters()).device

    def run(chunks: torch.Tensor) -> torch.Tensor:  # [B, C, seg] → [B, S, C, seg]
        batch, _, length = chunks.shape
        if model_channels == channels:
            return model.separate_batch(chunks, target_indices)
        if model_channels == 1:
            out = model.separate_batch(chunks.reshape(batch * channels, 1, length), target_indices)
            return out.reshape(batch, channels, len(target_indices), length).transpose(1, 2)
        if channels == 1:
            out = model.separate_batch(chunks.expand(batch, model_channels, length), target_indices)
            return out.mean(dim=2, keepdim=True)
        raise StemkitError(f"the model takes {model_channels} channels; this audio has {channels}")

    return overlap_add(run, mix, segment or model.config.segment_samples, overlap, batch_size, device, progress, desc="separating")


class Separator:
    """Separate mixtures with a trained model.

    >>> sep = Separator()                       # the shipped default model
    >>> stems = sep.separate(mix, 16000)        # {"soprano": [C, T], ...}
    >>> sep.separate_file("song.wav", "separated")

    Args:
        model: a shipped model name, a ``.safetensors`` file (with its ``.json``), or a ``.ckpt`` from
            ``stemkit fit``.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        segment: window length in seconds (default: the model's training window).
        overlap: fraction of each window shared with the next.
        batch_size: windows per forward pass (memory grows with it).
        progress: show a progress bar.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        device: str | torch.device = "auto",
        segment: float | None = None,
        overlap: float = 0.25,
        batch_size: int = 4,
        progress: bool = False,
    ) -> None:
        if not 0.0 <= overlap < 1.0:
            raise StemkitError(f"overlap must be in [0, 1), got {overlap}")
        if batch_size < 1:
            raise StemkitError(f"batch size must be at least 1, got {batch_size}")
        if segment is not None and segment <= 0:
            raise StemkitError(f"segment must be positive seconds, got {segment}")
        self.device = pick_device(device)
        net, self.metadata = load_model(model)
        self.model = net.to(self.device).eval()
        self.name: str = self.metadata["name"]
        self.overlap = overlap
        self.batch_size = batch_size
        self.progress = progress
        self.segment = int(round(segment * self.sample_rate)) if segment else None

    @property
    def targets(self) -> list[str]:
        return list(self.model.config.targets)

    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    def check_targets(self, targets: list[str] | None) -> list[str]:
        """The requested targets in the model's order; unknown names are an error."""
        if targets is None:
            return self.targets
        unknown = [t for t in targets if t not in self.targets]
        if unknown:
            raise StemkitError(f"unknown target(s) {', '.join(unknown)}: this model separates {', '.join(self.targets)}")
        return [t for t in self.targets if t in targets]

    def separate(
        self,
        mix: torch.Tensor,
        sample_rate: int,
        targets: list[str] | None = None,
        query: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``mix [channels, samples]`` at ``sample_rate`` → ``{target: [channels, samples]}`` at the same rate."""
        if query is not None:
            raise StemkitError(f"{self.name} is conditioned on a target name, not on a query clip")
        if mix.dim() != 2:
            raise StemkitError(f"expected audio [channels, samples], got shape {tuple(mix.shape)}")
        chosen = self.check_targets(targets)
        audio = mix.float()
        if sample_rate != self.sample_rate:
            audio = resample(audio, sample_rate, self.sample_rate)
        indices = [self.targets.index(t) for t in chosen]
        with torch.inference_mode():
            out = separate_with_model(self.model, audio, indices, self.segment, self.overlap, self.batch_size, self.device, self.progress)
        result = {}
        for target, estimate in zip(chosen, out):
            if sample_rate != self.sample_rate:
                estimate = resample(estimate, self.sample_rate, sample_rate)[..., : mix.shape[-1]]
            result[target] = estimate
        return result

    def separate_file(
        self,
        path: str | Path,
        folder: str | Path,
        targets: list[str] | None = None,
        format: str = "wav",
        residual: bool = False,
        overwrite: bool = False,
    ) -> list[Path]:
        """Separate one file into ``folder/<target>.<format>``; returns the written paths.

        Nothing is written if any output exists and ``overwrite`` is false, so a rerun never leaves a
        half-replaced set of stems. ``residual`` adds ``residual`` = mix − Σ targets.
        """
        outputs = self.output_paths(folder, targets, format, residual)
        existing = [p for p in outputs if p.exists()]
        if existing and not overwrite:
            raise StemkitError(f"{existing[0]} exists: pass --overwrite to replace it")
        mix, rate = load_audio(path)
        if mix.shape[-1] == 0:
            raise StemkitError(f"{path} contains no audio")
        stems = self.separate(mix, rate, self.check_targets(targets))
        if residual:
            stems["residual"] = mix - sum(stems.values())
        Path(folder).mkdir(parents=True, exist_ok=True)
        for out in outputs:
            save_audio(out, stems[out.stem], rate, overwrite=True)
        return outputs

    def output_paths(self, folder: str | Path, targets: list[str] | None = None, format: str = "wav", residual: bool = False) -> list[Path]:
        """Where :meth:`separate_file` writes: one file per target (and the residual)."""
        if format not in ("wav", "flac"):
            raise StemkitError(f"unknown format {format!r}: use wav or flac")
        names = self.check_targets(targets) + (["residual"] if residual else [])
        return [Path(folder) / f"{name}.{format}" for name in names]
