"""DisMix's loss terms, each a plain function of tensors so each can be checked on known inputs.

The objective is the negative ELBO (mixture and per-source reconstruction, the KL of the timbre
posterior to N(0, I), the Gaussian tie of the mixture embedding to the sum of source latents) plus
the BCE of the pitch logits (taken *before* binarisation, as the author advises) and the diagonal
Barlow-Twins term between query embedding and timbre latent. The paper found no weights necessary.
The functions below sum over each term's natural elements (mel bins × frames, latent dimensions, pitch
classes) and average over mixtures — a weightless ELBO with unit-variance Gaussians. The paper does not
say how its terms are reduced, and that choice is a weighting in disguise: summed, a source's 1 280 mel
elements outweigh its 52 pitch classes 25 to 1, the shared encoders serve reconstruction alone and the
transcriber stalls at the label prior (measured: BENCHMARKS.md, DisMix). The training system therefore
divides each term by its element count (``per_element``), except the BCE, which stays the sum over the
pitch classes — the −log-likelihood of a source's pitch set (``bce_over_classes``): averaged over classes
too, it left the transcriber learning about four times slower with no gain in reconstruction (measured).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: σ_m of N(e_m; Σ s_i, σ_m² I), the paper's value
MIXTURE_SIGMA = 0.25


def gaussian_reconstruction(estimate: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """½‖estimate − target‖² summed over each item's last two axes (a mel), weighted per item, then
    summed over items and divided by the leading (batch) size: a unit-variance Gaussian's −log p up to a constant."""
    per_item = 0.5 * (estimate - target).pow(2).sum(dim=(-2, -1))
    if weight is not None:
        per_item = per_item * weight
    return per_item.sum() / estimate.shape[0]


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) summed over the last axis, weighted per item, per batch item."""
    per_item = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)
    if weight is not None:
        per_item = per_item * weight
    return per_item.sum() / mean.shape[0]


def mixture_tie(e_m: torch.Tensor, source_sum: torch.Tensor, sigma: float = MIXTURE_SIGMA) -> torch.Tensor:
    """−log N(e_m; Σ s_i, σ² I) up to a constant: ‖e_m − Σ s_i‖² / 2σ², per batch item."""
    return (e_m - source_sum).pow(2).sum(dim=-1).mean() / (2.0 * sigma**2)


def pitch_bce(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of the pitch logits against multi-hot labels, summed over classes, per batch item."""
    per_item = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").sum(dim=-1)
    if weight is not None:
        per_item = per_item * weight
    return per_item.sum() / logits.shape[0]


def barlow_twins_diagonal(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Σ_d (1 − C_dd)², C_dd the correlation over the items of ``a[:, d]`` and ``b[:, d]`` (``[N, D]`` each).

    Only the invariance (diagonal) term of Barlow Twins: it asks each timbre dimension to move with the
    same dimension of the query embedding across sources, which keeps the KL prior from emptying τ.
    """
    if a.shape[0] < 2:
        return a.new_zeros(())
    za = (a - a.mean(0)) / (a.std(0, unbiased=False) + eps)
    zb = (b - b.mean(0)) / (b.std(0, unbiased=False) + eps)
    correlation = (za * zb).mean(0)
    return (1.0 - correlation).pow(2).sum()
