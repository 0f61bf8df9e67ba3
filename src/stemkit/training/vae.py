"""Lightning system for the audio VAE: balanced reconstruction, spectral and adversarial losses + KL.

The loop (manual optimisation, the balancer, the late-starting discriminator) is the one every audio
generator shares (:mod:`stemkit.training.audio_gan`); the VAE adds its waveform L1/L2 and its KL, which
acts on the latent rather than the output and is therefore added outside the balancer.
"""

from __future__ import annotations

from typing import Any

import torch

from stemkit.metrics.separation import si_sdr
from stemkit.synthesis.losses import multi_resolution_stft_loss
from stemkit.synthesis.vae import AudioVAE, VAEConfig
from stemkit.training.audio_gan import ADVERSARIAL_WEIGHTS, AdversarialAudioSystem

DEFAULT_WEIGHTS = {"l1": 0.1, "l2": 0.1, "mrstft": 1.0, **ADVERSARIAL_WEIGHTS}


class VAESystem(AdversarialAudioSystem):
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
    default_weights = DEFAULT_WEIGHTS
    item_metrics = ("si_sdr", "log_mel_l1")
    bar_metric = "si_sdr"

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
        weights = self.weights_from(loss_weights)
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "lr": lr, "lr_discriminator": lr_discriminator,
                                   "kl_weight": kl_weight, "loss_weights": weights, "balance": balance,
                                   "adversarial_start": adversarial_start, "discriminator_channels": discriminator_channels,
                                   "stft_sizes": list(stft_sizes or [2048, 1024, 512, 256, 128])})
        self.config = net
        self.model = AudioVAE(net)
        self.setup_adversarial(weights, discriminator_channels)

    def generate(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        audio = batch["audio"]
        mean, logvar = self.model.encode(audio)
        output = self.model.decode(self.model.sample(mean, logvar))
        kl = self.model.kl(mean, logvar)
        return output, audio, self.hparams.kl_weight * kl, {"kl": kl, "latent_std": mean.detach().std()}

    def reconstruction_losses(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "l1": (output - target).abs().mean(),
            "l2": (output - target).pow(2).mean(),
            "mrstft": multi_resolution_stft_loss(output, target, tuple(self.hparams.stft_sizes)),
        }

    def validation_items(self, batch: dict) -> list[dict[str, float]]:
        from stemkit.metrics.synthesis import log_mel_l1

        audio = batch["audio"]
        mean, logvar = self.model.encode(audio)
        output = self.model.decode(mean)
        rate = self.config.sample_rate
        self.log("valid/mrstft", multi_resolution_stft_loss(output, audio, tuple(self.hparams.stft_sizes)), batch_size=audio.shape[0])
        self.log("valid/latent_std", mean.std(), batch_size=audio.shape[0])
        self.log("valid/kl", self.model.kl(mean, logvar), batch_size=audio.shape[0])
        return [{"si_sdr": si_sdr(ref[0], est[0]), "log_mel_l1": log_mel_l1(ref[0], est[0], rate)} for ref, est in zip(audio, output)]
