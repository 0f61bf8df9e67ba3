"""The refiner of issue 14: the network's identity start and step conditioning, chained training, and
`stemkit separate --steps N` / `progressive-analysis` finding and running it, end to end on tiny models."""

from __future__ import annotations

import csv
import math
import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

from conftest import REPO, fit_tiny_lasaft, run_cli
from stemkit.audio.spectral import from_complex_channels, to_complex_channels
from stemkit.separation.refinement import RefinedSeparator, base_name, refine_windows
from stemkit.separation.refiner import Refiner, RefinerConfig
from stemkit.training.refiner import RefinerSystem, part_sdr, refinement_loss

TINY = str(REPO / "configs" / "refiner" / "chorales_tiny.yaml")


def tiny_config(**overrides) -> RefinerConfig:
    base = dict(sample_rate=8000, audio_channels=1, targets=["a", "b", "c"], base="some-separator", n_fft=128, hop_length=32,
                num_frames=17, n_blocks=3, internal_channels=4, n_internal_layers=2, bn_factor=4, min_bn_units=4, max_steps=3)
    return RefinerConfig(**{**base, **overrides})


def _round_trip(audio: torch.Tensor, cfg: RefinerConfig) -> torch.Tensor:
    """What the refiner's spectrogram plumbing alone does to a signal (it drops the Nyquist bin)."""
    flat = audio.reshape(-1, audio.shape[-2], audio.shape[-1])
    back = from_complex_channels(to_complex_channels(flat, cfg.n_fft, cfg.hop_length), cfg.n_fft, cfg.hop_length, audio.shape[-1])
    return back.view_as(audio)


def test_an_untrained_refiner_returns_its_input_at_every_step(one_thread):
    torch.manual_seed(0)
    cfg = tiny_config()
    model = Refiner(cfg).eval()
    mix, estimates = torch.randn(2, 1, 700), torch.randn(2, 3, 1, 700)
    for step in (0, 1, 7):  # 7 is past max_steps: it shares the last embedding
        out = model(mix, estimates, torch.full((2,), step))
        assert out.shape == estimates.shape
        torch.testing.assert_close(out, _round_trip(estimates, cfg), atol=1e-5, rtol=1e-5)


def _ratio_masked(mix: torch.Tensor, estimates: torch.Tensor, cfg: RefinerConfig) -> torch.Tensor:
    """Each part as its power's share of the mixture's STFT, the Wiener post-filter of the estimates."""
    batch, parts, channels, length = estimates.shape
    mix_spec = torch.stft(mix.reshape(-1, length), cfg.n_fft, cfg.hop_length, window=torch.hann_window(cfg.n_fft), return_complex=True)
    specs = torch.stft(estimates.reshape(-1, length), cfg.n_fft, cfg.hop_length, window=torch.hann_window(cfg.n_fft),
                       return_complex=True).view(batch, parts, channels, *mix_spec.shape[-2:])
    power = specs.abs().square()[..., :-1, :] + 1e-8
    share = power / power.sum(dim=1, keepdim=True)
    masked = torch.nn.functional.pad(share, (0, 0, 0, 1)) * mix_spec.view(batch, 1, channels, *mix_spec.shape[-2:])
    audio = torch.istft(masked.reshape(-1, *mix_spec.shape[-2:]), cfg.n_fft, cfg.hop_length, window=torch.hann_window(cfg.n_fft), length=length)
    return audio.view_as(estimates)


