"""Progressive inference: separate, remix the estimate into the mixture, separate again.

The seed idea ("Progressive Inference for Music Demixing") reads a separator as the denoiser of a
diffusion sampler: step 1 separates the mixture ``y``; step n separates

- ``add-to-mixture``: ``y_n = (1 − β_n)·y + β_n·x̂_{n−1}`` — the target's previous estimate boosted
  into the mixture, so the interference it must remove shrinks by ``(1 − β_n)``;
- ``remix-all``: ``y_n = x̂_{n−1} + (1 − β_n)·Σ_{s≠target} x̂_{s,n−1}`` — the mixture rebuilt from all
  estimated stems with the other stems turned down. Writing ``y = Σ_s x̂_s + r`` shows
  ``add-to-mixture`` is the same remix that also keeps ``(1 − β_n)`` of the residual ``r`` (what no
  stem claimed); ``remix-all`` drops it.

β follows a schedule (:mod:`stemkit.separation.schedules`) or is chosen per step by
:class:`AdaptiveSchedule`. ``wiener=True`` re-filters each step's estimates with a multichannel
Wiener filter of the original mixture (norbert), which restores mixture consistency between steps.

A frozen separator never saw boosted inputs, so the seed found gains of at most a quarter dB; a
remix-aware model (``stemkit.training.separation``, ``remix_probability``) is told β and trained on
its own estimates remixed in, and ``ProgressiveSeparator`` hands it β automatically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from stemkit.audio.spectral import istft, stft
from stemkit.errors import StemkitError
from stemkit.separation.base import WrappingSeparator
from stemkit.separation.schedules import beta_schedule, check_schedule, parse_schedule

MODES = ("add-to-mixture", "remix-all")


@dataclass
class ProgressiveStep:
    """One step's result: its number (1-based), β per target, and the estimates after the step."""

    step: int
    betas: dict[str, float]
    estimates: dict[str, torch.Tensor]


