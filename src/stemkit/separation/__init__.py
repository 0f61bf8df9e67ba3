"""Separation: the ``Separator`` protocol and oracle separators (mixture floor, IRM ceiling)."""

from stemkit.separation.base import Separator
from stemkit.separation.oracles import ideal_ratio_mask, mixture_oracle

__all__ = ["Separator", "ideal_ratio_mask", "mixture_oracle"]
