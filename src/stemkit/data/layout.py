"""The CocoChorales on-disk layout, read and written in one place.

``<ensemble>_track<6 digits>/{metadata.yaml, mix.mid, mix.wav, stems_MIDI/<i>_<instrument>.mid,
stems_audio/<i>_<instrument>.wav}``. Real CocoChorales numbers its voices from 1 and generated data
from 0; the reader orders stems by that leading number, so both read the same way (SATB order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stemkit.data.ensembles import PARTS
from stemkit.errors import StemkitError

TRACK_PATTERN = re.compile(r"^(?P<ensemble>[A-Za-z0-9]+)_track(?P<number>\d{6})$")
STEM_PATTERN = re.compile(r"^(?P<voice>\d+)_(?P<instrument>.+)$")


def track_dir_name(ensemble: str, number: int) -> str:
    return f"{ensemble}_track{number:06d}"


@dataclass
class ChoraleTrack:
    """One track folder: paths of its mix and stems in voice order, and its metadata."""

    path: Path
    stems: list[Path]
    instruments: list[str]
    metadata: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def mix(self) -> Path:
        return self.path / "mix.wav"

    @property
    def targets(self) -> list[str]:
        """Target names in voice order: soprano, alto, tenor, bass (voice 4+ keep their number)."""
        return [PARTS[i] if i < len(PARTS) else f"voice{i}" for i in range(len(self.stems))]

    @property
    def ensemble(self) -> str:
        match = TRACK_PATTERN.match(self.name)
        return self.metadata.get("ensemble") or (match.group("ensemble") if match else "unknown")


def read_track(path: str | Path) -> ChoraleTrack:
    """Read one CocoChorales-layout track folder; a clear error names what is missing."""
    path = Path(path)
    audio_dir = path / "stems_audio"
    if not audio_dir.is_dir():
        raise StemkitError(f"{path} is not a chorale track: it has no stems_audio/ folder")
    stems = []
    for wav in audio_dir.iterdir():
        match = STEM_PATTERN.match(wav.stem)
        if match and wav.suffix.lower() in (".wav", ".flac"):
            stems.append((int(match.group("voice")), match.group("instrument").lower(), wav))
    if not stems:
        raise StemkitError(f"{audio_dir} holds no <voice>_<instrument>.wav stems")
    stems.sort()
    metadata = {}
    meta_path = path / "metadata.yaml"
    if meta_path.is_file():
        metadata = yaml.safe_load(meta_path.read_text()) or {}
    return ChoraleTrack(path, [s[2] for s in stems], [s[1] for s in stems], metadata)


def is_track_dir(path: Path) -> bool:
    return path.is_dir() and (path / "stems_audio").is_dir() and not path.name.startswith(".")


def list_tracks(root: str | Path) -> list[ChoraleTrack]:
    """Every track folder under ``root`` (searched two levels deep, so split sub-folders work), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise StemkitError(f"dataset folder not found: {root}")
    if is_track_dir(root):
        return [read_track(root)]
    found = [p for p in root.iterdir() if is_track_dir(p)]
    if not found:
        found = [q for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") for q in p.iterdir() if is_track_dir(q)]
    return [read_track(p) for p in sorted(found)]


@dataclass(frozen=True)
class StemFiles:
    """One stem of a dataset as a single-instrument item: ``<track>_<stem file stem>`` names it uniquely
    (``string_track000123_0_violin``), and its MIDI is ``stems_MIDI/<stem file stem>.mid`` if present."""

    name: str
    audio: Path
    midi: Path | None
    instrument: str


def list_stem_files(root: str | Path, instrument: str | None = None) -> list[StemFiles]:
    """Every stem (of ``instrument``, if given) of the tracks under ``root``, sorted by name."""
    wanted = instrument.lower() if instrument else None
    items = []
    for track in list_tracks(root):
        for stem, inst in zip(track.stems, track.instruments):
            if wanted is None or inst == wanted:
                midi = track.path / "stems_MIDI" / f"{stem.stem}.mid"
                items.append(StemFiles(f"{track.name}_{stem.stem}", stem, midi if midi.is_file() else None, inst))
    return sorted(items, key=lambda item: item.name)


def is_dataset(root: str | Path) -> bool:
    """Whether ``root`` is a track folder or holds track folders (one or two levels down)."""
    return Path(root).is_dir() and bool(list_tracks(root))
