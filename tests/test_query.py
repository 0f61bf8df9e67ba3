"""Query-by-example: a clip (or a stored instrument) conditions LaSAFT; trained and run through the real CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import fit_tiny_lasaft, run_cli
from stemkit.data.datasets import CropConfig, StemCropDataset
from stemkit.data.tracks import load_stem_tracks
from stemkit.models import load_model
from stemkit.separation.lasaft import LaSAFT, LaSAFTConfig
from stemkit.separation.query import QueryEncoder
from stemkit.separation.separator import Separator
from stemkit.training.separation import lasaft_loss

@pytest.fixture(scope="module")
def query_model(chorale_dir, tmp_path_factory) -> dict:
    """The tiny config trained with queries on half the crops by the real CLI, then exported."""
    root = tmp_path_factory.mktemp("qrun")
    fit_tiny_lasaft(chorale_dir, root, "--model.net.query_encoder", "true", "--model.net.instruments", "[violin, viola, cello, oboe]",
            "--model.query_probability", "0.5", "--data.conditioning", "query", "--data.query_seconds", "0.5",
            "--trainer.max_steps", "6")
    out = tmp_path_factory.mktemp("qmodels")
    run_cli("export", str(root / "checkpoints" / "last.ckpt"), "--name", "tiny-query", "--out", str(out), check=True)
    track = sorted(Path(chorale_dir).glob("*_track*"))[0]
    clip_dir = tmp_path_factory.mktemp("clips")
    stem_track = next(t for t in load_stem_tracks(chorale_dir) if t.name == track.name)
    assert stem_track.instruments[2] == "viola"
    rate = stem_track.sample_rate
    sf.write(clip_dir / "viola_clip.wav", stem_track.load_stem(2, 0, rate)[0].numpy(), rate)
    return {"model": out / "tiny-query.safetensors", "mix": track / "mix.wav", "clip": clip_dir / "viola_clip.wav", "rate": rate}


def test_training_learns_the_encoder_and_stores_only_the_instruments_it_saw(query_model):
    model, meta = load_model(query_model["model"])
    assert model.query_encoder is not None and meta["config"]["query_encoder"] is True
    assert model.known_instruments == ["violin", "viola", "cello"]  # the string quartet has no oboe
    vectors = torch.stack([model.instrument_condition(n) for n in model.known_instruments])
    assert torch.isfinite(vectors).all() and torch.cdist(vectors, vectors)[0, 1:].min() > 1e-4
    fresh = LaSAFT(model.config)
    moved = [n for n, p in model.query_encoder.named_parameters() if not torch.equal(p, dict(fresh.query_encoder.named_parameters())[n])]
    assert moved  # the optimizer reached the query encoder


def test_cli_writes_the_query_and_instrument_stems_and_only_those(cli, query_model, tmp_path):
    args = ["separate", str(query_model["mix"]), "--model", str(query_model["model"]), "--out", str(tmp_path), "--quiet"]
    cli(*args, "--query", str(query_model["clip"]), check=True)
    folder = tmp_path / "tiny-query" / "mix"
    assert sorted(p.name for p in folder.iterdir()) == ["viola_clip.wav"]
    cli(*args, "--instrument", "violin,cello", "--targets", "bass", check=True)
    assert sorted(p.name for p in folder.iterdir()) == ["bass.wav", "cello.wav", "viola_clip.wav", "violin.wav"]
    mix, rate = sf.read(query_model["mix"])
    for name in ("viola_clip", "violin", "bass"):
        stem, stem_rate = sf.read(folder / f"{name}.wav")
        assert stem_rate == rate and stem.shape == mix.shape and np.isfinite(stem).all() and np.abs(stem).max() > 0


def test_python_api_query_equals_the_encoders_vector_through_the_network(query_model):
    sep = Separator(query_model["model"], device="cpu", precision="32")  # compared with the float32 network below
    mix = torch.from_numpy(sf.read(query_model["mix"], dtype="float32")[0])[None]
    clip = torch.from_numpy(sf.read(query_model["clip"], dtype="float32")[0])[None]
    out = sep.separate(mix, query_model["rate"], query=clip, instruments=["cello"])
    assert sorted(out) == ["cello", "query"]
    with torch.inference_mode():
        vector = sep.model.query_condition(clip[None])[0]
    by_vector = sep.separate(mix, query_model["rate"], targets=["bass"], query=None)
    assert sorted(by_vector) == ["bass"]  # no query: the named targets only
    # the query's output is exactly what the separator gives for the encoder's vector
    from stemkit.separation.separator import separate_with_model

    with torch.inference_mode():
        expected = separate_with_model(sep.model, mix, [vector])[0]
        cello = separate_with_model(sep.model, mix, [sep.model.instrument_condition("cello")])[0]
    torch.testing.assert_close(out["query"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["cello"], cello, atol=1e-5, rtol=0)
    assert (out["query"] - out["cello"]).abs().max() > 1e-6


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--instrument", "oboe"], "unknown instrument(s) oboe: tiny-query knows violin, viola, cello"),
        (["--query", "MISSING.wav"], "no query clip at"),
        (["--query", "SHORT"], "give at least 0.5 s"),
        (["--query", "NAN"], "non-finite sample"),
        (["--query", "CLIP", "--steps", "2"], "separate in one pass"),
        (["--query", "SOPRANO", "--targets", "soprano"], "two outputs would be named soprano"),
    ],
)
def test_bad_queries_are_refused_in_one_line_before_any_output(cli, query_model, tmp_path, extra, message):
    rate = query_model["rate"]
    clips = {"SHORT": tmp_path / "short.wav", "NAN": tmp_path / "nan.wav", "SOPRANO": tmp_path / "soprano.wav",
             "CLIP": query_model["clip"], "MISSING.wav": tmp_path / "missing.wav"}
    sf.write(clips["SHORT"], np.full(rate // 4, 0.1, dtype="float32"), rate)
    sf.write(clips["NAN"], np.full(rate, np.nan, dtype="float32"), rate, subtype="FLOAT")
    sf.write(clips["SOPRANO"], sf.read(query_model["clip"])[0], rate)
    extra = [str(clips.get(a, a)) for a in extra]
    result = cli("separate", str(query_model["mix"]), "--model", str(query_model["model"]), "--out", str(tmp_path / "o"),
                 "--quiet", *extra)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "tiny-query").exists() or not any((tmp_path / "o" / "tiny-query").rglob("*.wav"))


def test_a_model_without_query_encoder_refuses_queries(cli, query_model, tmp_path):
    result = cli("separate", str(query_model["mix"]), "--out", str(tmp_path), "--quiet", "--query", str(query_model["clip"]))
    assert result.returncode != 0 and "need a model with a query encoder" in result.stderr
    assert "Traceback" not in result.stderr


def test_query_crops_ask_for_every_part_their_instrument_plays(chorale_dir):
    """In a string quartet the violin plays soprano and alto: a violin query's target is their sum,
    and the clip comes from another track (so it cannot share the mixture's notes)."""
    tracks = load_stem_tracks(chorale_dir)
    data = StemCropDataset(tracks, CropConfig(segment_seconds=0.5, items_per_epoch=40, conditioning="query", query_seconds=0.5))
    seen = set()
    for i in range(len(data)):
        item = data[i]
        target = int(item["target_index"])
        seen.add(item["instrument"])
        if item["instrument"] == "violin":
            torch.testing.assert_close(item["query_target"], item["stems"][0] + item["stems"][1])
        else:
            torch.testing.assert_close(item["query_target"], item["stems"][target])
        assert item["query"].shape[-1] == data.sample_rate // 2
    assert seen == {"violin", "viola", "cello"}


def test_loss_uses_the_query_condition_and_target_exactly_where_asked():
    torch.manual_seed(0)
    cfg = LaSAFTConfig(sample_rate=8000, audio_channels=1, targets=["a", "b"], n_fft=128, hop_length=32, num_frames=17,
                       n_blocks=3, internal_channels=4, n_internal_layers=2, bn_factor=4, min_bn_units=4, num_tdfs=2,
                       dk=4, embedding_dim=4, query_encoder=True, instruments=["x"])
    model = LaSAFT(cfg).eval()
    batch = {"mix": torch.randn(2, 1, 600), "target_index": torch.tensor([0, 1]), "target": torch.randn(2, 1, 600),
             "query_target": torch.randn(2, 1, 600), "query": torch.randn(2, 1, 800)}
    vectors = model.query_condition(batch["query"])
    use = torch.tensor([True, False])
    loss = lasaft_loss(model, batch, None, vectors, use)
    condition = torch.stack([vectors[0], model.condition(torch.tensor([1]))[0]])
    target = torch.stack([batch["query_target"][0], batch["target"][1]])
    estimate = model.forward_spec(model.spectrogram(batch["mix"]), condition)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(estimate, model.spectrogram(target)))
    assert not torch.allclose(loss, lasaft_loss(model, batch))  # without queries it is a different loss


