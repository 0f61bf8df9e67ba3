"""Shared fixtures: one small rendered chorale dataset per test session (FluidSynth, a few seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """``../shared`` beside the checkout (where CI puts it), or ``STEMKIT_SHARED``."""
    for candidate in (os.environ.get("STEMKIT_SHARED"), REPO.parent / "shared", "/work/shared"):
        if candidate and (Path(candidate) / "data").is_dir():
            return Path(candidate)
    return None


def run_cli(*args: str, check: bool = False, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real ``stemkit`` command line in a subprocess, as a user would (in ``cwd`` if given)."""
    result = subprocess.run(
        [sys.executable, "-m", "stemkit", *args], capture_output=True, text=True, timeout=600, cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    if check and result.returncode != 0:
        raise AssertionError(f"stemkit {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def fit_tiny_lasaft(data: Path, root: Path, *overrides: str) -> subprocess.CompletedProcess:
    """Train ``configs/lasaft/chorales_tiny.yaml`` on ``data`` (train and valid) into ``root`` with the real CLI."""
    return run_cli("fit", "--config", str(REPO / "configs" / "lasaft" / "chorales_tiny.yaml"), "--data.train_dir", str(data),
                   "--data.valid_dir", str(data), "--trainer.default_root_dir", str(root),
                   "--trainer.logger.init_args.save_dir", str(root), *overrides, check=True)


@pytest.fixture()
def one_thread():
    """One torch thread for tests on tiny tensors: on a small machine a second thread only fights the
    other jobs (measured 10-50x slower); restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def cli(capsys):
    """Run ``stemkit ARGS`` in this process (the same ``main`` the console script calls, without the
    seconds of interpreter start-up); returns what ``run_cli`` returns. An uncaught exception — a
    traceback for a user — fails the test."""
    from stemkit.cli import main

    def run(*args: str, check: bool = False) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        result = subprocess.CompletedProcess(["stemkit", *args], code, out, err)
        if check and code != 0:
            raise AssertionError(f"stemkit {' '.join(map(str, args))} failed ({code}):\n{err}")
        return result

    return run


@pytest.fixture(scope="session")
def chorale_dir(tmp_path_factory) -> Path:
    """Three test-split string-quartet chorales of 4 s each, rendered with two workers."""
    out = tmp_path_factory.mktemp("chorales")
    run_cli("data", "chorales", "--out", str(out), "--num", "3", "--split", "test", "--seconds", "4", "--workers", "2", "--quiet", check=True)
    return out


def split_folders(chorale_dir: Path, root: Path) -> dict[str, Path]:
    """The session's three chorales as ``root/train`` (two) and a disjoint ``root/valid`` (one), by symlinks:
    split folders named as `stemkit data chorales --split` names them."""
    tracks = sorted(p for p in chorale_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(tracks) == 3
    out = {}
    for split, chosen in (("train", tracks[:2]), ("valid", tracks[2:])):
        (root / split).mkdir(parents=True)
        for track in chosen:
            (root / split / track.name).symlink_to(track, target_is_directory=True)
        out[split] = root / split
    return out


def tiny_chord_list(per_split: dict[str, int] | None = None) -> list[tuple[int, ...]]:
    """Chords over six pitches (C4–A4), the first few of each split: a chord set whose note bank renders in seconds."""
    from itertools import combinations

    from stemkit.data.chords import chord_split

    per_split = per_split or {"train": 6, "valid": 2, "test": 3}
    chosen: list[tuple[int, ...]] = []
    taken = dict.fromkeys(per_split, 0)
    for size in (3, 4, 2):
        for chord in combinations((60, 62, 64, 65, 67, 69), size):
            split = chord_split(chord)
            if taken[split] < per_split[split]:
                taken[split] += 1
                chosen.append(chord)
    return chosen


@pytest.fixture(scope="session")
def chord_dir(tmp_path_factory) -> Path:
    """A tiny chord set (``stemkit data chords`` through its Python API, with a chosen chord list): 11 chords
    × 4 mixtures, one soundfont, two workers."""
    from stemkit.data.chords import ChordsConfig, make_chords

    out = tmp_path_factory.mktemp("chords")
    make_chords(ChordsConfig(out, mixtures_per_chord=4, workers=2, progress=False, chords=tiny_chord_list()))
    return out
