"""``stemkit fit``: LightningCLI over any stemkit system and data module, configured by YAML.

Why LightningCLI: every constructor argument of the system, the data and the trainer becomes a
config field that the command line can override (``--model.lr 3e-4``, ``--trainer.devices 8
--trainer.strategy ddp``), and the resolved config is saved next to the logs, so runs reproduce.

What this adds on top: a checkpoint folder fixed under ``trainer.default_root_dir/checkpoints`` with a
``last.ckpt`` refreshed often, and automatic resume from it — a killed run continues where it stopped
when the same command is run again (``--ckpt_path none`` starts over). ``--trainer.fast_dev_run``
(a smoke test of a config) neither resumes nor writes a checkpoint, so it cannot disturb a real run.

Errors: a config that cannot be used (missing, binary, not YAML, not a mapping, an unknown key, a
value a constructor refuses) is one line, ``stemkit fit: error: ...``, exit status 2, like any other
command-line mistake; LightningCLI's own report (the whole usage text, or a traceback for a binary
file) hides the one line that matters. And a run that fails before its first training batch leaves
no trace: the loggers create ``<save_dir>/<name>/version_N`` before the data is even opened, so a
wrong data path used to leave one empty version folder per attempt, and the next real run was not
``version_0``. Only folders this run created are removed, and only while nothing was trained.
"""

from __future__ import annotations

import re
import shutil
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Sequence

import lightning as L
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from stemkit.errors import StemkitError

PROG = "stemkit fit"


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
            if isinstance(callback, ModelCheckpoint):
                if callback.dirpath is None:
                    callback.dirpath = str(folder)
                if self.trainer.fast_dev_run:
                    # Lightning's on_train_end still writes save_last under fast_dev_run (2.6), which put a
                    # smoke test's last.ckpt (or last-v1.ckpt) into the real run, to be resumed from next time
                    callback.save_last = False

    def resume_path(self) -> str | None:
        choice = self.config.get("ckpt_path", "auto")
        if choice in (None, "none", "None"):
            return None
        if choice == "auto":
            if self.trainer.fast_dev_run:  # a smoke test checks the config from scratch, not a run's state
                return None
            last = self._checkpoint_dir() / "last.ckpt"
            return str(last) if last.exists() else None
        return choice


def config_paths(argv: Sequence[str]) -> list[str]:
    """The values of every ``--config X`` / ``--config=X`` in ``argv``."""
    paths = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            paths.append(argv[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def check_config_file(path: str) -> None:
    """Refuse, in one line, a config file LightningCLI would choke on (a binary file is a traceback there)."""
    file = Path(path)
    if not file.is_file():
        raise StemkitError(f"config {path} does not exist" if not file.exists() else f"config {path} is not a file")
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise StemkitError(f"config {path} is not a text (YAML) file") from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise StemkitError(f"config {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(content, dict):
        kind = "empty" if content is None else f"a {type(content).__name__}"
        raise StemkitError(f"config {path} must be a YAML mapping (model:, data:, trainer:), but it is {kind}")


_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:", "Given value:",
          "- Expected a <class 'NoneType'>")


def one_line(message: str) -> str:
    """jsonargparse's multi-line report reduced to its informative lines, joined.

    ``model`` and ``data`` are ``Optional[subclass]`` to LightningCLI, so every error inside them is
    reported twice, once per member of the union, with the whole given value; only the reason is kept.
    """
    lines = [line.strip() for line in str(message).splitlines()]
    kept = [line.removeprefix("- ").strip() for line in lines if line and not line.startswith(_NOISE)]
    text = " ".join(kept) or str(message).strip()
    text = re.sub(r"""Parser key "([^"]+)": Problem with given class_path '(?:[\w.]+\.)?(\w+)':""", r"\1 (\2):", text)
    return re.sub(r'Parser key "([^"]+)":', r"\1:", text)


class _TrainingStarted(Callback):
    """Remembers whether a training batch finished: until then, a failed run has logged nothing worth keeping."""

    def __init__(self) -> None:
        self.started = False

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.started = True


class _LastAtStop(Callback):
    """Writes ``last.ckpt`` once more when training ends after the last periodic save.

    Why: Lightning's ``save_last`` writes at training's end only if it never wrote a last checkpoint, so a
    run that ``--trainer.max_time`` (or ``max_steps``) stops between two ``every_n_train_steps`` saves lost
    every step since the last one; on a CPU that was up to an hour of training. The resumed or exported
    run now starts from where it stopped."""

    def __init__(self) -> None:
        self.saved_step: int | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.saved_step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or self.saved_step is None or self.saved_step == trainer.global_step:
            return
        for callback in trainer.checkpoint_callbacks:
            if getattr(callback, "save_last", False) and callback.dirpath:
                name = callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION
                trainer.save_checkpoint(str(Path(callback.dirpath) / name))
                return


def _new_folders(trainer: L.Trainer) -> tuple[list[Path], list[Path]]:
    """The log folders this run is about to create (``version_N``) and their parents that do not exist yet.

    Read before ``fit``: the loggers only compute their version here, they create nothing.
    """
    runs, parents = [], []
    if trainer.global_rank != 0:
        return runs, parents
    folders = [getattr(logger, "log_dir", None) for logger in trainer.loggers]
    folders.append(str(Path(trainer.default_root_dir) / "checkpoints"))
    for index, folder in enumerate(folders):
        if not folder or Path(folder).exists():
            continue
        is_log = index < len(folders) - 1
        (runs if is_log else parents).append(Path(folder))
        path = Path(folder).parent
        while not path.exists() and path != path.parent:
            parents.append(path)
            path = path.parent
    return runs, parents


def _remove_new_folders(runs: list[Path], parents: list[Path]) -> None:
    """Delete the version folders this run created (all their content is this run's) and the new
    parents it left empty (``rmdir`` only: anything another process put there stays)."""
    for folder in runs:
        shutil.rmtree(folder, ignore_errors=True)
    for folder in sorted(set(parents), key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass


def _config_error(message: str) -> int:
    print(f"{PROG}: error: {message} (see {PROG} --help)", file=sys.stderr)
    return 2


def build_cli(argv: Sequence[str]) -> StemkitCLI:
    """Parse the config and instantiate model, data and trainer; raises ``StemkitError`` with one line."""
    for path in config_paths(argv):
        check_config_file(path)
    try:
        return StemkitCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=list(argv),
            run=False,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"reload_dataloaders_every_n_epochs": 1},
            parser_kwargs={"prog": PROG, "description": "Train a stemkit model from a YAML config (LightningCLI).",
                           "exit_on_error": False},
        )
    except ArgumentError as exc:  # a parse error: unknown key, wrong type, missing class
        raise StemkitError(one_line(exc.message)) from None
    except ValueError as exc:  # a constructor refused a value; jsonargparse wraps its exception
        root = exc
        while root.__cause__ is not None:
            root = root.__cause__
        raise StemkitError(one_line(str(root))) from None


def run_fit(argv: Sequence[str]) -> int:
    """Train from a YAML config; ``argv`` are LightningCLI arguments (``--config``, overrides)."""
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    try:
        cli = build_cli(argv)
    except StemkitError as exc:
        return _config_error(str(exc))
    resume = cli.resume_path()
    if resume:
        print(f"stemkit fit: resuming from {resume}")
    started = _TrainingStarted()
    cli.trainer.callbacks.extend([started, _LastAtStop()])
    runs, parents = _new_folders(cli.trainer)
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume)
    except BaseException:
        if not started.started:
            _remove_new_folders(runs, parents)
        raise
    return 0
