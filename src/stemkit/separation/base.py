"""The interface every separator satisfies (ours, peer adapters, progressive wrappers, oracles), and
the file handling they share."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from stemkit.atomic import atomic_folder, remove_stale_staging
from stemkit.audio.io import load_audio, save_audio
from stemkit.audio.resample import resample
from stemkit.errors import StemkitError


@lru_cache(maxsize=2)
def _load_query(path: str) -> tuple[torch.Tensor, int]:
    """A query clip, read once for a whole batch of inputs (every file is separated by the same clip)."""
    return load_audio(path)


@runtime_checkable
class SupportsSeparate(Protocol):
    """``separate(mix [channels, samples], sample_rate, targets, query) -> {target: [channels, samples]}``.

    ``targets`` selects which stems to return (all when ``None``); ``query`` is an optional audio
    example of the wanted instrument for query-conditioned models.
    """

    def separate(
        self,
        mix: torch.Tensor,
        sample_rate: int,
        targets: list[str] | None = None,
        query: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]: ...


class FileSeparator:
    """What turns a :class:`SupportsSeparate` with ``name`` and ``targets`` into a file tool.

    Subclasses provide ``name``, ``targets`` and ``separate``; this adds target checking and the
    all-or-nothing, atomic writing of one file's stems used by ``stemkit separate``.
    """

    name: str
    #: whether ``separate`` accepts ``beta=`` (a remix-aware model for progressive inference)
    takes_beta: bool = False

    @property
    def targets(self) -> list[str]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def separate(self, mix: torch.Tensor, sample_rate: int, targets: list[str] | None = None,
                 query: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def check_targets(self, targets: list[str] | None) -> list[str]:
        """The requested targets in the model's order; unknown names are an error."""
        if targets is None:
            return self.targets
        unknown = [t for t in targets if t not in self.targets]
        if unknown:
            raise StemkitError(f"unknown target(s) {', '.join(unknown)}: this model separates {', '.join(self.targets)}")
        return [t for t in self.targets if t in targets]

    def separate_file(
        self,
        path: str | Path,
        folder: str | Path,
        targets: list[str] | None = None,
        format: str = "wav",
        residual: bool = False,
        overwrite: bool = False,
        query: str | Path | None = None,
        instruments: list[str] | None = None,
    ) -> list[Path]:
        """Separate one file into ``folder/<target>.<format>``; returns the paths written.

        ``query`` (an audio file of the wanted instrument) writes ``<query file's stem>.<format>``;
        ``instruments`` write ``<instrument>.<format>`` each; with either, targets are written only
        when ``targets`` names them.

        The outputs of a file are one unit: they are written into a hidden staging folder and
        appear together (see :func:`stemkit.atomic.atomic_folder`), so a killed job never leaves
        some of them. Outputs that exist are kept unless ``overwrite``; only the missing ones are
        written, so a re-run completes what an earlier run (or one with other ``targets``) left.
        ``residual`` adds ``residual`` = mix − Σ targets.
        """
        outputs = self.output_paths(folder, targets, format, residual, query, instruments)
        todo = outputs if overwrite else [p for p in outputs if not p.exists()]
        if not todo:
            return []
        mix, rate = load_audio(path)
        if mix.shape[-1] == 0:
            raise StemkitError(f"{path} contains no audio")
        if query is None and not instruments:
            stems = self.separate(mix, rate, self.check_targets(targets))
        else:
            clip = None
            if query is not None:
                clip, clip_rate = _load_query(str(query))
                if clip_rate != rate:
                    clip = resample(clip.float(), clip_rate, rate)
            stems = self.separate(mix, rate, targets, query=clip, instruments=instruments)
            if clip is not None:
                stems[Path(query).stem] = stems.pop("query")
        if residual:
            stems["residual"] = mix - sum(stems.values())
        remove_stale_staging(Path(folder).parent, Path(folder).name)
        with atomic_folder(folder) as staging:
            for out in todo:
                save_audio(staging / out.name, stems[out.stem], rate, label=str(out))
        return todo

    def output_paths(
        self,
        folder: str | Path,
        targets: list[str] | None = None,
        format: str = "wav",
        residual: bool = False,
        query: str | Path | None = None,
        instruments: list[str] | None = None,
    ) -> list[Path]:
        """Where :meth:`separate_file` writes: one file per target, instrument and query (and the residual)."""
        if format not in ("wav", "flac"):
            raise StemkitError(f"unknown format {format!r}: use wav or flac")
        by_example = query is not None or bool(instruments)
        names = self.check_targets(targets) if targets is not None or not by_example else []
        names += list(instruments or []) + ([Path(query).stem] if query is not None else [])
        names += ["residual"] if residual else []
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise StemkitError(f"two outputs would be named {', '.join(repeated)}: rename the query file or drop the repeated name")
        return [Path(folder) / f"{name}.{format}" for name in names]


class WrappingSeparator(FileSeparator):
    """A separator built around another (``self.base``): it separates the base's targets, by name only
    (progressive inference and refinement iterate on part estimates, which a query clip does not name)."""

    base: FileSeparator
    #: how the wrapper names itself in the one-line refusal of a query clip
    kind: str = "this separator"

    @property
    def targets(self) -> list[str]:
        return list(self.base.targets)

    def refuse_query(self, query: torch.Tensor | None) -> None:
        if query is not None:
            raise StemkitError(f"{self.kind} separates by part name, not by query clip")
