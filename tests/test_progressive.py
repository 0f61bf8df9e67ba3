"""Progressive inference: schedules, the remix arithmetic, the adaptive rule, Wiener filtering,
remix-aware training pieces and the peer adapters, on separators whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from stemkit.errors import StemkitError
from stemkit.separation.base import FileSeparator
from stemkit.models import save_model
from stemkit.separation.lasaft import LaSAFT
from stemkit.separation.progressive import AdaptiveSchedule, ProgressiveSeparator, progressive_name, wiener_filter
from stemkit.separation.schedules import beta_schedule
from stemkit.training.separation import load_matching_weights, remix_with_own_estimate, sample_remix_betas
from test_lasaft import tiny_config


class GainSeparator(FileSeparator):
    """Returns ``gain[t] · mix`` for each target and records every call (mixture, targets, β)."""

    def __init__(self, gains: dict[str, float], takes_beta: bool = False) -> None:
        self.gains, self.takes_beta, self.calls = gains, takes_beta, []
        self.name = "gain"

    @property
    def targets(self) -> list[str]:
        return list(self.gains)

    def separate(self, mix, sample_rate, targets=None, query=None, **extra):
        self.calls.append((mix.clone(), list(targets), extra.get("beta")))
        return {t: self.gains[t] * mix for t in self.check_targets(targets)}


GAINS = {"a": 0.5, "b": 0.3, "c": 0.2}


def test_fixed_schedules_follow_their_formulas():
    assert beta_schedule("linear", 4) == [0.0, 0.25, 0.5, 0.75]
    assert beta_schedule("cosine", 4) == pytest.approx([math.sin(math.pi * t / 2) ** 2 for t in (0, 0.25, 0.5, 0.75)])
    assert beta_schedule("karras:1", 5) == pytest.approx(beta_schedule("linear", 5))
    karras = beta_schedule("karras", 5)  # EDM's ρ = 7 on σ = 1 − β from 1 down to 1/N
    rho, floor = 7.0, (1 / 5) ** (1 / 7)
    assert karras == pytest.approx([1 - (1 + i / 4 * (floor - 1)) ** rho for i in range(5)])
    assert karras[0] == 0 and karras[-1] == pytest.approx(0.8) and all(b > a for a, b in zip(karras, karras[1:]))
    assert karras[1] > beta_schedule("linear", 5)[1]  # ρ > 1 trusts the estimate sooner
    assert beta_schedule("constant:0.3", 3) == [0.0, 0.3, 0.3]
    assert beta_schedule("0,0.2,0.9", 3) == [0.0, 0.2, 0.9]
    assert beta_schedule("linear", 1) == [0.0]


@pytest.mark.parametrize("spec,steps", [("0.1,0.5", 2), ("0,1.0", 2), ("0,0.5", 3), ("spiral", 3), ("karras:-1", 3),
                                        ("linear:2", 3), ("constant:1.5", 3), ("linear", 0)])
def test_bad_schedules_are_one_line_errors(spec, steps):
    with pytest.raises(StemkitError):
        beta_schedule(spec, steps)


def test_add_to_mixture_remixes_each_target_with_the_schedule():
    base = GainSeparator(GAINS, takes_beta=True)
    mix = torch.randn(1, 100)
    steps = list(ProgressiveSeparator(base, steps=3, schedule="linear").iterate(mix, 8000))
    assert len(base.calls) == 1 + 2 * 3  # step 1 shares one call; later steps remix per target
    expected = {t: g for t, g in GAINS.items()}
    for step, beta in zip(steps[1:], (1 / 3, 2 / 3)):
        expected = {t: GAINS[t] * ((1 - beta) + beta * expected[t]) for t in GAINS}
        for t in GAINS:
            torch.testing.assert_close(step.estimates[t], expected[t] * mix)
        assert step.betas == pytest.approx({t: beta for t in GAINS})
    assert [c[2] for c in base.calls] == [0.0] + [pytest.approx(1 / 3)] * 3 + [pytest.approx(2 / 3)] * 3


def test_remix_all_rebuilds_the_mixture_from_the_estimates():
    base = GainSeparator(GAINS)
    mix = torch.randn(2, 50)
    sep = ProgressiveSeparator(base, steps=2, schedule="constant:0.4", mode="remix-all")
    out = sep.separate(mix, 8000, ["b"])  # every target is estimated, only b is returned
    assert list(out) == ["b"] and all(c[2] is None for c in base.calls)  # not remix-aware: β not passed
    rebuilt = GAINS["b"] + 0.6 * (GAINS["a"] + GAINS["c"])
    torch.testing.assert_close(out["b"], GAINS["b"] * rebuilt * mix)


def test_one_step_is_plain_separation_and_names_say_what_ran():
    base = GainSeparator(GAINS)
    mix = torch.randn(1, 40)
    out = ProgressiveSeparator(base, steps=1).separate(mix, 8000, ["a"])
    torch.testing.assert_close(out["a"], 0.5 * mix)
    assert len(base.calls) == 1 and base.calls[0][1] == ["a"]
    assert progressive_name("m", 1, "linear", "add-to-mixture", False) == "m"
    assert progressive_name("m", 4, "karras:3", "remix-all", True) == "m-p4-karras3-remix-all-wiener"
    assert progressive_name("m", 3, "0,0.5,0.7", "add-to-mixture", False) == "m-p3-custom"
    with pytest.raises(StemkitError):
        ProgressiveSeparator(base, steps=2, mode="sideways")
    with pytest.raises(StemkitError):
        ProgressiveSeparator(base, steps=3, schedule="0,0.5")


def test_adaptive_is_linear_while_estimates_settle_and_backs_off_when_they_drift():
    schedule = AdaptiveSchedule(steps=4, targets=["a"])
    prev = {"a": torch.ones(10)}
    assert schedule.betas(2) == pytest.approx({"a": 0.25})
    prev = schedule.review(prev, {"a": torch.full((10,), 1.5)})  # change 0.5: accepted
    assert schedule.betas(3) == pytest.approx({"a": 0.5})
    kept = schedule.review(prev, {"a": torch.full((10,), 3.0)})  # change 1.0 > 0.5: rejected, β halved
    torch.testing.assert_close(kept["a"], prev["a"])
    assert schedule.beta["a"] == pytest.approx(0.25)
    schedule.review(prev, {"a": prev["a"] * (1 + 1e-5)})  # settled: finished
    assert schedule.betas(4) == {}


def test_adaptive_stops_separating_a_settled_target():
    base = GainSeparator({"a": 1.0, "b": 0.5})  # a's estimate is a fixed point: it settles at once
    steps = list(ProgressiveSeparator(base, steps=4, schedule="adaptive").iterate(torch.randn(1, 64), 8000))
    assert len(steps) == 4
    separated = [t for _, targets, _ in base.calls[1:] for t in targets]
    assert separated.count("a") == 1 and separated.count("b") == 3


def test_wiener_filter_keeps_mixture_consistency_and_separates_disjoint_spectra():
    rate = 8000
    t = torch.arange(rate) / rate
    low, high = 0.5 * torch.sin(2 * math.pi * 220 * t)[None], 0.3 * torch.sin(2 * math.pi * 2500 * t)[None]
    mix = low + high
    rough = {"low": 0.7 * low + 0.2 * high, "high": 0.6 * high + 0.1 * low}  # leaky, mis-scaled estimates
    out = wiener_filter(mix, rough, rate)
    torch.testing.assert_close(out["low"] + out["high"], mix, atol=1e-3, rtol=0)  # up to norbert's ε
    inner = slice(1000, -1000)
    for name, truth in (("low", low), ("high", high)):
        def error(estimate):
            return (estimate - truth)[:, inner].pow(2).sum() / truth[:, inner].pow(2).sum()

        assert error(out[name]) < 0.03 and error(out[name]) < 0.2 * error(rough[name]), name
    single = wiener_filter(mix, {"low": low}, rate)  # one estimate: the residual is the other source
    assert list(single) == ["low"] and single["low"].shape == mix.shape


def test_sampled_betas_come_from_the_schedule():
    generator = torch.Generator().manual_seed(0)
    betas = sample_remix_betas(2000, 0.5, "linear", 4, generator)
    allowed = {0.0} | {b for n in (2, 3, 4) for b in beta_schedule("linear", n)[1:]}
    assert all(min(abs(b - a) for a in allowed) < 1e-6 for b in betas.tolist())
    assert len({round(b, 6) for b in betas.tolist()}) == len(allowed)  # every step of every N is drawn
    assert 0.45 < (betas > 0).float().mean() < 0.55


def test_remix_with_own_estimate_boosts_only_remixed_crops():
    torch.manual_seed(0)
    model = LaSAFT(tiny_config()).eval()
    mix, target = torch.randn(3, 1, 512), torch.randn(3, 1, 512)
    index = torch.tensor([0, 1, 2])
    beta = torch.tensor([0.0, 0.5, 0.25])
    out = remix_with_own_estimate(model, mix, index, beta)
    torch.testing.assert_close(out[0], mix[0])
    own, _ = model(mix[1:2], index[1:2], 0.0)
    torch.testing.assert_close(out[1], 0.5 * mix[1] + 0.5 * own[0])
    oracle = remix_with_own_estimate(model, mix, index, beta, oracle=torch.tensor([False, False, True]), target=target)
    torch.testing.assert_close(oracle[2], 0.75 * mix[2] + 0.25 * target[2])


def test_a_remix_aware_model_starts_as_the_plain_model_it_is_fine_tuned_from(tmp_path):
    torch.manual_seed(0)
    plain = LaSAFT(tiny_config()).eval()
    path = save_model(plain, tmp_path / "plain")
    aware = LaSAFT(tiny_config(beta_condition=True)).eval()
    load_matching_weights(aware, str(path))
    mix = torch.randn(2, 1, 600)
    index = torch.tensor([0, 2])
    for beta in (0.0, 0.7):
        torch.testing.assert_close(aware(mix, index, beta)[0], plain(mix, index)[0])
    with pytest.raises(StemkitError, match="architecture differs"):
        load_matching_weights(LaSAFT(tiny_config(internal_channels=6)), str(path))


def test_htdemucs_adapter_loads_a_demucs_package_and_matches_the_module(tmp_path):
    pytest.importorskip("demucs")
    from demucs.htdemucs import HTDemucs

    from stemkit.separation.adapters import load_separator, save_htdemucs

    torch.manual_seed(0)
    model = HTDemucs(sources=["a", "b"], audio_channels=1, samplerate=8000, segment=1.0, channels=4, depth=2, nfft=256,
                     t_layers=1, t_heads=2, dconv_comp=4).eval()
    path = save_htdemucs(model, tmp_path / "tiny.th")
    sep = load_separator(path, device="cpu", overlap=0.0, batch_size=1, precision="32")  # the module itself runs in float32
    assert (sep.name, sep.targets, sep.sample_rate) == ("tiny", ["a", "b"], 8000)
    mix = torch.randn(1, 8000)
    out = sep.separate(mix, 8000)
    mean, std = mix.mean(), mix.std()
    with torch.no_grad():
        direct = model(((mix - mean) / std)[None])[0] * std + mean
    torch.testing.assert_close(out["b"], direct[1], atol=1e-4, rtol=1e-4)
    stereo = sep.separate(torch.randn(2, 12000), 16000, ["a"])  # resampled, per channel
    assert stereo["a"].shape == (2, 12000)
    progressive = ProgressiveSeparator(sep, steps=2).separate(mix, 8000)
    assert set(progressive) == {"a", "b"}


def test_bs_roformer_adapter_reads_checkpoint_and_training_yaml(tmp_path):
    pytest.importorskip("bs_roformer")
    from bs_roformer import BSRoformer

    from stemkit.separation.adapters import load_separator

    args = dict(dim=8, depth=1, heads=2, dim_head=4, stereo=False, num_stems=2, stft_n_fft=128, stft_hop_length=32,
                stft_win_length=128, freqs_per_bands=[8] * 8 + [1], mask_estimator_depth=1, flash_attn=False)
    torch.manual_seed(0)
    model = BSRoformer(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}).eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "roformer.ckpt")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {**args, "linear_transformer_depth": 0},
                                      "training": {"instruments": ["voice", "rest"]},
                                      "audio": {"sample_rate": 8000, "chunk_size": 4000}}))
    with pytest.warns(UserWarning, match="linear_transformer_depth"):
        sep = load_separator(tmp_path / "roformer.ckpt", config=config, device="cpu", overlap=0.0, batch_size=1, precision="32")
    assert sep.targets == ["voice", "rest"] and sep.segment_samples == 4000
    mix = torch.randn(1, 4000)
    with torch.no_grad():
        direct = model(mix).reshape(2, 1, -1)  # [stems, channels, samples]
    torch.testing.assert_close(sep.separate(mix, 8000)["rest"], direct[1], atol=1e-4, rtol=1e-4)
    config.write_text("model: {dim: 8}\n")
    with pytest.raises(StemkitError, match="training.instruments"):
        load_separator(tmp_path / "roformer.ckpt", config=config)
    with pytest.raises(StemkitError, match="needs its training YAML"):
        load_separator(tmp_path / "roformer.ckpt", arch="bs-roformer")


def test_given_first_step_estimates_are_reused_not_separated_again():
    base = GainSeparator(GAINS)
    mix = torch.randn(1, 40)
    first = {t: torch.full((1, 40), float(i)) for i, t in enumerate(GAINS)}
    steps = list(ProgressiveSeparator(base, steps=2, schedule="constant:0.5").iterate(mix, 8000, first=first))
    assert steps[0].estimates["b"] is first["b"]
    assert len(base.calls) == 3 and all(c[1] != list(GAINS) for c in base.calls)  # only the three step-2 calls
    torch.testing.assert_close(steps[1].estimates["c"], GAINS["c"] * (0.5 * mix + 0.5 * first["c"]))
