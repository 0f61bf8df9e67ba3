"""Single chorale parts as (audio crop, instrument) pairs: the data of DisMix Table 3's instrument judge.

Table 3 asks whether a decoded part sounds like the instrument whose timbre it was given. The judge is
a 13-way classifier (:class:`~stemkit.disentanglement.classifier.MelClassifier`, no pitch head) trained
on the parts of generated chorales of every ensemble, so it has heard each instrument over its whole
range, in several soundfonts and performance styles (the ``varied`` data; never the MuseScore General
soundfonts, which stay for testing). Crops that are (nearly) silent teach nothing about timbre, so a
crop is redrawn until its level is above -50 dBFS (a few tries, then kept). A random gain of ±6 dB
keeps the judge from reading loudness as timbre.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from stemkit.audio.io import audio_info, load_audio
from stemkit.data.ensembles import INSTRUMENTS
from stemkit.data.layout import ChoraleTrack
from stemkit.errors import StemkitError
from stemkit.training.chorale_parts import chorale_tracks
from stemkit.parallel import loader_processes
from stemkit.training.monophonic_data import require_valid_dir

SILENT_DBFS = -50.0
TRIES = 8


class ChoraleInstrumentCrops(Dataset):
    """Items: ``audio`` [samples] (one part, mono) and ``instrument`` (its index in ``instruments``)."""

    def __init__(self, tracks: list[ChoraleTrack], samples: int, instruments: list[str], items: int, seed: int = 0,
                 fixed: bool = False, gain_db: float = 6.0) -> None:
        self.parts = [(t, j) for t in tracks for j in range(len(t.stems))]
        unknown = sorted({t.instruments[j] for t, j in self.parts} - set(instruments))
        if unknown:
            raise StemkitError(f"the data has parts played by {', '.join(unknown)}, which the classifier's instruments lack")
        self.lengths = {t.path: audio_info(t.mix).frames for t in tracks}
        self.samples, self.instruments, self.items = samples, list(instruments), items
        self.seed, self.fixed, self.gain_db, self.epoch = seed, fixed, gain_db, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.items

    def draw(self, index: int) -> tuple[ChoraleTrack, int, int, float, torch.Tensor]:
        """Item ``index``'s track, part, crop start, gain and the crop itself (before the gain): a pure function of
        (seed, epoch, index)."""
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch, index])
        track, j = self.parts[int(rng.integers(len(self.parts)))]
        length = self.lengths[track.path]
        for _ in range(TRIES):
            start = int(rng.integers(max(1, length - self.samples + 1)))
            audio = load_audio(track.stems[j], start=start, frames=self.samples, mono=True)[0][0]
            if 20 * torch.log10(audio.pow(2).mean().sqrt() + 1e-12) > SILENT_DBFS:
                break
        audio = torch.nn.functional.pad(audio, (0, self.samples - audio.shape[-1]))
        gain = float(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20)) if not self.fixed else 1.0
        return track, j, start, gain, audio

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        track, j, _, gain, audio = self.draw(index)
        return {"audio": audio * gain, "instrument": torch.tensor(self.instruments.index(track.instruments[j]))}


class ChoraleInstrumentsDataModule(L.LightningDataModule):
    """Chorale parts for a 13-way instrument classifier.

    Args:
        train_dir, valid_dir: chorale datasets (CocoChorales layout); ``valid_dir`` is required.
        seconds: crop length.
        instruments: the classes, in the classifier's order (default: the 13 chorale instruments).
        gain_db: random gain range of training crops.
        batch_size, items_per_epoch, num_workers, seed, valid_items: as for the other data modules.
    """

    def __init__(self, train_dir: str = "data/varied/train", valid_dir: str | None = "data/varied/valid",
                 seconds: float = 2.0, instruments: list[str] | None = None, gain_db: float = 6.0, batch_size: int = 64,
                 items_per_epoch: int = 16000, num_workers: int = 1, seed: int = 0, valid_items: int = 1024) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.instruments = list(instruments or INSTRUMENTS)
        self.sample_rate: int | None = None

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        train = chorale_tracks(hp.train_dir)
        valid = chorale_tracks(require_valid_dir(hp.train_dir, hp.valid_dir))
        self.sample_rate = audio_info(train[0].mix).sample_rate
        samples = int(round(hp.seconds * self.sample_rate))
        self.train_set = ChoraleInstrumentCrops(train, samples, self.instruments, hp.items_per_epoch, hp.seed, gain_db=hp.gain_db)
        self.valid_set = ChoraleInstrumentCrops(valid, samples, self.instruments, hp.valid_items, hp.seed + 1, fixed=True)

    def train_dataloader(self) -> DataLoader:
        self.train_set.set_epoch(self.trainer.current_epoch if self.trainer else 0)
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=False, drop_last=True,
                          **loader_processes(self.hparams.num_workers))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid_set, batch_size=self.hparams.batch_size, **loader_processes(self.hparams.num_workers))
