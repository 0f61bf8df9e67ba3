"""`stemkit fit`, `stemkit export` and `stemkit separate` end to end on a tiny LaSAFT, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO, run_cli
from stemkit.separation.separator import DEFAULT_MODEL

TINY = str(REPO / "configs" / "lasaft" / "chorales_tiny.yaml")


@pytest.fixture(scope="module")
def trained(chorale_dir, tmp_path_factory) -> dict:
    """Train the tiny config for a few steps with the real CLI, resume it, and export it."""
    root = tmp_path_factory.mktemp("run")
    common = ["fit", "--config", TINY, "--data.train_dir", str(chorale_dir), "--data.valid_dir", str(chorale_dir),
              "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root)]
    first = run_cli(*common, "--trainer.max_steps", "4", check=True)
    assert "resuming" not in first.stdout
    last = root / "checkpoints" / "last.ckpt"
    assert last.is_file() and list((root / "checkpoints").glob("best-step=*.ckpt"))
    second = run_cli(*common, "--trainer.max_steps", "6", check=True)
    assert "resuming from" in second.stdout
    steps = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert steps == 6
    metrics = (root / "logs").rglob("metrics.csv")
    assert any("valid/cSDR" in p.read_text() for p in metrics)
    out = tmp_path_factory.mktemp("models")
    run_cli("export", str(last), "--name", "tiny-lasaft", "--out", str(out), "--note", "data=3 test chorales", check=True)
    return {"ckpt": last, "model": out / "tiny-lasaft.safetensors", "data": chorale_dir}


def _mix(trained) -> Path:
    return sorted(Path(trained["data"]).glob("*_track*"))[0] / "mix.wav"


def test_separate_writes_every_target_of_a_file(cli, trained, tmp_path):
    mix = _mix(trained)
    result = cli("separate", str(mix), "--model", str(trained["model"]), "--out", str(tmp_path), "--quiet", check=True)
    folder = tmp_path / "tiny-lasaft" / "mix"
    assert sorted(p.name for p in folder.iterdir()) == ["alto.wav", "bass.wav", "soprano.wav", "tenor.wav"]
    ref, rate = sf.read(mix)
    est, est_rate = sf.read(folder / "bass.wav")
    assert est_rate == rate and est.shape == ref.shape
    assert "wrote 4 file(s)" in result.stdout


def test_folder_of_tracks_flac_targets_residual_and_eval(cli, trained, tmp_path):
    cli("separate", str(trained["data"]), "--model", str(trained["ckpt"]), "--out", str(tmp_path), "--format", "flac",
            "--targets", "bass,soprano", "--residual", "--quiet", check=True)
    tracks = sorted(p.name for p in Path(trained["data"]).glob("*_track*"))
    root = tmp_path / "last"
    assert sorted(p.name for p in root.iterdir()) == tracks
    for name in tracks:
        assert sorted(p.name for p in (root / name).iterdir()) == ["bass.flac", "residual.flac", "soprano.flac"]
    mix, _ = sf.read(Path(trained["data"]) / tracks[0] / "mix.wav")
    parts = [sf.read(root / tracks[0] / f"{n}.flac")[0] for n in ("bass", "soprano", "residual")]
    unclipped = np.all(np.abs(np.stack(parts)) < 0.999, axis=0)  # an untrained model may exceed full scale
    assert unclipped.mean() > 0.5
    assert np.abs(sum(parts) - mix)[unclipped].max() < 3.5 / 32768  # three 16-bit roundings
    evaluation = cli("eval", "--reference", str(trained["data"]), "--estimates", str(root), "--targets", "soprano,bass", "--quiet")
    assert evaluation.returncode == 0, evaluation.stderr
    assert "soprano" in evaluation.stdout


def test_existing_outputs_are_kept_unless_overwrite(cli, trained, tmp_path):
    args = ["separate", str(_mix(trained)), "--model", str(trained["model"]), "--out", str(tmp_path), "--quiet"]
    cli(*args, check=True)
    folder = tmp_path / "tiny-lasaft" / "mix"
    target = folder / "alto.wav"
    target.write_bytes(b"user's own file")
    again = cli(*args)
    assert again.returncode == 0 and "skipped 1" in again.stdout
    assert target.read_bytes() == b"user's own file"
    cli(*args, "--overwrite", check=True)
    assert sf.info(target).frames > 0
    tenor = (folder / "tenor.wav").read_bytes()
    (folder / "bass.wav").unlink()
    completed = cli(*args, check=True)  # an incomplete input is finished, the rest left alone
    assert "wrote 1 file(s)" in completed.stdout
    assert sf.info(folder / "bass.wav").frames > 0 and (folder / "tenor.wav").read_bytes() == tenor


def test_default_model_separates_a_test_chorale(cli, chorale_dir, tmp_path):
    """`stemkit separate DATASET` with every default: each stem is far closer to its reference than the mix is."""
    from stemkit.data.layout import list_tracks
    from stemkit.metrics.separation import si_sdr

    result = cli("separate", str(chorale_dir), "--out", str(tmp_path), check=True)
    assert "wrote 12 file(s)" in result.stdout
    gains = []
    for track in list_tracks(chorale_dir):
        mix, _ = sf.read(track.mix)
        for target, stem in zip(track.targets, track.stems):
            reference, _ = sf.read(stem)
            estimate, _ = sf.read(tmp_path / DEFAULT_MODEL / track.name / f"{target}.wav")
            assert estimate.shape == reference.shape
            gains.append(si_sdr(reference, estimate) - si_sdr(reference, mix))
    assert np.mean(gains) > 6.0 and min(gains) > 0.0, gains


def test_other_rates_channels_and_sharding(cli, trained, tmp_path):
    audio, rate = sf.read(_mix(trained))
    stereo = np.stack([audio, 0.5 * audio], axis=1)
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "song_a.wav", stereo[:30000], rate)
    from stemkit.audio.resample import resample

    resampled = resample(torch.from_numpy(stereo.T.copy()).float(), rate, 44100).numpy().T
    sf.write(src / "song_b.flac", resampled, 44100)
    for shard in ("1/2", "2/2"):
        cli("separate", str(src), "--model", str(trained["model"]), "--out", str(tmp_path / "out"), "--shard", shard,
                "--segment", "0.5", "--overlap", "0.5", "--batch-size", "3", "--quiet", check=True)
    a, a_rate = sf.read(tmp_path / "out" / "tiny-lasaft" / "song_a" / "tenor.wav")
    b, b_rate = sf.read(tmp_path / "out" / "tiny-lasaft" / "song_b" / "tenor.wav")
    assert a.shape == (30000, 2) and a_rate == rate
    assert b.shape == resampled.shape and b_rate == 44100


def test_python_api(trained):
    from stemkit import Separator

    sep = Separator(trained["model"], device="cpu")
    audio, rate = sf.read(_mix(trained), dtype="float32")
    mix = torch.from_numpy(audio)[None]
    stems = sep.separate(mix, rate, targets=["alto"])
    assert list(stems) == ["alto"] and stems["alto"].shape == mix.shape
    assert sep.targets == ["soprano", "alto", "tenor", "bass"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.wav"], "input not found"),
        (["{bad}"], "cannot read audio"),
        (["{mix}", "--targets", "vocals"], "unknown target"),
        (["{mix}", "--model", "nope"], "unknown model"),
        (["{mix}", "--shard", "3/2"], "--shard"),
        (["{mix}", "--overlap", "1.5"], "overlap must be in [0, 1)"),
        (["{mix}", "--batch-size", "0"], "batch size must be at least 1"),
        (["{mix}", "--device", "tpu"], "unknown device"),
        pytest.param(["{mix}", "--device", "cuda:7"], "no CUDA GPU",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
    ],
)
def test_bad_input_is_one_line(cli, trained, tmp_path, args, message):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    args = [a.format(bad=bad, mix=_mix(trained)) for a in args]
    if "--model" not in args:
        args += ["--model", str(trained["model"])]
    result = cli("separate", *args, "--out", str(tmp_path / "o"), "--quiet")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "o" / "tiny-lasaft" / "bad").exists()
