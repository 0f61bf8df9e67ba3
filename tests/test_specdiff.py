"""Spectrogram diffusion: segments in order with their context, conditions that matter, and its data."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from conftest import REPO, split_folders
from stemkit.errors import StemkitError
from stemkit.midi.notes import MidiTrack, Note
from stemkit.midi.tokens import encode_piece
from stemkit.synthesis.specdiff import CONTEXT, NOTES, SpecDiff, SpecDiffConfig, pad_tokens

TOKENS = {"segment_seconds": 0.64, "max_tokens": 128}
NETWORK = {"width": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "mlp_dim": 64, "embedding_dim": 32}
PIECE = [MidiTrack("violin", 40, [Note(67, 0.1, 0.9), Note(69, 0.9, 1.5)]), MidiTrack("cello", 42, [Note(48, 0.0, 1.5)])]


def _model(**changes) -> SpecDiff:
    torch.manual_seed(0)
    changes = {"mel": {"griffin_lim_iters": 2}, **changes}
    model = SpecDiff(SpecDiffConfig(tokens=TOKENS, network=NETWORK, **changes)).eval()
    for p in model.denoiser.parameters():  # the output layer starts at zero: give every layer weight
        torch.nn.init.normal_(p, std=0.1)
    return model


def test_a_piece_is_generated_segment_by_segment_to_its_length(one_thread):
    model = _model()
    assert model.config.segment_frames == 32  # 0.64 s at hop 320
    mel = model.generate_mel(PIECE, steps=2)
    assert mel.shape == (128, 3 * 32) and mel.abs().max() <= 1.0  # 1.5 s → three segments, clamped to the codec's range
    audio = model.synthesize(PIECE, seconds=1.5, steps=2)
    assert audio.shape == (1, 24000) and torch.isfinite(audio).all()


def test_sampling_encodes_each_segment_once_and_samples_the_same_mel(one_thread, monkeypatch):
    """The sampler calls the network 2·steps − 1 times per segment with the same notes and context: their
    encodings are reused within a segment, never across segments, and the mel is what re-encoding gives."""
    model = _model()
    net, calls = model.denoiser.net, []
    encode = net.encode
    monkeypatch.setattr(net, "encode", lambda *args: calls.append(1) or encode(*args))
    reused = model.generate_mel(PIECE, steps=4, generator=torch.Generator().manual_seed(3))
    assert len(calls) == 3  # three segments, one encoding each
    calls.clear()
    monkeypatch.setattr(net, "reusing_encodings", contextlib.nullcontext)
    fresh = model.generate_mel(PIECE, steps=4, generator=torch.Generator().manual_seed(3))
    assert len(calls) == 3 * 7 and torch.equal(reused, fresh)  # Heun: 2·4 − 1 network calls per segment


def test_the_notes_and_the_previous_segment_change_the_denoised_mel(one_thread):
    model = _model()
    segments = encode_piece(PIECE, model.config.vocabulary()).segments
    ids, mask = pad_tokens(segments[:2])
    x = torch.randn(2, 128, 32)
    sigma = torch.full((2,), 1.0)

    def denoise(cond):
        with torch.no_grad():
            return model.denoiser(x, sigma, cond)

    previous = torch.rand(2, 128, 32) * 2 - 1
    base = denoise(model.conditions(ids, mask, previous))
    other_notes = denoise(model.conditions(ids.flip(0), mask.flip(0), previous))
    other_context = denoise(model.conditions(ids, mask, -previous))
    assert not torch.allclose(base, other_notes) and not torch.allclose(base, other_context)
    first = model.conditions(ids, mask, None)  # a piece's first segment reads the context's null
    assert first["null:" + CONTEXT].all() and first[NOTES] is ids


def test_without_context_the_model_has_no_context_encoder():
    with_context, without = _model(), _model(context=False)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(with_context) > count(without)  # one token encoder fewer
    assert CONTEXT not in without.conditions(*pad_tokens([[1]]), torch.zeros(1, 128, 32))


def test_the_autoregressive_decoder_reads_only_earlier_frames(one_thread):
    model = _model(objective="autoregressive")
    cond = model.conditions(*pad_tokens([[1, 2, 3]]), None)
    mel = torch.rand(1, 128, 32) * 2 - 1
    changed = mel.clone()
    changed[..., 20:] = -changed[..., 20:]
    with torch.no_grad():
        a, b = model.predict_frames(mel, cond), model.predict_frames(changed, cond)
    # frame t is predicted from frames < t: changing frames ≥ 20 leaves frames ≤ 20 alone, and moves the later ones
    assert torch.allclose(a[..., :21], b[..., :21], atol=1e-6) and not torch.allclose(a[..., 21:], b[..., 21:])
    assert torch.allclose(model.loss(mel, cond), torch.nn.functional.mse_loss(a, mel))


def test_autoregressive_generation_is_what_teacher_forcing_predicts_on_its_own_output(one_thread):
    model = _model(objective="autoregressive")
    mel = model.generate_mel(PIECE[:1], seconds=0.64)
    assert mel.shape == (128, 32)
    segment = encode_piece(PIECE[:1], model.config.vocabulary(), 0.64).segments[0]
    with torch.no_grad():
        again = model.predict_frames(mel[None], model.conditions(*pad_tokens([segment]), None)).clamp(-1, 1)[0]
    assert torch.allclose(again, mel, atol=1e-5)  # each frame was generated from exactly the frames before it
    with pytest.raises(StemkitError, match="no guidance"):
        model.generate_mel(PIECE, cfg=2.0)
    with pytest.raises(ValueError, match="objective"):
        SpecDiffConfig(objective="gan")


def test_segments_carry_their_tokens_audio_and_previous_audio(chorale_dir):
    from stemkit.audio.io import load_audio
    from stemkit.data.note_datasets import find_recordings
    from stemkit.midi.tokens import NoteVocabulary
    from stemkit.training.specdiff_data import NoteSegments, collate_segments

    recordings = find_recordings("chorales", chorale_dir)
    vocab = NoteVocabulary(**TOKENS)
    data = NoteSegments(recordings, vocab, 16000, items=24, seed=0, fixed=True)
    items = [data[i] for i in range(24)]
    assert any(not i["first"] for i in items) and any(i["first"] for i in items)
    length = 10240  # 0.64 s
    for item in items:
        recording, segment = recordings[item["recording"]], item["segment"]
        assert item["tokens"] == encode_piece(recording.tracks(), vocab).segments[segment]
        full = load_audio(recording.audio, mono=True)[0][0]
        full = torch.nn.functional.pad(full, (0, length))  # the last segment runs past the end: zeros there
        assert torch.allclose(item["audio"][0], full[segment * length:(segment + 1) * length], atol=1e-6)
        if item["first"]:
            assert segment == 0 and not item["previous"].any()
        else:
            assert torch.allclose(item["previous"][0], full[(segment - 1) * length:segment * length], atol=1e-6)
    batch = collate_segments(items[:3])
    assert batch["tokens"].shape[0] == 3 and batch["token_mask"].sum(1).tolist() == [len(i["tokens"]) for i in items[:3]]


def test_stemkit_synth_renders_a_multitrack_midi_with_drums_through_a_tiny_trained_model(cli, chorale_dir, tmp_path):
    """fit (two steps, the real CLI) → export → `stemkit synth` on a two-instrument MIDI with a drum track."""
    from stemkit.audio.io import audio_info
    from stemkit.midi.notes import write_midi

    splits = {k: str(v) for k, v in split_folders(chorale_dir, tmp_path).items()}
    run = tmp_path / "run"
    cli("fit", "--config", str(REPO / "configs/specdiff/tiny.yaml"),
        "--data.train", f"{{chorales: {splits['train']}, chorale_stems: {splits['train']}}}",
        "--data.valid", f"{{chorales: {splits['valid']}, chorale_stems: {splits['valid']}}}", "--trainer.max_steps", "2", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir", str(run), check=True)
    refused = cli("export", str(run / "checkpoints/last.ckpt"), "--name", "tiny-specdiff", "--out", str(tmp_path / "models"),
                  "--sampling", "cfg=loud")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "sampling setting cfg='loud'" in refused.stderr and not (tmp_path / "models").exists()
    cli("export", str(run / "checkpoints/last.ckpt"), "--name", "tiny-specdiff", "--out", str(tmp_path / "models"),
        "--sampling", "cfg=1.5", check=True)
    assert json.loads((tmp_path / "models/tiny-specdiff.json").read_text())["sampling"] == {"cfg": 1.5}
    song = write_midi(tmp_path / "song.mid", PIECE + [MidiTrack("drums", 0, [Note(36, 0.0, 0.1), Note(38, 0.5, 0.6)], is_drum=True)])
    out = tmp_path / "song.wav"
    result = cli("synth", str(song), "--model", str(tmp_path / "models/tiny-specdiff.safetensors"), "--out", str(out),
                 "--steps", "2", "--quiet", check=True)
    info = audio_info(out)
    assert info.sample_rate == 16000 and abs(info.frames - 1.5 * 16000) <= 16, result.stdout
    from stemkit.models import save_model
    from stemkit.synthesis.vocoder import MelVocoder, MelVocoderConfig

    torch.manual_seed(0)
    save_model(MelVocoder(MelVocoderConfig(dim=8, intermediate=16, layers=1)), tmp_path / "voc")
    save_model(MelVocoder(MelVocoderConfig(mel={"n_mels": 64}, dim=8, intermediate=16, layers=1)), tmp_path / "voc64")
    vocoded = tmp_path / "vocoded.wav"
    cli("synth", str(song), "--model", str(tmp_path / "models/tiny-specdiff.safetensors"), "--out", str(vocoded),
        "--steps", "2", "--vocoder", str(tmp_path / "voc.safetensors"), "--quiet", check=True)
    assert audio_info(vocoded).frames == info.frames and vocoded.read_bytes() != out.read_bytes()
    wrong = cli("synth", str(song), "--model", str(tmp_path / "models/tiny-specdiff.safetensors"), "--out",
                str(tmp_path / "wrong.wav"), "--vocoder", str(tmp_path / "voc64.safetensors"), "--quiet")
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1 and "other mel settings (n_mels differ)" in wrong.stderr
    assert not (tmp_path / "wrong.wav").exists()


def test_a_run_starts_from_an_exported_model_of_the_same_config_and_refuses_another(tmp_path):
    """init_from: a training run continues from a shipped/exported model (live weights and EMA), so training
    carries over between machines; a model of another size is one line of error, not a partial load."""
    from stemkit.models import save_model
    from stemkit.training.specdiff import SpecDiffSystem

    donor = _model()
    path = save_model(donor, tmp_path / "donor")
    config = {"tokens": TOKENS, "network": NETWORK, "mel": {"griffin_lim_iters": 2}}
    system = SpecDiffSystem(net=config, init_from=str(path))
    for name, value in donor.state_dict().items():
        torch.testing.assert_close(system.model.state_dict()[name], value, rtol=0, atol=0)
    for name, value in donor.denoiser.state_dict().items():
        torch.testing.assert_close(system.ema.state_dict()[name], value, rtol=0, atol=0)
    assert system.hparams["init_from"] == str(path)
    with pytest.raises(StemkitError, match="config differs in network.width"):
        SpecDiffSystem(net=dict(config, network=dict(NETWORK, width=16)), init_from=str(path))


def test_a_warm_start_may_change_the_training_noise_and_the_decoder_but_not_the_preconditioning(tmp_path):
    """Continuing a shipped model with another training noise distribution (EDM's p_mean) or another mel
    decoder changes no weight's meaning, so it is allowed and the run's values hold; σ_data rescales every
    input and output of the network, so a run that changes it is refused in one line."""
    from stemkit.models import save_model
    from stemkit.training.specdiff import SpecDiffSystem

    donor = _model()
    path = save_model(donor, tmp_path / "donor")
    config = {"tokens": TOKENS, "network": NETWORK, "mel": {"griffin_lim_iters": 2, "vocoder": "my-vocoder"},
              "edm": {"sigma_data": 0.5, "p_mean": 0.0}}
    system = SpecDiffSystem(net=config, init_from=str(path))
    for name, value in donor.state_dict().items():
        torch.testing.assert_close(system.model.state_dict()[name], value, rtol=0, atol=0)
    assert system.model.denoiser.config.p_mean == 0.0 and donor.denoiser.config.p_mean == -1.2
    assert system.model.config.mel["vocoder"] == "my-vocoder"
    with pytest.raises(StemkitError, match=r"config differs in edm\.sigma_data$"):
        SpecDiffSystem(net=dict(config, edm={"sigma_data": 0.4, "p_mean": 0.0}), init_from=str(path))


def test_token_times_put_each_note_token_at_its_frame():
    """token_times: a TIME token and everything after it (up to the next TIME) sit at that time's frame; the tie
    section, before any TIME, at frame 0; the violin's G4 starting at 0.1 s at frame 5 (50 frames/s)."""
    model = _model(token_times=True)
    vocab = model.config.vocabulary()
    segment = encode_piece(PIECE, vocab).segments[0]
    ids, _ = pad_tokens([segment])
    frames = model.token_frames(ids)[0].tolist()
    assert frames == sorted(frames) and frames[0] == 0
    is_time = [vocab.time_base <= t < vocab.time_base + vocab.max_time_steps for t in segment]
    for i, token in enumerate(segment):
        if is_time[i]:
            assert frames[i] == (token - vocab.time_base + 1) * model.config.segment_frames // vocab.segment_steps
        elif not any(is_time[:i]):
            assert frames[i] == 0
    g4 = [frames[i] for i, t in enumerate(segment) if t == vocab.pitch(67)]
    assert g4 and g4[0] == 5


def test_token_times_change_the_denoiser_only_where_the_notes_are_not_null(one_thread):
    from stemkit.diffusion.conditions import NULL, times_key

    model = _model(token_times=True, context=False)
    ids, mask = pad_tokens([encode_piece(PIECE, model.config.vocabulary()).segments[0]] * 2)
    x, sigma = torch.randn(2, 128, 32, generator=torch.Generator().manual_seed(0)), torch.full((2,), 1.0)
    timed = model.conditions(ids, mask, None)
    untimed = {k: v for k, v in timed.items() if k != times_key(NOTES)}
    with torch.no_grad():
        assert not torch.allclose(model.denoiser(x, sigma, timed), model.denoiser(x, sigma, untimed))
        null = torch.tensor([True, False])
        a = model.denoiser(x, sigma, dict(timed, **{NULL: null}))
        b = model.denoiser(x, sigma, dict(untimed, **{NULL: null}))
    torch.testing.assert_close(a[0], b[0])  # a null item reads no time code (guidance's branch stays unconditioned)
    assert not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="must be \\[B, L\\]"):
        model.denoiser(x, sigma, dict(timed, **{times_key(NOTES): timed[times_key(NOTES)][:, :3]}))


