"""Bad input gets one clear line, before the work, and nothing is written: every command, as users run it.

Each case here once produced a traceback, garbage output or a silently wrong score.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli


def _one_line_error(result, *words: str) -> str:
    """The command failed with exactly one line on stderr (no traceback) containing ``words``."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def clip(chorale_dir, tmp_path_factory) -> Path:
    """Two seconds of a rendered mixture, as a float WAV (the encoding that can hold NaN and values > 1)."""
    mix, rate = sf.read(sorted(chorale_dir.glob("*_track*"))[0] / "mix.wav", dtype="float32")
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, mix[: 2 * rate], rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_mixture_is_refused_naming_the_first_bad_sample(cli, clip, tmp_path, value):
    audio, rate = sf.read(clip, dtype="float32")
    audio[1234:1334] = value
    bad = tmp_path / "bad.wav"
    sf.write(bad, audio, rate, subtype="FLOAT")
    result = cli("separate", str(clip), str(bad), "--out", str(tmp_path / "out"), "--quiet")
    line = _one_line_error(result, str(bad), "100 non-finite", "sample 1234")
    assert str(value) in line
    assert not list((tmp_path / "out").rglob("*.wav"))  # refused before the first input was separated


def test_loud_float_input_reports_clipping(clip, tmp_path):
    audio, rate = sf.read(clip, dtype="float32")
    loud = tmp_path / "loud.wav"
    sf.write(loud, 4.0 * audio, rate, subtype="FLOAT")
    result = run_cli("separate", str(loud), "--out", str(tmp_path / "out"), "--quiet", check=True)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("stemkit: warning:")]
    assert warnings and "clipped" in warnings[0] and "beyond full scale" in warnings[0]


def _unwritable_outputs(tmp_path: Path) -> dict[str, Path]:
    existing_file = tmp_path / "a_file"
    existing_file.write_text("mine")
    return {"a file": existing_file, "under /proc": Path("/proc/stemkit-cannot-write/out")}


@pytest.mark.parametrize("where", ["a file", "under /proc"])
def test_unwritable_out_is_one_line_before_any_work(cli, chorale_dir, clip, tmp_path, where):
    """separate, synth, eval --json, eval-synth --json, export and progressive-analysis all check first."""
    out = _unwritable_outputs(tmp_path)[where]
    track = sorted(chorale_dir.glob("*_track*"))[0]
    violin = sorted((track / "stems_MIDI").glob("*violin*.mid"))[0]
    json_out = out if where == "under /proc" else tmp_path  # a folder given where a file belongs
    commands = [
        ["separate", str(clip), "--out", str(out)],
        ["synth", str(violin), "--out", str(out)],
        ["eval", "--reference", str(chorale_dir), "--oracle", "mixture", "--json", str(json_out / "x.json" if where == "under /proc" else json_out)],
        ["eval-synth", "--reference", str(chorale_dir), "--instrument", "violin", "--generated", str(tmp_path),
         "--json", str(json_out / "x.json" if where == "under /proc" else json_out)],
        ["progressive-analysis", "--dataset", str(chorale_dir), "--out", str(out), "--steps", "2"],
        ["export", str(clip), "--name", "m", "--out", str(out)],  # the output is checked before the checkpoint is read
    ]
    for command in commands:
        result = cli(*command, "--quiet") if command[0] != "export" else cli(*command)
        _one_line_error(result, str(out) if where == "under /proc" or command[0] in ("separate", "synth", "export", "progressive-analysis") else "folder")
    if where == "a file":
        assert out.read_text() == "mine"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--segment", "0.001"], ["--segment", "at least"]),
        (["--steps", "1", "--schedule", "nonsense"], ["unknown schedule"]),
        (["--steps", "0"], ["--steps"]),
        (["--model", "{random}"], ["cannot read model files"]),
        (["--model", "{random_ckpt}"], ["not a checkpoint written by stemkit fit"]),
    ],
)
def test_bad_separate_options_are_one_line(cli, clip, tmp_path, args, words):
    random = tmp_path / "random.safetensors"
    random.write_bytes(np.random.default_rng(0).bytes(4096))
    random.with_suffix(".json").write_text(json.dumps({"architecture": "lasaft", "config": {}}))
    random_ckpt = tmp_path / "random.ckpt"
    random_ckpt.write_bytes(np.random.default_rng(1).bytes(4096))
    args = [a.format(random=random, random_ckpt=random_ckpt) for a in args]
    result = cli("separate", str(clip), *args, "--out", str(tmp_path / "out"), "--quiet")
    _one_line_error(result, *words)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.wav"))


