"""Training the mel classifier that judges DisMix's swaps: BCE on the pitch head, cross-entropy on the instrument head."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stemkit.disentanglement.classifier import MelClassifier, MelClassifierConfig
from stemkit.training.system import StemkitSystem


class MelClassifierSystem(StemkitSystem):
    """Trains a :class:`~stemkit.disentanglement.classifier.MelClassifier` on single sources
    (``ChordDataModule`` with ``items: sources``); logs exact-set pitch accuracy and instrument accuracy."""

    family = "mel-classifier"

    def __init__(self, net: MelClassifierConfig, lr: float = 1e-3, warmup_steps: int = 100, decay_steps: int = 0,
                 min_lr_ratio: float = 0.1) -> None:
        super().__init__()
        if isinstance(net, dict):
            net = MelClassifierConfig(**net)
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "lr": lr, "warmup_steps": warmup_steps,
                                   "decay_steps": decay_steps, "min_lr_ratio": min_lr_ratio})
        self.config = net
        self.model = MelClassifier(net)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        pitch_logits, instrument_logits = self.model(batch["mel"])
        pitch_loss = F.binary_cross_entropy_with_logits(pitch_logits, batch["pitch"])
        instrument_loss = F.cross_entropy(instrument_logits, batch["instrument"])
        loss = pitch_loss + instrument_loss
        size = batch["mel"].shape[0]
        self.log(f"{stage}/loss", loss, batch_size=size, prog_bar=True, sync_dist=stage == "valid")
        if stage == "valid":
            exact = ((torch.sigmoid(pitch_logits) > 0.5) == batch["pitch"].bool()).all(dim=-1).float().mean()
            correct = (instrument_logits.argmax(dim=-1) == batch["instrument"]).float().mean()
            self.log("valid/pitch_acc", exact, batch_size=size, sync_dist=True, prog_bar=True)
            self.log("valid/instrument_acc", correct, batch_size=size, sync_dist=True, prog_bar=True)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "valid")

    def configure_optimizers(self):
        return self.adam_with_schedule(self.model.parameters())
