"""Lightning data module for stem datasets: random remixed crops for training, fixed excerpts for validation.

Why validation uses whole excerpts and not random crops: validation reports cSDR, which is measured
on 1-second frames of a longer signal with the same chunked inference users run, so the number in
the logs means the same as the number ``stemkit eval`` prints.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from stemkit.data.datasets import CropConfig, StemCropDataset
from stemkit.data.tracks import StemTrack, load_stem_tracks


class ExcerptDataset(torch.utils.data.Dataset):
    """The first ``seconds`` of each of ``tracks``: ``{"name", "mix" [C, T], "stems" [S, C, T]}``."""

    def __init__(self, tracks: list[StemTrack], seconds: float) -> None:
        self.tracks = tracks
        self.seconds = seconds

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, index: int) -> dict:
        track = self.tracks[index]
        frames = min(track.frames, int(round(self.seconds * track.sample_rate)))
        stems = torch.stack([track.load_stem(i, 0, frames) for i in range(len(track.targets))])
        return {"name": track.name, "mix": stems.sum(dim=0), "stems": stems}


def _spread(tracks: list[StemTrack], count: int) -> list[StemTrack]:
    """``count`` tracks evenly spread over the (sorted) list, so validation covers its variety."""
    if count <= 0 or count >= len(tracks):
        return tracks
    step = len(tracks) / count
    return [tracks[int(i * step)] for i in range(count)]


class StemDataModule(L.LightningDataModule):
    """Stems from a chorale folder (CocoChorales layout) or a MUSDB18 root.

    Args:
        train_dir: training tracks (a chorale folder, or a MUSDB root whose ``train_subset`` is used).
        valid_dir: validation tracks (default: ``train_dir``'s ``valid_subset`` — MUSDB only).
        segment_seconds: length of a training crop.
        batch_size: crops per optimizer step (per device).
        items_per_epoch: crops per epoch; an epoch is ``items_per_epoch / batch_size`` steps.
        remix, swap_probability, gain_db: on-the-fly remixing (see ``CropConfig``).
        conditioning: ``"index"`` for separators conditioned on a target index.
        valid_tracks: how many validation tracks (spread over the set); 0 = all.
        valid_seconds: seconds of each validation track.
        num_workers: data loading processes.
        seed: seed of the crops.
    """

    def __init__(
        self,
        train_dir: str = "data/chorales/train",
        valid_dir: str | None = "data/chorales/valid",
        train_subset: str = "train",
        valid_subset: str = "valid",
        segment_seconds: float = 2.0,
        batch_size: int = 8,
        items_per_epoch: int = 4000,
        remix: bool = True,
        swap_probability: float = 0.5,
        gain_db: tuple[float, float] = (-6.0, 3.0),
        conditioning: str | None = "index",
        valid_tracks: int = 6,
        valid_seconds: float = 12.0,
        num_workers: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_set: StemCropDataset | None = None
        self.valid_set: ExcerptDataset | None = None

    def _tracks(self, folder: str, subset: str) -> list[StemTrack]:
        if not Path(folder).exists():
            raise FileNotFoundError(
                f"no dataset at {folder}; make one with `stemkit data chorales --out {folder} --split {subset}`"
            )
        tracks = load_stem_tracks(folder, subset)
        if not tracks:
            raise FileNotFoundError(f"no tracks found in {folder}")
        return tracks

    @property
    def targets(self) -> list[str]:
        return list(self._train().targets)

    @property
    def sample_rate(self) -> int:
        return self._train().sample_rate

    def _train(self) -> StemCropDataset:
        if self.train_set is None:
            hp = self.hparams
            crop = CropConfig(
                segment_seconds=hp.segment_seconds,
                items_per_epoch=hp.items_per_epoch,
                remix=hp.remix,
                swap_probability=hp.swap_probability,
                gain_db=tuple(hp.gain_db),
                conditioning=hp.conditioning,
                seed=hp.seed,
            )
            self.train_set = StemCropDataset(self._tracks(hp.train_dir, hp.train_subset), crop)
        return self.train_set

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self._train()
        if self.valid_set is None:
            folder = hp.valid_dir or hp.train_dir
            tracks = _spread(self._tracks(folder, hp.valid_subset), hp.valid_tracks)
            self.valid_set = ExcerptDataset(tracks, hp.valid_seconds)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        dataset = self._train()
        if self.trainer is not None:
            dataset.set_epoch(self.trainer.current_epoch)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=False,  # items are already random draws; DDP's sampler still splits them
            num_workers=self.hparams.num_workers,
            drop_last=True,
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        assert self.valid_set is not None
        return torch.utils.data.DataLoader(self.valid_set, batch_size=None, num_workers=0)
