"""Learning-rate schedules shared by the Lightning systems."""

from __future__ import annotations

import math

import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, decay: int, floor: float) -> dict:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor · lr`` over ``decay`` steps
    (``decay <= 0``: constant). Returns Lightning's per-step ``lr_scheduler`` entry."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if decay <= 0:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, decay))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
