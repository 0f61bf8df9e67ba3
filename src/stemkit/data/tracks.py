"""Multi-stem tracks that can be read in crops, whatever their source.

Training reads thousands of short random crops; decoding whole files for each would dominate the
time, so a ``StemTrack`` reads exactly the window asked for (soundfile seeks in wav/flac; musdb
seeks in stems files through ffmpeg).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from stemkit.audio.io import audio_info, load_audio
from stemkit.data.layout import ChoraleTrack, list_tracks
from stemkit.data.musdb import MUSDB_STEMS, list_musdb_tracks


@dataclass
class StemTrack:
    """A track as training sees it: named stems with an instrument each, readable by window."""

    name: str
    targets: list[str]  #: stem names in order (soprano…bass, or vocals…other)
    instruments: list[str]  #: instrument of each stem (what query conditioning matches on)
    sample_rate: int
    frames: int
    channels: int
    _paths: list[Path] | None = None
    _musdb: object | None = None

    def load_stem(self, index: int, start: int, frames: int) -> torch.Tensor:
        """``[channels, frames]`` of stem ``index`` from sample ``start``, zero-padded past the end."""
        start = max(0, min(start, self.frames))
        if self._paths is not None:
            audio = load_audio(self._paths[index], start=start, frames=min(frames, self.frames - start))[0]
        else:
            track = self._musdb
            track.chunk_start = start / self.sample_rate
            track.chunk_duration = frames / self.sample_rate
            audio = torch.from_numpy(track.sources[self.targets[index]].audio.T.copy()).float()
        if audio.shape[-1] < frames:
            audio = torch.nn.functional.pad(audio, (0, frames - audio.shape[-1]))
        return audio[..., :frames]


def chorale_stem_track(track: ChoraleTrack) -> StemTrack:
    info = audio_info(track.stems[0])
    return StemTrack(track.name, track.targets, track.instruments, info.sample_rate, info.frames, info.channels, _paths=list(track.stems))


def load_stem_tracks(root: str | Path, subset: str = "train") -> list[StemTrack]:
    """Every track under ``root``: chorale folders, or the MUSDB ``subset``."""
    from stemkit.data.musdb import is_musdb_root

    root = Path(root)
    if is_musdb_root(root):
        result = []
        for t in list_musdb_tracks(root, subset):
            raw = t._track
            result.append(StemTrack(t.name, list(MUSDB_STEMS), list(MUSDB_STEMS), int(raw.rate), int(raw.samples), 2, _musdb=raw))
        return result
    return [chorale_stem_track(t) for t in list_tracks(root)]
