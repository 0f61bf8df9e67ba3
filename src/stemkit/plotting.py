"""Figures written like every other output: atomically, so a crash never leaves half a PNG."""

from __future__ import annotations

from pathlib import Path

from stemkit.atomic import atomic_output


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG via temp file + rename, then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path
