"""VAE training losses: multi-resolution STFT, an STFT discriminator, and the EnCodec loss balancer.

Why a balancer (Défossez et al. 2022, EnCodec §3.4): the reconstruction, spectral, adversarial and
feature-matching losses live on different scales that drift during training, so fixed weights are
fragile. The balancer takes each loss's gradient with respect to the decoder output, normalises it
by a running average of its norm, and mixes the normalised gradients with the given weights — a
weight is then the *fraction* of the total gradient that loss contributes, whatever its scale. The
KL term acts on the latent, not on the decoder output, so it cannot be balanced that way and is
added outside with its own weight.
"""

from __future__ import annotations

import torch
from torch import nn

from stemkit.audio.spectral import stft


def multi_resolution_stft_loss(estimate: torch.Tensor, target: torch.Tensor,
                               fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128),
                               eps: float = 1e-7) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over resolutions (hop = n_fft / 4).

    Small FFTs catch transients and large ones the harmonics: the waveform losses alone would let
    the phase-sensitive L1 dominate and blur pitched sound.
    """
    total = estimate.new_zeros(())
    for n_fft in fft_sizes:
        est = stft(estimate, n_fft, n_fft // 4).abs()
        ref = stft(target, n_fft, n_fft // 4).abs()
        convergence = torch.linalg.norm((ref - est).flatten(1), dim=1) / (torch.linalg.norm(ref.flatten(1), dim=1) + eps)
        log_mag = (torch.log(ref + eps) - torch.log(est + eps)).abs().mean()
        total = total + convergence.mean() + log_mag
    return total / len(fft_sizes)


class STFTDiscriminator(nn.Module):
    """A VGG-style 2-D CNN on the log-magnitude STFT; returns logits and its feature maps.

    Feature maps are returned for the feature-matching (perceptual) loss: matching the
    discriminator's view of real and generated audio layer by layer.
    """

    def __init__(self, channels: int = 16, layers: int = 4, n_fft: int = 1024, hop: int = 256) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        blocks, width = [], 1
        for i in range(layers):
            out = channels * 2**i
            blocks.append(nn.Sequential(
                nn.utils.parametrizations.weight_norm(nn.Conv2d(width, out, 3, padding=1)),
                nn.LeakyReLU(0.2),
                nn.utils.parametrizations.weight_norm(nn.Conv2d(out, out, 3, stride=(2, 2) if i else (2, 1), padding=1)),
                nn.LeakyReLU(0.2),
            ))
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = stft(audio.reshape(audio.shape[0], -1), self.n_fft, self.hop).abs()
        x = torch.log(spec + 1e-5).unsqueeze(1)
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.head(x), features


def discriminator_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return torch.relu(1.0 - real_logits).mean() + torch.relu(1.0 + fake_logits).mean()


def generator_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def feature_matching_loss(real_features: list[torch.Tensor], fake_features: list[torch.Tensor]) -> torch.Tensor:
    """L1 between feature maps, each relative to the real map's mean magnitude."""
    total = fake_features[0].new_zeros(())
    for real, fake in zip(real_features, fake_features):
        total = total + (real.detach() - fake).abs().mean() / (real.detach().abs().mean() + 1e-5)
    return total / len(real_features)


