"""Lightning system for the mel vocoder: mel → audio, judged against the recording the mel came from.

The losses are the ones that do not ask for the recording's exact phase, which a mel does not hold:
L1 between the log-mels of output and target (``mel``, on the codec's own features — the quantity the
vocoder must reproduce) and the multi-resolution STFT loss; then, after ``adversarial_start`` steps,
the STFT discriminator and feature matching, which restore the fine structure the spectral losses
average away. A waveform L1 would punish every valid phase but one and blur the output.
"""

from __future__ import annotations

from typing import Any

import torch

from stemkit.synthesis.losses import multi_resolution_stft_loss
from stemkit.synthesis.vocoder import MelVocoder, MelVocoderConfig
from stemkit.training.audio_gan import ADVERSARIAL_WEIGHTS, AdversarialAudioSystem

DEFAULT_WEIGHTS = {"mel": 1.0, "mrstft": 1.0, **ADVERSARIAL_WEIGHTS}


class VocoderSystem(AdversarialAudioSystem):
    """Trains a :class:`~stemkit.synthesis.vocoder.MelVocoder` on crops of recordings.

    Args:
        net: the vocoder (its mel settings must be those of the codec it will decode for).
        lr, lr_discriminator: AdamW learning rates (β = 0.8, 0.99 as in audio GANs).
        loss_weights: balancer weights of ``mel``, ``mrstft``, ``adversarial``, ``feature``
            (``adversarial: 0`` trains without the discriminator).
        balance: use the balancer; ``False`` sums the weighted losses plainly.
        adversarial_start: step from which the discriminator trains and its losses count.
        discriminator_channels: width of the discriminator's first layer.
        stft_sizes: FFT sizes of the multi-resolution STFT loss.
        decay_batches: both learning rates fall along a cosine to a tenth of their peak over this many
            batches (0 = constant; Vocos decays to zero after a warm-up).
    """

    family = "mel-vocoder"
    default_weights = DEFAULT_WEIGHTS
    item_metrics = ("log_mel_l1", "mrstft")
    bar_metric = "log_mel_l1"

    def __init__(
        self,
        net: MelVocoderConfig,
        lr: float = 5e-4,
        lr_discriminator: float = 2e-4,
        loss_weights: dict[str, float] | None = None,
        balance: bool = True,
        adversarial_start: int = 2000,
        discriminator_channels: int = 16,
        stft_sizes: list[int] | None = None,
        decay_batches: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(net, dict):
            net = MelVocoderConfig(**net)
        weights = self.weights_from(loss_weights)
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "lr": lr, "lr_discriminator": lr_discriminator,
                                   "loss_weights": weights, "balance": balance, "adversarial_start": adversarial_start,
                                   "discriminator_channels": discriminator_channels,
                                   "stft_sizes": list(stft_sizes or [2048, 1024, 512, 256, 128]),
                                   "decay_batches": decay_batches})
        self.config = net
        self.model = MelVocoder(net)
        self.setup_adversarial(weights, discriminator_channels)

    def _mel_l1(self, output: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
        return (self.model.features(output) - target_features).abs().mean()

    def generate(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, float, dict[str, Any]]:
        audio = batch["audio"]
        output = self.model(self.model.features(audio))
        return output, audio, 0.0, {}

    def reconstruction_losses(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            target_features = self.model.features(target)
        return {"mel": self._mel_l1(output, target_features),
                "mrstft": multi_resolution_stft_loss(output, target, tuple(self.hparams.stft_sizes))}

    def validation_items(self, batch: dict) -> list[dict[str, float]]:
        from stemkit.metrics.synthesis import log_mel_l1

        audio = batch["audio"]
        output = self.model(self.model.features(audio))
        rate = self.config.sample_rate
        sizes = tuple(self.hparams.stft_sizes)
        return [{"log_mel_l1": log_mel_l1(ref[0], est[0], rate),
                 "mrstft": float(multi_resolution_stft_loss(est[None], ref[None], sizes))}
                for ref, est in zip(audio, output)]
