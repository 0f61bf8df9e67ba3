"""Lightning data module for the synthesizers: random crops of monophonic recordings.

Validation uses fixed crops of the valid split, so the logged reconstruction and synthesis figures
are comparable from one validation to the next. The valid split must be named (``valid_dir``): there
is no fallback to the training recordings, whose scores would reward overfitting without saying so
(the same rule as :mod:`stemkit.training.data`); naming the training folder on purpose is warned about.
"""

from __future__ import annotations

import lightning as L
import torch

from stemkit.data.monophonic import MonophonicCropDataset, MonophonicItem, find_monophonic
from stemkit.errors import StemkitError
from stemkit.parallel import loader_processes
from stemkit.training.data import check_disjoint


def require_valid_dir(train_dir: str, valid_dir: str | None) -> str:
    """``valid_dir``, or a one-line error that says how to get one (never ``train_dir`` in its place)."""
    if not valid_dir:
        raise StemkitError(
            f"data.valid_dir is not set: make a valid split with `stemkit data chorales --split valid --out DIR` and pass "
            f"--data.valid_dir DIR (or pass {train_dir} to validate on training recordings on purpose)"
        )
    return valid_dir


def warn_if_shared(train: list[MonophonicItem], valid: list[MonophonicItem]) -> None:
    """Log a warning when the (explicitly named) validation recordings are training recordings."""
    check_disjoint({i.path.resolve() for i in train}, [i.path.resolve() for i in valid], explicit=True, what="recordings")


class MonophonicDataModule(L.LightningDataModule):
    """Crops of one instrument's monophonic recordings (chorale stems or a folder of audio files).

    Args:
        train_dir, valid_dir: chorale datasets (CocoChorales layout) or folders of mono audio files;
            ``valid_dir`` is required (``None`` is an error, see the module docstring).
        instrument: which stems of a chorale dataset (ignored for plain folders).
        mixes: also crop each chorale track's mixture (polyphony, for a vocoder that decodes mixtures).
        hop: samples per latent frame; crops start on multiples of it (the VAE's ``prod(strides)``).
        segment_frames: crop length in frames (``segment_frames · hop`` samples).
        batch_size, items_per_epoch, num_workers, seed: as for the separation data.
        valid_items: fixed validation crops.
        min_active: share of a crop that must have a note sounding (redrawn otherwise).
    """

    def __init__(
        self,
        train_dir: str = "data/strings/train",
        valid_dir: str | None = "data/strings/valid",
        instrument: str | None = "violin",
        mixes: bool = False,
        hop: int = 256,
        segment_frames: int = 64,
        batch_size: int = 8,
        items_per_epoch: int = 4000,
        num_workers: int = 1,
        valid_items: int = 16,
        min_active: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._train_items: list[MonophonicItem] | None = None
        self.train_set: MonophonicCropDataset | None = None
        self.valid_set: MonophonicCropDataset | None = None

    @property
    def train_items(self) -> list[MonophonicItem]:
        if self._train_items is None:
            self._train_items = find_monophonic(self.hparams.train_dir, self.hparams.instrument, self.hparams.mixes)
        return self._train_items

    @property
    def sample_rate(self) -> int:
        return self.train_items[0].sample_rate

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if self.train_set is None:
            self.train_set = MonophonicCropDataset(self.train_items, hp.segment_frames, hp.hop, hp.items_per_epoch, hp.seed,
                                                   min_active=hp.min_active)
        if self.valid_set is None:
            items = find_monophonic(require_valid_dir(hp.train_dir, hp.valid_dir), hp.instrument, hp.mixes)
            warn_if_shared(self.train_items, items)
            self.valid_set = MonophonicCropDataset(items, hp.segment_frames, hp.hop, hp.valid_items, hp.seed + 1, fixed=True,
                                                   min_active=hp.min_active)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        assert self.train_set is not None
        if self.trainer is not None:
            self.train_set.set_epoch(self.trainer.current_epoch)
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=False,
                                           drop_last=True, **loader_processes(self.hparams.num_workers))

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        assert self.valid_set is not None
        return torch.utils.data.DataLoader(self.valid_set, batch_size=min(8, self.hparams.valid_items), num_workers=0)
