"""Lightning data module for stem datasets: random remixed crops for training, fixed excerpts for validation.

Why validation uses whole excerpts and not random crops: validation reports cSDR, which is measured
on 1-second frames of a longer signal with the same chunked inference users run, so the number in
the logs means the same as the number ``stemkit eval`` prints.

Why validation never falls back to the training tracks: a validation score on tracks the model is
trained on rises with overfitting, so checkpoints chosen by it (``best-step=N.ckpt``) are the wrong
ones, and nothing in the logs would say so. Validation therefore comes from an explicit source: a
``valid_dir``, or for MUSDB18 the official validation split of its train subset (musdb's own
``split='valid'``). A chorale folder has no such split inside it (``stemkit data chorales`` writes the
valid split as its own folder), so ``valid_dir: null`` with one is an error that says how to make
one, not a hidden hold-out that would quietly shrink the training set. Pointing ``valid_dir`` at the
training folder on purpose (tests, smoke runs) still works, with a logged warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from stemkit.data.datasets import CropConfig, StemCropDataset
from stemkit.data.musdb import MUSDB_STEMS, _is_wav_layout, is_musdb_root
from stemkit.data.tracks import StemTrack, load_stem_tracks
from stemkit.errors import StemkitError
from stemkit.parallel import loader_processes

log = logging.getLogger(__name__)

#: MUSDB parts a data module can read: musdb's train/valid split of the train subset, both, or the test subset.
MUSDB_PARTS = ("train", "valid", "train+valid", "test")


def musdb_stem_tracks(root: str | Path, part: str) -> list[StemTrack]:
    """The tracks of one MUSDB part (see ``MUSDB_PARTS``), sorted by name.

    ``train`` and ``valid`` are musdb's own split of the 100 train-subset tracks (``musdb.DB(subsets=
    "train", split=...)``, whose list of 14 validation tracks ships with the package), so training and
    validation never share a track and the held-out part is the one every MUSDB paper reports on.
    """
    import musdb

    root = Path(root)
    if part not in MUSDB_PARTS:
        raise StemkitError(f"unknown MUSDB part {part!r}: choose from {', '.join(MUSDB_PARTS)}")
    subset = "test" if part == "test" else "train"
    if not (root / subset).is_dir():
        raise StemkitError(f"{root} has no {subset}/ folder, so it has no MUSDB {part} tracks")
    split = part if part in ("train", "valid") else None
    db = musdb.DB(root=str(root), subsets=subset, split=split, is_wav=_is_wav_layout(root), download=False)
    tracks = [StemTrack(t.name, list(MUSDB_STEMS), list(MUSDB_STEMS), int(t.rate), int(t.samples), 2, _musdb=t) for t in db.tracks]
    if not tracks:
        listed = len(db.setup.get("validation_tracks", []))
        what = f"the {listed} tracks of musdb's validation split" if part == "valid" else f"MUSDB {part} tracks"
        raise StemkitError(f"{root} has none of {what} in {subset}/")
    return sorted(tracks, key=lambda t: t.name)


def track_key(track: StemTrack) -> tuple:
    """What makes two tracks the same recording: their files (chorales) or their MUSDB file (MUSDB)."""
    if track._paths is not None:
        return tuple(str(Path(p).resolve()) for p in track._paths)
    return (str(Path(track._musdb.path).resolve()),)


def check_disjoint(train_keys: set, valid_keys: list, explicit: bool, what: str) -> None:
    """Refuse, or (when the user chose the source explicitly) warn, if validation reads training data.

    ``explicit`` means the user named the validation folder; an implicit source (MUSDB's split of the
    training root) that overlaps training is a configuration mistake and stops the run.
    """
    shared = sum(1 for key in valid_keys if key in train_keys)
    if not shared:
        return
    message = f"{shared} of {len(valid_keys)} validation {what} are also training {what}: validation scores will not measure generalisation"
    if not explicit:
        raise StemkitError(message)
    if rank_zero_only.rank == 0:
        log.warning("stemkit fit: warning: %s", message)


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
        valid_dir: validation tracks (a chorale folder, or a MUSDB root whose ``valid_subset`` is used).
            ``None`` means ``train_dir``'s ``valid_subset``, which exists only for a MUSDB root: for a
            chorale folder it is an error (see the module docstring for why there is no silent
            fallback to the training tracks).
        train_subset, valid_subset: for MUSDB roots only (ignored for chorale folders): ``train`` and
            ``valid`` are musdb's split of the train subset (86 + 14 tracks), ``train+valid`` all 100
            train-subset tracks, ``test`` the 50 test tracks.
        segment_seconds: length of a training crop.
        batch_size: crops per optimizer step (per device).
        items_per_epoch: crops per epoch; an epoch is ``items_per_epoch / batch_size`` steps.
        remix, swap_probability, gain_db, eq_db: on-the-fly remixing and augmentation (see ``CropConfig``).
        conditioning: ``"index"`` for separators conditioned on a target index, ``"query"`` to add a
            clip of the target's instrument from another track (query-by-example training).
        query_seconds: length of those clips.
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
        eq_db: float = 0.0,
        conditioning: str | None = "index",
        query_seconds: float = 2.0,
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
            raise StemkitError(f"no dataset at {folder}; make one with `stemkit data chorales --out {folder} --split {subset}`")
        if is_musdb_root(Path(folder)):
            return musdb_stem_tracks(folder, subset)
        tracks = load_stem_tracks(folder)
        if not tracks:
            raise StemkitError(f"no tracks found in {folder}")
        return tracks

    def _valid_tracks(self) -> list[StemTrack]:
        """The validation tracks from the explicit source (see the module docstring), never silently the training ones."""
        hp = self.hparams
        folder = hp.valid_dir
        if not folder:
            if not is_musdb_root(Path(hp.train_dir)):
                raise StemkitError(
                    f"data.valid_dir is not set and {hp.train_dir} has no validation split: make one with "
                    f"`stemkit data chorales --split valid --out DIR` and pass --data.valid_dir DIR "
                    f"(or pass the training folder to validate on training tracks on purpose)"
                )
            folder = hp.train_dir
        tracks = self._tracks(folder, hp.valid_subset)
        train_keys = {track_key(t) for t in self._train().tracks}
        check_disjoint(train_keys, [track_key(t) for t in tracks], explicit=bool(hp.valid_dir), what="tracks")
        return _spread(tracks, hp.valid_tracks)

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
                eq_db=hp.eq_db,
                conditioning=hp.conditioning,
                query_seconds=hp.query_seconds,
                seed=hp.seed,
            )
            self.train_set = StemCropDataset(self._tracks(hp.train_dir, hp.train_subset), crop)
        return self.train_set

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self._train()
        if self.valid_set is None:
            self.valid_set = ExcerptDataset(self._valid_tracks(), hp.valid_seconds)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        dataset = self._train()
        if self.trainer is not None:
            dataset.set_epoch(self.trainer.current_epoch)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=False,  # items are already random draws; DDP's sampler still splits them
            drop_last=True,
            **loader_processes(self.hparams.num_workers),
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        assert self.valid_set is not None
        return torch.utils.data.DataLoader(self.valid_set, batch_size=None, num_workers=0)
