"""Lightning system for the mel VAE: L1 reconstruction of the codec's log-mel plus a small KL.

Why L1 on the scaled log-mel and no adversary: the VAE only has to be faithful in the space the
diffusion decoder samples and the vocoder reads; detail the mel does not hold is the vocoder's job.
The KL weight is small (AudioLDM's VAEs use 1e-6 with a summed KL) so the latent stays informative
while its scale stays near the unit Gaussian the EDM preconditioning assumes; ``valid/latent_std``
shows where it sits.
"""

from __future__ import annotations

import torch

from stemkit.errors import StemkitError
from stemkit.synthesis.mel_vae import MelVAE, MelVAEConfig
from stemkit.training.system import StemkitSystem


class MelVAESystem(StemkitSystem):
    """Trains a :class:`~stemkit.synthesis.mel_vae.MelVAE` on crops of recordings.

    Args:
        net: the VAE (its mel settings are the ones the diffusion model will sample).
        lr, warmup_steps, decay_steps, min_lr_ratio: Adam and its warm-up + cosine schedule.
        kl_weight: weight of the KL (summed over latent channels, averaged over positions).
    """

    family = "mel-vae"

    def __init__(self, net: MelVAEConfig, lr: float = 3e-4, warmup_steps: int = 200, decay_steps: int = 0,
                 min_lr_ratio: float = 0.1, kl_weight: float = 1e-4) -> None:
        super().__init__()
        if isinstance(net, dict):
            net = MelVAEConfig(**net)
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "lr": lr, "warmup_steps": warmup_steps,
                                   "decay_steps": decay_steps, "min_lr_ratio": min_lr_ratio, "kl_weight": kl_weight})
        self.config = net
        self.model = MelVAE(net)

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        rate = self.config.sample_rate
        if datamodule is not None and getattr(datamodule, "sample_rate", rate) != rate:
            raise StemkitError(f"mel VAE sample rate {rate} differs from the data's {datamodule.sample_rate}")

    def _step(self, audio: torch.Tensor, sample: bool) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            mel = self.model.mel(audio)
        mean, logvar = self.model.encode(mel)
        latent = self.model.sample(mean, logvar) if sample else mean
        kl = self.model.kl(mean, logvar)
        l1 = (self.model.decode_mel(latent) - mel).abs().mean()
        return {"l1": l1, "kl": kl, "total": l1 + self.hparams.kl_weight * kl, "latent_std": mean.detach().std()}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self._step(batch["audio"], sample=True)
        for name, value in terms.items():
            self.log(f"train/{name}", value, prog_bar=name == "l1")
        return terms["total"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms = self._step(batch["audio"], sample=False)
        for name, value in terms.items():
            self.log(f"valid/{name}", value, batch_size=batch["audio"].shape[0], sync_dist=True, prog_bar=name == "l1")

    def configure_optimizers(self):
        return self.adam_with_schedule(self.model.parameters())
