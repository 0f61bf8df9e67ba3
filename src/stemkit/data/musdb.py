"""MUSDB18 / MUSDB18-HQ reader (stems files or the wav layout) through the ``musdb`` package.

``musdb`` decodes ``.stem.mp4`` with ffmpeg (via stempeg); the wav layout (``<subset>/<track>/
{mixture,vocals,drums,bass,other}.wav``, MUSDB18-HQ) is read directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stemkit.errors import StemkitError

MUSDB_STEMS = ("vocals", "drums", "bass", "other")
MUSDB_TARGETS = (*MUSDB_STEMS, "accompaniment")


def is_musdb_root(root: Path) -> bool:
    """True when ``root`` looks like MUSDB18 (stems files) or MUSDB18-HQ (wav folders)."""
    for subset in ("train", "test"):
        folder = root / subset
        if folder.is_dir() and (any(folder.glob("*.stem.mp4")) or any(folder.glob("*/mixture.wav"))):
            return True
    return False


def _is_wav_layout(root: Path) -> bool:
    return any(root.glob("*/*/mixture.wav"))


@dataclass
class MusdbTrack:
    """A MUSDB track with the same reading interface as a chorale track."""

    _track: object
    subset: str

    @property
    def name(self) -> str:
        return self._track.name

    @property
    def sample_rate(self) -> int:
        return int(self._track.rate)

    @property
    def targets(self) -> list[str]:
        return list(MUSDB_STEMS)

    @property
    def shape(self) -> tuple[int, int]:
        """``(channels, samples)``: MUSDB is stereo; the length comes from the file's header."""
        return 2, int(round(float(self._track.duration) * self.sample_rate))

    def load_mix(self) -> torch.Tensor:
        return _tensor(self._track.audio)

    def load_target(self, target: str) -> torch.Tensor:
        if target not in self._track.targets:
            raise StemkitError(f"unknown MUSDB target {target!r}: choose from {', '.join(MUSDB_TARGETS)}")
        return _tensor(self._track.targets[target].audio)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array, dtype=np.float32).T))


def list_musdb_tracks(root: str | Path, subset: str = "test") -> list[MusdbTrack]:
    """The tracks of one MUSDB subset (``train`` or ``test``), sorted by name."""
    import musdb

    root = Path(root)
    if subset not in ("train", "test"):
        raise StemkitError(f"unknown MUSDB subset {subset!r}: choose train or test")
    if not (root / subset).is_dir():
        raise StemkitError(f"{root} has no {subset}/ folder: pass --subset train or --subset test")
    db = musdb.DB(root=str(root), subsets=subset, is_wav=_is_wav_layout(root), download=False)
    return sorted((MusdbTrack(t, subset) for t in db.tracks), key=lambda t: t.name)
