"""``stemkit fit``: LightningCLI over any stemkit system and data module, configured by YAML.

Why LightningCLI: every constructor argument of the system, the data and the trainer becomes a
config field that the command line can override (``--model.lr 3e-4``, ``--trainer.devices 8
--trainer.strategy ddp``), and the resolved config is saved next to the logs, so runs reproduce.

What this adds on top: a checkpoint folder fixed under ``trainer.default_root_dir/checkpoints`` with a
``last.ckpt`` refreshed often, and automatic resume from it — a killed run continues where it stopped
when the same command is run again (``--ckpt_path none`` starts over).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI


class StemkitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--ckpt_path",
            type=str,
            default="auto",
            help="checkpoint to resume from: auto (last.ckpt of this run if there is one), none, last, or a path",
        )

    def _checkpoint_dir(self) -> Path:
        return Path(self.trainer.default_root_dir) / "checkpoints"

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        folder = self._checkpoint_dir()
        for callback in self.trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(folder)

    def resume_path(self) -> str | None:
        choice = self.config.get("ckpt_path", "auto")
        if choice in (None, "none", "None"):
            return None
        if choice == "auto":
            last = self._checkpoint_dir() / "last.ckpt"
            return str(last) if last.exists() else None
        return choice


def run_fit(argv: Sequence[str]) -> int:
    """Train from a YAML config; ``argv`` are LightningCLI arguments (``--config``, overrides)."""
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    cli = StemkitCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=list(argv),
        run=False,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"reload_dataloaders_every_n_epochs": 1},
        parser_kwargs={"prog": "stemkit fit", "description": "Train a stemkit model from a YAML config (LightningCLI)."},
    )
    resume = cli.resume_path()
    if resume:
        print(f"stemkit fit: resuming from {resume}")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume)
    return 0
