"""One interface over every dataset with references: what evaluation and oracles need.

A reference track has a ``name``, a ``sample_rate``, its ``targets`` and can load its mixture and
each target as ``[channels, samples]``. Chorale folders (generated or real CocoChorales) and MUSDB
both provide it, so ``stemkit eval`` does not care which one it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from stemkit.audio.io import audio_info, load_audio
from stemkit.data.layout import ChoraleTrack, list_tracks
from stemkit.data.musdb import is_musdb_root, list_musdb_tracks
from stemkit.errors import StemkitError


class ReferenceTrack(Protocol):
    name: str

    @property
    def sample_rate(self) -> int: ...

    @property
    def targets(self) -> list[str]: ...

    @property
    def shape(self) -> tuple[int, int]:
        """``(channels, samples)`` of the mixture, read without decoding it."""
        ...

    def load_mix(self) -> torch.Tensor: ...

    def load_target(self, target: str) -> torch.Tensor: ...


@dataclass
class ChoraleReference:
    track: ChoraleTrack

    @property
    def name(self) -> str:
        return self.track.name

    @property
    def sample_rate(self) -> int:
        return audio_info(self.track.mix).sample_rate

    @property
    def targets(self) -> list[str]:
        return self.track.targets

    @property
    def shape(self) -> tuple[int, int]:
        info = audio_info(self.track.mix)
        return info.channels, info.frames

    def load_mix(self) -> torch.Tensor:
        return load_audio(self.track.mix)[0]

    def load_target(self, target: str) -> torch.Tensor:
        if target not in self.targets:
            raise StemkitError(f"unknown target {target!r} for {self.name}: choose from {', '.join(self.targets)}")
        return load_audio(self.track.stems[self.targets.index(target)])[0]


def open_reference_dataset(root: str | Path, subset: str = "test") -> list[ReferenceTrack]:
    """Chorale folders or MUSDB under ``root`` (``subset`` applies to MUSDB only)."""
    root = Path(root)
    if not root.exists():
        raise StemkitError(f"reference dataset not found: {root}")
    if is_musdb_root(root):
        tracks = list_musdb_tracks(root, subset)
    else:
        tracks = [ChoraleReference(t) for t in list_tracks(root)]
    if not tracks:
        raise StemkitError(f"no tracks found in {root}: expected CocoChorales-layout track folders or MUSDB18")
    return tracks
