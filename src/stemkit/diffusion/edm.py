"""EDM preconditioning and training loss (Karras et al. 2022, "Elucidating the Design Space…", §5, Table 1).

A raw network ``F`` is hard to train across noise levels from σ ≈ 0.002 to σ ≈ 80: its input and its
ideal output change scale by four orders of magnitude. EDM fixes both by wrapping ``F`` in a denoiser

    D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ), cond)

with the scalings chosen so that ``F``'s input and training target both have unit variance when the data
have standard deviation ``σ_data``. The noise level is drawn log-normally during training
(``ln σ ~ N(P_mean, P_std²)``), which spends the budget where the loss can still fall, and the loss
weight λ(σ) = 1 / c_out(σ)² makes every σ contribute a unit-scale loss in ``F``-space.

Nothing here knows about audio: ``x`` is any tensor ``[B, ...]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol

import torch
from torch import Tensor


class RawNetwork(Protocol):
    """The network EDM preconditions: ``F(x_in [B, ...], c_noise [B], cond) -> [B, ...]`` (same shape as
    ``x_in``); ``cond`` is a mapping of named conditions (:mod:`stemkit.diffusion.conditions`), or None."""

    def __call__(self, x_in: Tensor, c_noise: Tensor, cond: Any) -> Tensor: ...


Denoiser = Callable[[Tensor, Tensor, Any], Tensor]
"""``D(x, sigma [B], cond) -> x0_hat``: what samplers and guidance consume (EDM convention). ``cond``
is passed through untouched: a mapping of named conditions, a bare tensor, or None."""


@dataclass
class EDMConfig:
    """The EDM constants (paper defaults). ``sigma_data`` is the data's standard deviation: set it to
    the measured std of what the model generates (latents, log-mels…), since the scalings assume it."""

    sigma_data: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    p_mean: float = -1.2
    p_std: float = 1.2

    def to_dict(self) -> dict[str, float]:
        """Plain floats, for the JSON/YAML that travels beside a checkpoint."""
        return {key: float(value) for key, value in asdict(self).items()}


def edm_scalings(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(c_skip, c_out, c_in, c_noise)`` for noise levels ``sigma`` (any shape, kept).

    ``c_in`` normalises the noisy input to unit variance, ``c_skip``/``c_out`` mix input and network
    output so the network's target has unit variance, and ``c_noise = ¼ ln σ`` feeds σ to the network
    on a gentle scale. Identities worth knowing: ``c_skip + (c_out/σ_data)² = 1`` and
    ``c_in²·(σ² + σ_data²) = 1``; as σ → 0, ``c_skip → 1`` and ``c_out → 0``, so D(x; σ) → x.
    """
    sigma = torch.as_tensor(sigma)
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = total.rsqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """λ(σ) = (σ² + σ_data²) / (σ·σ_data)² = 1 / c_out², so the weighted D-loss is the plain F-loss."""
    sigma = torch.as_tensor(sigma)
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_training_sigmas(
    n: int,
    p_mean: float,
    p_std: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` training noise levels with ``ln σ ~ N(p_mean, p_std²)`` (float32, shape ``[n]``)."""
    if generator is not None and device is None:
        device = generator.device
    normal = torch.randn(n, generator=generator, device=device)
    return (normal * p_std + p_mean).exp()


def sigma_per_item(sigma: float | Tensor, batch: int, like: Tensor) -> Tensor:
    """Broadcast a float, 0-dim or ``[B]`` σ to a ``[B]`` tensor with ``like``'s dtype and device.

    Samplers and guidance pass σ in all three forms; normalising it once keeps the networks simple.
    """
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] not in (1, batch)):
        raise ValueError(f"sigma must be a float, a 0-dim tensor or shape [{batch}], got shape {tuple(sigma.shape)}")
    return sigma.reshape(-1).expand(batch)


def _over_trailing(values: Tensor, like: Tensor) -> Tensor:
    """``[B]`` → ``[B, 1, …, 1]`` so per-item scalars broadcast against ``like`` of any rank."""
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1)))


class EDMDenoiser(torch.nn.Module):
    """A raw network wrapped in EDM preconditioning: callable as ``D(x, sigma, cond) -> x0_hat``.

    ``net(x_in, c_noise, cond)`` receives the unit-variance input and ``c_noise = ¼ ln σ`` (shape
    ``[B]``) and returns a tensor shaped like ``x_in``. The samplers in :mod:`stemkit.diffusion.samplers`
    take this object directly; :meth:`loss` is the whole training objective.
    """

    def __init__(self, net: torch.nn.Module | RawNetwork, config: EDMConfig | None = None) -> None:
        super().__init__()
        self.net = net
        self.config = config if config is not None else EDMConfig()

    def forward(self, x: Tensor, sigma: float | Tensor, cond: Any = None) -> Tensor:
        """The denoised estimate ``D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise, cond)``."""
        sigma = sigma_per_item(sigma, x.shape[0], x)
        c_skip, c_out, c_in, c_noise = edm_scalings(sigma, self.config.sigma_data)
        out = self.net(_over_trailing(c_in, x) * x, c_noise, cond)
        return _over_trailing(c_skip, x) * x + _over_trailing(c_out, x) * out

    def loss(
        self,
        x0: Tensor,
        cond: Any = None,
        generator: torch.Generator | None = None,
        reduce: bool = True,
    ) -> Tensor:
        """The EDM training loss on clean data ``x0 [B, ...]``: the mean over items of
        ``λ(σ)·mean((D(x0 + n; σ) − x0)²)`` with ``ln σ ~ N(P_mean, P_std²)`` and ``n ~ N(0, σ²I)``.

        Because λ = 1/c_out², this is exactly the *unweighted* MSE of the raw network's output
        ``F(c_in·x, c_noise)`` against its effective target ``(x0 − c_skip·x) / c_out`` with
        ``x = x0 + n``: each noise level contributes on the same unit scale. ``reduce=False`` returns
        the per-item losses ``[B]``. With ``generator``, σ is drawn first and the noise second, so a
        fixed seed reproduces a loss exactly.
        """
        batch = x0.shape[0]
        sigma = sample_training_sigmas(batch, self.config.p_mean, self.config.p_std, generator=generator, device=x0.device)
        sigma = sigma.to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        noisy = x0 + _over_trailing(sigma, x0) * noise
        denoised = self(noisy, sigma, cond)
        per_item = (denoised - x0).pow(2).reshape(batch, -1).mean(dim=1)
        per_item = loss_weight(sigma, self.config.sigma_data) * per_item
        return per_item.mean() if reduce else per_item

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value:g}" for key, value in self.config.to_dict().items())


__all__ = [
    "EDMConfig",
    "EDMDenoiser",
    "Denoiser",
    "RawNetwork",
    "edm_scalings",
    "loss_weight",
    "sample_training_sigmas",
    "sigma_per_item",
]
