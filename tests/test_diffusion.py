"""The EDM core where the answer is known: the schedule formula, the preconditioning algebra, sampling
with the closed-form denoiser of Gaussian data, guidance arithmetic, and a tiny model that learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stemkit.diffusion import (
    SAMPLERS,
    ClassifierFreeGuidance,
    EDMConfig,
    EDMDenoiser,
    edm_scalings,
    karras_sigmas,
    loss_weight,
    sample,
    sample_heun,
    sample_training_sigmas,
)

MU, STD = 0.5, 1.5  # the Gaussian "data" N(μ, s²I) whose ideal denoiser is closed-form


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only fights other jobs


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor, cond=None) -> torch.Tensor:
    """D*(x; σ) = E[x0 | x] for x0 ~ N(μ, s²I): shrink towards μ by s²/(s²+σ²)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return MU + STD**2 / (STD**2 + sigma**2) * (x - MU)


# ---------------------------------------------------------------- schedule


@pytest.mark.parametrize("steps,rho", [(2, 7.0), (5, 7.0), (18, 7.0), (10, 3.0), (7, 1.0)])
def test_karras_schedule_matches_formula(steps, rho):
    smin, smax = 0.002, 80.0
    i = np.arange(steps, dtype=np.float64)
    expected = (smax ** (1 / rho) + i / (steps - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    expected = np.append(expected, 0.0)
    got = karras_sigmas(steps, smin, smax, rho).double().numpy()
    assert got.shape == (steps + 1,)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0] == pytest.approx(smax) and got[-2] == pytest.approx(smin) and got[-1] == 0.0
    assert np.all(np.diff(got) < 0)
    if rho == 1.0:
        np.testing.assert_allclose(got[:-1], np.linspace(smax, smin, steps), rtol=1e-6)


def test_karras_schedule_one_step_and_bad_arguments():
    assert karras_sigmas(1).tolist() == [80.0, 0.0]
    for kwargs in ({"steps": 0}, {"steps": 2.5}, {"steps": 4, "sigma_min": 0.0}, {"steps": 4, "sigma_min": 90.0},
                   {"steps": 4, "rho": 0.0}, {"steps": 4, "rho": -1.0}):
        with pytest.raises(ValueError):
            karras_sigmas(**kwargs)


# ---------------------------------------------------------------- preconditioning and loss


def test_scalings_formulas_and_identities():
    sigma = torch.tensor([1e-4, 0.002, 0.3, 0.5, 1.0, 80.0], dtype=torch.float64)
    sd = 0.5
    c_skip, c_out, c_in, c_noise = edm_scalings(sigma, sd)
    s = sigma.numpy()
    np.testing.assert_allclose(c_skip, sd**2 / (s**2 + sd**2))
    np.testing.assert_allclose(c_out, s * sd / np.sqrt(s**2 + sd**2))
    np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + sd**2))
    np.testing.assert_allclose(c_noise, np.log(s) / 4)
    torch.testing.assert_close(c_skip + (c_out / sd) ** 2, torch.ones_like(sigma))  # unit-variance target
    torch.testing.assert_close(loss_weight(sigma, sd) * c_out**2, torch.ones_like(sigma))  # λ = 1/c_out²
    assert c_skip[3] == pytest.approx(0.5)  # σ = σ_data: half skip
    # σ → 0: D → x whatever the network says
    denoiser = EDMDenoiser(lambda x_in, c_noise, cond: torch.full_like(x_in, 7.0), EDMConfig(sigma_data=sd))
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    torch.testing.assert_close(denoiser(x, 1e-9), x, atol=1e-7, rtol=0)


def test_training_sigmas_are_log_normal():
    sigmas = sample_training_sigmas(20000, -1.2, 1.2, generator=torch.Generator().manual_seed(0))
    assert sigmas.shape == (20000,) and bool((sigmas > 0).all())
    assert sigmas.log().mean().item() == pytest.approx(-1.2, abs=0.03)
    assert sigmas.log().std().item() == pytest.approx(1.2, abs=0.03)


