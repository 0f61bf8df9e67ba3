"""Synthesis building blocks where the answer is known: VAE shapes, the loss balancer's gradient
fractions, conditioning curves, voice splitting and the U-Net's shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemkit.diffusion.backbones.unet1d import UNet1D, UNet1DConfig
from stemkit.midi.notes import Note
from stemkit.synthesis.conditioning import (
    COND_CHANNELS,
    EnvelopeModel,
    condition_tensor,
    envelope_from_audio,
    fit_envelope_model,
    pitch_from_audio,
    pitch_from_notes,
)
from stemkit.synthesis.latent_synth import split_voices
from stemkit.synthesis.losses import LossBalancer, STFTDiscriminator, feature_matching_loss, multi_resolution_stft_loss
from stemkit.synthesis.vae import AudioVAE, VAEConfig

RATE, HOP = 16000, 256


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_vae() -> AudioVAE:
    return AudioVAE(VAEConfig(channels=4, channel_mults=[1, 2, 2, 4], latent_dim=4, dilations=[1, 3], kernel_size=5))


def harmonic_tone(midi: float, seconds: float, second_partial: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    return 0.3 * (torch.sin(2 * np.pi * f0 * t) + second_partial * torch.sin(4 * np.pi * f0 * t) + 0.2 * torch.sin(6 * np.pi * f0 * t))


def test_vae_compresses_time_by_the_hop_and_reconstructs_any_length():
    vae = tiny_vae()
    assert vae.hop == 256
    audio = torch.randn(2, 1, 256 * 12)
    mean, logvar = vae.encode(audio)
    assert mean.shape == logvar.shape == (2, 4, 12)
    assert vae.decode(mean).shape == audio.shape
    odd = torch.randn(1, 1000)
    assert vae.reconstruct(odd).shape == odd.shape
    with pytest.raises(ValueError, match="multiple of the hop"):
        vae.encode(torch.randn(1, 1, 1000))


def test_vae_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(2, 4, 8)
    assert float(AudioVAE.kl(zeros, zeros)) == pytest.approx(0.0)
    assert float(AudioVAE.kl(zeros + 1.0, zeros)) == pytest.approx(2.0)  # ½·Σ_channels μ² = ½·4


def test_balancer_gives_each_loss_its_weight_as_a_share_of_the_gradient():
    output = torch.randn(3, 1, 64, requires_grad=True)
    target = torch.randn(3, 1, 64)
    losses = {"big": 1000.0 * (output - target).pow(2).mean(), "small": 0.001 * (output - target).abs().mean()}
    balancer = LossBalancer({"big": 3.0, "small": 1.0})
    grad = torch.autograd.grad(balancer.surrogate(losses, output), output)[0]
    # the gradient is the weighted sum of each loss's unit-norm gradient: recover the parts
    parts = {}
    for name, loss in losses.items():
        g = torch.autograd.grad(loss, output, retain_graph=True)[0]
        parts[name] = g / g.flatten(1).norm(dim=1).mean()
    expected = 0.75 * parts["big"] + 0.25 * parts["small"]
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
    # a loss scaled by 10⁶ contributes the same share: the balancer removes the scale
    scaled = {"big": losses["big"] * 1e6, "small": losses["small"]}
    fresh = LossBalancer({"big": 3.0, "small": 1.0})
    grad_scaled = torch.autograd.grad(fresh.surrogate(scaled, output), output)[0]
    torch.testing.assert_close(grad_scaled, expected, rtol=1e-4, atol=1e-6)


def _norm_loss(output: torch.Tensor, norm: float) -> torch.Tensor:
    """A loss whose gradient w.r.t. ``output`` has per-item norm exactly ``norm`` (constant over the item)."""
    return norm * output.sum() / output[0].numel() ** 0.5


def _balanced_step(balancer: LossBalancer, norms: dict[str, float]) -> torch.Tensor:
    output = torch.ones(2, 1, 16, dtype=torch.float64, requires_grad=True)
    losses = {name: _norm_loss(output, value) for name, value in norms.items()}
    return torch.autograd.grad(balancer.surrogate(losses, output), output)[0]


def test_balancer_running_norm_is_the_bias_corrected_weighted_mean_of_all_steps():
    """After n steps the running norm is Σ d^(n−k) x_k / Σ d^(n−k) (EnCodec's averager), not a seeded EMA.

    The first norm is 1000× the rest: a seeded EMA (a ← d·a + (1−d)·x, a₁ = x₁) still gives it
    weight d^(n−1) ≈ 0.55 after 600 steps; the bias-corrected mean gives it d^(n−1) / Σ d^j ≈ 0.0012.
    """
    decay, steps = 0.999, 600
    xs = [1000.0] + [1.0 + 0.5 * np.sin(0.05 * k) for k in range(1, steps)]
    balancer = LossBalancer({"l": 1.0}, decay=decay)
    for x in xs:
        grad = _balanced_step(balancer, {"l": x})
    weights = decay ** np.arange(steps - 1, -1, -1)  # d^(n−k) for k = 1..n
    expected = float(np.dot(weights, xs) / weights.sum())
    assert balancer.averages["l"] == pytest.approx(expected, rel=1e-9)
    seeded = xs[0]
    for x in xs[1:]:
        seeded = decay * seeded + (1 - decay) * x
    assert seeded > 100 * expected  # the old behaviour is far off, so the check above discriminates
    # the gradient of the last step is normalised by exactly that average
    torch.testing.assert_close(grad, torch.full_like(grad, xs[-1] / 16**0.5 / expected), rtol=1e-9, atol=0)
    assert balancer.last_norms["l"] == pytest.approx(xs[-1], rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 500])
def test_balancer_first_norm_weight_decays_as_d_to_the_n_minus_1_normalised(n):
    """One norm of 1 followed by zeros: the average is d^(n−1) / Σ_{j<n} d^j (0.61 / 394 at n = 500, not 0.61)."""
    decay = 0.999
    balancer = LossBalancer({"l": 1.0}, decay=decay)
    for step in range(n):
        _balanced_step(balancer, {"l": 1.0 if step == 0 else 0.0})
    expected = decay ** (n - 1) / sum(decay**j for j in range(n))
    assert balancer.averages["l"] == pytest.approx(expected, rel=1e-9)


def test_balancer_constant_norm_is_exact_from_the_first_step_even_for_a_late_loss():
    """A constant norm gives exactly that constant at every step — no warm-up from zero (which an
    uncorrected EMA started at 0 would have: (1−d)·x after one step) — also for a loss that joins
    after 300 steps, as the adversarial terms do; the balanced gradient is then exactly w·g/‖g‖."""
    balancer = LossBalancer({"a": 3.0, "late": 1.0}, decay=0.999)
    for step in range(400):
        norms = {"a": 7.0} | ({"late": 0.25} if step >= 300 else {})
        grad = _balanced_step(balancer, norms)
        assert balancer.averages["a"] == pytest.approx(7.0, rel=1e-12)
        if step >= 300:
            assert balancer.averages["late"] == pytest.approx(0.25, rel=1e-12)
    unit = 1.0 / 16**0.5  # each loss's gradient divided by its own norm
    torch.testing.assert_close(grad, torch.full_like(grad, (0.75 + 0.25) * unit), rtol=1e-9, atol=0)
    # the state survives a checkpoint round trip
    restored = LossBalancer({"a": 3.0, "late": 1.0}, decay=0.999)
    restored.load_state_dict(balancer.state_dict())
    assert restored.averages == balancer.averages and restored.counts == balancer.counts


class _FakeCollective:
    """Two ranks as two threads: ``all_reduce`` sums (or averages) the tensors both threads pass in."""

    def __init__(self, world: int = 2) -> None:
        import threading

        self.world, self.calls = world, 0
        self.barrier = threading.Barrier(world, timeout=20)
        self.lock = threading.Lock()
        self.buffers: list[torch.Tensor] = []

    def all_reduce(self, tensor, op=torch.distributed.ReduceOp.SUM, group=None, async_op=False):
        with self.lock:
            self.buffers.append(tensor.clone())
            self.calls += 1
        self.barrier.wait()
        total = torch.stack(self.buffers).sum(0)
        if op == torch.distributed.ReduceOp.AVG:
            total = total / self.world
        self.barrier.wait()
        with self.lock:
            self.buffers = []
        tensor.copy_(total)
        self.barrier.wait()


def test_balancer_averages_the_gradient_norms_over_ranks(monkeypatch):
    """Under DDP every rank normalises by the mean of the ranks' norms, so their running averages and
    gradient scales agree; per-rank norms (rank 1's are 3× rank 0's) would give each its own."""
    import threading

    fake = _FakeCollective(2)
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", fake.all_reduce)
    local = {0: [{"l1": 1.0, "stft": 10.0}, {"l1": 2.0, "stft": 10.0}], 1: [{"l1": 3.0, "stft": 30.0}, {"l1": 6.0, "stft": 30.0}]}
    balancers = {rank: LossBalancer({"l1": 1.0, "stft": 1.0}, decay=0.5) for rank in local}
    grads: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def rank_main(rank: int) -> None:
        try:
            for norms in local[rank]:
                grads[rank].append(_balanced_step(balancers[rank], norms))
        except BaseException as error:  # surface thread failures in the test
            errors.append(error)

    threads = [threading.Thread(target=rank_main, args=(rank,)) for rank in local]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert fake.calls >= 2 * len(local[0])  # every rank reduced at every step
    # step 1: mean norms l1 = 2, stft = 20; step 2: l1 = 4, stft = 20 → averages (0.5·2 + 4)/1.5, 20
    for rank in local:
        assert balancers[rank].last_norms == pytest.approx({"l1": 4.0, "stft": 20.0})
        assert balancers[rank].averages == pytest.approx({"l1": 5.0 / 1.5, "stft": 20.0})
    # rank 0's last gradient: each loss's local gradient divided by the cross-rank average, weights ½ each
    unit = 1.0 / 16**0.5
    expected = 0.5 * (2.0 * unit) / (5.0 / 1.5) + 0.5 * (10.0 * unit) / 20.0
    torch.testing.assert_close(grads[0][-1], torch.full_like(grads[0][-1], expected), rtol=1e-9, atol=0)


def test_multi_resolution_stft_loss_is_zero_for_equal_signals_and_grows_with_error():
    x = torch.randn(2, 1, 4096)
    assert float(multi_resolution_stft_loss(x, x)) == pytest.approx(0.0, abs=1e-5)
    near, far = x + 0.01 * torch.randn_like(x), x + 1.0 * torch.randn_like(x)
    assert multi_resolution_stft_loss(near, x) < multi_resolution_stft_loss(far, x)


def test_discriminator_returns_logits_and_features_for_matching():
    disc = STFTDiscriminator(channels=4, layers=3)
    audio = torch.randn(2, 1, 4096)
    logits, features = disc(audio)
    assert logits.shape[0] == 2 and len(features) == 3
    assert float(feature_matching_loss(features, features).detach()) == pytest.approx(0.0)


def test_envelope_is_the_window_maximum():
    audio = torch.randn(3 * HOP + 10)
    env = envelope_from_audio(audio, HOP)
    assert env.shape == (4,)
    assert float(env[1]) == pytest.approx(float(audio[HOP:2 * HOP].abs().max()))
    assert float(env[3]) == pytest.approx(float(audio[3 * HOP:].abs().max()))


def test_pitch_from_notes_follows_the_latest_note_and_is_silent_between():
    notes = [Note(60, 0.0, 0.5), Note(64, 0.4, 1.0), Note(67, 1.5, 2.0)]
    pitch, voiced = pitch_from_notes(notes, frames=int(2.2 * RATE / HOP), hop=HOP, sample_rate=RATE)
    times = (np.arange(len(pitch)) + 0.5) * HOP / RATE
    assert set(pitch[times < 0.39]) == {60}
    assert set(pitch[(times > 0.41) & (times < 0.99)]) == {64}  # the overlap goes to the later note
    assert not voiced[(times > 1.01) & (times < 1.49)].any()
    assert set(pitch[(times > 1.51) & (times < 1.99)]) == {67}
    # a crop starting at 1.5 s sees the third note from its first frame
    crop, _ = pitch_from_notes(notes, frames=10, hop=HOP, sample_rate=RATE, start=1.5)
    assert set(crop) == {67}


@pytest.mark.parametrize("midi", [55, 67, 81])
def test_pitch_from_audio_finds_the_fundamental_despite_a_strong_second_partial(midi):
    tone = harmonic_tone(midi, 1.0, second_partial=1.2)
    quiet = torch.zeros(RATE // 2)
    pitch, voiced = pitch_from_audio(torch.cat([tone, quiet]), RATE, HOP)
    sounding = voiced[5:55] > 0
    assert sounding.all()
    assert np.abs(pitch[5:55] - midi).max() < 0.35
    assert not voiced[-20:].any()


def test_condition_tensor_marks_presence_so_the_null_condition_differs_from_silence():
    cond = condition_tensor(np.zeros(8), np.zeros(8), np.zeros(8))
    assert cond.shape == (COND_CHANNELS, 8)
    assert torch.count_nonzero(cond) > 0  # silent but conditioned ≠ all-zero null


def test_envelope_model_fit_recovers_a_known_velocity_law():
    truth = EnvelopeModel(intercept=np.log(0.3), slope=1.5)
    examples = []
    for velocity in (40, 70, 100, 127):
        note = Note(69, 0.1, 0.9, velocity)
        t = torch.arange(RATE) / RATE
        level = truth.level(velocity)
        audio = level * torch.sin(2 * np.pi * 440 * t) * ((t > 0.1) & (t < 0.9))
        examples.append(([note], audio))
    fitted = fit_envelope_model(examples, RATE, HOP)
    assert fitted.slope == pytest.approx(1.5, abs=0.05)
    assert fitted.level(100) == pytest.approx(truth.level(100), rel=0.05)
    curve = fitted.curve([Note(69, 0.2, 0.6, 100)], frames=50, hop=HOP, sample_rate=RATE)
    times = (np.arange(50) + 0.5) * HOP / RATE
    assert curve[times < 0.19].max() == 0 and curve[(times > 0.3) & (times < 0.55)].min() == pytest.approx(fitted.level(100), rel=1e-5)


def test_split_voices_turns_chords_into_lines():
    chord = [Note(60, 0, 1), Note(64, 0, 1), Note(67, 0, 1), Note(72, 1, 2)]
    lines = split_voices(chord)
    assert len(lines) == 3 and sum(len(v) for v in lines) == 4
    for line in lines:
        assert all(a.end <= b.start for a, b in zip(line, line[1:]))
    assert len(split_voices([Note(60, 0, 1), Note(62, 1, 2)])) == 1


@pytest.mark.parametrize("frames", [1, 37, 64])
def test_unet_keeps_the_shape_and_starts_at_zero(frames):
    curves = {"name": "curves", "kind": "frames", "dim": COND_CHANNELS}
    net = UNet1D(UNet1DConfig(in_channels=4, conditions=[curves], channels=[8, 16, 32], blocks_per_level=1,
                              embedding_dim=16, heads=2))
    x = torch.randn(2, 4, frames)
    out = net(x, torch.tensor([0.1, -0.5]), {"curves": torch.randn(2, COND_CHANNELS, frames)})
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer: D starts as c_skip·x


def test_windowed_attention_sees_only_its_window():
    from stemkit.diffusion.backbones.unet1d import SelfAttention

    attn = SelfAttention(8, heads=2, window=4).eval()
    attn.norm = torch.nn.Identity()  # GroupNorm's statistics span the sequence; test the attention alone
    x = torch.randn(1, 8, 10)
    base = attn(x)
    changed = x.clone()
    changed[..., 9] += 5.0  # last (padded) window: frames 8-9
    out = attn(changed)
    torch.testing.assert_close(out[..., :8], base[..., :8])  # earlier windows are unaffected
    assert not torch.allclose(out[..., 8], base[..., 8])
    whole = SelfAttention(8, heads=2, window=0).eval()
    whole.norm = torch.nn.Identity()
    whole.load_state_dict(attn.state_dict())
    assert not torch.allclose(whole(changed)[..., 0], whole(x)[..., 0])  # window 0: global attention


def test_a_folder_of_recordings_reads_with_midi_when_present_and_pitch_from_audio_otherwise(tmp_path):
    from stemkit.audio.io import save_audio
    from stemkit.data.monophonic import MonophonicCropDataset, find_monophonic
    from stemkit.midi.notes import MidiTrack, write_midi

    save_audio(tmp_path / "take1.wav", harmonic_tone(64, 2.0)[None], RATE)
    save_audio(tmp_path / "sub" / "take2.wav", harmonic_tone(71, 2.0)[None], RATE)
    write_midi(tmp_path / "take1.mid", [MidiTrack("violin", 40, [Note(64, 0.0, 2.0)])])
    items = find_monophonic(tmp_path, instrument="violin")  # the instrument only filters chorale datasets
    assert [i.name for i in items] == ["sub_take2", "take1"]
    assert items[0].notes is None and items[1].notes == [Note(64, 0.0, 2.0)]
    for item, midi in zip(items, (71, 64)):
        crops = MonophonicCropDataset([item], frames=32, hop=HOP, items_per_epoch=2, fixed=True)
        crop = crops[0]
        assert crop["audio"].shape == (1, 32 * HOP) and crop["pitch"].shape == crop["envelope"].shape == (32,)
        assert np.abs(crop["pitch"][crop["voiced"] > 0].numpy() - midi).max() < 0.35


def test_a_folder_without_audio_is_a_clear_error(tmp_path):
    from stemkit.data.monophonic import find_monophonic
    from stemkit.errors import StemkitError

    with pytest.raises(StemkitError, match="no audio files"):
        find_monophonic(tmp_path)


def test_pitch_roll_is_one_hot_on_keys_and_shares_fractions():
    from stemkit.synthesis.conditioning import PITCH_BINS, PITCH_LOW, pitch_roll

    pitch = torch.tensor([60.0, 60.25, 0.0, 108.0])
    roll = pitch_roll(pitch, (pitch > 0).float())
    assert roll.shape == (PITCH_BINS, 4)
    assert roll[60 - PITCH_LOW, 0] == 1 and roll[:, 0].sum() == 1
    assert roll[60 - PITCH_LOW, 1] == pytest.approx(0.75) and roll[61 - PITCH_LOW, 1] == pytest.approx(0.25)
    assert roll[:, 2].sum() == 0  # unvoiced
    assert roll[108 - PITCH_LOW, 3] == 1
    cond = condition_tensor(pitch.numpy(), (pitch > 0).float().numpy(), np.full(4, 0.1))
    assert cond.shape == (COND_CHANNELS, 4) and torch.equal(cond[:PITCH_BINS], roll)
