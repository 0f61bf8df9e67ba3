"""Training the latent synthesizer: a cache of VAE latents, and the EDM system that learns to sample them.

Why a latent cache: the denoiser is small, the VAE encoder is not — encoding every crop afresh
would spend most of each step (on a CPU, most of the run) re-deriving the same latents. So
``prepare_data`` encodes a fixed set of crops once (posterior mean and log-variance, plus their
pitch, voiced and envelope curves) into ``<cache_dir>/*.safetensors``; training draws random
sub-crops of those and a fresh posterior sample per step. The cache is keyed by the VAE file and
the crop settings, so a changed VAE never reuses stale latents, and a resumed run skips encoding.

Why an EMA of the weights: diffusion samples are much cleaner from an exponential moving average
of the denoiser than from its last noisy step; validation and export use the EMA.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from stemkit.atomic import atomic_output
from stemkit.data.monophonic import MonophonicCropDataset, find_monophonic
from stemkit.errors import StemkitError
from stemkit.parallel import loader_processes
from stemkit.synthesis.conditioning import EnvelopeModel, condition_tensor, fit_envelope_model
from stemkit.diffusion.conditions import NULL
from stemkit.synthesis.latent_synth import CURVES, LatentSynth, LatentSynthConfig, note_range
from stemkit.training.monophonic_data import require_valid_dir, warn_if_shared
from stemkit.training.system import StemkitSystem


def _file_key(path: str) -> str:
    p = Path(path)
    stat = p.stat() if p.exists() else None
    return f"{p.resolve()}:{stat.st_size if stat else 0}:{int(stat.st_mtime) if stat else 0}"


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A hash of a module's weights: proves the cached latents came from the VAE the system decodes with."""
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class LatentDataModule(L.LightningDataModule):
    """Random sub-crops of cached VAE latents with their condition curves.

    Args:
        train_dir, valid_dir, instrument: the monophonic data (see :class:`MonophonicDataModule`;
            ``valid_dir`` is required there too: validation never falls back to the training data).
        vae: the VAE whose latents are learned (a VAE ``.ckpt`` from ``stemkit fit``, or an exported
            ``.safetensors``); must be the system's ``vae``.
        cache_dir: where encoded crops are kept.
        cache_crops, cache_frames: how many crops of how many frames to encode from the train split.
        segment_frames: training sub-crop length in frames.
        valid_crops: fixed validation crops (their audio is kept for the metrics).
        batch_size, items_per_epoch, num_workers, seed: as usual.
    """

    def __init__(
        self,
        train_dir: str = "data/strings/train",
        valid_dir: str | None = "data/strings/valid",
        instrument: str | None = "violin",
        vae: str = "runs/violin-vae-small/checkpoints/last.ckpt",
        cache_dir: str = "runs/latent-cache",
        cache_crops: int = 2000,
        cache_frames: int = 256,
        segment_frames: int = 128,
        valid_crops: int = 16,
        batch_size: int = 16,
        items_per_epoch: int = 8000,
        num_workers: int = 0,
        min_active: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if segment_frames > cache_frames:
            raise ValueError(f"segment_frames ({segment_frames}) must not exceed cache_frames ({cache_frames})")
        self.save_hyperparameters()
        self.train_data: dict[str, torch.Tensor] | None = None
        self.valid_data: dict[str, torch.Tensor] | None = None
        self.vae_fingerprint: str | None = None
        self._found: dict[str, list] = {}

    def _items(self, folder: str) -> list:
        if folder not in self._found:
            self._found[folder] = find_monophonic(folder, self.hparams.instrument)
        return self._found[folder]

    def _cache_path(self, split: str, folder: str, crops: int, frames: int) -> Path:
        """Keyed by the VAE file, the data (folder, file count and total length: a regenerated dataset
        is re-encoded) and the crop settings."""
        hp = self.hparams
        items = self._items(folder)
        data_key = [str(Path(folder).resolve()), len(items), sum(i.frames for i in items)]
        key = json.dumps([_file_key(hp.vae), data_key, hp.instrument, crops, frames, hp.seed, hp.min_active])
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        return Path(hp.cache_dir) / f"{split}-{digest}.safetensors"

    def _plans(self) -> list[tuple[str, str, int, int, bool]]:
        hp = self.hparams
        return [("train", hp.train_dir, hp.cache_crops, hp.cache_frames, False),
                ("valid", require_valid_dir(hp.train_dir, hp.valid_dir), hp.valid_crops, hp.segment_frames, True)]

    def prepare_data(self) -> None:
        """Encode the crops that are not cached yet (rank 0 only under DDP)."""
        from stemkit.synthesis.vae import load_vae

        todo = [plan for plan in self._plans() if not self._cache_path(plan[0], plan[1], plan[2], plan[3]).exists()]
        if not todo:
            return
        vae = load_vae(self.hparams.vae)
        for split, folder, crops, frames, keep_audio in todo:
            items = self._items(folder)
            if items[0].sample_rate != vae.config.sample_rate:
                raise StemkitError(f"{folder} is at {items[0].sample_rate} Hz but the VAE at {vae.config.sample_rate} Hz")
            dataset = MonophonicCropDataset(items, frames, vae.hop, crops, self.hparams.seed + (split == "valid"), fixed=True,
                                            min_active=self.hparams.min_active)
            encode_crops(vae, dataset, self._cache_path(split, folder, crops, frames), keep_audio)

    def setup(self, stage: str | None = None) -> None:
        plans = self._plans()
        warn_if_shared(self._items(plans[0][1]), self._items(plans[1][1]))
        for split, folder, crops, frames, _ in plans:
            path = self._cache_path(split, folder, crops, frames)
            setattr(self, f"{split}_data", load_file(str(path)))
            with safe_open(str(path), "pt") as handle:
                self.vae_fingerprint = (handle.metadata() or {}).get("vae_fingerprint")

    def fit_envelope(self, max_items: int = 120) -> EnvelopeModel:
        """The envelope model fitted on (up to ``max_items``) training recordings with notes; the default
        model when none has MIDI (a folder of recordings alone says nothing of velocities)."""
        items = [i for i in self._items(self.hparams.train_dir) if i.notes]
        if not items:
            return EnvelopeModel()
        step = max(1, len(items) // max_items)
        chosen = items[::step][:max_items]
        return fit_envelope_model(((i.notes, i.load()) for i in chosen), chosen[0].sample_rate, _hop_of(self.train_data))

    def note_range(self) -> tuple[int, int]:
        with_notes = [i.notes for i in self._items(self.hparams.train_dir) if i.notes]
        if with_notes:
            return note_range(with_notes)
        pitch = self.train_data["pitch"][self.train_data["voiced"] > 0]
        return int(math.floor(float(pitch.min()))), int(math.ceil(float(pitch.max())))

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        assert self.train_data is not None
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        dataset = LatentCropDataset(self.train_data, self.hparams.segment_frames, self.hparams.items_per_epoch,
                                    seed=self.hparams.seed, epoch=epoch)
        return torch.utils.data.DataLoader(dataset, batch_size=self.hparams.batch_size, drop_last=True,
                                           **loader_processes(self.hparams.num_workers))

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        assert self.valid_data is not None
        dataset = LatentCropDataset(self.valid_data, self.hparams.segment_frames, len(self.valid_data["mean"]), fixed=True)
        return torch.utils.data.DataLoader(dataset, batch_size=8)


def _hop_of(data: dict[str, torch.Tensor]) -> int:
    return int(data["hop"].item())


@torch.no_grad()
def encode_crops(vae, dataset: MonophonicCropDataset, path: Path, keep_audio: bool, batch_size: int = 16) -> None:
    """Encode every crop of ``dataset`` with ``vae`` and write the cache file atomically."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    columns: dict[str, list[torch.Tensor]] = {k: [] for k in ("mean", "logvar", "pitch", "voiced", "envelope", "audio")}
    for batch in tqdm(loader, desc=f"encoding {path.stem} latents", leave=False):
        mean, logvar = vae.encode(batch["audio"])
        columns["mean"].append(mean)
        columns["logvar"].append(logvar)
        for key in ("pitch", "voiced", "envelope"):
            columns[key].append(batch[key])
        if keep_audio:
            columns["audio"].append(batch["audio"])
    tensors = {k: torch.cat(v).contiguous() for k, v in columns.items() if v}
    tensors["hop"] = torch.tensor(vae.hop)
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={"vae_fingerprint": weights_fingerprint(vae)})


class LatentCropDataset(torch.utils.data.Dataset):
    """Sub-crops of cached latents: ``{"mean", "logvar" [D, F], "pitch", "voiced", "envelope" [F], ("audio")}``."""

    def __init__(self, data: dict[str, torch.Tensor], frames: int, length: int, seed: int = 0, epoch: int = 0,
                 fixed: bool = False) -> None:
        self.data, self.frames, self.length = data, int(frames), int(length)
        self.seed, self.epoch, self.fixed = seed, epoch, fixed
        self.hop = _hop_of(data)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        total = self.data["mean"].shape[-1]
        if self.fixed:
            row, start = index % self.data["mean"].shape[0], 0
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            row, start = int(rng.integers(self.data["mean"].shape[0])), int(rng.integers(total - self.frames + 1))
        span = slice(start, start + self.frames)
        item = {k: self.data[k][row, ..., span] for k in ("mean", "logvar", "pitch", "voiced", "envelope")}
        if "audio" in self.data:
            item["audio"] = self.data["audio"][row, :, start * self.hop:(start + self.frames) * self.hop]
        return item


class LatentSynthSystem(StemkitSystem):
    """Trains the EDM denoiser of a :class:`~stemkit.synthesis.latent_synth.LatentSynth` on cached latents.

    Args:
        net: the synthesizer config; its ``vae`` field is filled from the ``vae`` file.
        vae: the trained VAE (frozen here; its weights are bundled into the synthesizer).
        lr, warmup_steps, decay_steps, min_lr_ratio: Adam with warm-up and cosine decay.
        ema_decay: decay of the exponential moving average of the denoiser's weights.
        valid_steps, valid_sampler: how validation samples (it decodes and scores the audio).
    """

    family = "latent-synth"

    def __init__(
        self,
        net: LatentSynthConfig,
        vae: str = "runs/violin-vae-small/checkpoints/last.ckpt",
        lr: float = 3e-4,
        warmup_steps: int = 300,
        decay_steps: int = 0,
        min_lr_ratio: float = 0.1,
        ema_decay: float = 0.999,
        valid_steps: int = 18,
        valid_sampler: str = "heun",
    ) -> None:
        super().__init__()
        from stemkit.synthesis.vae import load_vae

        if isinstance(net, dict):
            net = LatentSynthConfig(**net)
        source = load_vae(vae)
        net.vae = source.config.to_dict()
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "vae": vae, "lr": lr,
                                   "warmup_steps": warmup_steps, "decay_steps": decay_steps, "min_lr_ratio": min_lr_ratio,
                                   "ema_decay": ema_decay, "valid_steps": valid_steps, "valid_sampler": valid_sampler})
        self.config = net
        self.model = LatentSynth(net)
        self.model.vae.load_state_dict(source.state_dict())
        self.model.vae.requires_grad_(False).eval()
        self.ema = copy.deepcopy(self.model.denoiser).requires_grad_(False)
        self._valid: list[float] = []

    def on_fit_start(self) -> None:
        self.model.vae.eval()
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "fit_envelope"):
            return
        if datamodule.vae_fingerprint != weights_fingerprint(self.model.vae):
            raise StemkitError(
                f"the latent cache was encoded by another VAE than this run's ({datamodule.hparams.vae} vs {self.hparams.vae}): "
                "give model and data the same `vae`, and do not change the VAE file of a run being resumed")
        if datamodule.hparams.instrument not in (None, self.config.instrument):
            raise StemkitError(f"the data holds {datamodule.hparams.instrument}, the model is for {self.config.instrument}")
        if float(self.model.pitch_range[0]) == 0.0 and float(self.model.pitch_range[1]) == 127.0:
            envelope = datamodule.fit_envelope()
            low, high = datamodule.note_range()
            self.model.set_data_facts(envelope, low, high)
            print(f"fitted envelope model {envelope.to_dict()}; pitch range {low}-{high}")

    def _condition(self, batch: dict, drop: float = 0.0) -> dict[str, torch.Tensor]:
        """The denoiser's conditions; with ``drop``, that share of items is asked for the null (CFG training)."""
        curves = condition_tensor(batch["pitch"], batch["voiced"], batch["envelope"])
        cond = {CURVES: curves}
        if drop > 0:
            cond[NULL] = torch.rand(curves.shape[0], device=curves.device) < drop
        return cond

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        latent = self.model.vae.sample(batch["mean"], batch["logvar"])
        loss = self.model.denoiser.loss(latent, self._condition(batch, self.config.cond_dropout))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.update_ema(self.ema, self.model.denoiser)

    def on_validation_epoch_start(self) -> None:
        self._valid = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        from stemkit.diffusion import sample
        from stemkit.metrics.synthesis import log_mel_l1

        cond = self._condition(batch)
        device = batch["mean"].device
        generator = torch.Generator(device=device).manual_seed(batch_idx)
        # the denoising loss at fixed noise levels and noise: comparable across validations
        for sigma in (0.1, 1.0, 10.0):
            noise = torch.randn(batch["mean"].shape, generator=generator, device=device)
            denoised = self.ema(batch["mean"] + sigma * noise, sigma, cond)
            self.log(f"valid/mse_sigma{sigma:g}", (denoised - batch["mean"]).pow(2).mean(), batch_size=noise.shape[0])
        latent = sample(self.ema, batch["mean"].shape, steps=self.hparams.valid_steps, sampler=self.hparams.valid_sampler,
                        cond=cond, config=self.ema.config, generator=generator, device=device)
        audio = self.model.vae.decode(latent)
        for ref, est in zip(batch["audio"], audio):
            self._valid.append(log_mel_l1(ref[0], est[0], self.model.sample_rate))

    def on_validation_epoch_end(self) -> None:
        if self._valid:
            self.log("valid/log_mel_l1", float(np.mean(self._valid)), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return self.adam_with_schedule(self.model.denoiser.parameters())