def test_a_model_recommends_its_sampling_settings_and_the_callers_flags_override_them(tmp_path, one_thread):
    """`stemkit export --sampling cfg=2` travels in the model's JSON: the synthesizer samples with it
    when the caller does not say (so the guidance actually changes the audio), an explicit value wins,
    a model without any keeps 18 Heun steps and no guidance, and a bad setting is refused."""
    from stemkit.midi.notes import write_midi
    from stemkit.models import save_model
    from stemkit.synthesis.synthesize import Synthesizer

    guided = save_model(_model(), tmp_path / "guided", sampling={"cfg": "3", "steps": "2"})
    plain = save_model(_model(), tmp_path / "plain")
    song = write_midi(tmp_path / "song.mid", PIECE)
    recommended = Synthesizer(str(guided), device="cpu")
    assert (recommended.cfg, recommended.steps, recommended.sampler) == (3.0, 2, "heun")
    overridden = Synthesizer(str(guided), device="cpu", cfg=1.0)
    assert (overridden.cfg, overridden.steps) == (1.0, 2)
    default = Synthesizer(str(plain), device="cpu")
    assert (default.cfg, default.steps, default.sampler) == (1.0, 18, "heun")
    assert not torch.equal(recommended.synthesize_file(song), overridden.synthesize_file(song))
    for bad in ({"cfg": "-1"}, {"steps": "0"}, {"sampler": "ddim"}, {"guidance": "2"}, {"cfg": "nan"}):
        with pytest.raises(StemkitError, match="sampling setting"):
            save_model(_model(), tmp_path / "bad", sampling=bad)
    assert not (tmp_path / "bad.json").exists()


