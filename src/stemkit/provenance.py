"""Facts about the run that made a model: stemkit version, source commit, hardware.

Why: a model card must say what trained a model. ``stemkit fit`` stores these facts in every
checkpoint it writes, and ``stemkit export`` copies them into the model's JSON, so the numbers on a
card can be traced to code and machine without anyone writing them down by hand.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from stemkit import __version__


def source_commit() -> str | None:
    """The git commit of the stemkit source tree in use (``+dirty`` with uncommitted changes), if it is a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) if commit else None


def hardware(devices: int | None = None, accelerator: str | None = None) -> str:
    """E.g. ``1 x NVIDIA H200`` or ``CPU, 2 x86_64 cores``."""
    import torch

    if accelerator in (None, "gpu", "cuda", "auto") and torch.cuda.is_available():
        count = devices or torch.cuda.device_count()
        return f"{count} x {torch.cuda.get_device_name(0)}"
    return f"CPU, {os.cpu_count()} {platform.machine()} cores"


def runtime_facts(devices: int | None = None, accelerator: str | None = None) -> dict[str, Any]:
    """What a checkpoint records about the code and machine that wrote it."""
    facts = {"stemkit": __version__, "commit": source_commit(), "hardware": hardware(devices, accelerator)}
    return {k: v for k, v in facts.items() if v is not None}
