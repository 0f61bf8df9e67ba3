"""Lightning data for DisMix's latent variant: chorale excerpts with every part, a query per part and its pitch roll.

Why the query comes from the same stem at another time: it must carry the part's timbre (same
instrument, same rendering) and not its notes, so it is cut from the same recording away from the
excerpt (the paper's CocoChorales setup; the issue's `swap` uses the same rule). The pitch roll is read
from the stem's MIDI at the mel frame rate: one class per frame, the sounding pitch or ``NO_NOTE``
(a chorale part plays one note at a time; if two overlap, the higher wins). Crops start on latent
frames, so audio, mel frames and latent frames line up. A draw is a pure function of (seed, epoch,
index), so a run reproduces whatever the worker count.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from stemkit.audio.io import audio_info, load_audio
from stemkit.data.layout import ChoraleTrack, list_tracks
from stemkit.disentanglement.dismix_ldm import NO_NOTE
from stemkit.errors import StemkitError
from stemkit.midi.notes import Note, read_midi_tracks
from stemkit.parallel import loader_processes
from stemkit.training.monophonic_data import require_valid_dir


def pitch_roll(notes: list[Note], start: float, frames: int, frame_seconds: float) -> np.ndarray:
    """``[frames]`` int64: the MIDI pitch sounding at each frame's centre (the highest if several), else ``NO_NOTE``."""
    roll = np.full(frames, NO_NOTE, dtype=np.int64)
    centres = start + (np.arange(frames) + 0.5) * frame_seconds
    for note in sorted(notes, key=lambda n: n.pitch):
        roll[(centres >= note.start) & (centres < note.end)] = note.pitch
    return roll


def chorale_tracks(root: str | Path, parts: int | None = None) -> list[ChoraleTrack]:
    """The tracks of a chorale dataset with ``parts`` stems (default: the first track's count), each with its MIDI."""
    tracks = list_tracks(root)
    if not tracks:
        raise StemkitError(f"{root} holds no chorale tracks (stemkit data chorales --out {root})")
    parts = parts or len(tracks[0].stems)
    chosen = [t for t in tracks if len(t.stems) == parts and all((t.path / "stems_MIDI" / f"{s.stem}.mid").is_file() for s in t.stems)]
    if not chosen:
        raise StemkitError(f"{root} has no track with {parts} stems and their MIDI (stems_MIDI/)")
    return chosen


class ChoralePartCrops(Dataset):
    """Items: ``mix`` [1, T], ``sources`` [S, 1, T], ``queries`` [S, 1, Tq], ``roll`` [S, T / mel_hop] (class per frame)."""

    def __init__(self, tracks: list[ChoraleTrack], segment: int, query: int, hop: int, mel_hop: int,
                 items: int, seed: int = 0, fixed: bool = False) -> None:
        if segment % hop or query % hop or hop % mel_hop:
            raise ValueError(f"segment ({segment}) and query ({query}) must be multiples of hop ({hop}), itself of mel_hop ({mel_hop})")
        self.tracks, self.segment, self.query, self.hop, self.mel_hop = tracks, segment, query, hop, mel_hop
        self.items, self.seed, self.fixed, self.epoch = items, seed, fixed, 0
        self.lengths = [audio_info(t.mix).frames for t in tracks]
        self.sample_rate = audio_info(tracks[0].mix).sample_rate
        self._notes: dict[Path, list[Note]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.items

    def _notes_of(self, track: ChoraleTrack, stem: Path) -> list[Note]:
        path = track.path / "stems_MIDI" / f"{stem.stem}.mid"
        if path not in self._notes:
            self._notes[path] = [n for t in read_midi_tracks(path) for n in t.notes]
        return self._notes[path]

    def _start(self, rng: np.random.Generator, length: int, span: int, avoid: tuple[int, int] | None = None) -> int:
        """A hop-aligned start for ``span`` samples, outside ``avoid`` (start, end) when the track is long enough."""
        slots = max(1, (length - span) // self.hop + 1)
        starts = np.arange(slots) * self.hop
        if avoid is not None:
            away = starts[(starts + span <= avoid[0]) | (starts >= avoid[1])]
            starts = away if len(away) else starts
        return int(starts[rng.integers(len(starts))])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch, index])
        k = int(rng.integers(len(self.tracks)))
        track, length = self.tracks[k], self.lengths[k]
        start = self._start(rng, length, self.segment)
        query_start = self._start(rng, length, self.query, avoid=(start, start + self.segment))

        def crop(path: Path, at: int, span: int) -> torch.Tensor:
            audio = load_audio(path, start=at, frames=span, mono=True)[0]
            return torch.nn.functional.pad(audio, (0, span - audio.shape[-1]))

        rate = self.sample_rate
        frames = self.segment // self.mel_hop
        return {
            "mix": crop(track.mix, start, self.segment),
            "sources": torch.stack([crop(s, start, self.segment) for s in track.stems]),
            "queries": torch.stack([crop(s, query_start, self.query) for s in track.stems]),
            "roll": torch.from_numpy(np.stack([pitch_roll(self._notes_of(track, s), start / rate, frames, self.mel_hop / rate)
                                               for s in track.stems])),
        }


class ChoralePartsDataModule(L.LightningDataModule):
    """Chorale excerpts for DisMix's latent variant.

    Args:
        train_dir, valid_dir: chorale datasets (CocoChorales layout, e.g. ``--ensemble random``); ``valid_dir`` is required.
        segment_seconds, query_seconds: excerpt and query lengths (rounded down to latent frames).
        hop, mel_hop: samples per latent frame and per mel frame (the mel VAE's; 640 and 160 by default).
        batch_size, items_per_epoch, num_workers, seed, valid_items: as for the other data modules.
    """

    def __init__(self, train_dir: str = "data/random/train", valid_dir: str | None = "data/random/valid",
                 segment_seconds: float = 4.0, query_seconds: float = 2.0, hop: int = 640, mel_hop: int = 160,
                 batch_size: int = 8, items_per_epoch: int = 4000, num_workers: int = 1, seed: int = 0,
                 valid_items: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.sample_rate: int | None = None

    def _samples(self, seconds: float, rate: int) -> int:
        hop = self.hparams.hop
        return max(hop, int(seconds * rate) // hop * hop)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        train = chorale_tracks(hp.train_dir)
        valid = chorale_tracks(require_valid_dir(hp.train_dir, hp.valid_dir), parts=len(train[0].stems))
        rate = audio_info(train[0].mix).sample_rate
        self.sample_rate = rate
        args = (self._samples(hp.segment_seconds, rate), self._samples(hp.query_seconds, rate), hp.hop, hp.mel_hop)
        self.train_set = ChoralePartCrops(train, *args, hp.items_per_epoch, hp.seed)
        self.valid_set = ChoralePartCrops(valid, *args, hp.valid_items, hp.seed + 1, fixed=True)

    def train_dataloader(self) -> DataLoader:
        self.train_set.set_epoch(self.trainer.current_epoch if self.trainer else 0)
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=False, drop_last=True,
                          **loader_processes(self.hparams.num_workers))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid_set, batch_size=self.hparams.batch_size, **loader_processes(self.hparams.num_workers))