class AdaptiveSchedule:
    """Chooses β per target and step from the estimates alone (no references).

    The rule: the relative change ``d_n = ‖x̂_n − x̂_{n−1}‖ / ‖x̂_{n−1}‖`` between successive estimates
    is a reference-free sign of whether iterating helps. While it shrinks the iteration is settling
    towards a fixed point, so the next step trusts the estimate more —
    ``β_{n+1} = β_n + (1 − β_n) / (N − n + 1)``, which is exactly the linear schedule when every step
    settles. When it grows the step amplified its own errors (the drift the seed observed), so that
    step's estimate is rejected and β is halved. A target whose change falls below ``tolerance`` is
    finished and costs no further separations.
    """

    def __init__(self, steps: int, targets: list[str], tolerance: float = 1e-3) -> None:
        self.steps = steps
        self.tolerance = tolerance
        self.beta = {t: 0.0 for t in targets}
        self.change = {t: math.inf for t in targets}
        self.done: set[str] = set()

    def betas(self, step: int) -> dict[str, float]:
        """β for ``step`` (2..N) of each target still running."""
        for target in self.beta:
            if target not in self.done:
                self.beta[target] += (1.0 - self.beta[target]) / (self.steps - step + 2)
        return {t: b for t, b in self.beta.items() if t not in self.done}

    def review(self, previous: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept or reject each target's new estimate; returns the estimates to keep."""
        kept = dict(previous)
        for target, estimate in new.items():
            before = previous[target]
            change = float((estimate - before).norm() / before.norm().clamp_min(1e-8))
            if change > self.change[target]:
                self.beta[target] /= 2.0
                continue
            kept[target] = estimate
            self.change[target] = change
            if change < self.tolerance:
                self.done.add(target)
        return kept


class ProgressiveSeparator(WrappingSeparator):
    """Progressive inference around any separator (ours, a peer adapter, anything with ``separate``).

    >>> base = Separator()  # or load_separator("model.th") for an HTDemucs checkpoint
    >>> sep = ProgressiveSeparator(base, steps=4, schedule="linear")
    >>> stems = sep.separate(mix, 16000)

    Args:
        separator: the separator run at every step; ``takes_beta`` separators are told β.
        steps: N; 1 is ordinary separation.
        schedule: ``linear``, ``cosine``, ``karras[:ρ]``, ``constant[:C]``, ``adaptive`` or a list.
        mode: ``add-to-mixture`` or ``remix-all``.
        wiener: Wiener-filter every step's estimates against the mixture (needs all targets).
        wiener_iterations: EM iterations of the filter.
    """

    def __init__(
        self,
        separator,
        steps: int = 1,
        schedule: str = "linear",
        mode: str = "add-to-mixture",
        wiener: bool = False,
        wiener_iterations: int = 1,
    ) -> None:
        if mode not in MODES:
            raise StemkitError(f"unknown mode {mode!r}: use {' or '.join(MODES)}")
        check_schedule(schedule, steps)  # validates steps and custom lengths now, not mid-file
        self.base = separator
        self.steps, self.schedule, self.mode = steps, schedule, mode
        self.wiener, self.wiener_iterations = wiener, wiener_iterations
        self.name = progressive_name(separator.name, steps, schedule, mode, wiener)

    kind = "progressive inference"

    def separate(self, mix: torch.Tensor, sample_rate: int, targets: list[str] | None = None,
                 query: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.refuse_query(query)
        chosen = self.check_targets(targets)
        last = None
        for last in self.iterate(mix, sample_rate, chosen):
            pass
        return {t: last.estimates[t] for t in chosen}

    def iterate(
        self, mix: torch.Tensor, sample_rate: int, targets: list[str] | None = None, first: dict[str, torch.Tensor] | None = None
    ) -> Iterator[ProgressiveStep]:
        """Yield every step's estimates (the analysis scores them all).

        ``first``: step 1's estimates from an earlier run with the same separator and Wiener setting,
        which every schedule shares, so comparing schedules separates step 1 only once.
        """
        if mix.dim() != 2:
            raise StemkitError(f"expected audio [channels, samples], got shape {tuple(mix.shape)}")
        mix = mix.float()
        wanted = self.check_targets(targets)
        needs_all = self.wiener or (self.mode == "remix-all" and self.steps > 1)
        work = self.targets if needs_all else wanted
        if first is not None and all(t in first for t in work):
            estimates = {t: first[t] for t in work}
        else:
            estimates = self.separate_each({t: mix for t in work}, sample_rate, {t: 0.0 for t in work})
            if self.wiener:
                estimates = wiener_filter(mix, estimates, sample_rate, self.wiener_iterations)
        yield ProgressiveStep(1, {t: 0.0 for t in work}, estimates)
        adaptive = AdaptiveSchedule(self.steps, work) if parse_schedule(self.schedule)[0] == "adaptive" else None
        fixed = None if adaptive else beta_schedule(self.schedule, self.steps)
        for step in range(2, self.steps + 1):
            betas = adaptive.betas(step) if adaptive else {t: fixed[step - 1] for t in work}
            mixtures = {t: self.remix(mix, estimates, t, beta) for t, beta in betas.items()}
            new = self.separate_each(mixtures, sample_rate, betas) if mixtures else {}
            updated = {**estimates, **new}
            if self.wiener and new:
                updated = wiener_filter(mix, updated, sample_rate, self.wiener_iterations)
            estimates = adaptive.review(estimates, {t: updated[t] for t in new}) if adaptive else updated
            yield ProgressiveStep(step, {t: betas.get(t, 0.0) for t in work}, estimates)

    def remix(self, mix: torch.Tensor, estimates: dict[str, torch.Tensor], target: str, beta: float) -> torch.Tensor:
        """The input of a later step for ``target`` (see the module docstring)."""
        if self.mode == "add-to-mixture":
            return (1.0 - beta) * mix + beta * estimates[target]
        others = sum(e for t, e in estimates.items() if t != target)
        return estimates[target] + (1.0 - beta) * others

    def separate_each(self, mixtures: dict[str, torch.Tensor], sample_rate: int, betas: dict[str, float]) -> dict[str, torch.Tensor]:
        """Separate each target from its own mixture; targets sharing a mixture and β share a call."""
        groups: dict[tuple[int, float], list[str]] = {}
        for target, mixture in mixtures.items():
            groups.setdefault((id(mixture), betas[target]), []).append(target)
        out: dict[str, torch.Tensor] = {}
        for (_, beta), names in groups.items():
            extra = {"beta": beta} if getattr(self.base, "takes_beta", False) else {}
            out.update(self.base.separate(mixtures[names[0]], sample_rate, names, **extra))
        return {t: out[t] for t in mixtures}


def progressive_name(base: str, steps: int, schedule: str, mode: str, wiener: bool) -> str:
    """Output folder name: the model's when nothing changes, else e.g. ``model-p4-linear-wiener``."""
    if steps == 1 and not wiener:
        return base
    kind, parameter, _ = parse_schedule(schedule)
    label = kind + (f"{parameter:g}" if parameter is not None else "")
    parts = [base] + ([f"p{steps}", label] if steps > 1 else []) + (["remix-all"] if mode == "remix-all" and steps > 1 else [])
    return "-".join(parts + (["wiener"] if wiener else []))


def wiener_filter(
    mix: torch.Tensor, estimates: dict[str, torch.Tensor], sample_rate: int, iterations: int = 1, chunk_frames: int = 300
) -> dict[str, torch.Tensor]:
    """Multichannel Wiener filtering of ``mix [C, T]`` with the estimates' magnitudes as source models.

    The STFT is ~64 ms long; frames are filtered in chunks of ``chunk_frames`` (as open-unmix does) so
    memory stays bounded on long tracks. A single estimate gets the residual as a second source.
    """
    import norbert

    names = list(estimates)
    sources = [estimates[t] for t in names]
    if len(sources) == 1:
        sources.append(mix - sources[0])
    n_fft = 1 << max(8, round(math.log2(0.064 * sample_rate)))
    hop = n_fft // 4
    x = stft(mix.double(), n_fft, hop).permute(2, 1, 0).numpy()  # [frames, bins, channels]
    v = torch.stack([stft(s.double(), n_fft, hop).abs() for s in sources], dim=-1).permute(2, 1, 0, 3).numpy()
    y = np.zeros(v.shape, dtype=np.complex128)
    for start in range(0, x.shape[0], chunk_frames):
        part = slice(start, start + chunk_frames)
        y[part] = norbert.wiener(v[part], x[part], iterations=iterations, use_softmask=False)
    filtered = torch.from_numpy(y).permute(3, 2, 1, 0)  # [sources, channels, bins, frames]
    length = mix.shape[-1]
    return {t: istft(filtered[i], n_fft, hop, length).float() for i, t in enumerate(names)}
