"""Lightning data for spectrogram diffusion: 5.12-s segments of recordings with their note tokens.

Datasets are named as in the paper's "mega" mixture (:mod:`stemkit.data.note_datasets`): a mapping of
dataset name → root, where a null root leaves that dataset out. Each item is one segment of one
recording: the tokens of its notes (:mod:`stemkit.midi.tokens`), its audio and the previous segment's
audio (the context; zeros and ``first`` for a piece's first segment). Mels are made by the model's
codec on the training device, not here. Audio at another rate (Slakh, MAESTRO at 44.1 kHz) is resampled
on reading. A draw is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from stemkit.audio.io import load_audio
from stemkit.data.note_datasets import Recording, find_recordings
from stemkit.errors import StemkitError
from stemkit.midi.tokens import NoteVocabulary, encode_piece
from stemkit.parallel import loader_processes
from stemkit.synthesis.specdiff import pad_tokens


def recordings_of(sets: dict[str, str | None], split: str) -> list[Recording]:
    """Every recording of ``split`` in the named datasets (null roots skipped); an error if none is left."""
    chosen = {name: root for name, root in (sets or {}).items() if root}
    if not chosen:
        raise StemkitError(f"no {split} dataset given: name at least one, e.g. {{chorales: data/varied/{split}}}")
    found = [r for name, root in chosen.items() for r in find_recordings(name, root, split)]
    if not found:
        raise StemkitError(f"no {split} recordings in {', '.join(f'{n}={r}' for n, r in chosen.items())}")
    return found


class NoteSegments(Dataset):
    """Items: ``tokens`` (list of ids), ``audio`` [1, L], ``previous`` [1, L], ``first`` (bool), and where they
    come from (``recording`` index, ``segment`` index)."""

    def __init__(self, recordings: list[Recording], vocab: NoteVocabulary, sample_rate: int, items: int,
                 seed: int = 0, fixed: bool = False) -> None:
        self.recordings, self.vocab, self.rate = recordings, vocab, sample_rate
        self.items, self.seed, self.fixed, self.epoch = items, seed, fixed, 0
        self.samples = round(vocab.segment_seconds * sample_rate)
        self._tokens: dict[int, list[list[int]]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.items

    def _segments(self, k: int) -> list[list[int]]:
        if k not in self._tokens:
            self._tokens[k] = encode_piece(self.recordings[k].tracks(), self.vocab).segments
        return self._tokens[k]

    def _audio(self, recording: Recording, segment: int) -> torch.Tensor:
        """Segment ``segment`` of the recording at this rate ``[1, L]`` (zeros past its end)."""
        native = recording.sample_rate or self.rate
        start = round(segment * self.vocab.segment_seconds * native)
        frames = math.ceil(self.vocab.segment_seconds * native)
        audio = load_audio(recording.audio, sample_rate=self.rate, start=start, frames=frames, mono=True)[0][:, : self.samples]
        return torch.nn.functional.pad(audio, (0, self.samples - audio.shape[-1]))

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch, index])
        k = int(rng.integers(len(self.recordings)))
        segments = self._segments(k)
        segment = int(rng.integers(len(segments)))
        recording = self.recordings[k]
        first = segment == 0
        return {"tokens": segments[segment], "audio": self._audio(recording, segment),
                "previous": torch.zeros(1, self.samples) if first else self._audio(recording, segment - 1), "first": first,
                "recording": k, "segment": segment}


def collate_segments(items: list[dict]) -> dict[str, torch.Tensor]:
    ids, mask = pad_tokens([item["tokens"] for item in items])
    return {"tokens": ids, "token_mask": mask, "audio": torch.stack([i["audio"] for i in items]),
            "previous": torch.stack([i["previous"] for i in items]), "first": torch.tensor([i["first"] for i in items])}


class NoteSegmentsDataModule(L.LightningDataModule):
    """Segments of recordings with their notes, for :class:`~stemkit.training.specdiff.SpecDiffSystem`.

    Args:
        train, valid: dataset name → root (``chorales``, ``chorale_stems``, ``slakh``, ``maestro``, ``musicnet``,
            ``urmp``, ``guitarset``; null = left out). Each dataset's own split is used (train / valid). A
            recording is drawn uniformly from all of them, so ``chorale_stems`` beside ``chorales`` over the
            same four-part folder makes four draws in five a single part.
        sample_rate: the model's rate (audio is resampled to it).
        tokens: :class:`~stemkit.midi.tokens.NoteVocabulary` fields (must be the model's).
        batch_size, items_per_epoch, num_workers, seed, valid_items: as for the other data modules.
    """

    def __init__(self, train: dict[str, str | None] | None = None, valid: dict[str, str | None] | None = None,
                 sample_rate: int = 16000, tokens: dict | None = None, batch_size: int = 8, items_per_epoch: int = 4000,
                 num_workers: int = 1, seed: int = 0, valid_items: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.sample_rate = sample_rate
        self.vocab = NoteVocabulary(**(tokens or {}))

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        train = recordings_of(hp.train or {"chorales": "data/varied/train"}, "train")
        valid = recordings_of(hp.valid or {"chorales": "data/varied/valid"}, "valid")
        self.train_set = NoteSegments(train, self.vocab, hp.sample_rate, hp.items_per_epoch, hp.seed)
        self.valid_set = NoteSegments(valid, self.vocab, hp.sample_rate, hp.valid_items, hp.seed + 1, fixed=True)

    def train_dataloader(self) -> DataLoader:
        self.train_set.set_epoch(self.trainer.current_epoch if self.trainer else 0)
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, drop_last=True, collate_fn=collate_segments,
                          **loader_processes(self.hparams.num_workers))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid_set, batch_size=self.hparams.batch_size, collate_fn=collate_segments,
                          **loader_processes(self.hparams.num_workers))