def test_the_caller_picks_a_mel_models_decoder_and_a_model_without_mels_refuses_one(cli, tmp_path, one_thread):
    """`vocoder=` swaps the mel → audio decoder at inference: a named vocoder replaces Griffin-Lim (and
    changes the audio), "griffin-lim" brings it back for a model whose JSON names a vocoder, and a
    synthesizer that samples no mels says so instead of ignoring the request."""
    from stemkit.midi.notes import write_midi
    from stemkit.models import save_model
    from stemkit.synthesis.mel_codec import GRIFFIN_LIM
    from stemkit.synthesis.synthesize import Synthesizer
    from stemkit.synthesis.vocoder import MelVocoder, MelVocoderConfig

    torch.manual_seed(0)
    vocoder = save_model(MelVocoder(MelVocoderConfig(dim=8, intermediate=16, layers=1)), tmp_path / "voc")
    plain = save_model(_model(), tmp_path / "plain")
    voiced = save_model(_model(mel={"griffin_lim_iters": 2, "vocoder": str(vocoder)}), tmp_path / "voiced")
    song = write_midi(tmp_path / "song.mid", PIECE)
    griffin = Synthesizer(str(plain), device="cpu", steps=2)
    assert griffin.model.codec.vocoder() is None
    chosen = Synthesizer(str(plain), device="cpu", steps=2, vocoder=str(vocoder))
    assert isinstance(chosen.model.codec.vocoder(), MelVocoder)
    assert Synthesizer(str(voiced), device="cpu", steps=2).model.codec.vocoder() is not None
    assert f"mel decoder: {vocoder}" in cli("models", str(voiced), check=True).stdout
    assert "mel decoder: Griffin-Lim" in cli("models", str(plain), check=True).stdout
    back = Synthesizer(str(voiced), device="cpu", steps=2, vocoder=GRIFFIN_LIM)
    assert back.model.codec.vocoder() is None
    assert torch.equal(back.synthesize_file(song), griffin.synthesize_file(song))
    assert not torch.equal(chosen.synthesize_file(song), griffin.synthesize_file(song))
    with pytest.raises(StemkitError, match="not found|no model"):
        Synthesizer(str(plain), device="cpu", vocoder=str(tmp_path / "missing.safetensors"))
    orphan = save_model(_model(mel={"griffin_lim_iters": 2, "vocoder": str(tmp_path / "gone.safetensors")}), tmp_path / "orphan")
    with pytest.raises(StemkitError, match="not found|no model"):  # its own decoder is missing: refused before sampling
        Synthesizer(str(orphan), device="cpu")
    with pytest.raises(StemkitError, match="does not decode mel spectrograms"):
        Synthesizer("violin-ldm-chorales", device="cpu", vocoder=str(vocoder))  # the shipped latent synthesizer