def test_query_encoder_takes_any_clip_length_and_listens_to_timbre():
    torch.manual_seed(0)
    encoder = QueryEncoder(n_fft=256, hop_length=64, embedding_dim=8).eval()
    t = torch.arange(16000) / 16000
    with torch.no_grad():
        for samples in (400, 8000, 48000):
            assert encoder(torch.randn(2, 1, samples)).shape == (2, 8)
        dull = encoder(torch.sin(2 * torch.pi * 220 * t)[None, None])
        bright = encoder(torch.sign(torch.sin(2 * torch.pi * 220 * t))[None, None])
        stereo = encoder(torch.stack([torch.sin(2 * torch.pi * 220 * t)] * 2)[None])
    assert (dull - bright).abs().max() > 1e-4  # same pitch, other timbre: another vector
    torch.testing.assert_close(stereo, dull)  # channels are averaged
    with pytest.raises(ValueError):
        QueryEncoder(n_fft=200, hop_length=50, embedding_dim=8)
    with pytest.raises(ValueError, match="query encoder"):
        LaSAFTConfig(instruments=["oboe"])


def test_a_query_model_starts_from_a_shipped_separator_with_its_weights():
    """Query training fine-tunes a shipped model: every separating weight is copied, only the query
    encoder and the instrument table are new."""
    from stemkit.training.separation import LaSAFTSystem

    donor, _ = load_model("lasaft-chorales-string-remix")
    net = LaSAFTConfig(**{**donor.config.to_dict(), "query_encoder": True, "instruments": ["violin"]})
    system = LaSAFTSystem(net, init_from="lasaft-chorales-string-remix", query_probability=0.5)
    theirs = donor.state_dict()
    for key, value in system.model.state_dict().items():
        if key.startswith(("query_encoder.", "instrument_")):
            assert key not in theirs
        else:
            assert torch.equal(value, theirs[key]), key
    with pytest.raises(ValueError, match="query encoder"):
        LaSAFTSystem(donor.config, query_probability=0.5)


