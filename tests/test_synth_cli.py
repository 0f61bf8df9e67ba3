"""`stemkit fit` (VAE, then latent synth), `export`, `synth` and `eval-synth` end to end on tiny models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from conftest import REPO, run_cli
from stemkit.midi.notes import MidiTrack, Note, read_midi_tracks, write_midi

VAE_TINY = str(REPO / "configs" / "synth" / "violin_vae_tiny.yaml")
LDM_TINY = str(REPO / "configs" / "synth" / "violin_ldm_tiny.yaml")


def _fit(config: str, data: Path, root: Path, *extra: str) -> Path:
    run_cli("fit", "--config", config, "--data.train_dir", str(data), "--data.valid_dir", str(data),
            "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root), *extra, check=True)
    last = root / "checkpoints" / "last.ckpt"
    assert last.is_file()
    return last


@pytest.fixture(scope="module")
def synth_model(chorale_dir, tmp_path_factory) -> dict:
    """A tiny VAE and latent synth trained with the real CLI on the violin stems, then exported."""
    vae = _fit(VAE_TINY, chorale_dir, tmp_path_factory.mktemp("vae"))
    metrics = "".join(p.read_text() for p in (vae.parent.parent / "logs").rglob("metrics.csv"))
    assert "train/adversarial" in metrics and "valid/si_sdr" in metrics  # the discriminator ran, validation scored
    root = tmp_path_factory.mktemp("ldm")
    ldm = _fit(LDM_TINY, chorale_dir, root, "--model.init_args.vae", str(vae), "--data.init_args.vae", str(vae),
               "--data.init_args.cache_dir", str(root / "cache"))
    assert len(list((root / "cache").glob("*.safetensors"))) == 2  # train and valid latents cached
    out = tmp_path_factory.mktemp("models")
    run_cli("export", str(ldm), "--name", "tiny-synth", "--out", str(out), "--note", "data=3 test chorales", check=True)
    run_cli("export", str(vae), "--name", "tiny-vae", "--out", str(out), check=True)
    return {"synth": out / "tiny-synth.safetensors", "vae": out / "tiny-vae.safetensors", "ckpt": ldm, "data": chorale_dir}


def _violin_midi(data: Path) -> Path:
    return sorted(data.glob("*_track*"))[0] / "stems_MIDI" / "0_violin.mid"


def test_synth_renders_a_violin_part_as_long_as_its_midi(cli, synth_model, tmp_path):
    midi = _violin_midi(synth_model["data"])
    out = tmp_path / "violin.wav"
    result = cli("synth", str(midi), "--model", str(synth_model["synth"]), "--out", str(out), "--steps", "2", "--quiet", check=True)
    assert "wrote 1 file(s)" in result.stdout
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.ndim == 1
    expected = pretty_midi.PrettyMIDI(str(midi)).get_end_time()
    assert len(audio) == round(expected * rate)
    again = cli("synth", str(midi), "--model", str(synth_model["synth"]), "--out", str(out), "--steps", "2", "--quiet", check=True)
    assert "skipped 1" in again.stdout  # nothing is overwritten without --overwrite


def test_synth_is_reproducible_by_seed_and_samplers_differ(cli, synth_model, tmp_path):
    midi = _violin_midi(synth_model["data"])
    outs = {}
    for name, args in {"a": ["--seed", "3"], "b": ["--seed", "3"], "c": ["--seed", "4"], "d": ["--sampler", "dpmpp2m", "--cfg", "2"]}.items():
        outs[name] = tmp_path / f"{name}.wav"
        cli("synth", str(midi), "--model", str(synth_model["ckpt"]), "--out", str(outs[name]), "--steps", "3", "--quiet", *args, check=True)
    read = {k: sf.read(v)[0] for k, v in outs.items()}
    assert (read["a"] == read["b"]).all()
    assert not (read["a"] == read["c"]).all()
    assert not (read["a"] == read["d"]).all()


def test_multitrack_midi_with_a_chord_is_mixed(cli, synth_model, tmp_path):
    midi = write_midi(tmp_path / "duet.mid", [
        MidiTrack("upper", 40, [Note(69, 0.0, 1.0, 90), Note(72, 0.0, 1.0, 90), Note(71, 1.0, 1.5, 90)]),
        MidiTrack("lower", 40, [Note(62, 0.25, 1.75, 70)]),
    ])
    out = tmp_path / "duet.flac"
    cli("synth", str(midi), "--model", str(synth_model["synth"]), "--out", str(out), "--steps", "2", "--quiet", check=True)
    audio, rate = sf.read(out)
    assert len(audio) == round(1.75 * rate) and abs(audio).max() <= 1.0


def _transposed(notes: list[Note], semitones: int) -> list[Note]:
    return [dataclasses.replace(note, pitch=note.pitch + semitones) for note in notes]


def test_synth_dataset_then_eval_synth(cli, synth_model, tmp_path):
    """`synth` on a dataset writes one file per violin part, and `eval-synth` pairs and scores them.

    The tiny model's own pitch accuracy means nothing (two diffusion steps after a few batches), so
    that the pitch metric is shown to work end to end the CLI also scores sine renders of the parts:
    on the MIDI's pitches for half the items and a whole tone sharp for the others. The first must
    score high and the second near zero, item by item."""
    data = synth_model["data"]
    cli("synth", str(data), "--model", str(synth_model["synth"]), "--out", str(tmp_path / "gen"), "--steps", "2",
            "--quiet", check=True)
    names = sorted(p.stem for p in (tmp_path / "gen").iterdir())
    assert len(names) == 2 * len(list(data.glob("*_track*"))) and all(n.endswith("_violin") for n in names)
    report = tmp_path / "scores.json"
    cli("eval-synth", "--reference", str(data), "--generated", str(tmp_path / "gen"), "--instrument", "violin",
            "--json", str(report), "--quiet", check=True)
    scores = json.loads(report.read_text())
    assert scores["count"] == len(names) and sorted(scores["items"]) == names
    assert scores["mean"]["log_mel_l1"] > 0

    from stemkit.synthesis.baselines import render_sine
    from stemkit.synthesis.conditioning import EnvelopeModel
    from stemkit.synthesis.evaluation import reference_items

    sines, wrong = tmp_path / "sines", set()
    sines.mkdir()
    for i, item in enumerate(reference_items(data, "violin")):
        notes = [n for t in read_midi_tracks(item.midi) for n in t.notes]
        if i % 2:
            notes = _transposed(notes, 2)
            wrong.add(item.name)
        info = sf.info(item.audio)
        sine = render_sine(notes, info.frames / info.samplerate, info.samplerate, EnvelopeModel())
        sf.write(sines / f"{item.name}.wav", sine[0].numpy(), info.samplerate)
    sine_report = tmp_path / "sines.json"
    cli("eval-synth", "--reference", str(data), "--generated", str(sines), "--instrument", "violin",
            "--json", str(sine_report), "--quiet", check=True)
    sine_scores = json.loads(sine_report.read_text())["items"]
    assert sorted(sine_scores) == names and 0 < len(wrong) < len(names)
    for name, item_scores in sine_scores.items():
        if name in wrong:
            assert item_scores["pitch_acc"] < 0.1, name  # measured ≈ 0.00
        else:
            assert item_scores["pitch_acc"] > 0.9, name  # measured ≈ 0.98


@pytest.mark.parametrize("case", ["not_midi", "no_notes", "out_of_range", "wrong_instrument", "bad_sampler"])
def test_bad_input_is_one_line_and_writes_nothing(cli, synth_model, tmp_path, case):
    args = []
    if case == "not_midi":
        src = tmp_path / "song.mid"
        src.write_text("this is not MIDI")
    elif case == "no_notes":
        src = write_midi(tmp_path / "empty.mid", [MidiTrack("empty", 40, [])])
    else:
        src = write_midi(tmp_path / "low.mid", [MidiTrack("v", 40, [Note(30 if case == "out_of_range" else 72, 0, 1)])])
        args = {"wrong_instrument": ["--instrument", "tuba"], "bad_sampler": ["--sampler", "magic"]}.get(case, [])
    out = tmp_path / "out.wav"
    result = cli("synth", str(src), "--model", str(synth_model["synth"]), "--out", str(out), "--steps", "2", "--quiet", *args)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("stemkit: error:")
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    expected = {"not_midi": "not a readable MIDI", "no_notes": "no notes", "out_of_range": "outside", "wrong_instrument": "not tuba",
                "bad_sampler": "unknown sampler"}[case]
    assert expected in result.stderr


def test_exported_vae_reconstructs_and_the_synth_bundles_it(synth_model):
    import torch

    from stemkit.models import load_model
    from stemkit.synthesis.vae import load_vae

    vae = load_vae(synth_model["vae"])
    bundled = load_vae(synth_model["synth"])
    synth, meta = load_model(synth_model["synth"])
    assert meta["family"] == "latent-synth" and meta["task"] == "synthesis" and meta["provenance"]["data"] == "3 test chorales"
    # what stemkit fit recorded in the checkpoint travels into the export: steps, code version, machine
    assert meta["provenance"]["global_step"] > 0 and meta["provenance"]["stemkit"] and meta["provenance"]["hardware"]
    for a, b in zip(vae.state_dict().values(), bundled.state_dict().values()):
        assert torch.equal(a, b)
    low, high = (int(v) for v in synth.pitch_range)
    assert 50 <= low < high <= 100  # the violin parts' range, fitted at training start
    audio = torch.randn(1, 5000) * 0.1
    assert vae.reconstruct(audio).shape == audio.shape


def test_the_shipped_synthesizer_renders_a_test_split_violin_part(cli, chorale_dir, tmp_path):
    """The done-when check: the default model plays a test-split violin MIDI part in tune.

    With 6 Heun steps the shipped model scores 0.96–0.97 on these 4 s parts (BENCHMARKS.md: 0.944 at
    the default 18 steps over 12 test parts of 15 s; FluidSynth's own rendering 0.956; the issue's
    target ≥ 0.8), so it must clear 0.85. So that the bar means something, the
    same metric must reject the same audio as a render of the wrong notes — the part a whole tone
    off either way (≈ 0.01–0.03), which is what a model ignoring or misreading its pitch condition
    would produce — and white noise (0)."""
    midi = _violin_midi(chorale_dir)
    out = tmp_path / "part.wav"
    cli("synth", str(midi), "--out", str(out), "--steps", "6", "--quiet", check=True)
    audio, rate = sf.read(out)
    assert len(audio) == round(pretty_midi.PrettyMIDI(str(midi)).get_end_time() * rate)
    from stemkit.metrics.synthesis import pitch_accuracy

    notes = [n for t in read_midi_tracks(midi) for n in t.notes]
    assert pitch_accuracy(audio, rate, notes) > 0.85
    for semitones in (2, -2):  # inside pYIN's ±3 semitone search range, so the pitch is heard and judged wrong
        assert pitch_accuracy(audio, rate, _transposed(notes, semitones)) < 0.1, semitones
    noise = 0.1 * np.random.default_rng(0).standard_normal(len(audio))
    assert pitch_accuracy(noise, rate, notes) < 0.05
