"""Separation: the ``SupportsSeparate`` protocol, oracles (mixture floor, IRM ceiling), LaSAFT and the ``Separator``."""

from stemkit.separation.base import SupportsSeparate
from stemkit.separation.oracles import ideal_ratio_mask, mixture_oracle
from stemkit.separation.separator import Separator

__all__ = ["Separator", "SupportsSeparate", "ideal_ratio_mask", "mixture_oracle"]
