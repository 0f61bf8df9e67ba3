"""The ``Separator``: a trained model plus everything between it and audio files.

One object serves the CLI, the Python API, validation during training and the benchmarks, so they
all separate the same way: resample to the model's rate, fit the channel count, run overlapping
windows through the network (bounded memory on any length), resample back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from stemkit.audio.chunking import overlap_add
from stemkit.audio.io import check_finite
from stemkit.audio.resample import resample
from stemkit.errors import StemkitError
from stemkit.jobs import pick_device
from stemkit.precision import autocast, resolve_precision
from stemkit.separation.base import FileSeparator
from stemkit.models import load_model
from stemkit.separation.lasaft import LaSAFT

DEFAULT_MODEL = "lasaft-chorales-string-remix"
#: Shortest window accepted. Shorter windows are all overlap and padding: 1 ms windows took an hour
#: for a 2-second file. A quarter second still holds several STFT frames of every model here.
MIN_SEGMENT_SECONDS = 0.25
#: Shortest query clip accepted: a few notes of the instrument, enough for its timbre.
MIN_QUERY_SECONDS = 0.5


def separate_with_model(
    model: LaSAFT,
    mix: torch.Tensor,
    target_indices: list[int],
    segment: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    progress: bool = False,
    beta: float | None = None,
) -> torch.Tensor:
    """``mix [C, samples]`` at the model's rate → ``[len(target_indices), C, samples]``.

    ``beta`` is the remix level handed to a remix-aware model (progressive inference).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    run = fit_channels(lambda chunks: model.separate_batch(chunks, target_indices, beta), model.config.audio_channels, mix.shape[0])
    return overlap_add(run, mix, segment or model.config.segment_samples, overlap, batch_size, device, progress, desc="separating")


def fit_channels(
    separate_windows: Callable[[torch.Tensor], torch.Tensor], model_channels: int, channels: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``[B, model_channels, seg] → [B, S, model_channels, seg]`` to take ``channels`` channels.

    A mono model separates each channel of a multichannel mix on its own; a stereo model given mono
    audio sees it duplicated and its output is averaged back to mono.
    """

    def run(chunks: torch.Tensor) -> torch.Tensor:
        batch, _, length = chunks.shape
        if model_channels == channels:
            return separate_windows(chunks)
        if model_channels == 1:
            out = separate_windows(chunks.reshape(batch * channels, 1, length))
            return out.reshape(batch, channels, -1, length).transpose(1, 2)
        if channels == 1:
            out = separate_windows(chunks.expand(batch, model_channels, length))
            return out.mean(dim=2, keepdim=True)
        raise StemkitError(f"the model takes {model_channels} channels; this audio has {channels}")

    return run


class WindowedSeparator(FileSeparator):
    """A network that separates fixed-length windows, made into a separator of any audio.

    Resamples to the model's rate, fits the channel count, runs overlapping windows (bounded memory
    on any length) and resamples back. Subclasses set the attributes below and implement
    :meth:`separate_windows`; ours (:class:`Separator`) and the peer adapters share all the rest.
    """

    name: str
    sample_rate: int
    model_channels: int
    segment_samples: int
    device: torch.device
    overlap: float = 0.25
    batch_size: int = 4
    progress: bool = False

    def _set_options(self, device: str | torch.device, segment: float | None, overlap: float, batch_size: int, progress: bool,
                     precision: str = "auto") -> None:
        if not 0.0 <= overlap < 1.0:
            raise StemkitError(f"overlap must be in [0, 1), got {overlap}")
        if batch_size < 1:
            raise StemkitError(f"batch size must be at least 1, got {batch_size}")
        if segment is not None and not segment >= MIN_SEGMENT_SECONDS:
            raise StemkitError(f"--segment must be at least {MIN_SEGMENT_SECONDS} s, got {segment}")
        self.device = pick_device(device)
        self.compute_dtype = resolve_precision(precision, self.device)  # None: float32 (:mod:`stemkit.precision`)
        self.overlap, self.batch_size, self.progress = overlap, batch_size, progress
        self.segment_seconds = segment

    def separate_windows(self, chunks: torch.Tensor, indices: list[int], beta: float | None) -> torch.Tensor:
        """``[B, model_channels, seg]`` → ``[B, len(indices), model_channels, seg]``."""
        raise NotImplementedError

    def check_by_example(self, query: bool, instruments: list[str] | None) -> None:
        """Refuse, before any work, a query clip or instrument names this model cannot take."""
        if query or instruments:
            raise StemkitError(f"{self.name} separates by target name; --query and --instrument need a model with a query encoder")

    def query_conditions(self, query: torch.Tensor | None, sample_rate: int, instruments: list[str] | None) -> list[tuple[str, torch.Tensor]]:
        """``(name, condition vector)`` for a query clip (named ``query``) and for stored instruments.

        Only query-conditioned models have them; this default is the one-line refusal of the rest.
        """
        self.check_by_example(True, instruments)
        return []

    def separate(
        self,
        mix: torch.Tensor,
        sample_rate: int,
        targets: list[str] | None = None,
        query: torch.Tensor | None = None,
        beta: float | None = None,
        instruments: list[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``mix [channels, samples]`` at ``sample_rate`` → ``{target: [channels, samples]}`` at the same rate.

        ``query`` (a clip ``[channels, samples]`` of the wanted instrument, at ``sample_rate``) adds the
        key ``"query"``; ``instruments`` adds one key per stored instrument name. With either, only
        the named ``targets`` are separated as well (none by default), else all targets are.
        ``beta``: for a remix-aware model, how much of ``mix`` is a previous estimate of the target
        (progressive inference sets it; plain separation leaves it at 0; other models ignore it).
        """
        if mix.dim() != 2:
            raise StemkitError(f"expected audio [channels, samples], got shape {tuple(mix.shape)}")
        check_finite(mix, "the mixture", sample_rate)
        by_example = query is not None or bool(instruments)
        chosen = self.check_targets(targets) if targets is not None or not by_example else []
        requests: list[tuple[str, int | torch.Tensor]] = [(t, self.targets.index(t)) for t in chosen]
        if by_example:
            requests += self.query_conditions(query, sample_rate, instruments)
        audio = mix.float()
        if sample_rate != self.sample_rate:
            audio = resample(audio, sample_rate, self.sample_rate)
        conditions = [condition for _, condition in requests]
        segment = int(round(self.segment_seconds * self.sample_rate)) if self.segment_seconds else self.segment_samples

        def separate_windows(chunks: torch.Tensor) -> torch.Tensor:
            with autocast(self.device, self.compute_dtype):  # only the network: overlap-add accumulates in float32
                return self.separate_windows(chunks, conditions, beta).float()

        run = fit_channels(separate_windows, self.model_channels, audio.shape[0])
        with torch.inference_mode():
            out = overlap_add(run, audio, segment, self.overlap, self.batch_size, self.device, self.progress, desc="separating")
        result = {}
        for (name, _), estimate in zip(requests, out):
            if sample_rate != self.sample_rate:
                estimate = resample(estimate, self.sample_rate, sample_rate)[..., : mix.shape[-1]]
            result[name] = estimate
        return result


