"""Lightning data for the chord set (``stemkit data chords``): mixtures with a query per source, or single sources.

Why queries are drawn here and not stored: DisMix pairs each source with a clip of the *same
instrument from another mixture* (any pitch), and a new draw every epoch is free augmentation. A
draw is seeded by (seed, epoch, item), so a run reproduces whatever the worker count.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from stemkit.data.chords import load_split
from stemkit.parallel import loader_processes


def draw_queries(arrays: dict[str, np.ndarray], index: int, rng: np.random.Generator,
                 pools: list[np.ndarray]) -> np.ndarray:
    """For each present source of mixture ``index``, the same instrument's source in another mixture of the split."""
    present = arrays["present"][index]
    queries = np.zeros(arrays["sources"].shape[1:], np.float32)
    for slot in np.flatnonzero(present):
        pool = pools[slot]
        other = index
        while other == index and len(pool) > 1:
            other = int(pool[rng.integers(len(pool))])
        queries[slot] = arrays["sources"][other, slot]
    return queries


def instrument_pools(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Per instrument slot, the mixtures in which it plays."""
    return [np.flatnonzero(arrays["present"][:, k]) for k in range(arrays["present"].shape[1])]


class ChordMixtures(Dataset):
    """Items: ``mix`` [mels, frames], ``sources`` and ``queries`` [slots, mels, frames], ``present`` [slots],
    ``pitch`` [slots, classes] — slots in the dataset's instrument order, absent ones zero."""

    def __init__(self, arrays: dict[str, np.ndarray], seed: int = 0, limit: int | None = None) -> None:
        self.arrays = arrays
        self.pools = instrument_pools(arrays)
        self.seed = seed
        self.epoch = 0
        self.size = len(arrays["mix"]) if limit is None else min(limit, len(arrays["mix"]))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        a = self.arrays
        return {
            "mix": torch.from_numpy(a["mix"][index].astype(np.float32)),
            "sources": torch.from_numpy(a["sources"][index].astype(np.float32)),
            "queries": torch.from_numpy(draw_queries(a, index, rng, self.pools)),
            "present": torch.from_numpy(a["present"][index].copy()),
            "pitch": torch.from_numpy(a["pitch"][index].astype(np.float32)),
        }


class ChordSources(Dataset):
    """Every present source alone: ``mel`` [mels, frames], ``pitch`` [classes], ``instrument`` (slot index)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.index = np.argwhere(arrays["present"])  # [(mixture, slot)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        m, k = self.index[i]
        return {
            "mel": torch.from_numpy(self.arrays["sources"][m, k].astype(np.float32)),
            "pitch": torch.from_numpy(self.arrays["pitch"][m, k].astype(np.float32)),
            "instrument": torch.tensor(int(k)),
        }


class ChordDataModule(L.LightningDataModule):
    """The chord set's train and valid splits, as mixtures with queries (``items: mixtures``) or single
    sources (``items: sources``, for the evaluation classifiers).

    Args:
        root: a folder made by ``stemkit data chords``.
        items: ``mixtures`` or ``sources``.
        batch_size, num_workers: the loaders'.
        seed: seed of the query draws.
        valid_items: validate on the first N of the valid split (all when None).
    """

    def __init__(self, root: str, items: str = "mixtures", batch_size: int = 32, num_workers: int = 0, seed: int = 0,
                 valid_items: int | None = 2048) -> None:
        super().__init__()
        if items not in ("mixtures", "sources"):
            raise ValueError(f"items must be 'mixtures' or 'sources', got {items!r}")
        self.root, self.items, self.batch_size, self.num_workers = Path(root), items, batch_size, num_workers
        self.seed, self.valid_items = seed, valid_items
        self._train: dict | None = None
        self._valid: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            self._train = load_split(self.root, "train")
            self._valid = load_split(self.root, "valid")

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed + (self.trainer.current_epoch if self.trainer else 0))
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, generator=generator, drop_last=shuffle,
                          **loader_processes(self.num_workers))

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if self.items == "sources":
            return self._loader(ChordSources(self._train), True)
        dataset = ChordMixtures(self._train, self.seed)
        dataset.set_epoch(self.trainer.current_epoch if self.trainer else 0)
        return self._loader(dataset, True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        if self.items == "sources":
            dataset: Dataset = ChordSources(self._valid)
            if self.valid_items is not None:
                dataset = torch.utils.data.Subset(dataset, range(min(self.valid_items, len(dataset))))
        else:
            dataset = ChordMixtures(self._valid, self.seed + 1, self.valid_items)
        return self._loader(dataset, False)
