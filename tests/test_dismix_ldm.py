"""DisMix's latent variant: the encoders' shapes, set vs single decoding, timbre swaps, and its chorale data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import REPO, split_folders
from stemkit.disentanglement.dismix_ldm import NO_NOTE, DisMixLDM, DisMixLDMConfig
from stemkit.midi.notes import Note

VAE = dict(channels=8, channel_mults=[1, 2, 2], latent_channels=4, groups=4, mel={"griffin_lim_iters": 2})


def _model(**changes) -> DisMixLDM:
    torch.manual_seed(0)
    return DisMixLDM(DisMixLDMConfig(vae=VAE, hidden=16, layers=2, query_channels=8,
                                     network={"patch": 2, "width": 32, "depth": 1, "heads": 2, "embedding_dim": 32}, **changes))


def _inputs(model: DisMixLDM, batch: int = 2, parts: int = 3, frames: int = 4):
    torch.manual_seed(1)
    mix_latent = torch.randn(batch, model.config.latent_dim, frames)
    query_mels = torch.rand(batch, parts, 64, 8) * 2 - 1
    return mix_latent, query_mels


def test_the_encoders_give_a_pitch_roll_at_the_mel_rate_and_latents_at_the_vae_rate(one_thread):
    model = _model().train()
    for p in model.denoiser.parameters():  # adaLN-Zero starts deaf to its conditions: give every layer weight
        torch.nn.init.normal_(p, std=0.2)
    mix_latent, query_mels = _inputs(model)
    latents = model.encode(mix_latent, query_mels)
    d = model.config.latent_dim
    assert d == 4 * 16
    assert latents.logits.shape == (2, 3, 129, 4 * 4)  # 129 classes at 4 mel frames per latent frame
    assert latents.nu.shape == (2, 3, d, 4) and latents.tau.shape == latents.query_embedding.shape == (2, 3, d)
    assert latents.condition().shape == (2, 3, 2 * d, 4)
    # every trained part learns from the losses: the diffusion loss reaches the encoders through s
    loss = model.diffusion_loss(torch.randn(2, 3, d, 4), latents.condition()) + latents.logits.mean() + latents.tau.pow(2).mean()
    loss.backward()
    silent = [n for n, p in model.named_parameters() if not n.startswith("vae.") and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not silent


def test_a_timbre_swap_changes_tau_and_keeps_nu():
    model = _model().eval()
    mix_latent, query_mels = _inputs(model)
    latents = model.encode(mix_latent, query_mels)
    other = torch.randn_like(latents.tau)
    swapped = latents.condition(tau=other)
    d = model.config.latent_dim
    assert torch.equal(swapped[:, :, :d], latents.nu)
    assert torch.equal(swapped[:, :, d:, 0], other)


def _denoised(model: DisMixLDM, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    from stemkit.disentanglement.dismix_ldm import SOURCE

    decoded, (batch, sources) = model._as_decoded(x)
    cond_tensor, _ = model._as_decoded(cond)
    with torch.no_grad():
        return model.denoiser(decoded, torch.full((decoded.shape[0],), 1.0), {SOURCE: cond_tensor}).reshape(x.shape)


@pytest.mark.parametrize("set_decoding", [True, False])
def test_set_decoding_lets_sources_see_each_other_and_single_decoding_does_not(set_decoding, one_thread):
    model = _model(set_decoding=set_decoding).eval()
    for p in model.denoiser.parameters():  # adaLN-Zero starts as the identity: give every layer weight
        torch.nn.init.normal_(p, std=0.2)
    d = model.config.latent_dim
    x, cond = torch.randn(1, 3, d, 4), torch.randn(1, 3, 2 * d, 4)
    first = _denoised(model, x, cond)
    changed = cond.clone()
    changed[:, 2] += 1.0  # another condition for the third part only
    second = _denoised(model, x, changed)
    others_moved = not torch.allclose(first[:, :2], second[:, :2], atol=1e-6)
    assert others_moved == set_decoding
    assert not torch.allclose(first[:, 2], second[:, 2])
    # either way the parts form a set: permuting parts and their conditions permutes the output
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(_denoised(model, x[:, perm], cond[:, perm]), first[:, perm], atol=1e-5)


def test_single_decoding_of_a_set_model_keeps_each_part_from_the_others_with_the_same_noise(one_thread):
    """Table 3's "Single" column: a set-trained model decodes each part alone; alone it matches a one-part set."""
    model = _model(set_decoding=True).eval()
    for p in model.denoiser.parameters():
        torch.nn.init.normal_(p, std=0.2)
    d = model.config.latent_dim
    cond = torch.randn(1, 3, 2 * d, 4)
    changed = cond.clone()
    changed[:, 2] += 1.0

    def decoded(c: torch.Tensor, single: bool) -> torch.Tensor:
        return model.decode(c, steps=2, generator=torch.Generator().manual_seed(0), single=single)

    joint, alone = decoded(cond, False), decoded(cond, True)
    assert not torch.allclose(decoded(changed, False)[:, :2], joint[:, :2], atol=1e-6)  # together the parts interact
    assert torch.allclose(decoded(changed, True)[:, :2], alone[:, :2], atol=1e-6)  # alone they do not
    assert not torch.allclose(joint, alone, atol=1e-4)
    noise = torch.Generator().manual_seed(0)
    first = model.decode(cond[:, :1], steps=2, generator=noise)  # the first part as a set of one, same first noise
    assert float((alone[:, 0] - first[:, 0]).abs().max()) <= 1e-4 * float(first.abs().max()), float((alone[:, 0] - first[:, 0]).abs().max() / first.abs().max())


