"""Training spectrogram diffusion: the EDM loss of a segment's mel given its notes and the previous segment.

In training the context is the *recorded* previous segment (the paper's teacher forcing; at generation
it is the previous generated one), the first segment of a piece reads the context's null, and 10 % of
items read every condition's null so classifier-free guidance works. An EMA of the denoiser is what
is exported. Validation logs the loss at fixed noise (a seeded generator), so curves compare.
"""

from __future__ import annotations

import copy

import torch

from stemkit.diffusion.conditions import NULL
from stemkit.errors import StemkitError
from stemkit.synthesis.specdiff import CONTEXT, SpecDiff, SpecDiffConfig
from stemkit.training.system import StemkitSystem


class SpecDiffSystem(StemkitSystem):
    """Trains a :class:`~stemkit.synthesis.specdiff.SpecDiff`.

    Args:
        net: the model config (mel settings, token vocabulary, backbone, EDM).
        lr, warmup_steps, decay_steps, min_lr_ratio: Adam and its warm-up + cosine schedule.
        ema_decay: decay of the exponential moving average of the denoiser's weights.
        init_from: start from this model's weights (a shipped name such as ``specdiff-chorales``, an export
            or a ``.ckpt``; the same config), e.g. to continue training in another session.
    """

    family = "specdiff"
    #: besides EDM's training noise, the guidance dropout and the mel decoder leave the weights' meaning alone
    warm_start_may_change = StemkitSystem.warm_start_may_change + ("cond_dropout", "mel.vocoder")
    #: note spans add one zero-initialised projection (``spans_in``): a trained model can start reading them
    warm_start_may_grow = {"note_spans": "spans_in."}

    def __init__(self, net: SpecDiffConfig, lr: float = 1e-4, warmup_steps: int = 1000, decay_steps: int = 0,
                 min_lr_ratio: float = 0.1, ema_decay: float = 0.999, init_from: str | None = None) -> None:
        super().__init__()
        if isinstance(net, dict):
            net = SpecDiffConfig(**net)
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "lr": lr, "warmup_steps": warmup_steps,
                                   "decay_steps": decay_steps, "min_lr_ratio": min_lr_ratio, "ema_decay": ema_decay, "init_from": init_from})
        self.config = net
        self.model = SpecDiff(net)
        self.ema = copy.deepcopy(self.model.denoiser).requires_grad_(False)
        if init_from:
            self.start_from(init_from)

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        if getattr(datamodule, "sample_rate", self.model.sample_rate) != self.model.sample_rate:
            raise StemkitError(f"the model works at {self.model.sample_rate} Hz, the data module at {datamodule.sample_rate} Hz")
        vocab = getattr(datamodule, "vocab", None)
        if vocab is not None and vocab != self.config.vocabulary():
            raise StemkitError(f"the data's token settings {vocab} differ from the model's {self.config.vocabulary()}")

    def _loss(self, batch: dict, drop: float, generator: torch.Generator | None = None) -> torch.Tensor:
        codec = self.model.codec
        with torch.no_grad():
            mel = codec.encode(batch["audio"])
            previous = codec.encode(batch["previous"]) if self.config.context else None
        cond = self.model.conditions(batch["tokens"], batch["token_mask"], previous)
        if self.config.context:
            cond["null:" + CONTEXT] = batch["first"].to(mel.device)
        if drop > 0 and not self.config.autoregressive:  # guidance is for the diffusion objective only
            cond[NULL] = torch.rand(mel.shape[0], device=mel.device) < drop
        return self.model.loss(mel, cond, generator=generator)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, self.config.cond_dropout)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.update_ema(self.ema, self.model.denoiser)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        generator = torch.Generator(device=batch["audio"].device).manual_seed(1000 + batch_idx)
        live = self._loss(batch, 0.0, generator)
        self.log("valid/loss", live, batch_size=batch["audio"].shape[0], sync_dist=True, prog_bar=True)

    def configure_optimizers(self):
        return self.adam_with_schedule(self.model.denoiser.parameters())