def test_note_spans_hand_each_frame_the_encodings_of_the_notes_sounding_in_it(one_thread):
    """note_spans: the violin's G4 (0.1–0.9 s) covers frames 5–44 of the piece, so 5–31 of the first 32-frame
    segment, and the cello held from 0 s covers all of it; at each frame the decoder's input gains the sum of
    the encodings of exactly those notes; a null item (guidance's branch) gains nothing."""
    from stemkit.diffusion.conditions import NULL, spans_key

    model = _model(note_spans=True, context=False)
    vocab = model.config.vocabulary()
    segment = encode_piece(PIECE, vocab).segments[0]
    ids, mask = pad_tokens([segment] * 2)
    cond = model.conditions(ids, mask, None)
    spans = cond[spans_key(NOTES)]
    g4 = segment.index(vocab.pitch(67))
    c3 = segment.index(vocab.pitch(48))
    assert spans[0, g4].tolist() == [5, 32] and spans[0, c3].tolist() == [0, 32]
    assert sum(int(e > s) for s, e in spans[0].tolist()) == 2  # the two notes; no other token spans a frame

    net = model.denoiser.net
    x, sigma = torch.randn(2, 128, 32, generator=torch.Generator().manual_seed(0)), torch.full((2,), 1.0)
    with torch.no_grad():
        null = dict(cond, **{NULL: torch.tensor([True, False])})
        encoded, _ = net.encoders[0](null, 2, x, net.positions)
        spanned = net.encode(null, 2, x).spanned
        torch.testing.assert_close(spanned[0], torch.zeros_like(spanned[0]))
        torch.testing.assert_close(spanned[1, 10], net.spans_in(encoded[1, g4] + encoded[1, c3]))
        torch.testing.assert_close(spanned[1, 2], net.spans_in(encoded[1, c3]))
        without = {k: v for k, v in null.items() if k != spans_key(NOTES)}
        a, b = model.denoiser(x, sigma, null), model.denoiser(x, sigma, without)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match=r"must be \[B, L, 2\]"):
        model.denoiser(x, sigma, dict(cond, **{spans_key(NOTES): spans[:, :3]}))