class Separator(WindowedSeparator):
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
        precision: ``auto`` (bfloat16 on a CPU that computes it natively, else float32), ``32`` or ``bf16``
            (:mod:`stemkit.precision`).
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        device: str | torch.device = "auto",
        segment: float | None = None,
        overlap: float = 0.25,
        batch_size: int = 4,
        progress: bool = False,
        precision: str = "auto",
    ) -> None:
        self._set_options(device, segment, overlap, batch_size, progress, precision)
        net, self.metadata = load_model(model, task="separation")
        self.model = net.to(self.device).eval()
        config = self.model.config
        self.name: str = self.metadata["name"]
        self.sample_rate = config.sample_rate
        self.model_channels = config.audio_channels
        self.segment_samples = config.segment_samples
        self.takes_beta = bool(config.beta_condition)

    @property
    def targets(self) -> list[str]:
        return list(self.model.config.targets)

    @property
    def instruments(self) -> list[str]:
        """Instruments ``--instrument`` can name (those the model stored a mean query for)."""
        return self.model.known_instruments

    def check_by_example(self, query: bool, instruments: list[str] | None) -> None:
        if self.model.query_encoder is None:
            super().check_by_example(query, instruments)
            return
        unknown = [name for name in instruments or [] if name not in self.instruments]
        if unknown:
            known = ", ".join(self.instruments) or "none"
            raise StemkitError(f"unknown instrument(s) {', '.join(unknown)}: {self.name} knows {known}")

    def query_conditions(self, query: torch.Tensor | None, sample_rate: int, instruments: list[str] | None) -> list[tuple[str, torch.Tensor]]:
        self.check_by_example(query is not None, instruments)
        found = [(name, self.model.instrument_condition(name)) for name in instruments or []]
        if query is not None:
            if query.dim() != 2:
                raise StemkitError(f"expected the query clip as [channels, samples], got shape {tuple(query.shape)}")
            check_finite(query, "the query clip", sample_rate)
            if query.shape[-1] < MIN_QUERY_SECONDS * sample_rate:
                raise StemkitError(f"the query clip is {query.shape[-1] / sample_rate:.2f} s; give at least {MIN_QUERY_SECONDS} s of the instrument")
            if not query.abs().max() > 0:
                raise StemkitError("the query clip is silent: it must hold the instrument playing")
            clip = resample(query.float(), sample_rate, self.sample_rate) if sample_rate != self.sample_rate else query.float()
            with torch.inference_mode():
                vector = self.model.query_condition(clip[None].to(self.device))[0]
            found.append(("query", vector))
        return found

    def separate_windows(self, chunks: torch.Tensor, indices: list[int | torch.Tensor], beta: float | None) -> torch.Tensor:
        return self.model.separate_batch(chunks, indices, beta)
