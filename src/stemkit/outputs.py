"""Check where a command will write before it starts working.

Why: a job that computes for an hour and then dies on ``--out`` loses the hour, and a traceback
tells a user nothing. Every command calls these first, so an unwritable place, a file where a
folder belongs (or the reverse) or a wrong suffix is one line before any work. The check is a
real write (a probe file), not ``os.access``: permission bits say nothing to root, and nothing
about read-only mounts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from stemkit.errors import StemkitError


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Make sure ``path`` is (or can become) a writable folder; creates it. Returns it as a Path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StemkitError(f"{option} {path} is a file, not a folder: choose a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".stemkit-write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise StemkitError(f"cannot write to {path}: {exc.strerror or exc} (choose another {option})") from None
    return path


def check_output_file(path: str | os.PathLike, option: str, suffixes: tuple[str, ...] | None = None,
                      overwrite: bool = True) -> Path:
    """Make sure the file ``path`` can be written: its folder is writable, it is not a folder, its
    suffix is one of ``suffixes`` (when given) and, unless ``overwrite``, it does not exist yet."""
    path = Path(path)
    if path.is_dir():
        raise StemkitError(f"{option} {path} is a folder: give a file name")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise StemkitError(f"{option} {path}: the file must end in {' or '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise StemkitError(f"{path} exists: pass --overwrite to replace it")
    check_output_dir(path.parent, option)
    return path