@pytest.mark.parametrize(
    "args, words",
    [
        (["--tracks", "0"], ["--tracks"]),
        (["--seconds", "-1"], ["--seconds"]),
        (["--offset", "-2"], ["--offset"]),
    ],
)
def test_bad_analysis_options_are_one_line(cli, chorale_dir, tmp_path, args, words):
    result = cli("progressive-analysis", "--dataset", str(chorale_dir), "--out", str(tmp_path / "a"), "--steps", "2", *args, "--quiet")
    _one_line_error(result, *words)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--cfg", "-5"], ["--cfg"]),
        (["--out", "{tmp}/x.mp3"], [".wav or .flac"]),
        (["--steps", "0"], ["--steps"]),
    ],
)
def test_bad_synth_options_are_one_line(cli, chorale_dir, tmp_path, args, words):
    violin = sorted(chorale_dir.glob("*_track*/stems_MIDI/*violin*.mid"))[0]
    args = [a.format(tmp=tmp_path) for a in args]
    result = cli("synth", str(violin), *args, "--quiet")
    _one_line_error(result, *words)
    assert not (tmp_path / "x.mp3").exists()


def _estimates_from_references(chorale_dir: Path, out: Path) -> Path:
    """Good estimates: every reference stem, plus a little noise (a perfect copy has no finite SDR)."""
    from stemkit.data.layout import list_tracks

    rng = np.random.default_rng(0)
    for track in list_tracks(chorale_dir):
        for target, stem in zip(track.targets, track.stems):
            (out / track.name).mkdir(parents=True, exist_ok=True)
            audio, rate = sf.read(stem, dtype="float32")
            noisy = audio + 0.01 * rng.standard_normal(audio.shape).astype(np.float32)
            sf.write(out / track.name / f"{target}.wav", noisy, rate, subtype="FLOAT")
    return out


def test_eval_refuses_short_stereo_and_nan_estimates(cli, chorale_dir, tmp_path):
    est = _estimates_from_references(chorale_dir, tmp_path / "est")
    name = sorted(p.name for p in est.iterdir())[0]
    target = est / name / "alto.wav"
    audio, rate = sf.read(target, dtype="float32")
    ok = cli("eval", "--reference", str(chorale_dir), "--estimates", str(est), "--targets", "alto,bass", "--quiet", check=True)
    assert "nan" not in ok.stdout.split("\n", 2)[2] and "warning" not in ok.stderr
    cases = {
        "half length": (audio[: len(audio) // 2], ["lasts", "whole track"]),
        "stereo": (np.stack([audio, audio], axis=1), ["2 channel(s)", "has 1"]),
        "nan": (np.where(np.arange(len(audio)) == 99, np.nan, audio).astype(np.float32), ["non-finite", "sample 99"]),
    }
    for data, words in cases.values():
        sf.write(target, data, rate, subtype="FLOAT")
        _one_line_error(cli("eval", "--reference", str(chorale_dir), "--estimates", str(est), "--quiet"), str(target), *words)
    sf.write(target, np.concatenate([audio, np.zeros(5, np.float32)]), rate, subtype="FLOAT")  # a few samples: fine
    cli("eval", "--reference", str(chorale_dir), "--estimates", str(est), "--targets", "alto,bass", "--quiet", check=True)


def test_eval_reports_undefined_results_instead_of_dropping_them(cli, chorale_dir, tmp_path):
    """A reference silent in the whole excerpt has no SDR (museval used to crash on it); the averages
    leave it out, loudly."""
    import shutil

    reference = tmp_path / "ref"
    shutil.copytree(chorale_dir, reference)
    track = sorted(reference.glob("*_track*"))[0]
    stem = sorted((track / "stems_audio").glob("0_*.wav"))[0]  # the soprano's stem
    audio, rate = sf.read(stem)
    sf.write(stem, np.zeros_like(audio), rate, subtype="PCM_16")
    result = cli("eval", "--reference", str(reference), "--oracle", "mixture", "--json", str(tmp_path / "r.json"), "--quiet",
                     check=True)
    warning = [line for line in result.stderr.splitlines() if line.startswith("stemkit: warning:")]
    assert len(warning) == 1 and "NaN" in warning[0] and f"{track.name}/soprano" in warning[0]
    undefined = json.loads((tmp_path / "r.json").read_text())["undefined"]
    assert undefined[0]["track"] == track.name and "cSDR" in undefined[0]["metrics"]


def test_eval_synth_refuses_a_nan_file(cli, chorale_dir, tmp_path):
    from stemkit.data.layout import list_stem_files

    generated = tmp_path / "gen"
    generated.mkdir()
    for stem in list_stem_files(chorale_dir, "violin"):
        audio, rate = sf.read(stem.audio, dtype="float32")
        sf.write(generated / f"{stem.name}.wav", audio, rate, subtype="FLOAT")
    bad = sorted(generated.iterdir())[-1]
    audio, rate = sf.read(bad, dtype="float32")
    audio[7] = np.nan
    sf.write(bad, audio, rate, subtype="FLOAT")
    result = cli("eval-synth", "--reference", str(chorale_dir), "--instrument", "violin", "--generated", str(generated),
                     "--json", str(tmp_path / "s.json"), "--quiet")
    _one_line_error(result, bad.name, "non-finite", "sample 7")
    assert not (tmp_path / "s.json").exists()
