"""Training the mel classifier that judges DisMix's swaps: BCE on the pitch head, cross-entropy on the instrument head."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stemkit.disentanglement.classifier import MelClassifier, MelClassifierConfig
from stemkit.errors import StemkitError
from stemkit.training.system import StemkitSystem


class MelClassifierSystem(StemkitSystem):
    """Trains a :class:`~stemkit.disentanglement.classifier.MelClassifier` on single sources: log-mels
    (``ChordDataModule`` with ``items: sources``) or audio crops (``ChoraleInstrumentsDataModule``, turned
    into the classifier's log-mel here); logs exact-set pitch accuracy (when it has a pitch head) and
    instrument accuracy."""

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

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        instruments = getattr(datamodule, "instruments", None)
        if instruments is not None and list(instruments) != list(self.config.instruments):
            raise StemkitError(f"the data's instruments {instruments} differ from the classifier's {self.config.instruments}")
        rate = getattr(datamodule, "sample_rate", None)
        if rate is not None and rate != self.config.sample_rate:
            raise StemkitError(f"the classifier reads {self.config.sample_rate} Hz audio, the data is at {rate} Hz")

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        mel = batch["mel"] if "mel" in batch else self.model.log_mel(batch["audio"])
        pitch_logits, instrument_logits = self.model(mel)
        loss = F.cross_entropy(instrument_logits, batch["instrument"])
        pitched = self.config.num_pitches > 0
        if pitched:
            loss = loss + F.binary_cross_entropy_with_logits(pitch_logits, batch["pitch"])
        size = mel.shape[0]
        self.log(f"{stage}/loss", loss, batch_size=size, prog_bar=True, sync_dist=stage == "valid")
        if stage == "valid":
            correct = (instrument_logits.argmax(dim=-1) == batch["instrument"]).float().mean()
            self.log("valid/instrument_acc", correct, batch_size=size, sync_dist=True, prog_bar=True)
        if stage == "valid" and pitched:
            exact = ((torch.sigmoid(pitch_logits) > 0.5) == batch["pitch"].bool()).all(dim=-1).float().mean()
            self.log("valid/pitch_acc", exact, batch_size=size, sync_dist=True, prog_bar=True)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "valid")

    def configure_optimizers(self):
        return self.adam_with_schedule(self.model.parameters())