class LossBalancer:
    """EnCodec's gradient balancer over losses that depend on one tensor (the decoder output).

    ``surrogate(losses, output)`` returns a scalar whose gradient with respect to the network
    parameters equals ``Σ_i w_i/Σw · scale · g_i / ⟨‖g_i‖⟩`` back-propagated through ``output``, where
    ``g_i = ∂loss_i/∂output`` and ``⟨·⟩`` is a bias-corrected exponential moving average. Returning a
    surrogate (``(output · G).sum()``) instead of calling backward keeps it usable with Lightning's
    manual optimisation under any strategy (DDP included).

    Why bias-corrected: an EMA seeded with its first value and updated as ``a ← d·a + (1−d)·x``
    keeps weight ``d^(n−1)`` on that first value after ``n`` steps — with ``d = 0.999`` still 61 %
    after 500 steps, so a loss that starts late (the adversarial terms) or whose first gradients are
    atypical is normalised by a stale number for thousands of steps. Like EnCodec (audiocraft's
    ``averager``), we keep the decayed sum of the norms and the decayed sum of their weights (a
    decayed count) and divide: ``⟨x⟩_n = Σ_k d^(n−k) x_k / Σ_k d^(n−k)``, the exact weighted mean of
    every norm seen so far, with no seed bias and no warm-up.

    Why all-reduce: under DDP every rank sees a different batch, so per-rank norms (and averages)
    would drift apart and the ranks would scale their gradients differently before DDP averages
    them. When ``torch.distributed`` is initialised, each step's per-loss norms are averaged over
    the ranks before they enter the running average, so every rank keeps the same state.
    """

    def __init__(self, weights: dict[str, float], scale: float = 1.0, decay: float = 0.999, eps: float = 1e-12) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.weights = {k: float(v) for k, v in weights.items() if v > 0}
        self.scale, self.decay, self.eps = scale, decay, eps
        self.totals: dict[str, float] = {}  #: Σ_k decay^(n−k) · norm_k per loss
        self.counts: dict[str, float] = {}  #: Σ_k decay^(n−k) per loss (the decayed number of steps)
        self.last_norms: dict[str, float] = {}  #: this step's norms (averaged over ranks)

    @property
    def averages(self) -> dict[str, float]:
        """The running bias-corrected average of each loss's gradient norm."""
        return {name: self.totals[name] / self.counts[name] for name in self.totals}

    def update(self, norms: dict[str, float]) -> dict[str, float]:
        """Fold one step's norms into the running averages and return the updated averages.

        Only the losses present this step decay, so a loss that joins later (or skips a step) keeps
        an average over its own steps.
        """
        for name, norm in norms.items():
            self.totals[name] = self.decay * self.totals.get(name, 0.0) + float(norm)
            self.counts[name] = self.decay * self.counts.get(name, 0.0) + 1.0
        return {name: self.totals[name] / self.counts[name] for name in norms}

    @staticmethod
    def _average_over_ranks(norms: dict[str, torch.Tensor | None], like: torch.Tensor) -> dict[str, float]:
        """Per-loss norms averaged over the ranks that have them (one all-reduce for all losses).

        A loss whose gradient is unused on a rank contributes nothing there; the mean is over the
        ranks that did compute it, and a loss no rank computed is left out.
        """
        names = list(norms)
        values = torch.stack([norms[n].detach().to(like.device, torch.float64) if norms[n] is not None
                              else like.new_zeros((), dtype=torch.float64) for n in names])
        present = torch.tensor([float(norms[n] is not None) for n in names], dtype=torch.float64, device=like.device)
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            packed = torch.cat([values, present])
            dist.all_reduce(packed, op=dist.ReduceOp.SUM)
            values, present = packed[: len(names)], packed[len(names):]
        sums, counts = values.tolist(), present.tolist()
        return {n: s / c for n, s, c in zip(names, sums, counts) if c > 0}

    def surrogate(self, losses: dict[str, torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        active = {k: v for k, v in losses.items() if k in self.weights}
        if not active:
            raise ValueError(f"no balanced loss among {sorted(losses)}")
        total_weight = sum(self.weights[k] for k in active)
        grads: dict[str, torch.Tensor | None] = {}
        local: dict[str, torch.Tensor | None] = {}
        for name, loss in active.items():
            (grad,) = torch.autograd.grad(loss, output, retain_graph=True, allow_unused=True)
            grads[name] = grad
            # per-item norms averaged over the batch, as EnCodec does
            local[name] = None if grad is None else grad.flatten(1).norm(dim=1).mean()
        norms = self._average_over_ranks(local, output)
        averages = self.update(norms)
        self.last_norms = norms
        combined = torch.zeros_like(output)
        for name, grad in grads.items():
            if grad is None:
                continue
            combined = combined + (self.weights[name] / total_weight) * self.scale * grad / (averages[name] + self.eps)
        return (output * combined.detach()).sum()

    def state_dict(self) -> dict:
        return {"totals": dict(self.totals), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        if "totals" in state:
            self.totals, self.counts = dict(state["totals"]), dict(state.get("counts", {}))
            missing = set(self.totals) ^ set(self.counts)
            if missing:
                raise ValueError(f"balancer state has totals and counts for different losses: {sorted(missing)}")
        else:
            # checkpoints from the seeded-EMA balancer stored only the averages; resume them as one
            # observation each, so the next steps' norms soon outweigh the old (seed-biased) value
            averages = dict(state.get("averages", {}))
            self.totals, self.counts = averages, {name: 1.0 for name in averages}
