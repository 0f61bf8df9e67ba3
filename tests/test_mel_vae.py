"""DisMix's mel VAE: AudioLDM 2's latent layout, the codec view, and that it learns."""

from __future__ import annotations

import math

import pytest
import torch

from stemkit.diffusion.codecs import build_codec
from stemkit.synthesis.mel_vae import MelVAE, MelVAEConfig

TINY = dict(channels=8, channel_mults=[1, 2, 2], latent_channels=4, groups=4)


def _tone(seconds: float, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return (0.3 * torch.sin(2 * math.pi * 330 * t) * torch.linspace(1, 0.2, t.numel()))[None, None]


def test_the_default_latent_is_audioldm2s_8_by_16_by_a_quarter_of_the_frames(one_thread):
    model = MelVAE(MelVAEConfig()).eval()
    audio = _tone(1.28)  # 128 mel frames at hop 160
    mel = model.mel(audio)
    assert mel.shape == (1, 64, 128)
    mean, logvar = model.encode(mel)
    assert mean.shape == logvar.shape == (1, 8, 16, 32)
    assert model.decode_mel(mean).shape == mel.shape
    # the codec view: channels × latent bands per latent frame of 640 samples
    assert model.hop == 640 and model.feature_channels == 128
    flat = model.features(audio)
    assert flat.shape == (1, 128, 32) and torch.equal(flat, mean.flatten(1, 2))
    assert torch.equal(model.decode_mel(flat), model.decode_mel(mean))


def test_frames_that_are_not_a_multiple_of_the_downsampling_are_refused():
    model = MelVAE(MelVAEConfig(**TINY))
    with pytest.raises(ValueError, match="multiple of 4"):
        model.encode(torch.zeros(1, 64, 30))
    with pytest.raises(ValueError):
        MelVAEConfig(mel={"n_mels": 66})


def test_the_codec_registry_builds_it_and_decodes_latents_to_audio_of_frames_times_hop(one_thread):
    codec = build_codec("mel-vae", dict(TINY, mel={"griffin_lim_iters": 2}))
    assert isinstance(codec, MelVAE)
    latent = torch.zeros(1, codec.feature_channels, 5)
    audio = codec.decode(latent)
    assert audio.shape == (1, 1, 5 * codec.hop) and torch.isfinite(audio).all()


def test_a_tiny_mel_vae_learns_to_reconstruct_a_tone(one_thread):
    from stemkit.training.mel_vae import MelVAESystem

    torch.manual_seed(0)
    system = MelVAESystem(MelVAEConfig(**TINY), kl_weight=1e-4)
    optimizer = torch.optim.Adam(system.model.parameters(), lr=3e-3)
    audio = _tone(0.64)
    first = None
    for _ in range(40):
        terms = system._step(audio, sample=False)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        first = first if first is not None else terms["l1"].item()
    assert terms["l1"].item() < 0.3 * first, (first, terms["l1"].item())