def test_the_pitch_roll_is_the_sounding_pitch_per_frame_centre_or_no_note():
    from stemkit.training.chorale_parts import pitch_roll

    notes = [Note(60, 0.0, 0.035), Note(64, 0.03, 0.06), Note(67, 0.08, 0.2)]
    roll = pitch_roll(notes, start=0.0, frames=10, frame_seconds=0.01)
    assert roll.tolist() == [60, 60, 60, 64, 64, 64, NO_NOTE, NO_NOTE, 67, 67]  # overlap: the higher; a gap: no note
    assert pitch_roll(notes, start=0.05, frames=2, frame_seconds=0.01).tolist() == [64, NO_NOTE]


def test_chorale_parts_give_every_part_its_excerpt_query_and_roll(chorale_dir):
    from stemkit.training.chorale_parts import ChoralePartCrops, chorale_tracks

    tracks = chorale_tracks(chorale_dir)
    crops = ChoralePartCrops(tracks, segment=640 * 10, query=640 * 5, hop=640, mel_hop=160, items=3, seed=0, fixed=True)
    item = crops[0]
    parts = len(tracks[0].stems)
    assert item["mix"].shape == (1, 6400) and item["sources"].shape == (parts, 1, 6400)
    assert item["queries"].shape == (parts, 1, 3200) and item["roll"].shape == (parts, 40)
    assert item["roll"].dtype == torch.int64 and ((item["roll"] >= 0) & (item["roll"] <= NO_NOTE)).all()
    assert (item["roll"] != NO_NOTE).any()  # the parts play in the excerpt
    # the query is the same stem elsewhere: not the excerpt's samples
    assert not torch.allclose(item["queries"][0, 0], item["sources"][0, 0, :3200])
    again = ChoralePartCrops(tracks, segment=640 * 10, query=640 * 5, hop=640, mel_hop=160, items=3, seed=0, fixed=True)[0]
    assert all(torch.equal(item[k], again[k]) for k in item)  # a pure function of (seed, index)
    with pytest.raises(ValueError):
        ChoralePartCrops(tracks, segment=1000, query=640, hop=640, mel_hop=160, items=1)