class TinyNet(torch.nn.Module):
    """A per-position MLP of (x_in, c_noise, cond): enough to be a real F for tests."""

    def __init__(self, channels: int = 1, hidden: int = 32, cond_dim: int = 0) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(channels + 1 + cond_dim, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, channels),
        )

    def forward(self, x_in, c_noise, cond=None):  # x_in [B, C, T]
        b, _, t = x_in.shape
        parts = [x_in.transpose(1, 2), c_noise.reshape(b, 1, 1).expand(b, t, 1)]
        if cond is not None:
            parts.append(cond.reshape(b, 1, -1).expand(b, t, -1))
        return self.layers(torch.cat(parts, dim=-1)).transpose(1, 2)


def test_loss_equals_unweighted_f_space_mse():
    torch.manual_seed(0)
    config = EDMConfig(sigma_data=0.7)
    net = TinyNet(channels=2).double()
    denoiser = EDMDenoiser(net, config)
    x0 = torch.randn(6, 2, 5, dtype=torch.float64) * 0.7
    loss = denoiser.loss(x0, generator=torch.Generator().manual_seed(3), reduce=False)
    assert loss.shape == (6,)
    # the same draws, in the documented order: σ first, then the noise
    g = torch.Generator().manual_seed(3)
    sigma = sample_training_sigmas(6, config.p_mean, config.p_std, generator=g).double()
    x = x0 + sigma[:, None, None] * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = (c[:, None, None] for c in edm_scalings(sigma, config.sigma_data))
    target = (x0 - c_skip * x) / c_out
    f_mse = (net(c_in * x, c_noise.reshape(-1), None) - target).pow(2).mean(dim=(1, 2))
    torch.testing.assert_close(loss, f_mse)
    reduced = denoiser.loss(x0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(reduced, f_mse.mean())
    assert denoiser.config is config and config.to_dict()["sigma_data"] == pytest.approx(0.7)


def test_preconditioning_reproduces_the_ideal_denoiser():
    """Write D* as a raw F network (what it must output given c_in·x and c_noise) and wrap it:
    EDMDenoiser must give back D* exactly, so the scalings are wired the right way round."""
    sd = 0.5

    def ideal_f(x_in, c_noise, cond):
        sigma = torch.exp(4 * c_noise)
        c_skip, c_out, c_in, _ = (c[:, None] for c in edm_scalings(sigma, sd))
        x = x_in / c_in
        return (gaussian_denoiser(x, sigma) - c_skip * x) / c_out

    denoiser = EDMDenoiser(ideal_f, EDMConfig(sigma_data=sd))
    x = torch.randn(5, 4, dtype=torch.float64) * 10
    sigma = torch.tensor([0.002, 0.1, 1.0, 10.0, 80.0], dtype=torch.float64)
    torch.testing.assert_close(denoiser(x, sigma), gaussian_denoiser(x, sigma))
    torch.testing.assert_close(denoiser(x, torch.tensor(3.0)), gaussian_denoiser(x, torch.full((5,), 3.0)))


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("sampler,steps", [("heun", 18), ("euler", 200), ("dpmpp2m", 25)])
def test_samplers_reproduce_gaussian_data(sampler, steps):
    """16 000 values from σ_max = 80: mean and std of N(0.5, 1.5²). The tolerance on the std covers
    the sampler's own discretisation error (measured: Heun-18 +4 %, DPM++-25 +2 %, Euler-200 −1 %)
    plus ~1 % sampling noise; the convergence test below pins that error down exactly."""
    samples = sample(gaussian_denoiser, (4000, 4), steps=steps, sampler=sampler,
                     generator=torch.Generator().manual_seed(0)).double()
    assert samples.mean().item() == pytest.approx(MU, abs=0.05)
    assert samples.std().item() == pytest.approx(STD, rel=0.06)


def _gain_error(sampler: str, steps: int) -> float:
    """For Gaussian data the ODE is linear, x0 − μ = s/√(s² + σ_max²)·(x_T − μ); a sampler's relative
    error on that gain is its whole error (no sampling noise)."""
    x = torch.tensor([[80.0], [0.0]], dtype=torch.float64)
    out = SAMPLERS[sampler](gaussian_denoiser, x, karras_sigmas(steps).double())
    exact = STD / math.sqrt(STD**2 + 80.0**2)
    return abs((out[0] - out[1]).item() / 80.0 / exact - 1)


@pytest.mark.parametrize("sampler,order", [("heun", 2), ("dpmpp2m", 2), ("euler", 1)])
def test_samplers_converge_at_their_order(sampler, order):
    coarse, fine = _gain_error(sampler, 32), _gain_error(sampler, 64)
    assert fine < 0.05
    assert coarse / fine == pytest.approx(2.0**order, rel=0.2)  # halving the step cuts the error 2^order ×


def test_heun_nfe_is_two_n_minus_one():
    calls = []

    def counting(x, sigma, cond=None):
        assert sigma.shape == (x.shape[0],)
        calls.append(float(sigma[0]))
        return gaussian_denoiser(x, sigma)

    for n in (1, 2, 18):
        calls.clear()
        sample_heun(counting, torch.randn(3, 2) * 80, karras_sigmas(n))
        assert len(calls) == 2 * n - 1 and 0.0 not in calls


def test_unknown_sampler_is_rejected():
    with pytest.raises(ValueError, match="dpmpp2m"):
        sample(gaussian_denoiser, (2, 3), sampler="ddim")
    assert set(SAMPLERS) == {"heun", "euler", "dpmpp2m"}


# ---------------------------------------------------------------- guidance


def test_classifier_free_guidance_weights():
    calls = []

    def toy(x, sigma, cond):  # depends on cond, so conditional ≠ unconditional
        calls.append(x.shape[0])
        return x * 0.5 + cond * sigma[:, None]

    x, sigma = torch.randn(4, 3), torch.full((4,), 2.0)
    cond, null = torch.randn(4, 3), torch.zeros(3)
    d_c, d_u = toy(x, sigma, cond), toy(x, sigma, null.expand(4, 3))
    calls.clear()
    torch.testing.assert_close(ClassifierFreeGuidance(toy, 1.0, null)(x, sigma, cond), d_c)
    assert calls == [4]  # w = 1: only the conditional branch runs
    torch.testing.assert_close(ClassifierFreeGuidance(toy, 0.0, null)(x, sigma, cond), d_u)
    calls.clear()
    torch.testing.assert_close(ClassifierFreeGuidance(toy, 2.0, null)(x, 2.0, cond), 2 * d_c - d_u)
    assert calls == [8]  # both branches in one batched call


# ---------------------------------------------------------------- training


def test_tiny_model_learns_a_gaussian():
    """200 Adam steps on 1-D N(1, 2²) with σ_data = 1, deliberately not the data's std: the zero
    network (D = c_skip·x, ideal for N(0, 1)) samples std ≈ 1, so only learning reaches std ≈ 2.
    P_std is widened from 1.2 to 2 so that training also visits the large σ where D must learn the
    mean; with the paper default this toy needs ~10× more steps to centre its samples."""
    torch.manual_seed(0)
    mean, std, steps = 1.0, 2.0, 200
    net = TinyNet(channels=1, hidden=32)
    torch.nn.init.zeros_(net.layers[-1].weight)
    torch.nn.init.zeros_(net.layers[-1].bias)
    denoiser = EDMDenoiser(net, EDMConfig(sigma_data=1.0, p_std=2.0))
    before = sample(denoiser, (2000, 1, 1), steps=18, generator=torch.Generator().manual_seed(2))
    assert before.std().item() < 1.3 and abs(before.mean().item()) < 0.2

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 - i / steps)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x0 = mean + std * torch.randn(256, 1, 1, generator=g)
        loss = denoiser.loss(x0, generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        decay.step()
    after = sample(denoiser, (2000, 1, 1), steps=18, generator=torch.Generator().manual_seed(2))
    assert after.std().item() == pytest.approx(std, rel=0.2)
    assert after.mean().item() == pytest.approx(mean, abs=0.3)
