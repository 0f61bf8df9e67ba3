"""Atomic file output: write to a temporary file beside the destination, then rename.

Why: a job that dies half way must never leave a truncated file that a later run mistakes for a
finished one, nor destroy the previous version. ``os.replace`` within one folder is atomic on POSIX.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``path`` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden staging folder; its files appear in ``folder`` together, only if the block succeeds.

    Why: the outputs of one input (a track's stems, a separation's targets) are one unit. A job
    killed half way must leave either the whole unit or nothing a re-run mistakes for finished
    work. When ``folder`` does not exist the staging folder is renamed into place (one atomic
    step); when it exists (other outputs of an earlier run) each staged file replaces its
    namesake with ``os.replace``. A staging folder left by a killed job is hidden, named
    ``.<folder>.partial-*``, and removed by :func:`remove_stale_staging` on the next run.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; give the permissions mkdir would
        if not folder.exists():
            os.rename(staging, folder)
        else:
            for item in sorted(staging.iterdir()):
                os.replace(item, folder / item.name)
            staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_stale_staging(parent: str | os.PathLike, name: str) -> None:
    """Remove the staging folders of ``name`` that a killed job left in ``parent`` (only ours: hidden, named for it)."""
    for stale in Path(parent).glob(f".{name}.partial-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