def test_an_untrained_mixture_refiner_is_the_ratio_mask_of_the_mixture(one_thread):
    torch.manual_seed(0)
    cfg = tiny_config(output="mixture")
    model = Refiner(cfg).eval()
    mix, estimates = torch.randn(2, 1, 700), torch.randn(2, 3, 1, 700)
    out = model(mix, estimates, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(out, _ratio_masked(mix, estimates, cfg), atol=1e-4, rtol=1e-4)
    assert (out - _round_trip(estimates, cfg)).abs().max() > 0.1  # not the residual refiner's identity


def test_a_trained_mixture_refiner_still_splits_the_mixture_exactly(one_thread):
    torch.manual_seed(0)
    cfg = tiny_config(output="mixture", audio_channels=2)
    model = Refiner(cfg).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    mix, estimates = torch.randn(2, 2, 700), torch.randn(2, 3, 2, 700)
    out = model(mix, estimates, torch.tensor([0, 1]))
    torch.testing.assert_close(out.sum(dim=1), _round_trip(mix, cfg), atol=1e-4, rtol=1e-4)
    assert (out - _ratio_masked(mix, estimates, cfg)).abs().max() > 1e-2  # training moved the masks
    with pytest.raises(ValueError, match="output"):
        tiny_config(output="masks")


def test_the_step_and_the_mixture_change_the_output_once_trained(one_thread):
    torch.manual_seed(0)
    model = Refiner(tiny_config()).eval()
    for parameter in model.parameters():  # as if trained: nothing left at its identity start
        torch.nn.init.normal_(parameter, std=0.3)
    mix, estimates = torch.randn(1, 1, 700), torch.randn(1, 3, 1, 700)
    first, second = model(mix, estimates, torch.tensor([0])), model(mix, estimates, torch.tensor([1]))
    assert (first - second).abs().max() > 1e-3
    assert (model(2 * mix, estimates, torch.tensor([0])) - first).abs().max() > 1e-3


@pytest.mark.parametrize("output", ["residual", "mixture"])
def test_gradients_reach_every_parameter(one_thread, output):
    torch.manual_seed(0)
    model = Refiner(tiny_config(output=output)).train()
    torch.nn.init.normal_(model.last_conv.weight, std=0.1)  # as after a first step: a zero last layer passes no gradient back
    mix, estimates, stems = torch.randn(2, 1, 600), torch.randn(2, 3, 1, 600), torch.randn(2, 3, 1, 600)
    refinement_loss(model, mix, estimates, stems, torch.tensor([0, 2])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == [], missing


def test_a_mono_refiner_refines_each_channel_of_stereo_on_its_own(one_thread):
    torch.manual_seed(0)
    model = Refiner(tiny_config()).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    mix, estimates = torch.randn(2, 2, 560), torch.randn(2, 3, 2, 560)
    with torch.no_grad():
        both = refine_windows(model, mix, estimates, step=1)
        left = refine_windows(model, mix[:, :1], estimates[:, :, :1], step=1)
    assert both.shape == estimates.shape
    torch.testing.assert_close(both[:, :, :1], left)


def test_a_refiner_must_refine_the_bases_parts():
    from stemkit.errors import StemkitError
    from stemkit.separation.separator import Separator

    with pytest.raises(StemkitError, match="the refiner refines a, b, c"):
        RefinedSeparator(Separator(), Refiner(tiny_config()))


def test_training_refuses_a_base_with_other_parts():
    from stemkit.errors import StemkitError

    system = RefinerSystem(tiny_config(base="lasaft-chorales-string-remix"))
    with pytest.raises(StemkitError, match="separates soprano, alto, tenor, bass"):
        system.base


def test_base_names_match_names_and_model_files():
    assert base_name("lasaft-chorales-string-remix") == "lasaft-chorales-string-remix"
    assert base_name("/models/tiny-base.safetensors") == "tiny-base"


def test_training_refines_a_chain_of_its_own_estimates(monkeypatch, one_thread):
    """The trained step is preceded by k = 0..chain−1 no-gradient refinements of the base's estimates."""
    torch.manual_seed(0)
    system = RefinerSystem(tiny_config(), chain=3)
    stems = torch.randn(2, 3, 1, 512)
    mix = stems.sum(dim=1)
    monkeypatch.setattr(RefinerSystem, "base_estimates", lambda self, m: 0.5 * stems)
    calls = []
    forward = Refiner.forward

    def counting(self, *args):
        calls.append(int(args[2][0]))
        return forward(self, *args)

    monkeypatch.setattr(Refiner, "forward", counting)
    monkeypatch.setattr(system, "log", lambda *a, **k: None)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        expected = int(torch.randint(0, 3, ()))
        torch.manual_seed(seed)
        calls.clear()
        loss = system.training_step({"mix": mix, "stems": stems}, 0)
        assert calls == list(range(expected)) and loss.requires_grad
        seen.add(expected)
    assert seen == {0, 1, 2}


@pytest.mark.parametrize("output,loss", [("residual", "spectrogram"), ("mixture", "spectrogram"), ("mixture", "sdr")])
def test_training_lowers_the_loss_below_the_bases(one_thread, output, loss):
    """A few Adam steps on one batch: the refined estimates beat the (deliberately poor) base's."""
    torch.manual_seed(0)
    model = Refiner(tiny_config(output=output)).train()
    stems = torch.randn(4, 3, 1, 544).cumsum(-1) * 0.05  # smooth, speech-like low-pass signals
    mix = stems.sum(dim=1)
    estimates = 0.6 * stems + 0.2 * mix[:, None]  # the base leaks every other part into each
    step = torch.zeros(4, dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        optimizer.zero_grad()
        value = refinement_loss(model, mix, estimates, stems, step, loss)
        value.backward()
        optimizer.step()
        first = first if first is not None else value.item()
    if loss == "sdr":  # minus dB: the refined parts gain at least 3 dB over the base's
        assert value.item() < first - 3.0
    else:
        assert value.item() < 0.5 * first


def test_the_sdr_loss_weighs_every_part_alike_and_saturates_at_30_db():
    torch.manual_seed(0)
    truth = torch.randn(1, 2, 1, 4000) * torch.tensor([1.0, 0.1])[None, :, None, None]  # one loud part, one 20 dB quieter
    noisy = truth + 0.1 * truth.std(dim=-1, keepdim=True) * torch.randn_like(truth)  # each 20 dB below its part,
    expected = 10 * math.log10(1 / (0.01 + 1e-3))  # and the 30-dB ceiling adds 1e-3 of the part to the error
    torch.testing.assert_close(part_sdr(noisy, truth), torch.full((1, 2), expected), atol=0.3, rtol=0)
    assert 28.5 < part_sdr(truth, truth).min() <= 30.0  # the quiet part: the epsilon costs it 1 dB
    assert abs(part_sdr(torch.zeros(1, 1, 1, 10), torch.zeros(1, 1, 1, 10)).item()) < 1e-6  # a resting part: 0 dB, finite


@pytest.fixture(scope="module")
def refined(chorale_dir, tmp_path_factory) -> dict:
    """A tiny LaSAFT and a tiny refiner of it, both trained and exported with the real CLI."""
    base_run = tmp_path_factory.mktemp("base-run")
    fit_tiny_lasaft(chorale_dir, base_run, "--trainer.max_steps", "2")
    models = tmp_path_factory.mktemp("models")
    run_cli("export", str(base_run / "checkpoints" / "last.ckpt"), "--name", "tiny-base", "--out", str(models), check=True)
    base = models / "tiny-base.safetensors"
    root = tmp_path_factory.mktemp("refiner-run")
    run_cli("fit", "--config", TINY, "--model.init_args.net.base", str(base), "--data.train_dir", str(chorale_dir),
            "--data.valid_dir", str(chorale_dir), "--trainer.default_root_dir", str(root),
            "--trainer.logger.init_args.save_dir", str(root), "--trainer.max_steps", "4", check=True)
    logged = "".join(p.read_text() for p in (root / "logs").rglob("metrics.csv"))
    assert "valid/gain" in logged and "train/loss_ratio" in logged
    run_cli("export", str(root / "checkpoints" / "last.ckpt"), "--name", "tiny-base-refiner", "--out", str(models), check=True)
    meta = json.loads((models / "tiny-base-refiner.json").read_text())
    assert meta["family"] == "refiner" and meta["config"]["base"] == str(base)
    return {"base": base, "models": models, "data": chorale_dir}


def test_separate_with_steps_finds_and_runs_the_refiner(cli, refined, tmp_path, monkeypatch):
    monkeypatch.setenv("STEMKIT_MODELS", str(refined["models"]))
    track = sorted(Path(refined["data"]).glob("*_track*"))[0]
    result = cli("separate", str(track / "mix.wav"), "--model", str(refined["base"]), "--out", str(tmp_path), "--steps", "3",
                 "--quiet", check=True)
    folder = tmp_path / "tiny-base-r3" / "mix"
    assert sorted(p.name for p in folder.iterdir()) == ["alto.wav", "bass.wav", "soprano.wav", "tenor.wav"]
    assert sf.info(folder / "alto.wav").frames == sf.info(track / "mix.wav").frames
    assert "tiny-base-r3" in result.stdout
    remix = cli("separate", str(track / "mix.wav"), "--model", str(refined["base"]), "--out", str(tmp_path), "--steps", "3",
                "--refiner", "none", "--quiet", check=True)
    assert (tmp_path / "tiny-base-p3-linear" / "mix" / "alto.wav").is_file(), remix.stdout
    one = cli("separate", str(track / "mix.wav"), "--model", str(refined["base"]), "--out", str(tmp_path / "one"), "--steps", "1",
              "--refiner", "tiny-base-refiner")
    assert one.returncode != 0 and "--steps 2 or more" in one.stderr and "Traceback" not in one.stderr


def test_the_python_api_refines_every_part(refined, monkeypatch):
    from stemkit.separation.refinement import find_refiner, load_refiner
    from stemkit.separation.separator import Separator

    monkeypatch.setenv("STEMKIT_MODELS", str(refined["models"]))
    assert find_refiner("tiny-base") == "tiny-base-refiner" and find_refiner("another-model") is None
    base = Separator(refined["base"])
    track = sorted(Path(refined["data"]).glob("*_track*"))[0]
    mix = torch.from_numpy(sf.read(track / "mix.wav", dtype="float32", always_2d=True)[0].T)
    separator = RefinedSeparator(base, load_refiner("tiny-base-refiner"), steps=3)
    steps = list(separator.iterate(mix, 16000))
    assert [s.step for s in steps] == [1, 2, 3]
    plain = base.separate(mix, 16000)
    torch.testing.assert_close(steps[0].estimates["alto"], plain["alto"])
    assert all((steps[2].estimates[t] - steps[0].estimates[t]).abs().max() > 0 for t in base.targets)
    only = separator.separate(mix, 16000, ["bass"])
    torch.testing.assert_close(only["bass"], steps[2].estimates["bass"])


def test_progressive_analysis_scores_the_refiner_beside_the_remix(cli, refined, tmp_path, monkeypatch):
    monkeypatch.setenv("STEMKIT_MODELS", str(refined["models"]))
    out = tmp_path / "analysis"
    cli("progressive-analysis", "--dataset", str(refined["data"]), "--model", str(refined["base"]), "--out", str(out),
        "--steps", "2", "--tracks", "1", "--seconds", "2", "--no-oracle", "--quiet", check=True)
    with open(out / "progressive.csv", newline="") as handle:
        methods = {(r["method"], int(r["step"])) for r in csv.DictReader(handle)}
    assert methods == {("one-pass", 1), ("progressive:linear", 1), ("progressive:linear", 2), ("refiner", 1), ("refiner", 2)}
    assert json.loads((out / "summary.json").read_text())["settings"]["refiner"] == "tiny-base-refiner"
