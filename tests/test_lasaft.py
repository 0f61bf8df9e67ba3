"""The LaSAFT network: shapes, conditioning, invertible spectrogram plumbing, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from stemkit.errors import StemkitError
from stemkit.separation.checkpoints import load_model, save_model
from stemkit.separation.lasaft import LaSAFT, LaSAFTConfig, _complex_multiply
from stemkit.separation.separator import separate_with_model


def tiny_config(**overrides) -> LaSAFTConfig:
    base = dict(sample_rate=8000, audio_channels=1, targets=["a", "b", "c"], n_fft=128, hop_length=32, num_frames=17,
                n_blocks=3, internal_channels=4, n_internal_layers=2, bn_factor=4, min_bn_units=4, num_tdfs=3, dk=4,
                embedding_dim=4)
    base.update(overrides)
    return LaSAFTConfig(**base)


def test_base_config_is_the_papers_model():
    cfg = LaSAFTConfig()
    assert (cfg.n_fft, cfg.hop_length, cfg.num_frames, cfg.n_blocks, cfg.internal_channels) == (2048, 1024, 128, 7, 24)
    assert (cfg.n_internal_layers, cfg.num_tdfs, cfg.dk, cfg.embedding_dim, cfg.spec_mode) == (5, 6, 32, 32, "mapping")
    model = LaSAFT(cfg)
    spec = torch.zeros(1, 4, 128, 1024)
    assert model.forward_spec(spec, model.condition(torch.tensor([0]))).shape == spec.shape


@pytest.mark.parametrize("bad", [dict(n_blocks=4), dict(spec_mode="magnitude"), dict(n_fft=100, n_blocks=7), dict(targets=[])])
def test_bad_configs_are_rejected(bad):
    with pytest.raises(ValueError):
        tiny_config(**bad)


@pytest.mark.parametrize("mode", ["mapping", "mask"])
@pytest.mark.parametrize("channels", [1, 2])
def test_forward_shapes_and_odd_lengths(mode, channels):
    torch.manual_seed(0)
    model = LaSAFT(tiny_config(spec_mode=mode, audio_channels=channels)).eval()
    mix = torch.randn(2, channels, 1001)  # frames not a multiple of 2**depth
    wave, spec = model(mix, torch.tensor([0, 2]))
    assert wave.shape == mix.shape
    assert spec.shape == model.spectrogram(mix).shape


def test_spectrogram_round_trip_loses_only_the_nyquist_bin():
    model = LaSAFT(tiny_config())
    t = torch.arange(4000) / 8000
    audio = (torch.sin(2 * torch.pi * 440 * t) + 0.5 * torch.sin(2 * torch.pi * 1234 * t))[None, None]
    back = model.waveform(model.spectrogram(audio), audio.shape[-1])
    assert (back - audio).abs().max() < 1e-2  # only the windowed sines' leakage into the Nyquist bin is lost


def test_complex_multiply_matches_torch_complex():
    torch.manual_seed(0)
    a, b = torch.randn(2, 4, 5, 6), torch.randn(2, 4, 5, 6)

    def as_complex(x):
        return torch.view_as_complex(x.view(2, 2, 2, 5, 6).permute(0, 1, 3, 4, 2).contiguous())

    product = _complex_multiply(a, b)
    assert torch.allclose(as_complex(product), as_complex(a) * as_complex(b), atol=1e-6)


def test_condition_selects_a_different_output_and_attention_is_a_distribution():
    torch.manual_seed(0)
    model = LaSAFT(tiny_config()).eval()
    mix = torch.randn(1, 1, 2000)
    out_a, _ = model(mix, torch.tensor([0]))
    out_b, _ = model(mix, torch.tensor([1]))
    assert not torch.allclose(out_a, out_b)
    weights = model.middle.lasaft.attention(model.condition(torch.arange(3)))
    assert weights.shape == (3, 3)
    assert torch.allclose(weights.sum(-1), torch.ones(3))


def test_any_condition_vector_drives_the_network():
    """The query-conditioning hook: forward_spec takes an arbitrary embedding, not only an index."""
    model = LaSAFT(tiny_config()).eval()
    spec = model.spectrogram(torch.randn(2, 1, 2000))
    out = model.forward_spec(spec, torch.randn(2, 4, requires_grad=True))
    out.sum().backward()


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = LaSAFT(tiny_config())
    _, spec = model(torch.randn(2, 1, 2000), torch.tensor([0, 1]))
    spec.pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_chunked_separation_matches_whole_signal_inside_windows():
    """With one window covering everything, chunking adds nothing: output equals a direct forward."""
    torch.manual_seed(0)
    model = LaSAFT(tiny_config()).eval()
    mix = torch.randn(1, 1024)
    direct = model.separate_batch(mix[None], [0, 2])[0]
    chunked = separate_with_model(model, mix, [0, 2], segment=1024, overlap=0.0)
    assert torch.allclose(direct, chunked, atol=1e-5)
    stereo = separate_with_model(model, torch.stack([mix[0], mix[0]]), [1])
    assert stereo.shape == (1, 2, 1024)
    assert torch.allclose(stereo[0, 0], stereo[0, 1], atol=1e-6)


def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    model = LaSAFT(tiny_config()).eval()
    path = save_model(model, tmp_path / "m", name="tiny", provenance={"steps": 3})
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["name"] == "tiny" and meta["provenance"] == {"steps": 3}
    loaded, meta2 = load_model(path)
    mix = torch.randn(1, 1, 1500)
    assert torch.equal(model(mix, torch.tensor([1]))[0], loaded(mix, torch.tensor([1]))[0])
    path.with_suffix(".json").unlink()
    with pytest.raises(StemkitError, match="missing"):
        load_model(path)
    with pytest.raises(StemkitError, match="unknown model"):
        load_model("no-such-model")
