"""Refined separation: a separator's one pass, then N − 1 steps of its refiner (``--steps N``).

The refiner (:mod:`stemkit.separation.refiner`) reads the mixture and every part's previous estimate
in windows, as the separator does; this module runs it over whole files with the same overlap-add,
finds the refiner trained for a separator, and is the :class:`RefinedSeparator` the CLI and the
Python API use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from stemkit.audio.chunking import overlap_add
from stemkit.audio.resample import resample
from stemkit.jobs import pick_device
from stemkit.errors import StemkitError
from stemkit.model_files import find_models
from stemkit.models import load_model
from stemkit.separation.base import WrappingSeparator
from stemkit.separation.progressive import ProgressiveStep, wiener_filter
from stemkit.separation.refiner import Refiner


def base_name(base: str) -> str:
    """The model name a refiner's ``base`` refers to: the name itself, or the stem of a model file."""
    path = Path(base)
    return path.stem if path.suffix in (".safetensors", ".json") else base


def find_refiner(base: str) -> str | None:
    """The name of an installed refiner trained on the estimates of the model named ``base`` (shipped first)."""
    for entry in find_models():
        if entry.family == "refiner" and not entry.shadowed and base_name(entry.meta.get("config", {}).get("base", "")) == base:
            return entry.name
    return None


def load_refiner(name_or_path: str | Path) -> Refiner:
    model, meta = load_model(name_or_path, family="refiner")
    model.metadata = meta
    return model


def refine_windows(refiner: Refiner, mix: torch.Tensor, estimates: torch.Tensor, step: int) -> torch.Tensor:
    """``mix [B, C, seg]`` and ``estimates [B, S, C, seg]`` → refined ``[B, S, C, seg]``, for any ``C``.

    A mono refiner refines each channel on its own; a stereo one given mono sees it duplicated and its
    output is averaged back (as :func:`stemkit.separation.separator.fit_channels` does for separators).
    """
    batch, parts, channels, length = estimates.shape
    model_channels = refiner.config.audio_channels
    steps = torch.full((batch,), step, dtype=torch.long, device=mix.device)
    if channels == model_channels:
        return refiner(mix, estimates, steps)
    if model_channels == 1:
        flat_mix = mix.reshape(batch * channels, 1, length)
        flat_est = estimates.transpose(1, 2).reshape(batch * channels, parts, 1, length)
        out = refiner(flat_mix, flat_est, steps.repeat_interleave(channels))
        return out.reshape(batch, channels, parts, length).transpose(1, 2)
    if channels == 1:
        out = refiner(mix.expand(batch, model_channels, length), estimates.expand(batch, parts, model_channels, length), steps)
        return out.mean(dim=2, keepdim=True)
    raise StemkitError(f"the refiner takes {model_channels} channels; this audio has {channels}")


