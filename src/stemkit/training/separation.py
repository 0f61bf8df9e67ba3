"""Lightning system for conditioned separators (LaSAFT): the training loop stays out of the model.

Training follows the paper: one random target per crop, named by its index; loss = MSE between the
estimated and the true complex spectrograms. Validation separates fixed excerpts of the valid split
with the same chunked inference as ``stemkit separate`` and logs raw L1 (the paper's validation loss)
and the SiSEC metrics (cSDR, uSDR) per target, so checkpoints are chosen by what users measure.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch

from stemkit.metrics.separation import aggregate, evaluate_track
from stemkit.separation.lasaft import LaSAFT, LaSAFTConfig
from stemkit.separation.separator import separate_with_model


def lasaft_loss(model: LaSAFT, batch: dict) -> torch.Tensor:
    """The paper's training loss: MSE between estimated and true complex spectrograms of the named target."""
    mix_spec = model.spectrogram(batch["mix"])
    target_spec = model.spectrogram(batch["target"])
    estimate = model.forward_spec(mix_spec, model.condition(batch["target_index"]))
    return torch.nn.functional.mse_loss(estimate, target_spec)


class LaSAFTSystem(L.LightningModule):
    """Trains a :class:`~stemkit.separation.lasaft.LaSAFT`.

    Args:
        net: the architecture (sample rate, channels and targets must match the data).
        lr: Adam learning rate (the paper: 1e-3).
        warmup_steps: linear warm-up of the learning rate.
        decay_steps: cosine decay to ``min_lr_ratio · lr`` over this many steps (0 = constant).
        min_lr_ratio: floor of the decay.
        valid_overlap: overlap of the chunked inference in validation.
        valid_metrics: compute cSDR (museval) in validation, not only L1 and uSDR.
    """

    def __init__(
        self,
        net: LaSAFTConfig,
        lr: float = 1e-3,
        warmup_steps: int = 200,
        decay_steps: int = 0,
        min_lr_ratio: float = 0.1,
        valid_overlap: float = 0.25,
        valid_metrics: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(net, dict):
            net = LaSAFTConfig(**net)
        self.save_hyperparameters({"net": net.to_dict(), "lr": lr, "warmup_steps": warmup_steps,
                                   "decay_steps": decay_steps, "min_lr_ratio": min_lr_ratio,
                                   "valid_overlap": valid_overlap, "valid_metrics": valid_metrics})
        self.config = net
        self.model = LaSAFT(net)
        self._valid_results: dict[str, dict] = {}

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "targets"):
            if list(datamodule.targets) != list(self.config.targets):
                raise ValueError(f"model targets {self.config.targets} differ from the data's {datamodule.targets}")
            if datamodule.sample_rate != self.config.sample_rate:
                raise ValueError(f"model sample rate {self.config.sample_rate} differs from the data's {datamodule.sample_rate}")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = lasaft_loss(self.model, batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._valid_results = {}

    def validation_step(self, item: dict, batch_idx: int) -> None:
        cfg = self.config
        estimates = separate_with_model(self.model, item["mix"], list(range(len(cfg.targets))), overlap=self.hparams.valid_overlap,
                                        batch_size=4, device=self.device)
        references = {t: item["stems"][i] for i, t in enumerate(cfg.targets)}
        estimates = {t: estimates[i] for i, t in enumerate(cfg.targets)}
        l1 = float(np.mean([(estimates[t] - references[t]).abs().mean().item() for t in cfg.targets]))
        self.log("valid/l1", l1, batch_size=1, sync_dist=True)
        if self.hparams.valid_metrics:
            self._valid_results[item["name"]] = evaluate_track(references, estimates, cfg.sample_rate)

    def on_validation_epoch_end(self) -> None:
        if not self._valid_results:
            return
        per_target, average = aggregate(self._valid_results)  # the same reduction `stemkit eval` uses
        for target, figures in per_target.items():
            for metric in ("cSDR", "uSDR"):
                self.log(f"valid/{metric}_{target}", figures[metric], sync_dist=True)
        self.log("valid/cSDR", average["cSDR"], prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        warmup, decay, floor = self.hparams.warmup_steps, self.hparams.decay_steps, self.hparams.min_lr_ratio

        def factor(step: int) -> float:
            if warmup and step < warmup:
                return (step + 1) / warmup
            if decay <= 0:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, decay))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