def test_a_warm_start_may_switch_note_spans_on_and_starts_as_the_donor(tmp_path, one_thread):
    """Note spans add one zero-initialised projection, so a trained model may start reading them: every donor
    weight is loaded, the new projection is zero, and the denoiser answers exactly as the donor until it trains.
    Switching them off again would drop trained weights: refused."""
    from stemkit.diffusion.conditions import spans_key
    from stemkit.models import save_model
    from stemkit.training.specdiff import SpecDiffSystem

    donor = _model()
    path = save_model(donor, tmp_path / "donor")
    config = {"tokens": TOKENS, "network": NETWORK, "mel": {"griffin_lim_iters": 2}}
    system = SpecDiffSystem(net=dict(config, note_spans=True), init_from=str(path))
    grown = system.model.eval()
    for name, value in donor.state_dict().items():
        torch.testing.assert_close(grown.state_dict()[name], value, rtol=0, atol=0)
    assert not grown.denoiser.net.spans_in.weight.any() and not system.ema.net.spans_in.weight.any()
    ids, mask = pad_tokens(encode_piece(PIECE, donor.config.vocabulary()).segments)
    previous = torch.zeros(ids.shape[0], 128, 32)
    cond = grown.conditions(ids, mask, previous)
    assert spans_key(NOTES) in cond
    x, sigma = torch.randn(ids.shape[0], 128, 32, generator=torch.Generator().manual_seed(1)), torch.full((ids.shape[0],), 0.7)
    with torch.no_grad():
        torch.testing.assert_close(grown.denoiser(x, sigma, cond), donor.denoiser(x, sigma, cond), rtol=0, atol=0)
    spanned = save_model(grown, tmp_path / "spanned")
    with pytest.raises(StemkitError, match="config differs in note_spans"):
        SpecDiffSystem(net=config, init_from=str(spanned))