def refine_signal(
    refiner: Refiner,
    mix: torch.Tensor,
    estimates: torch.Tensor,
    done: int,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """One refinement of whole signals at the refiner's rate: ``mix [C, T]``, ``estimates [S, C, T]`` →
    ``[S, C, T]``, in overlapping windows (the mixture and the estimates share each window)."""
    channels, parts = mix.shape[0], estimates.shape[0]
    stacked = torch.cat([mix, estimates.flatten(0, 1)], dim=0)  # [(1 + S)·C, T]

    def run(chunks: torch.Tensor) -> torch.Tensor:
        batch, _, length = chunks.shape
        return refine_windows(refiner, chunks[:, :channels], chunks[:, channels:].reshape(batch, parts, channels, length), done)

    return overlap_add(run, stacked, refiner.config.segment_samples, overlap, batch_size, device, progress,
                       desc=f"refining (step {done + 2})")


class RefinedSeparator(WrappingSeparator):
    """A separator's estimates, refined ``steps − 1`` times; with ``wiener``, Wiener-filtered at the end.

    >>> base = Separator()
    >>> sep = RefinedSeparator(base, load_refiner(find_refiner(base.name)), steps=3)
    >>> stems = sep.separate(mix, 16000)

    Any separator with ``separate``, ``name`` and ``targets`` can be the base, as long as its targets
    are the refiner's (in any order).
    """

    def __init__(
        self,
        separator,
        refiner: Refiner,
        steps: int = 2,
        wiener: bool = False,
        wiener_iterations: int = 1,
        overlap: float = 0.25,
        batch_size: int = 4,
        device: str | torch.device = "auto",
        progress: bool = False,
    ) -> None:
        if steps < 1:
            raise StemkitError(f"--steps must be at least 1, got {steps}")
        parts = list(refiner.config.targets)
        if sorted(parts) != sorted(separator.targets):
            raise StemkitError(f"the refiner refines {', '.join(parts)}; {separator.name} separates {', '.join(separator.targets)}")
        self.base, self.steps, self.wiener, self.wiener_iterations = separator, steps, wiener, wiener_iterations
        self.device = pick_device(device)
        self.refiner = refiner.to(self.device).eval()
        self.overlap, self.batch_size, self.progress = overlap, batch_size, progress
        self.name = refined_name(separator.name, steps, wiener)

    kind = "refined separation"

    def separate(self, mix: torch.Tensor, sample_rate: int, targets: list[str] | None = None,
                 query: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.refuse_query(query)
        chosen = self.check_targets(targets)
        if mix.dim() != 2:
            raise StemkitError(f"expected audio [channels, samples], got shape {tuple(mix.shape)}")
        estimates: dict[str, torch.Tensor] = {}
        for estimates in self._chain(mix.float(), sample_rate, None):
            pass
        estimates = self._on_top(mix.float(), sample_rate, estimates)  # the filter once, on the last step
        return {t: estimates[t] for t in chosen}

    def iterate(self, mix: torch.Tensor, sample_rate: int, targets: list[str] | None = None,
                first: dict[str, torch.Tensor] | None = None) -> Iterator[ProgressiveStep]:
        """Yield every step's estimates of all parts: step 1 is the base separator's (or ``first``, the
        base's unfiltered estimates of an earlier run). ``targets`` is accepted for the interface of
        :meth:`ProgressiveSeparator.iterate`; every part is refined, since each reads all the others.

        With ``wiener``, each yielded step is Wiener-filtered, while the chain itself refines the
        unfiltered estimates (the refiner was trained on those): the filter stays on top.
        """
        if mix.dim() != 2:
            raise StemkitError(f"expected audio [channels, samples], got shape {tuple(mix.shape)}")
        mix = mix.float()
        for step, estimates in enumerate(self._chain(mix, sample_rate, first), start=1):
            yield ProgressiveStep(step, {}, self._on_top(mix, sample_rate, estimates))

    def _chain(self, mix: torch.Tensor, sample_rate: int, first: dict[str, torch.Tensor] | None) -> Iterator[dict[str, torch.Tensor]]:
        """The unfiltered estimates of steps 1..N."""
        estimates = dict(first) if first is not None else self.base.separate(mix, sample_rate)
        yield estimates
        for done in range(self.steps - 1):
            estimates = self.refine(mix, sample_rate, estimates, done)
            yield estimates

    def _on_top(self, mix: torch.Tensor, sample_rate: int, estimates: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return wiener_filter(mix, estimates, sample_rate, self.wiener_iterations) if self.wiener else estimates

    def refine(self, mix: torch.Tensor, sample_rate: int, estimates: dict[str, torch.Tensor], done: int) -> dict[str, torch.Tensor]:
        """One refinement of every part; ``done`` is how many refinements ``estimates`` have had."""
        cfg = self.refiner.config
        parts = list(cfg.targets)
        signals = [mix] + [estimates[t] for t in parts]
        if sample_rate != cfg.sample_rate:
            signals = [resample(s, sample_rate, cfg.sample_rate) for s in signals]
        out = refine_signal(self.refiner, signals[0], torch.stack(signals[1:]), done, self.overlap, self.batch_size,
                            self.device, self.progress)
        refined = {}
        for part, estimate in zip(parts, out):
            if sample_rate != cfg.sample_rate:
                estimate = resample(estimate, cfg.sample_rate, sample_rate)[..., : mix.shape[-1]]
            refined[part] = estimate
        return refined


def refined_name(base: str, steps: int, wiener: bool) -> str:
    """Output folder name: the model's for one plain pass, else e.g. ``model-r3`` or ``model-r3-wiener``."""
    parts = [base] + ([f"r{steps}"] if steps > 1 else []) + (["wiener"] if wiener else [])
    return "-".join(parts)
