"""Batch-job plumbing shared by every command that turns many inputs into files (separate, synth, …).

Why one module: each such command needs the same things, and copies drift — collecting inputs from
files, folders and chorale datasets with stable names; ``--shard I/N`` so several machines split one
folder; skipping inputs whose outputs exist so an interrupted batch resumes (``--overwrite`` redoes
them); choosing a device; a progress bar; and one report of what was written and skipped.

A command supplies only what is its own: which files are inputs, how a dataset track becomes inputs,
and the work for one input, which returns the files it wrote (none when everything was there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import torch
from tqdm.auto import tqdm

from stemkit.errors import StemkitError

T = TypeVar("T")


@dataclass
class JobReport:
    """What a batch did: files written, and the names of inputs skipped because their outputs existed."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self, where: str | Path, redo_hint: str = "--overwrite replaces them") -> str:
        text = f"wrote {len(self.written)} file(s) to {where}"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} input(s) whose outputs exist ({redo_hint})"
        return text


@dataclass(frozen=True)
class JobInput:
    """One input file and the name its outputs are filed under."""

    path: Path
    name: str


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an unavailable choice is a one-line error."""
    if str(device) != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise StemkitError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise StemkitError("--device cuda asked for, but no CUDA GPU is available")
        if chosen.type == "mps" and not torch.backends.mps.is_available():
            raise StemkitError("--device mps asked for, but Apple MPS is not available")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` (1-based) → ``(I - 1, N)``; ``None`` → the whole job."""
    if not text:
        return 0, 1
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise StemkitError(f"--shard must look like I/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= index <= count:
        raise StemkitError(f"--shard {text}: need 1 ≤ I ≤ N")
    return index - 1, count


def take_shard(items: Sequence[T], shard: tuple[int, int]) -> list[T]:
    """Every N-th item from the I-th: shards are disjoint, cover everything and stay balanced."""
    index, count = shard
    return list(items[index::count])


def check_inputs_exist(paths: Iterable[str | Path]) -> None:
    """A typo fails at once, before a model is loaded."""
    for raw in paths:
        if not Path(raw).exists():
            raise StemkitError(f"input not found: {raw}")


def collect_inputs(
    paths: Iterable[str | Path],
    suffixes: Iterable[str],
    what: str,
    from_dataset: Callable[[Path], list[JobInput]] | None = None,
    recursive: bool = False,
    any_file: bool = False,
) -> list[JobInput]:
    """The inputs named by ``paths``, in a stable order, each once.

    A file named directly must have one of ``suffixes`` (``what`` names them in errors) unless
    ``any_file`` (a decoder may read more formats than a folder scan should pick up); it is named by its stem. A
    folder that is a chorale dataset gives ``from_dataset(folder)``; any other folder gives its files
    with those suffixes (in sub-folders too if ``recursive``, named ``sub_dir_file``). Two different
    inputs that would file their outputs under the same name are an error, not a silent overwrite.
    """
    from stemkit.data.layout import is_dataset

    suffixes = {s.lower() for s in suffixes}
    found: list[JobInput] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            if not any_file and path.suffix.lower() not in suffixes:
                raise StemkitError(f"{path}: expected {what} ({', '.join(sorted(suffixes))})")
            found.append(JobInput(path, path.stem))
        elif path.is_dir():
            if from_dataset is not None and is_dataset(path):
                found.extend(from_dataset(path))
                continue
            pattern = path.rglob("*") if recursive else path.iterdir()
            files = sorted(p for p in pattern if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))
            if not files:
                raise StemkitError(f"no {what} in folder {path}")
            found.extend(JobInput(p, str(p.relative_to(path).with_suffix("")).replace("/", "_")) for p in files)
        else:
            raise StemkitError(f"input not found: {path}")
    if not found:
        raise StemkitError(f"no {what} in the inputs")
    names: dict[str, Path] = {}
    for item in found:
        if names.setdefault(item.name, item.path) != item.path:
            raise StemkitError(f"two inputs would write the same output {item.name!r}: {names[item.name]} and {item.path}")
    return list(dict.fromkeys(found))


def run_batch(
    items: Sequence[JobInput],
    work: Callable[[JobInput], list[Path]],
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    desc: str = "files",
) -> JobReport:
    """Run ``work`` on this shard's items, behind a progress bar; ``work`` returns the files it
    wrote, or nothing when the item's outputs all existed (it is then reported as skipped)."""
    report = JobReport()
    mine = take_shard(items, shard)
    for item in tqdm(mine, desc=desc, unit="file", disable=not progress or len(mine) < 2):
        written = work(item)
        if written:
            report.written.extend(written)
        else:
            report.skipped.append(item.name)
    return report
