"""The mel vocoder: its inverse STFT, its shapes, its place in the mel codec, and that it learns."""

from __future__ import annotations

import math

import pytest
import torch

from stemkit.errors import StemkitError
from stemkit.models import save_model
from stemkit.synthesis.mel_codec import MelCodec, MelCodecConfig
from stemkit.synthesis.vocoder import MelVocoder, MelVocoderConfig, overlap_add_istft

TINY = dict(dim=16, intermediate=32, layers=2)


def _tone(seconds: float = 0.5, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return (0.3 * torch.sin(2 * math.pi * 220 * t) + 0.1 * torch.sin(2 * math.pi * 660 * t))[None, None]


def test_the_overlap_add_inverts_a_same_padded_stft_exactly_and_gives_frames_times_hop_samples():
    torch.manual_seed(0)
    hop, n_fft, frames = 160, 640, 30
    audio = torch.randn(2, frames * hop)
    trim = (n_fft - hop) // 2
    window = torch.hann_window(n_fft)
    pieces = torch.nn.functional.pad(audio, (trim, trim)).unfold(-1, n_fft, hop)  # [B, frames, n_fft]
    spec = torch.fft.rfft(pieces * window, dim=-1).transpose(1, 2)
    assert spec.shape[-1] == frames
    restored = overlap_add_istft(spec, hop, window)
    assert restored.shape == audio.shape
    assert torch.allclose(restored, audio, atol=1e-5)


def test_the_vocoder_maps_the_codecs_features_to_frames_times_hop_samples(one_thread):
    model = MelVocoder(MelVocoderConfig(**TINY)).eval()
    audio = _tone()
    features = model.features(audio)
    assert torch.equal(features, MelCodec(MelCodecConfig()).encode(audio))  # the codec's features, by construction
    out = model(features)
    assert out.shape == (1, 1, features.shape[-1] * 320) and torch.isfinite(out).all()
    assert not any(k.startswith("codec.") for k in model.state_dict())  # the filterbank is rebuilt, never saved


def test_vocoder_settings_are_checked():
    with pytest.raises(ValueError):
        MelVocoderConfig(mel={"hop": 320}, synthesis_fft=321)  # odd difference: no symmetric trim
    with pytest.raises(ValueError):
        MelVocoderConfig(kernel_size=4)
    assert MelVocoderConfig(mel={"hop": 160}).synthesis_fft == 640
    with pytest.raises(ValueError, match="unknown mel setting"):
        MelVocoderConfig(mel={"bands": 64})


def test_the_mel_codec_decodes_with_a_named_vocoder_and_refuses_one_made_for_other_settings(tmp_path, one_thread):
    torch.manual_seed(0)
    vocoder = MelVocoder(MelVocoderConfig(**TINY)).eval()
    path = save_model(vocoder, tmp_path / "voc.safetensors")
    codec = MelCodec(MelCodecConfig(vocoder=str(path)))
    features = codec.encode(_tone())
    with torch.no_grad():
        expected = vocoder(features)
    assert torch.allclose(codec.decode(features), expected, atol=1e-6)
    assert not any("vocoder" in k for k in codec.state_dict())  # never saved with the codec's owner
    other = MelCodec(MelCodecConfig(vocoder=str(path), n_mels=64))
    with pytest.raises(StemkitError, match="other mel settings.*n_mels"):
        other.decode(torch.zeros(1, 64, 10))


def test_a_tiny_vocoder_learns_a_tone_better_than_its_start(one_thread):
    """Spectral losses alone take an untrained vocoder most of the way on one tone in a few dozen steps;
    a broken head (phase, magnitude or overlap-add) does not get there."""
    from stemkit.training.vocoder import VocoderSystem

    torch.manual_seed(0)
    system = VocoderSystem(MelVocoderConfig(dim=32, intermediate=64, layers=2), loss_weights={"adversarial": 0})
    optimizer = torch.optim.Adam(system.model.parameters(), lr=3e-3)
    batch = {"audio": _tone(0.4)}
    losses = []
    for _ in range(60):
        output, target, _, _ = system.generate(batch)
        terms = system.reconstruction_losses(output, target)
        loss = terms["mel"] + terms["mrstft"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(terms["mel"].item())
    assert losses[-1] < 0.2 and losses[-1] < 0.5 * losses[0], losses[::10]


def test_the_learning_rates_follow_a_cosine_of_the_batch_count_so_a_resumed_run_continues_it(monkeypatch):
    from stemkit.training.audio_gan import FINAL_LR_SHARE
    from stemkit.training.vocoder import VocoderSystem

    monkeypatch.setattr(VocoderSystem, "batches_seen", property(lambda self: self.batches))  # no trainer needed

    def at(system, batches):
        system.batches = batches
        return system.learning_rate_factor()

    flat = VocoderSystem(MelVocoderConfig(**TINY))
    decayed = VocoderSystem(MelVocoderConfig(**TINY), decay_batches=100)
    assert at(flat, 0) == at(flat, 10_000) == 1.0
    assert at(decayed, 0) == 1.0
    assert abs(at(decayed, 50) - (1 + FINAL_LR_SHARE) / 2) < 1e-9
    assert abs(at(decayed, 100) - FINAL_LR_SHARE) < 1e-9 and at(decayed, 500) == at(decayed, 100)
    rates = [at(decayed, b) for b in range(0, 101, 10)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    opt_g = torch.optim.AdamW(decayed.model.parameters(), lr=1.0)
    opt_d = torch.optim.AdamW(decayed.discriminator.parameters(), lr=1.0)
    at(decayed, 50)
    decayed._set_learning_rates(opt_g, opt_d)
    assert abs(opt_g.param_groups[0]["lr"] - decayed.hparams.lr * (1 + FINAL_LR_SHARE) / 2) < 1e-12
    assert abs(opt_d.param_groups[0]["lr"] - decayed.hparams.lr_discriminator * (1 + FINAL_LR_SHARE) / 2) < 1e-12
