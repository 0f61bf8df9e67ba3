"""Separation: the ``SupportsSeparate`` protocol, oracles (mixture floor, IRM ceiling), LaSAFT, the ``Separator``,
peer adapters and progressive inference."""

from stemkit.separation.base import SupportsSeparate
from stemkit.separation.oracles import ideal_ratio_mask, mixture_oracle
from stemkit.separation.progressive import ProgressiveSeparator
from stemkit.separation.separator import Separator

__all__ = ["ProgressiveSeparator", "Separator", "SupportsSeparate", "ideal_ratio_mask", "mixture_oracle"]
