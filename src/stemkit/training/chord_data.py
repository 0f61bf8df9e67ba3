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

from stemkit.data.chords import (
    CHORD_INSTRUMENTS,
    NUM_PITCHES,
    bank_pitches,
    chord_of_code,
    chord_split,
    crop_samples,
    load_banks,
    load_split,
    log_mel,
    multi_hot,
    plan_mixtures,
    source_audio,
)
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


def train_chords(arrays: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    """The distinct chords of a split's stored mixtures, sorted."""
    return sorted(chord_of_code(code) for code in {int(c) for c in arrays["chord"]})


class ResharedChordMixtures(ChordMixtures):
    """Training mixtures made afresh from the note banks at every draw: the same items as
    :class:`ChordMixtures`, but each one a new sharing of a training chord (instruments, which notes each
    plays, velocities, soundfonts, crop), optionally transposed.

    Why: the stored set shares each chord only six ways, and the transcriber learns those mixtures by
    heart — on the full model its validation BCE rose while the training BCE fell to a tenth of it
    (BENCHMARKS.md). The note bank renders any sharing exactly as ``stemkit data chords`` would, so a new
    one per draw costs the mels of a few 5 632-sample crops. Queries stay what :class:`ChordMixtures`
    draws: the instrument's part in another stored training mixture. ``transpose`` moves the chord by up
    to that many semitones; a transposed chord is used only if its pitches are in the bank and it hashes to the train
    split (:func:`~stemkit.data.chords.chord_split`), so no validation or test chord is ever trained on.
    Draws are seeded by (seed, epoch, item), so a run reproduces whatever the worker count.
    """

    def __init__(self, root: str | Path, arrays: dict[str, np.ndarray], seed: int = 0, transpose: int = 0) -> None:
        if transpose < 0:
            raise ValueError(f"transpose must be at least 0, got {transpose}")
        super().__init__(arrays, seed)
        self.banks = load_banks(root)
        self.playable = set(bank_pitches(root))
        self.chords = train_chords(arrays)
        self.transpose = int(transpose)

    def _chord(self, rng: np.random.Generator) -> tuple[int, ...]:
        chord = self.chords[int(rng.integers(len(self.chords)))]
        shift = int(rng.integers(-self.transpose, self.transpose + 1)) if self.transpose else 0
        moved = tuple(p + shift for p in chord)
        if shift and set(moved) <= self.playable and chord_split(moved) == "train":
            return moved
        return chord

    def _plan(self, rng: np.random.Generator):
        return plan_mixtures(self._chord(rng), 1, int(rng.integers(2**62)), len(self.banks))[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """Audio crops (``mix`` [samples], ``sources`` [slots, samples]) with ``present``, ``pitch`` and the
        ``queries``' log-mels; :func:`reshared_collate` turns a batch's audio into log-mels at once."""
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        plan = self._plan(rng)
        slots, length = len(CHORD_INSTRUMENTS), crop_samples()
        sources = np.zeros((slots, length), np.float32)
        present = np.zeros(slots, bool)
        pitch = np.zeros((slots, NUM_PITCHES), np.float32)
        for source in plan.sources:
            sources[source.instrument] = source_audio(plan, source, self.banks)
            present[source.instrument] = True
            pitch[source.instrument] = multi_hot(source.pitches)
        queries = np.zeros((slots,) + self.arrays["sources"].shape[2:], np.float32)
        for slot in np.flatnonzero(present):  # this instrument's part in a stored training mixture, as ChordMixtures draws it
            pool = self.pools[slot]
            queries[slot] = self.arrays["sources"][int(pool[rng.integers(len(pool))]), slot]
        return {"mix": torch.from_numpy(sources.sum(axis=0)), "sources": torch.from_numpy(sources),
                "queries": torch.from_numpy(queries), "present": torch.from_numpy(present), "pitch": torch.from_numpy(pitch)}


def reshared_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A batch of :class:`ResharedChordMixtures` audio items as log-mels, in one transform, rounded through
    float16 as the stored shards are, so a reshared batch and a stored one hold the same kind of numbers."""
    batch = torch.utils.data.default_collate(items)
    for key in ("mix", "sources"):  # absent sources are silence, whose log-mel is the floor, as stored
        mel = log_mel(batch[key].numpy())
        batch[key] = torch.from_numpy(mel.astype(np.float16).astype(np.float32))
    return batch


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
        reshare: train on new sharings of the training chords drawn from the note banks at every step
            (:class:`ResharedChordMixtures`) instead of the six stored ones; validation stays the stored set.
        transpose: with ``reshare``, move each chord by up to this many semitones (staying in the train split).
    """

    def __init__(self, root: str, items: str = "mixtures", batch_size: int = 32, num_workers: int = 0, seed: int = 0,
                 valid_items: int | None = 2048, reshare: bool = False, transpose: int = 0) -> None:
        super().__init__()
        if items not in ("mixtures", "sources"):
            raise ValueError(f"items must be 'mixtures' or 'sources', got {items!r}")
        if transpose < 0:
            raise ValueError(f"transpose must be at least 0, got {transpose}")
        if transpose and not reshare:
            raise ValueError("transpose needs reshare: true (the stored mixtures cannot be transposed)")
        self.root, self.items, self.batch_size, self.num_workers = Path(root), items, batch_size, num_workers
        self.seed, self.valid_items, self.reshare, self.transpose = seed, valid_items, reshare, transpose
        self._train: dict | None = None
        self._valid: dict | None = None
        self._reshared: ResharedChordMixtures | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            self._train = load_split(self.root, "train")
            self._valid = load_split(self.root, "valid")

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed + (self.trainer.current_epoch if self.trainer else 0))
        collate = reshared_collate if isinstance(dataset, ResharedChordMixtures) else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, generator=generator, drop_last=shuffle,
                          collate_fn=collate, **loader_processes(self.num_workers))

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if self.items == "sources":
            return self._loader(ChordSources(self._train), True)
        if self.reshare:  # built once: it holds the note banks
            if self._reshared is None:
                self._reshared = ResharedChordMixtures(self.root, self._train, self.seed, self.transpose)
            dataset: Dataset = self._reshared
        else:
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
