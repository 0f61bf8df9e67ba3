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
from stemkit.training.part_latents import encode_tracks, read_latents, vae_fingerprint


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
    """Items: ``mix`` [1, T], ``sources`` [S, 1, T], ``queries`` [S, 1, Tq], ``roll`` [S, T / mel_hop] (class per frame).

    With ``latents`` (one cache file per track), ``mix_latent`` [D, T / hop] and ``source_latents``
    [S, D, T / hop] replace ``mix`` and ``sources``; the draws are the same.
    """

    def __init__(self, tracks: list[ChoraleTrack], segment: int, query: int, hop: int, mel_hop: int,
                 items: int, seed: int = 0, fixed: bool = False, latents: list[Path] | None = None) -> None:
        if segment % hop or query % hop or hop % mel_hop:
            raise ValueError(f"segment ({segment}) and query ({query}) must be multiples of hop ({hop}), itself of mel_hop ({mel_hop})")
        self.tracks, self.segment, self.query, self.hop, self.mel_hop = tracks, segment, query, hop, mel_hop
        self.items, self.seed, self.fixed, self.epoch = items, seed, fixed, 0
        if latents is not None and len(latents) != len(tracks):
            raise ValueError(f"{len(latents)} latent files for {len(tracks)} tracks")
        self.latents = latents
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
        item = {
            "queries": torch.stack([crop(s, query_start, self.query) for s in track.stems]),
            "roll": torch.from_numpy(np.stack([pitch_roll(self._notes_of(track, s), start / rate, frames, self.mel_hop / rate)
                                               for s in track.stems])),
        }
        if self.latents is None:
            item["mix"] = crop(track.mix, start, self.segment)
            item["sources"] = torch.stack([crop(s, start, self.segment) for s in track.stems])
        else:
            latents = read_latents(self.latents[k], start // self.hop, self.segment // self.hop)
            item["mix_latent"], item["source_latents"] = latents[0], latents[1:]
        return item


class ChoralePartsDataModule(L.LightningDataModule):
    """Chorale excerpts for DisMix's latent variant.

    Args:
        train_dir, valid_dir: chorale datasets (CocoChorales layout, e.g. ``--ensemble random``); ``valid_dir`` is required.
        segment_seconds, query_seconds: excerpt and query lengths (rounded down to latent frames).
        hop, mel_hop: samples per latent frame and per mel frame (the mel VAE's; 640 and 160 by default).
        batch_size, items_per_epoch, num_workers, seed, valid_items: as for the other data modules.
        latent_vae: when set (to the model's ``vae``, e.g. ``mel-vae-chorales``), serve cached latents of
            this frozen VAE instead of the excerpts' audio; the model refuses latents of another VAE.
        cache_dir: where the latents are kept, one file per track.
        encode_workers: processes that encode the tracks not cached yet.
    """

    def __init__(self, train_dir: str = "data/random/train", valid_dir: str | None = "data/random/valid",
                 segment_seconds: float = 4.0, query_seconds: float = 2.0, hop: int = 640, mel_hop: int = 160,
                 batch_size: int = 8, items_per_epoch: int = 4000, num_workers: int = 1, seed: int = 0,
                 valid_items: int = 32, latent_vae: str | None = None, cache_dir: str = "runs/latent-cache/chorale-parts",
                 encode_workers: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.sample_rate: int | None = None
        self.vae_fingerprint: str | None = None

    def _samples(self, seconds: float, rate: int) -> int:
        hop = self.hparams.hop
        return max(hop, int(seconds * rate) // hop * hop)

    def _splits(self) -> tuple[list[ChoraleTrack], list[ChoraleTrack], int]:
        hp = self.hparams
        train = chorale_tracks(hp.train_dir)
        valid = chorale_tracks(require_valid_dir(hp.train_dir, hp.valid_dir), parts=len(train[0].stems))
        return train, valid, audio_info(train[0].mix).sample_rate

    def prepare_data(self) -> None:
        """Encode the tracks whose latents are not cached yet (once per node under DDP)."""
        hp = self.hparams
        if hp.latent_vae is None:
            return
        train, valid, rate = self._splits()
        encode_tracks(hp.latent_vae, train + valid, hp.cache_dir, self._samples(hp.segment_seconds, rate), hp.encode_workers)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        train, valid, rate = self._splits()
        self.sample_rate = rate
        segment = self._samples(hp.segment_seconds, rate)
        train_latents = valid_latents = None
        if hp.latent_vae is not None:  # the paths prepare_data filled (encoding here only what a skipped prepare_data left)
            paths = encode_tracks(hp.latent_vae, train + valid, hp.cache_dir, segment, hp.encode_workers)
            train_latents, valid_latents = paths[: len(train)], paths[len(train) :]
            self.vae_fingerprint = vae_fingerprint(hp.latent_vae)
        args = (segment, self._samples(hp.query_seconds, rate), hp.hop, hp.mel_hop)
        self.train_set = ChoralePartCrops(train, *args, hp.items_per_epoch, hp.seed, latents=train_latents)
        self.valid_set = ChoralePartCrops(valid, *args, hp.valid_items, hp.seed + 1, fixed=True, latents=valid_latents)

    def train_dataloader(self) -> DataLoader:
        self.train_set.set_epoch(self.trainer.current_epoch if self.trainer else 0)
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=False, drop_last=True,
                          **loader_processes(self.hparams.num_workers))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid_set, batch_size=self.hparams.batch_size, **loader_processes(self.hparams.num_workers))