def test_a_tiny_dismix_ldm_trains_and_exports_with_the_cli(cli, chorale_dir, tmp_path):
    """mel VAE → DisMix (two steps each, the real CLI) → export → load: the bundled VAE is the trained one."""
    from stemkit.models import load_model

    splits = {k: str(v) for k, v in split_folders(chorale_dir, tmp_path).items()}
    vae_run, run = tmp_path / "vae", tmp_path / "ldm"
    common = ["--trainer.max_steps", "2", "--trainer.accelerator", "cpu", "--data.train_dir", splits["train"],
              "--data.valid_dir", splits["valid"]]
    cli("fit", "--config", str(REPO / "configs/dismix/mel_vae_tiny.yaml"), *common, "--trainer.default_root_dir", str(vae_run),
        "--trainer.logger.init_args.save_dir", str(vae_run), check=True)
    cli("fit", "--config", str(REPO / "configs/dismix/chorales_ldm_tiny.yaml"), *common, "--model.init_args.vae",
        str(vae_run / "checkpoints/last.ckpt"), "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir",
        str(run), check=True)
    cli("export", str(run / "checkpoints/last.ckpt"), "--name", "tiny-dismix-ldm", "--out", str(tmp_path / "models"), check=True)
    model, meta = load_model(tmp_path / "models" / "tiny-dismix-ldm.safetensors")
    vae, _ = load_model(vae_run / "checkpoints/last.ckpt")
    assert meta["family"] == "dismix-ldm"
    assert all(torch.equal(a, b) for a, b in zip(model.vae.state_dict().values(), vae.state_dict().values()))


def test_instrument_crops_are_loud_parts_labelled_with_their_own_instrument(chorale_dir):
    from stemkit.audio.io import load_audio
    from stemkit.data.ensembles import INSTRUMENTS
    from stemkit.errors import StemkitError
    from stemkit.training.chorale_instruments import ChoraleInstrumentCrops
    from stemkit.training.chorale_parts import chorale_tracks

    tracks = chorale_tracks(chorale_dir)
    crops = ChoraleInstrumentCrops(tracks, 8000, list(INSTRUMENTS), items=12, seed=0)
    seen = set()
    for i in range(12):
        item = crops[i]
        track, j, start, gain, _ = crops.draw(i)
        stem = load_audio(track.stems[j], start=start, frames=8000, mono=True)[0][0]
        assert torch.allclose(item["audio"], stem * gain) and 0.5 <= gain <= 2.0  # ±6 dB
        assert list(INSTRUMENTS)[int(item["instrument"])] == track.instruments[j]
        assert 20 * torch.log10(stem.pow(2).mean().sqrt()) > -50  # a part that sounds, not a rest
        seen.add(track.instruments[j])
    assert len(seen) >= 2
    with pytest.raises(StemkitError, match="lack"):
        ChoraleInstrumentCrops(tracks, 8000, ["violin"], items=1)


def _tiny_vae_file(folder, seed: int):
    from stemkit.models import save_model
    from stemkit.synthesis.mel_vae import MelVAE, MelVAEConfig

    torch.manual_seed(seed)
    vae = MelVAE(MelVAEConfig(channels=8, channel_mults=[1, 2, 2], latent_channels=4, groups=4))
    return vae.eval(), str(save_model(vae, folder / f"vae-{seed}.safetensors"))