def _sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


def test_the_shipped_query_model_finds_the_violins_of_a_quartet(cli, chorale_dir, tmp_path):
    """`--model lasaft-chorales-query --instrument violin` on a string quartet (violins play soprano and
    alto; the test chorales are never trained on): the output is nearer the two violin parts than the
    mixture is, and nearer them than the cello's output is."""
    track = sorted(Path(chorale_dir).glob("*_track*"))[0]
    stems = sorted((track / "stems_audio").glob("*.wav"))
    assert [p.stem.split("_", 1)[1] for p in stems] == ["violin", "violin", "viola", "cello"]
    violins = sum(sf.read(p, dtype="float64")[0] for p in stems[:2])
    cli("separate", str(track / "mix.wav"), "--model", "lasaft-chorales-query", "--instrument", "violin,cello",
        "--out", str(tmp_path), "--quiet", check=True)
    folder = tmp_path / "lasaft-chorales-query" / "mix"
    assert sorted(p.name for p in folder.iterdir()) == ["cello.wav", "violin.wav"]
    mix = sf.read(track / "mix.wav", dtype="float64")[0]
    violin = sf.read(folder / "violin.wav", dtype="float64")[0]
    cello = sf.read(folder / "cello.wav", dtype="float64")[0]
    assert _sdr(violins, violin) > _sdr(violins, mix) + 3.0
    assert _sdr(violins, violin) > _sdr(violins, cello) + 3.0
