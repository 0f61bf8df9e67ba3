"""Monophonic recordings for the synthesizers: one instrument, one line, with its notes if known.

Two sources read the same way: the stems of one instrument in a CocoChorales-layout dataset (their
MIDI is in ``stems_MIDI/``, so the pitch curve is exact), and a plain folder of mono wav/flac files
for users with real recordings (a ``<name>.mid`` beside a file is used when present; otherwise the
pitch is estimated from the audio).

Crops start on a frame boundary (a multiple of the VAE hop) so that the frame-rate curves line up
with the latent frames, and crops that are mostly rests are redrawn, since silence teaches a
synthesizer nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stemkit.audio.io import audio_info, load_audio
from stemkit.data.layout import is_dataset, list_stem_files, list_tracks
from stemkit.errors import StemkitError
from stemkit.midi.notes import Note, read_midi_tracks
from stemkit.synthesis.conditioning import envelope_from_audio, pitch_from_audio, pitch_from_notes

AUDIO_SUFFIXES = (".wav", ".flac")


@dataclass
class MonophonicItem:
    """One monophonic recording: where it is, its rate and length, and its notes (None = unknown)."""

    name: str
    path: Path
    sample_rate: int
    frames: int
    notes: list[Note] | None

    def load(self, start: int = 0, frames: int = -1) -> torch.Tensor:
        """Mono ``[1, frames]`` from sample ``start``, zero-padded past the end."""
        want = self.frames - start if frames < 0 else frames
        audio = load_audio(self.path, start=min(start, self.frames), frames=max(0, min(want, self.frames - start)), mono=True)[0]
        if audio.shape[-1] < want:
            audio = torch.nn.functional.pad(audio, (0, want - audio.shape[-1]))
        return audio


def _notes_of(midi_path: Path) -> list[Note] | None:
    if not midi_path.is_file():
        return None
    return sorted((n for t in read_midi_tracks(midi_path) for n in t.notes), key=lambda n: n.start)


def find_monophonic(root: str | Path, instrument: str | None = "violin", mixes: bool = False) -> list[MonophonicItem]:
    """Every monophonic recording under ``root``: stems of ``instrument`` from a chorale dataset, or
    the audio files of a folder (``instrument`` is then ignored). Sorted by name.

    ``mixes=True`` adds each chorale track's mixture, with all its parts' notes, for models that must
    also handle polyphony (a vocoder decodes spectrogram diffusion's mixture mels)."""
    root = Path(root)
    if not root.exists():
        raise StemkitError(f"data folder not found: {root}")
    items: list[MonophonicItem] = []
    if is_dataset(root):
        for stem in list_stem_files(root, instrument):
            info = audio_info(stem.audio)
            notes = _notes_of(stem.midi) if stem.midi else None
            items.append(MonophonicItem(stem.name, stem.audio, info.sample_rate, info.frames, notes))
        if not items:
            raise StemkitError(f"no {instrument} stems in the chorale dataset {root}")
        if mixes:
            items.extend(_mix_items(root))
            items.sort(key=lambda item: item.name)
    else:
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")):
            info = audio_info(path)
            name = str(path.relative_to(root).with_suffix("")).replace("/", "_")
            items.append(MonophonicItem(name, path, info.sample_rate, info.frames, _notes_of(path.with_suffix(".mid"))))
        if not items:
            raise StemkitError(f"no audio files (.wav, .flac) in {root}")
    rates = {i.sample_rate for i in items}
    if len(rates) != 1:
        raise StemkitError(f"{root} mixes sample rates {sorted(rates)}: resample it to one rate")
    return items


def _mix_items(root: Path) -> list[MonophonicItem]:
    """The mixture of every chorale track under ``root``, with the notes of all its parts: its ``mix.mid``,
    else the union of its stems' MIDI (a track with neither has its activity measured on the audio)."""
    items = []
    for track in list_tracks(root):
        info = audio_info(track.mix)
        notes = _notes_of(track.path / "mix.mid")
        if notes is None:
            stems = [n for stem in track.stems for n in (_notes_of(track.path / "stems_MIDI" / f"{stem.stem}.mid") or [])]
            notes = sorted(stems, key=lambda n: n.start) or None
        items.append(MonophonicItem(f"{track.name}_mix", track.mix, info.sample_rate, info.frames, notes))
    return items


def item_curves(item: MonophonicItem, audio: torch.Tensor, start: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Pitch and voiced curves of a crop starting at sample ``start``: from the notes, else the audio."""
    frames = audio.shape[-1] // hop
    if item.notes is not None:
        return pitch_from_notes(item.notes, frames, hop, item.sample_rate, start=start / item.sample_rate)
    pitch, voiced = pitch_from_audio(audio, item.sample_rate, hop)
    return pitch[:frames], voiced[:frames]


class MonophonicCropDataset(torch.utils.data.Dataset):
    """Items ``{"audio": [1, T], "pitch": [F], "voiced": [F], "envelope": [F]}`` with ``T = F·hop``.

    Random crops, a pure function of (seed, epoch, index) like the separation crops; with
    ``fixed=True`` item ``i`` is always the same crop (validation).
    """

    def __init__(self, items: list[MonophonicItem], frames: int, hop: int, items_per_epoch: int = 1000, seed: int = 0,
                 fixed: bool = False, min_active: float = 0.5) -> None:
        if not items:
            raise ValueError("no recordings to crop from")
        self.items, self.frames, self.hop = items, int(frames), int(hop)
        self.samples = self.frames * self.hop
        self.items_per_epoch, self.seed, self.fixed, self.min_active = items_per_epoch, seed, fixed, min_active
        self.sample_rate = items[0].sample_rate
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.items_per_epoch

    def _start(self, item: MonophonicItem, rng: np.random.Generator) -> int:
        slots = max(1, (item.frames - self.samples) // self.hop + 1)
        return int(rng.integers(slots)) * self.hop

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch, index])
        for attempt in range(8):
            item = self.items[int(rng.integers(len(self.items)))]
            start = self._start(item, rng)
            audio = item.load(start, self.samples)
            pitch, voiced = item_curves(item, audio, start, self.hop)
            if voiced.mean() >= self.min_active or attempt == 7:
                break
        return {
            "audio": audio,
            "pitch": torch.from_numpy(pitch),
            "voiced": torch.from_numpy(voiced),
            "envelope": envelope_from_audio(audio[0], self.hop),
        }
