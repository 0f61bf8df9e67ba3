"""Lightning system for the audio VAE: balanced reconstruction, spectral and adversarial losses + KL.

Why manual optimisation: the generator and the discriminator alternate with their own optimisers,
and the generator's gradient is assembled by the loss balancer from per-loss gradients at the
decoder output. The adversarial pair only starts after ``adversarial_start`` steps: a discriminator
facing a decoder that cannot yet produce a tone only teaches it noise.
"""

from __future__ import annotations

import numpy as np
import torch

from stemkit.errors import StemkitError
from stemkit.metrics.separation import si_sdr
from stemkit.synthesis.losses import (
    LossBalancer,
    STFTDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    multi_resolution_stft_loss,
)
from stemkit.synthesis.vae import AudioVAE, VAEConfig
from stemkit.training.system import StemkitSystem

DEFAULT_WEIGHTS = {"l1": 0.1, "l2": 0.1, "mrstft": 1.0, "adversarial": 1.0, "feature": 2.0}


class VAESystem(StemkitSystem):
    """Trains an :class:`~stemkit.synthesis.vae.AudioVAE`.

    Args:
        net: the VAE architecture.
        lr, lr_discriminator: AdamW learning rates (β = 0.8, 0.99 as in audio GANs).
        kl_weight: weight of the KL term, added outside the balancer.
        loss_weights: balancer weights (fractions of the decoder-output gradient) of
            ``l1``, ``l2``, ``mrstft``, ``adversarial``, ``feature``.
        balance: use the balancer; ``False`` sums the weighted losses plainly.
        adversarial_start: step from which the discriminator trains and its losses count.
        discriminator_channels: width of the discriminator's first layer.
        stft_sizes: FFT sizes of the multi-resolution STFT loss.
    """

    family = "vae"

    def __init__(
        self,
        net: VAEConfig,
        lr: float = 3e-4,
        lr_discriminator: float = 3e-4,
        kl_weight: float = 1e-4,
        loss_weights: dict[str, float] | None = None,
        balance: bool = True,
        adversarial_start: int = 2000,
        discriminator_channels: int = 16,
        stft_sizes: list[int] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(net, dict):
            net = VAEConfig(**net)
        weights = dict(DEFAULT_WEIGHTS, **(loss_weights or {}))
        unknown = set(weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "lr": lr, "lr_discriminator": lr_discriminator,
                                   "kl_weight": kl_weight, "loss_weights": weights, "balance": balance,
                                   "adversarial_start": adversarial_start, "discriminator_channels": discriminator_channels,
                                   "stft_sizes": list(stft_sizes or [2048, 1024, 512, 256, 128])})
        self.automatic_optimization = False
        self.config = net
        self.model = AudioVAE(net)
        self.discriminator = STFTDiscriminator(discriminator_channels)
        self.balancer = LossBalancer(weights)
        self._valid: list[dict[str, float]] = []

    def on_fit_start(self) -> None:
        if "16-mixed" in str(self.trainer.precision) and not str(self.trainer.precision).startswith("bf"):
            raise StemkitError("VAE training does not support fp16 AMP (its balancer and its two optimizers step outside the "
                             "grad scaler): use precision 32 or bf16-mixed")
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "sample_rate", self.config.sample_rate) != self.config.sample_rate:
            raise StemkitError(f"VAE sample rate {self.config.sample_rate} differs from the data's {datamodule.sample_rate}")

    @property
    def batches_seen(self) -> int:
        """Training batches so far: Lightning's ``global_step`` counts the steps of both optimizers."""
        return self.global_step // 2

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        audio = batch["audio"]
        mean, logvar = self.model.encode(audio)
        output = self.model.decode(self.model.sample(mean, logvar))
        adversarial = self.batches_seen >= self.hparams.adversarial_start

        if adversarial:
            real_logits, _ = self.discriminator(audio)
            fake_logits, _ = self.discriminator(output.detach())
            d_loss = discriminator_hinge_loss(real_logits, fake_logits)
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()
            self.log("train/discriminator", d_loss)

        losses = {
            "l1": (output - audio).abs().mean(),
            "l2": (output - audio).pow(2).mean(),
            "mrstft": multi_resolution_stft_loss(output, audio, tuple(self.hparams.stft_sizes)),
        }
        if adversarial:
            fake_logits, fake_features = self.discriminator(output)
            with torch.no_grad():
                _, real_features = self.discriminator(audio)
            losses["adversarial"] = generator_hinge_loss(fake_logits)
            losses["feature"] = feature_matching_loss(real_features, fake_features)
        kl = self.model.kl(mean, logvar)
        if self.hparams.balance:
            objective = self.balancer.surrogate(losses, output)
        else:
            weights = self.hparams.loss_weights
            objective = sum(weights[k] * v for k, v in losses.items())
        objective = objective + self.hparams.kl_weight * kl
        opt_g.zero_grad()
        self.manual_backward(objective)
        self.clip_gradients(opt_g, gradient_clip_val=10.0, gradient_clip_algorithm="norm")
        opt_g.step()
        if not adversarial:
            opt_d.zero_grad()
            opt_d.step()  # no gradients, so no update; keeps global_step at two per batch
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "mrstft")
        self.log("train/kl", kl)
        for name, norm in self.balancer.last_norms.items():
            self.log(f"train/grad_norm_{name}", norm)
        self.log("train/latent_std", mean.detach().std())

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        from stemkit.metrics.synthesis import log_mel_l1

        audio = batch["audio"]
        mean, logvar = self.model.encode(audio)
        output = self.model.decode(mean)
        rate = self.config.sample_rate
        for ref, est in zip(audio, output):
            self._valid.append({"si_sdr": si_sdr(ref[0], est[0]), "log_mel_l1": log_mel_l1(ref[0], est[0], rate)})
        self.log("valid/mrstft", multi_resolution_stft_loss(output, audio, tuple(self.hparams.stft_sizes)), batch_size=audio.shape[0])
        self.log("valid/latent_std", mean.std(), batch_size=audio.shape[0])
        self.log("valid/kl", self.model.kl(mean, logvar), batch_size=audio.shape[0])

    def on_validation_epoch_start(self) -> None:
        self._valid = []

    def on_validation_epoch_end(self) -> None:
        if self._valid:
            for key in ("si_sdr", "log_mel_l1"):
                values = [v[key] for v in self._valid if np.isfinite(v[key])]
                if values:
                    self.log(f"valid/{key}", float(np.mean(values)), prog_bar=key == "si_sdr", sync_dist=True)

    def configure_optimizers(self):
        gen = torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr, betas=(0.8, 0.99))
        disc = torch.optim.AdamW(self.discriminator.parameters(), lr=self.hparams.lr_discriminator, betas=(0.8, 0.99))
        return [gen, disc]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["loss_balancer"] = self.balancer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.balancer.load_state_dict(checkpoint.get("loss_balancer", {}))
