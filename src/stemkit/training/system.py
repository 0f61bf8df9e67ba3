"""What every training system shares: it records its model family, and can export its model itself.

Why: ``stemkit export CKPT`` and ``load_pretrained(CKPT)`` must know what a checkpoint holds without
guessing from its contents, and the exported weights must be the ones validation scored (the EMA,
where a system keeps one). So each system saves ``family`` and ``net`` (the model config) among its
hyper-parameters, keeps the inference model as ``self.model`` (and an EMA, if any, as ``self.ema``),
and every checkpoint carries the facts of the run (stemkit version, commit, hardware) for the card.
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
from torch import nn

from stemkit.models import CHECKPOINT_PROVENANCE_KEY, system_weights
from stemkit.registry import get_family


class StemkitSystem(L.LightningModule):
    """Base class of the Lightning systems; subclasses set :attr:`family` and save ``family`` and ``net``."""

    family: ClassVar[str]
    #: config settings (dotted paths) that a warm start (``init_from``) may change: ones that shape training or
    #: decoding but not what the weights mean, so the run's own value wins. Every family with an EDM core may
    #: change its training noise (which σ the run trains on); a family adds its own settings to these.
    warm_start_may_change: ClassVar[tuple[str, ...]] = ("edm.p_mean", "edm.p_std")
    #: settings that a warm start may switch on because all they add is new, zero-initialised parameters (so the
    #: donor's function is kept exactly until training moves them): setting → what the added parameters' names contain
    warm_start_may_grow: ClassVar[dict[str, str]] = {}
    _facts: dict[str, Any] | None = None

    def export_model(self) -> nn.Module:
        """A fresh inference model (eval mode, CPU) with this system's weights — EMA ones where kept."""
        family = get_family(self.hparams["family"])
        model = family.build(self.hparams["net"])
        model.load_state_dict(system_weights({k: v.detach().cpu() for k, v in self.state_dict().items()}, family.ema_of))
        return model.eval()

    def adam_with_schedule(self, parameters) -> dict[str, Any]:
        """Adam at ``hparams.lr`` with the linear warm-up + cosine decay every system uses
        (``warmup_steps``, ``decay_steps``, ``min_lr_ratio``), as ``configure_optimizers`` returns it."""
        import torch

        from stemkit.training.schedules import warmup_cosine

        hp = self.hparams
        optimizer = torch.optim.Adam(parameters, lr=hp.lr)
        return {"optimizer": optimizer, "lr_scheduler": warmup_cosine(optimizer, hp.warmup_steps, hp.decay_steps, hp.min_lr_ratio)}

    def start_from(self, source: str) -> None:
        """Warm start: this system's model (and its EMA, where kept) takes the weights of ``source`` — a
        shipped name, an export or a ``.ckpt`` of the same family and the same config (except the settings in
        :attr:`warm_start_may_change`, where this run's values hold).

        Why: a run's checkpoints (optimizer state included) stay on the machine that made them, while an
        exported model travels, so a training run continues on another machine or in another session from
        the model it shipped (the optimizer and schedule start afresh). Another architecture is one line
        of error, not a silent partial load — except a setting of :attr:`warm_start_may_grow` switched on,
        whose new parameters, and only those, keep their (zero) initialisation."""
        from stemkit.errors import StemkitError
        from stemkit.models import load_model

        donor, _ = load_model(source, family=self.hparams["family"])
        mine, theirs = _flatten(self.model.config.to_dict()), _flatten(donor.config.to_dict())
        free = self.warm_start_may_change
        changed = sorted(k for k in set(mine) | set(theirs)
                         if mine.get(k) != theirs.get(k) and not any(k == f or k.startswith(f + ".") for f in free))
        grown = [k for k in changed if k in self.warm_start_may_grow and mine[k] and not theirs.get(k)]
        changed = [k for k in changed if k not in grown]
        if changed:
            raise StemkitError(f"init_from {source}: its config differs in {', '.join(changed)}")
        new = tuple(self.warm_start_may_grow[k] for k in grown)
        _load_keeping_new(self.model, donor.state_dict(), new)
        ema_of = get_family(self.hparams["family"]).ema_of
        ema = getattr(self, "ema", None)
        if ema_of and ema is not None:
            _load_keeping_new(ema, getattr(donor, ema_of).state_dict(), new)

    def update_ema(self, averaged: nn.Module, live: nn.Module) -> None:
        """One step of the exponential moving average of ``live``'s weights kept in ``averaged``, with the
        warm-up ``min(ema_decay, (1 + step) / (10 + step))`` so early weights do not linger (the systems
        that sample — the diffusion models — export this average, never the live weights)."""
        import torch

        decay = min(self.hparams.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        with torch.no_grad():
            for ema, current in zip(averaged.parameters(), live.parameters()):
                ema.lerp_(current, 1.0 - decay)

    def check_data_matches(self, config: Any) -> None:
        """Refuse, before the first step, stem data whose targets or sample rate are not the model's."""
        from stemkit.errors import StemkitError

        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "targets"):
            return
        if list(datamodule.targets) != list(config.targets):
            raise StemkitError(f"model targets {config.targets} differ from the data's {datamodule.targets}")
        if datamodule.sample_rate != config.sample_rate:
            raise StemkitError(f"model sample rate {config.sample_rate} differs from the data's {datamodule.sample_rate}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from stemkit.provenance import runtime_facts

        if self._facts is None:
            trainer = self._trainer
            devices = trainer.num_devices * trainer.num_nodes if trainer is not None else None
            accelerator = type(trainer.accelerator).__name__.lower().removesuffix("accelerator") if trainer is not None else None
            self._facts = runtime_facts(devices, "gpu" if accelerator == "cuda" else accelerator)
        checkpoint[CHECKPOINT_PROVENANCE_KEY] = self._facts


def _load_keeping_new(module: nn.Module, weights: dict[str, Any], new: tuple[str, ...]) -> None:
    """Load ``weights`` into ``module``; the only parameters it may lack are those whose names contain one of
    ``new`` (they keep their initialisation), and it may bring none the module does not have."""
    from stemkit.errors import StemkitError

    missing, unexpected = module.load_state_dict(weights, strict=not new)
    stray = [k for k in missing if not any(part in k for part in new)] + list(unexpected)
    if stray:
        raise StemkitError(f"init_from: the weights do not fit the model ({', '.join(stray[:4])})")


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dicts as one level of dotted keys, so a difference names the setting that differs."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
