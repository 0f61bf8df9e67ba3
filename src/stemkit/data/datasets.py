"""Torch datasets of random crops with on-the-fly remixing and conditioning inputs.

Why remix on the fly: a few hundred chorales are few mixtures, but their stems combine into
endlessly many. Each item takes a random crop of every stem, may swap a stem for the same voice
played by the same instrument in another track (so the new mixture is still a plausible ensemble),
scales each stem by a random gain, and sums them. Conditioned separators also get which stem to
return — as an index, or as a query clip of the same instrument taken from a different track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stemkit.data.tracks import StemTrack


@dataclass
class CropConfig:
    segment_seconds: float = 3.0
    items_per_epoch: int = 1000
    remix: bool = True  #: swap stems between tracks and draw random gains
    swap_probability: float = 0.5  #: per stem, when ``remix``
    gain_db: tuple[float, float] = (-6.0, 3.0)  #: per-stem gain range when ``remix``
    eq_db: float = 0.0  #: when ``remix``, each stem gets a random smooth EQ of up to ±eq_db (0 = none)
    conditioning: str | None = None  #: None, "index" or "query"
    query_seconds: float = 2.0
    seed: int = 0


EQ_POINTS_HZ = (60.0, 250.0, 1000.0, 3000.0, 8000.0)  #: control points of :func:`random_eq`, up to Nyquist


def random_eq(stem: torch.Tensor, rng: np.random.Generator, max_db: float, sample_rate: int) -> torch.Tensor:
    """``stem`` ``[C, T]`` through a random smooth EQ: gains of ±``max_db`` drawn at fixed points on a
    log-frequency axis and interpolated between them (flat beyond the ends), applied in the
    frequency domain. A different instrument body, microphone or room colour on every crop, so the
    network cannot key on one soundfont's exact spectrum; the mixture is the sum of the EQ'd stems."""
    points = [f for f in EQ_POINTS_HZ if f < sample_rate / 2]
    gains = rng.uniform(-max_db, max_db, size=len(points))
    frames = stem.shape[-1]
    freqs = np.fft.rfftfreq(frames, 1.0 / sample_rate)
    curve_db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(points), gains)
    curve = torch.from_numpy(10.0 ** (curve_db / 20.0)).to(stem.dtype)
    return torch.fft.irfft(torch.fft.rfft(stem) * curve, n=frames)


class StemCropDataset(torch.utils.data.Dataset):
    """Items: ``mix [C, T]``, ``stems [S, C, T]``, and with conditioning ``target_index``, ``target [C, T]``;
    with query conditioning also ``query [C, Tq]``, its ``instrument`` name and ``query_target [C, T]``
    (every stem that instrument plays).

    Items are a pure function of (seed, epoch, index), so runs reproduce and DDP ranks agree;
    call :meth:`set_epoch` to draw new crops each epoch. With ``remix=False`` every epoch yields
    the same crops (what validation wants).
    """

    def __init__(self, tracks: list[StemTrack], config: CropConfig) -> None:
        if not tracks:
            raise ValueError("no tracks to crop from")
        rates = {t.sample_rate for t in tracks}
        if len(rates) != 1:
            raise ValueError(f"tracks mix sample rates {sorted(rates)}: resample the dataset to one rate")
        counts = {len(t.targets) for t in tracks}
        if len(counts) != 1:
            raise ValueError(f"tracks have different numbers of stems: {sorted(counts)}")
        if config.conditioning not in (None, "index", "query"):
            raise ValueError(f"conditioning must be None, 'index' or 'query', not {config.conditioning!r}")
        self.tracks = tracks
        self.config = config
        self.sample_rate = rates.pop()
        self.targets = list(tracks[0].targets)
        self.segment = int(round(config.segment_seconds * self.sample_rate))
        self.epoch = 0
        # (stem slot, instrument) -> tracks that have it: the partners a stem may be swapped with
        self._by_slot: dict[tuple[int, str], list[int]] = {}
        self._by_instrument: dict[str, list[tuple[int, int]]] = {}
        for ti, track in enumerate(tracks):
            for si, inst in enumerate(track.instruments):
                self._by_slot.setdefault((si, inst), []).append(ti)
                self._by_instrument.setdefault(inst, []).append((ti, si))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.config.items_per_epoch

    def _rng(self, index: int) -> np.random.Generator:
        epoch = self.epoch if self.config.remix else 0
        return np.random.default_rng([self.config.seed, epoch, index])

    def _crop(self, track: StemTrack, slot: int, rng: np.random.Generator, frames: int) -> torch.Tensor:
        start = int(rng.integers(0, max(1, track.frames - frames + 1)))
        return track.load_stem(slot, start, frames)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        rng = self._rng(index)
        ti = int(rng.integers(len(self.tracks)))
        track = self.tracks[ti]
        start = int(rng.integers(0, max(1, track.frames - self.segment + 1)))
        stems = []
        for slot, inst in enumerate(track.instruments):
            source = track
            if cfg.remix and rng.random() < cfg.swap_probability:
                partners = self._by_slot[(slot, inst)]
                source = self.tracks[partners[int(rng.integers(len(partners)))]]
            if source is track:
                stem = track.load_stem(slot, start, self.segment)
            else:
                stem = self._crop(source, slot, rng, self.segment)
            if cfg.remix:
                stem = stem * float(10.0 ** (rng.uniform(*cfg.gain_db) / 20.0))
                if cfg.eq_db > 0:
                    stem = random_eq(stem, rng, cfg.eq_db, self.sample_rate)
            stems.append(stem)
        stems_t = torch.stack(stems)
        item = {"mix": stems_t.sum(dim=0), "stems": stems_t}
        if cfg.conditioning is not None:
            target = int(rng.integers(len(self.targets)))
            item["target_index"] = torch.tensor(target)
            item["target"] = stems_t[target]
            if cfg.conditioning == "query":
                instrument = track.instruments[target]
                item["query"] = self._query(ti, instrument, rng)
                item["instrument"] = instrument
                # a query names an instrument, not a part: where it plays two parts, it asks for both
                same = [slot for slot, inst in enumerate(track.instruments) if inst == instrument]
                item["query_target"] = stems_t[same].sum(dim=0)
        return item

    def _query(self, track_index: int, instrument: str, rng: np.random.Generator) -> torch.Tensor:
        """A clip of ``instrument`` from another track (the same track only if no other has it).

        A few tries avoid a clip that is silence (a rest), which would condition on nothing.
        """
        frames = int(round(self.config.query_seconds * self.sample_rate))
        candidates = [c for c in self._by_instrument[instrument] if c[0] != track_index] or self._by_instrument[instrument]
        clip = None
        for _ in range(4):
            ti, si = candidates[int(rng.integers(len(candidates)))]
            clip = self._crop(self.tracks[ti], si, rng, frames)
            if clip.abs().max() > 1e-3:
                break
        return clip
