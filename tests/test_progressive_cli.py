"""Remix-aware training, `stemkit separate --steps` and `stemkit progressive-analysis` end to end on a
tiny model, through the real command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import soundfile as sf

from conftest import fit_tiny_lasaft, run_cli


@pytest.fixture(scope="module")
def remix_model(chorale_dir, tmp_path_factory) -> dict:
    """A tiny remix-aware LaSAFT trained with the real CLI, then exported."""
    root = tmp_path_factory.mktemp("remix-run")
    fit_tiny_lasaft(chorale_dir, root, "--model.init_args.net.beta_condition", "true", "--model.init_args.remix_probability", "0.5",
                    "--model.init_args.remix_max_steps", "3", "--trainer.max_steps", "4")
    logged = next((root / "logs").rglob("metrics.csv")).read_text()
    assert "train/remixed_share" in logged
    out = tmp_path_factory.mktemp("remix-models")
    run_cli("export", str(root / "checkpoints" / "last.ckpt"), "--name", "tiny-remix", "--out", str(out), check=True)
    meta = json.loads((out / "tiny-remix.json").read_text())
    assert meta["config"]["beta_condition"] is True
    return {"model": out / "tiny-remix.safetensors", "data": chorale_dir}


def test_separate_with_steps_writes_a_progressive_folder(cli, remix_model, tmp_path):
    track = sorted(Path(remix_model["data"]).glob("*_track*"))[0]
    result = cli("separate", str(track / "mix.wav"), "--model", str(remix_model["model"]), "--out", str(tmp_path),
                     "--steps", "3", "--schedule", "karras:3", "--wiener", "--quiet", check=True)
    folder = tmp_path / "tiny-remix-p3-karras3-wiener" / "mix"
    assert sorted(p.name for p in folder.iterdir()) == ["alto.wav", "bass.wav", "soprano.wav", "tenor.wav"]
    assert sf.info(folder / "alto.wav").frames == sf.info(track / "mix.wav").frames
    assert "tiny-remix-p3-karras3-wiener" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--steps", "3", "--schedule", "spiral"], "unknown schedule"),
    (["--steps", "3", "--schedule", "0,0.5"], "custom schedule has 2 values"),
    (["--steps", "0"], "--steps must be between 1 and 64"),
    (["--model-config", "nothing.yaml"], "file not found"),
])
def test_bad_progressive_options_are_one_line_errors(cli, remix_model, tmp_path, args, message):
    track = sorted(Path(remix_model["data"]).glob("*_track*"))[0]
    result = cli("separate", str(track / "mix.wav"), "--model", str(remix_model["model"]), "--out", str(tmp_path), *args)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.rglob("*.wav"))


def test_progressive_analysis_writes_csv_plot_and_resumes(cli, remix_model, tmp_path):
    out = tmp_path / "analysis"
    common = ["progressive-analysis", "--dataset", str(remix_model["data"]), "--model", str(remix_model["model"]),
              "--out", str(out), "--steps", "3", "--compare", "adaptive", "--tracks", "2", "--seconds", "2", "--quiet"]
    first = cli(*common, check=True)
    with open(out / "progressive.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    methods = {(r["method"], int(r["step"])) for r in rows}
    assert methods == {("one-pass", 1)} | {(m, s) for m in ("progressive:linear", "progressive:adaptive", "oracle") for s in (1, 2, 3)}
    assert len(rows) == 2 * 4 * (1 + 3 + 3 + 3)  # tracks × targets × (one-pass + 3 methods × 3 steps)
    oracle_betas = sorted({float(r["beta"]) for r in rows if r["method"] == "oracle"})
    assert oracle_betas == pytest.approx([0.0, 1 / 3, 2 / 3])
    first_steps = {r["target"] + r["track"]: r["cSDR"] for r in rows if int(r["step"]) == 1}
    assert all(r["cSDR"] == first_steps[r["target"] + r["track"]] for r in rows if int(r["step"]) == 1)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["results"]) == {"one-pass", "progressive:linear", "progressive:adaptive", "oracle"}
    assert (out / "progressive.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| oracle |" in first.stdout
    before = (out / "progressive.csv").stat().st_mtime_ns
    again = cli(*common, check=True)  # everything done: nothing is separated or rewritten
    assert (out / "progressive.csv").stat().st_mtime_ns == before and again.stdout == first.stdout
    clash = cli(*common[:-1], "--schedule", "cosine")
    assert clash.returncode == 1 and "other settings" in clash.stderr
