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
    ``g_i = ∂loss_i/∂output`` and ``⟨·⟩`` is an exponential moving average. Returning a surrogate
    (``(output · G).sum()``) instead of calling backward keeps it usable with Lightning's manual
    optimisation under any strategy (DDP included).
    """

    def __init__(self, weights: dict[str, float], scale: float = 1.0, decay: float = 0.999, eps: float = 1e-12) -> None:
        self.weights = {k: float(v) for k, v in weights.items() if v > 0}
        self.scale, self.decay, self.eps = scale, decay, eps
        self.averages: dict[str, float] = {}
        self.last_norms: dict[str, float] = {}

    def surrogate(self, losses: dict[str, torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        active = {k: v for k, v in losses.items() if k in self.weights}
        if not active:
            raise ValueError(f"no balanced loss among {sorted(losses)}")
        total_weight = sum(self.weights[k] for k in active)
        combined = torch.zeros_like(output)
        for name, loss in active.items():
            (grad,) = torch.autograd.grad(loss, output, retain_graph=True, allow_unused=True)
            if grad is None:
                continue
            # per-item norms averaged over the batch, as EnCodec does
            norm = float(grad.flatten(1).norm(dim=1).mean())
            previous = self.averages.get(name)
            self.averages[name] = norm if previous is None else self.decay * previous + (1 - self.decay) * norm
            self.last_norms[name] = norm
            combined = combined + (self.weights[name] / total_weight) * self.scale * grad / (self.averages[name] + self.eps)
        return (output * combined.detach()).sum()

    def state_dict(self) -> dict:
        return {"averages": dict(self.averages)}

    def load_state_dict(self, state: dict) -> None:
        self.averages = dict(state.get("averages", {}))
