"""``stemkit eval`` and ``stemkit demo`` through the real CLI."""

import json

import numpy as np
import pytest

from conftest import run_cli
from stemkit.separation.separator import DEFAULT_MODEL
from stemkit.audio.io import load_audio, save_audio
from stemkit.data.layout import list_tracks


def test_oracles_bracket_and_json(cli, chorale_dir, tmp_path):
    mixture = cli("eval", "--reference", str(chorale_dir), "--oracle", "mixture", "--json", str(tmp_path / "mix.json"), "--quiet", check=True)
    assert "mixture (oracle)" in mixture.stdout
    irm = cli("eval", "--reference", str(chorale_dir), "--oracle", "irm", "--json", str(tmp_path / "irm.json"), "--workers", "2", "--quiet", check=True)
    assert "irm (oracle)" in irm.stdout
    low = json.loads((tmp_path / "mix.json").read_text())
    high = json.loads((tmp_path / "irm.json").read_text())
    assert low["targets"] == ["soprano", "alto", "tenor", "bass"] and len(low["tracks"]) == 3
    assert -10 < low["average"]["cSDR"] < 0 < 6 < high["average"]["cSDR"]
    for target in low["targets"]:
        assert high["per_target"][target]["cSDR"] > low["per_target"][target]["cSDR"] + 8
    track = next(iter(high["tracks"].values()))
    assert set(track["soprano"]) == {"cSDR", "uSDR", "SI-SDR", "SIR", "SAR", "ISR"}


def test_estimates_folder_scores_noisy_references(cli, chorale_dir, tmp_path):
    """Estimates = references + noise 20 dB down: every SDR flavour must say about 20 dB."""
    rng = np.random.default_rng(0)
    for track in list_tracks(chorale_dir):
        for target, stem in zip(track.targets, track.stems):
            ref, sr = load_audio(stem)
            noise = rng.normal(size=ref.shape).astype(np.float32)
            noise *= float(ref.pow(2).sum().sqrt()) / np.linalg.norm(noise) * 0.1
            save_audio(tmp_path / "est" / track.name / f"{target}.wav", ref.numpy() + noise, sr, "FLOAT")
    result = cli("eval", "--reference", str(chorale_dir), "--estimates", str(tmp_path / "est"), "--json", str(tmp_path / "r.json"), "--quiet", check=True)
    scores = json.loads((tmp_path / "r.json").read_text())["average"]
    assert scores["uSDR"] == pytest.approx(20.0, abs=0.2)
    assert scores["SI-SDR"] == pytest.approx(20.0, abs=0.2)
    assert 15 < scores["cSDR"] < 25
    assert "cSDR avg" in result.stdout


def test_eval_errors_are_one_line(cli, chorale_dir, tmp_path):
    (tmp_path / "est").mkdir()
    cases = [
        (["--estimates", str(tmp_path / "est")], "missing estimate"),
        (["--estimates", str(tmp_path / "nope")], "estimates folder not found"),
        (["--oracle", "irm", "--targets", "piccolo"], "has no target 'piccolo'"),
    ]
    for extra, expected in cases:
        result = cli("eval", "--reference", str(chorale_dir), *extra, "--quiet")
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = cli("eval", "--reference", str(tmp_path / "none"), "--oracle", "irm")
    assert "reference dataset not found" in result.stderr and result.returncode != 0


def test_demo_with_every_default_writes_table_json_and_plot(tmp_path):
    """The README's main job exactly as a newcomer runs it: `stemkit demo`, no options (so its default
    worker pool runs after torch has: the configuration that once hung)."""
    result = run_cli("demo", cwd=tmp_path, check=True)
    tmp_path = tmp_path / "demo_out"
    assert "IRM (oracle)" in result.stdout and "mixture (oracle)" in result.stdout
    assert DEFAULT_MODEL in result.stdout  # the shipped default runs out of the box
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    model, floor = metrics[DEFAULT_MODEL]["average"]["cSDR"], metrics["mixture (oracle)"]["average"]["cSDR"]
    assert model > floor + 5, (model, floor)
    assert len(list((tmp_path / "separated" / DEFAULT_MODEL).glob("*/soprano.wav"))) == 3
    for name in ("metrics.md", "metrics.json", "metrics.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the shipped synthesizer renders the violin parts from MIDI, scored next to the sine floor
    synthesis = json.loads((tmp_path / "synthesis.json").read_text())
    synth, sine = synthesis["violin-ldm-chorales"]["mean"], synthesis["sine + envelope (floor)"]["mean"]
    assert synthesis["violin-ldm-chorales"]["count"] == 6  # the two violin parts of each string quartet
    assert synth["log_mel_l1"] < sine["log_mel_l1"], (synth, sine)
    assert synth["pitch_acc"] > 0.5, synth
    assert len(list((tmp_path / "synthesized" / "violin-ldm-chorales").glob("*_violin.wav"))) == 6


def test_help_lists_subcommands(cli):
    top = cli("--help", check=True).stdout
    for sub in ("data", "eval", "demo", "separate", "fit", "export", "synth", "eval-synth"):
        assert sub in top
    assert "--ensemble" in cli("data", "chorales", "--help", check=True).stdout
    assert "--oracle" in cli("eval", "--help", check=True).stdout
    assert "--residual" in cli("separate", "--help", check=True).stdout
    assert "--sampler" in cli("synth", "--help", check=True).stdout
    assert "--trainer.max_steps" in cli("fit", "--help", check=True).stdout