def test_cached_latents_are_the_vaes_latents_of_the_whole_track_sliced_at_the_same_draws(chorale_dir, tmp_path, one_thread):
    """The cache serves the same draws (queries, rolls) as the audio path, with the excerpt's latent frames
    of the whole track's encoding; it is reused when present and re-made for another VAE."""
    from stemkit.audio.io import load_audio
    from stemkit.training.chorale_parts import ChoralePartCrops, chorale_tracks
    from stemkit.training.part_latents import encode_tracks

    tracks = chorale_tracks(chorale_dir)[:2]
    vae, vae_file = _tiny_vae_file(tmp_path, 0)
    hop, segment = vae.hop, vae.hop * 10
    paths = encode_tracks(vae_file, tracks, tmp_path / "cache", segment, workers=2, progress=False)
    args = dict(segment=segment, query=hop * 5, hop=hop, mel_hop=vae.codec.hop, items=4, seed=0, fixed=True)
    audio_items, cached = ChoralePartCrops(tracks, **args), ChoralePartCrops(tracks, **args, latents=paths)
    for index in range(4):
        a, c = audio_items[index], cached[index]
        assert torch.equal(a["queries"], c["queries"]) and torch.equal(a["roll"], c["roll"])
        assert "mix" not in c and c["source_latents"].shape == (len(tracks[0].stems), vae.feature_channels, 10)
        track = start = None
        for t in tracks:  # find the excerpt: its track and hop-aligned start
            whole = load_audio(t.mix, mono=True)[0]
            starts = [s for s in range(0, whole.shape[-1] - segment + 1, hop) if torch.equal(whole[..., s : s + segment], a["mix"])]
            if starts:
                track, start = t, starts[0]
                break
        assert track is not None
        signals = [load_audio(p, mono=True)[0] for p in [track.mix, *track.stems]]
        length = -(-max(s.shape[-1] for s in signals) // hop) * hop
        with torch.no_grad():
            expected = torch.cat([vae.features(torch.nn.functional.pad(s, (0, length - s.shape[-1]))[None]) for s in signals])
        expected = expected[..., start // hop : start // hop + 10]
        assert torch.allclose(c["mix_latent"], expected[0], atol=2e-2, rtol=1e-2)  # float16 storage
        assert torch.allclose(c["source_latents"], expected[1:], atol=2e-2, rtol=1e-2)
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert encode_tracks(vae_file, tracks, tmp_path / "cache", segment, progress=False) == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps  # reused, not encoded again
    _, other = _tiny_vae_file(tmp_path, 1)
    assert set(encode_tracks(other, tracks, tmp_path / "cache", segment, progress=False)).isdisjoint(paths)


def test_training_on_cached_latents_runs_and_refuses_another_vaes_cache(cli, chorale_dir, tmp_path):
    """The real CLI: a fit from the cache of the model's own VAE runs; a cache of another VAE is one clear line."""
    splits = {k: str(v) for k, v in split_folders(chorale_dir, tmp_path).items()}
    _, vae_file = _tiny_vae_file(tmp_path, 0)
    _, other = _tiny_vae_file(tmp_path, 1)
    common = ["fit", "--config", str(REPO / "configs/dismix/chorales_ldm_tiny.yaml"), "--trainer.max_steps", "2",
              "--trainer.accelerator", "cpu", "--data.train_dir", splits["train"], "--data.valid_dir", splits["valid"],
              "--model.init_args.vae", vae_file, "--data.init_args.cache_dir", str(tmp_path / "cache")]
    run = tmp_path / "ldm"
    cli(*common, "--data.init_args.latent_vae", vae_file, "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run), check=True)
    assert (run / "checkpoints/last.ckpt").is_file() and len(list((tmp_path / "cache").glob("*.safetensors"))) == 3
    bad = tmp_path / "bad"
    result = cli(*common, "--data.init_args.latent_vae", other, "--trainer.default_root_dir", str(bad),
                 "--trainer.logger.init_args.save_dir", str(bad))
    # one clear last line (an earlier in-process test's logging handler may print "--- Logging error ---" above it)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and last.startswith("stemkit:") and "encoded by another VAE" in last


def test_a_run_starts_from_an_exported_model_on_the_same_vae_and_refuses_another_vaes(tmp_path):
    """init_from: a DisMix-LDM run continues in another session from the model it exported (live weights
    and the decoder's EMA); a model whose decoder learnt another VAE's latent space is one line of error."""
    from stemkit.errors import StemkitError
    from stemkit.models import save_model
    from stemkit.training.dismix_ldm import DisMixLDMSystem

    vae, vae_file = _tiny_vae_file(tmp_path, 0)
    _, other_vae = _tiny_vae_file(tmp_path, 1)
    torch.manual_seed(3)
    net = dict(vae=vae.config.to_dict(), hidden=16, layers=2, query_channels=8,
               network={"patch": 2, "width": 32, "depth": 1, "heads": 2, "embedding_dim": 32})
    donor = DisMixLDM(DisMixLDMConfig(**net))
    donor.vae.load_state_dict(vae.state_dict())
    for p in donor.denoiser.parameters():  # not the zero start a fresh system has
        p.data.normal_(std=0.1)
    path = str(save_model(donor, tmp_path / "donor"))
    system = DisMixLDMSystem(net=net, vae=vae_file, init_from=path)
    for name, value in donor.state_dict().items():
        torch.testing.assert_close(system.model.state_dict()[name], value, rtol=0, atol=0)
    for name, value in donor.denoiser.state_dict().items():
        torch.testing.assert_close(system.ema.state_dict()[name], value, rtol=0, atol=0)
    assert system.hparams["init_from"] == path and not any(p.requires_grad for p in system.model.vae.parameters())
    with pytest.raises(StemkitError, match="another mel VAE"):
        DisMixLDMSystem(net=net, vae=other_vae, init_from=path)
    with pytest.raises(StemkitError, match="config differs in hidden"):
        DisMixLDMSystem(net=dict(net, hidden=32), vae=vae_file, init_from=path)
    noisier = DisMixLDMSystem(net=dict(net, edm={"p_mean": 0.0}), vae=vae_file, init_from=path)  # training noise only
    assert noisier.model.denoiser.config.p_mean == 0.0 and donor.denoiser.config.p_mean == -1.2


def test_pitch_reliance_is_zero_for_a_decoder_deaf_to_pitch_or_for_silence_and_not_otherwise(one_thread):
    """valid/pitch_reliance: the loss gap between the parts' own notes and the notes moved a tritone, at the
    same σ and noise. A fresh adaLN-Zero decoder ignores its conditions (gap exactly 0); so does any
    decoder when every frame is silence (NO_NOTE is not moved); a decoder that reads ν shows a gap."""
    from stemkit.training.dismix_ldm import pitch_reliance

    model = _model().eval()
    mix_latent, query_mels = _inputs(model)
    latents = model.encode(mix_latent, query_mels)
    x0 = torch.randn(2, 3, model.config.latent_dim, 4)
    own, moved = pitch_reliance(model, x0, latents, seed=0)
    assert own.item() == moved.item()
    for p in model.denoiser.parameters():
        torch.nn.init.normal_(p, std=0.2)
    with torch.no_grad():  # a clear note per frame, so the 0.5 threshold keeps it
        latents.logits.fill_(-9.0)
        latents.logits[:, :, 60] = 9.0
    own, moved = pitch_reliance(model, x0, latents, seed=0)
    assert torch.equal(own, pitch_reliance(model, x0, latents, seed=0)[0])  # same σ and noise each call
    assert abs(moved.item() - own.item()) > 1e-4
    with torch.no_grad():
        latents.logits.fill_(-9.0)
        latents.logits[:, :, NO_NOTE] = 9.0
    own, moved = pitch_reliance(model, x0, latents, seed=0)
    assert own.item() == moved.item()
    # with the true roll instead of the (now silent) transcriber's: notes show a gap, silence none
    notes = torch.full((2, 3, 16), 60)
    own, moved = pitch_reliance(model, x0, latents, seed=0, roll=notes)
    assert abs(moved.item() - own.item()) > 1e-4
    own, moved = pitch_reliance(model, x0, latents, seed=0, roll=torch.full((2, 3, 16), NO_NOTE))
    assert own.item() == moved.item()


def test_teacher_forcing_gives_the_chosen_share_of_parts_the_true_rolls_pitch_latent_and_fades(tmp_path, monkeypatch):
    """teacher_forcing: while training, a share of the parts (held for teacher_forcing_hold steps, then falling
    to 0 over teacher_forcing_steps) get ν from the projector of their true one-hot roll; the others keep the
    transcriber's."""
    from stemkit.errors import StemkitError
    from stemkit.training.dismix_ldm import DisMixLDMSystem

    vae, vae_file = _tiny_vae_file(tmp_path, 0)
    net = dict(vae=vae.config.to_dict(), hidden=16, layers=2, query_channels=8,
               network={"patch": 2, "width": 32, "depth": 1, "heads": 2, "embedding_dim": 32})
    system = DisMixLDMSystem(net=net, vae=vae_file, teacher_forcing=1.0, teacher_forcing_steps=100).train()
    model = system.model
    mix_latent, query_mels = _inputs(model, batch=4, parts=3)
    latents = model.encode(mix_latent, query_mels)
    roll = torch.randint(0, 129, (4, 3, 16))
    true_nu = model.project_roll(torch.nn.functional.one_hot(roll, 129).transpose(-1, -2).float().flatten(0, 1), 4)
    assert torch.allclose(system.teacher_forced(latents, roll).nu, true_nu.reshape_as(latents.nu))  # share 1 at step 0
    system.hparams.teacher_forcing = 0.5
    torch.manual_seed(0)
    nu = system.teacher_forced(latents, roll).nu
    forced = [torch.allclose(nu[b, s], true_nu.reshape_as(latents.nu)[b, s]) for b in range(4) for s in range(3)]
    kept = [torch.equal(nu[b, s], latents.nu[b, s]) for b in range(4) for s in range(3)]
    assert all(f != k for f, k in zip(forced, kept)) and 0 < sum(forced) < 12
    assert system.teacher_forcing_share() == 0.5
    monkeypatch.setattr(DisMixLDMSystem, "global_step", property(lambda self: 75))
    assert system.teacher_forcing_share() == pytest.approx(0.125)  # 0.5 · (1 − 75/100)
    monkeypatch.setattr(DisMixLDMSystem, "global_step", property(lambda self: 150))
    assert system.teacher_forcing_share() == 0.0 and system.teacher_forced(latents, roll) is latents
    system.hparams.teacher_forcing_steps = 0  # no fading: the share stays
    assert system.teacher_forcing_share() == 0.5
    with pytest.raises(StemkitError, match="share of the parts"):
        DisMixLDMSystem(net=net, vae=vae_file, teacher_forcing=1.5)
    system.hparams.teacher_forcing_steps, system.hparams.teacher_forcing_hold = 100, 150  # held, then fading
    assert system.teacher_forcing_share() == 0.5  # step 150: the last held step
    monkeypatch.setattr(DisMixLDMSystem, "global_step", property(lambda self: 225))
    assert system.teacher_forcing_share() == pytest.approx(0.125)  # 0.5 · (1 − 75/100), 75 steps after the hold
    monkeypatch.setattr(DisMixLDMSystem, "global_step", property(lambda self: 250))
    assert system.teacher_forcing_share() == 0.0
    with pytest.raises(StemkitError, match="step counts"):
        DisMixLDMSystem(net=net, vae=vae_file, teacher_forcing=1.0, teacher_forcing_hold=-1)


def test_pitch_norm_gives_every_frame_of_nu_unit_scale_and_keeps_pitches_apart(one_thread):
    """pitch_norm: ν at τ's scale whatever the projector's weights, and two pitches still differ."""
    model = _model(pitch_norm=True).eval()
    roll = torch.zeros(2, 129, 16)
    roll[0, 60], roll[1, 66] = 1.0, 1.0
    nu = model.project_roll(roll, 4)
    torch.testing.assert_close(nu.mean(dim=1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(nu.var(dim=1, unbiased=False), torch.ones(2, 4), atol=1e-3, rtol=0)
    assert (nu[0] - nu[1]).abs().mean() > 0.1
    plain = _model().eval().project_roll(roll, 4)
    assert not torch.allclose(plain.var(dim=1, unbiased=False), torch.ones(2, 4), atol=1e-2)


def test_a_run_stopped_between_periodic_saves_keeps_its_last_step(cli, chorale_dir, tmp_path):
    """stemkit fit writes last.ckpt again when training ends after the last every_n_train_steps save
    (Lightning's save_last alone keeps the step-2 file of a run that stops at step 3)."""
    splits = {k: str(v) for k, v in split_folders(chorale_dir, tmp_path).items()}
    _, vae_file = _tiny_vae_file(tmp_path, 0)
    run = tmp_path / "ldm"
    cli("fit", "--config", str(REPO / "configs/dismix/chorales_ldm_tiny.yaml"), "--trainer.max_steps", "3",
        "--trainer.accelerator", "cpu", "--data.train_dir", splits["train"], "--data.valid_dir", splits["valid"],
        "--model.init_args.vae", vae_file, "--data.init_args.latent_vae", vae_file, "--data.init_args.cache_dir",
        str(tmp_path / "cache"), "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir", str(run),
        check=True)
    saved = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 3
