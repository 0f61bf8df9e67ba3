"""The training loop shared by audio generators judged by an STFT discriminator: the VAE and the vocoder.

Why one loop: both make a waveform that should match a target recording, both learn from
reconstruction and spectral losses first and from an adversarial pair after ``adversarial_start``
steps (a discriminator facing a generator that cannot yet make a tone only teaches it noise), and
both mix their losses with the EnCodec balancer (:class:`~stemkit.synthesis.losses.LossBalancer`),
which needs manual optimisation. A subclass says only how it makes its output (:meth:`generate`),
which reconstruction losses it uses (:meth:`reconstruction_losses`) and what it scores in validation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from stemkit.errors import StemkitError
from stemkit.synthesis.losses import (
    LossBalancer,
    STFTDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from stemkit.training.system import StemkitSystem

ADVERSARIAL_WEIGHTS = {"adversarial": 1.0, "feature": 2.0}
#: where a learning-rate decay ends, as a share of the peak
FINAL_LR_SHARE = 0.1


class AdversarialAudioSystem(StemkitSystem):
    """Base of systems whose generator outputs audio ``[B, 1, T]``; subclasses call :meth:`setup_adversarial`.

    Hyper-parameters it reads: ``lr``, ``lr_discriminator``, ``loss_weights``, ``balance``,
    ``adversarial_start``. Losses whose weight is 0 are not computed.
    """

    #: the weights a subclass accepts (its reconstruction losses plus ``adversarial`` and ``feature``)
    default_weights: dict[str, float] = {}
    #: the validation metrics averaged over items at the end of each validation (see :meth:`validation_items`)
    item_metrics: tuple[str, ...] = ()
    #: the metric shown in the progress bar
    bar_metric: str = ""

    @classmethod
    def weights_from(cls, loss_weights: dict[str, float] | None) -> dict[str, float]:
        weights = dict(cls.default_weights, **(loss_weights or {}))
        unknown = set(weights) - set(cls.default_weights)
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}; known: {sorted(cls.default_weights)}")
        return weights

    def setup_adversarial(self, weights: dict[str, float], discriminator_channels: int) -> None:
        self.automatic_optimization = False
        self.discriminator = STFTDiscriminator(discriminator_channels)
        self.balancer = LossBalancer(weights)
        self._valid: list[dict[str, float]] = []

    # --- what a subclass provides ---------------------------------------------------------------
    def generate(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | float, dict[str, Any]]:
        """``(output, target, penalty, logs)`` for a training batch: ``penalty`` is added to the objective
        outside the balancer (a regulariser that does not act through the output, such as a KL), ``logs``
        are logged as ``train/<name>``."""
        raise NotImplementedError

    def reconstruction_losses(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def validation_items(self, batch: dict) -> list[dict[str, float]]:
        """Per-item validation metrics (keys in :attr:`item_metrics`); may also log batch-level ones."""
        raise NotImplementedError

    # --- the loop ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if "16-mixed" in str(self.trainer.precision) and not str(self.trainer.precision).startswith("bf"):
            raise StemkitError(f"{self.family} training does not support fp16 AMP (its balancer and its two optimizers "
                               "step outside the grad scaler): use precision 32 or bf16-mixed")
        datamodule = getattr(self.trainer, "datamodule", None)
        rate = self.config.sample_rate
        if datamodule is not None and getattr(datamodule, "sample_rate", rate) != rate:
            raise StemkitError(f"{self.family} sample rate {rate} differs from the data's {datamodule.sample_rate}")

    @property
    def batches_seen(self) -> int:
        """Training batches so far: Lightning's ``global_step`` counts the steps of both optimizers."""
        return self.global_step // 2

    def _weighted(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights = self.hparams.loss_weights
        return {k: v for k, v in losses.items() if weights.get(k, 0) > 0}

    def learning_rate_factor(self) -> float:
        """The share of the peak learning rates in use now: 1 throughout, or — where the system has a
        ``decay_batches`` hyper-parameter — a cosine from 1 down to ``FINAL_LR_SHARE`` over that many
        batches, then flat. A function of the batch count alone, so a resumed run continues the same
        curve; a rerun with another ``decay_batches`` moves to that curve's value at the current batch."""
        decay = int(self.hparams.get("decay_batches") or 0)
        if decay <= 0:
            return 1.0
        progress = min(1.0, self.batches_seen / decay)
        return FINAL_LR_SHARE + (1 - FINAL_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * progress))

    def _set_learning_rates(self, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> None:
        factor = self.learning_rate_factor()
        for optimizer, peak in ((opt_g, self.hparams.lr), (opt_d, self.hparams.lr_discriminator)):
            for group in optimizer.param_groups:
                group["lr"] = peak * factor

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        self._set_learning_rates(opt_g, opt_d)
        output, target, penalty, logs = self.generate(batch)
        adversarial = self.batches_seen >= self.hparams.adversarial_start and self.hparams.loss_weights.get("adversarial", 0) > 0

        if adversarial:
            real_logits, _ = self.discriminator(target)
            fake_logits, _ = self.discriminator(output.detach())
            d_loss = discriminator_hinge_loss(real_logits, fake_logits)
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()
            self.log("train/discriminator", d_loss)

        losses = self._weighted(self.reconstruction_losses(output, target))
        if adversarial:
            fake_logits, fake_features = self.discriminator(output)
            with torch.no_grad():
                _, real_features = self.discriminator(target)
            losses["adversarial"] = generator_hinge_loss(fake_logits)
            losses["feature"] = feature_matching_loss(real_features, fake_features)
        if self.hparams.balance:
            objective = self.balancer.surrogate(losses, output)
        else:
            weights = self.hparams.loss_weights
            objective = sum(weights[k] * v for k, v in losses.items())
        objective = objective + penalty
        opt_g.zero_grad()
        self.manual_backward(objective)
        self.clip_gradients(opt_g, gradient_clip_val=10.0, gradient_clip_algorithm="norm")
        opt_g.step()
        if not adversarial:
            opt_d.zero_grad()
            opt_d.step()  # no gradients, so no update; keeps global_step at two per batch
        for name, value in {**losses, **logs}.items():
            self.log(f"train/{name}", value, prog_bar=name == "mrstft")
        for name, norm in self.balancer.last_norms.items():
            self.log(f"train/grad_norm_{name}", norm)
        self.log("train/lr", opt_g.param_groups[0]["lr"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._valid.extend(self.validation_items(batch))

    def on_validation_epoch_start(self) -> None:
        self._valid = []

    def on_validation_epoch_end(self) -> None:
        for key in self.item_metrics:
            values = [v[key] for v in self._valid if np.isfinite(v[key])]
            if values:
                self.log(f"valid/{key}", float(np.mean(values)), prog_bar=key == self.bar_metric, sync_dist=True)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        gen = torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr, betas=(0.8, 0.99))
        disc = torch.optim.AdamW(self.discriminator.parameters(), lr=self.hparams.lr_discriminator, betas=(0.8, 0.99))
        return [gen, disc]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # the run's facts (stemkit version, commit, hardware) for the card
        checkpoint["loss_balancer"] = self.balancer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.balancer.load_state_dict(checkpoint.get("loss_balancer", {}))
