"""The shared batch-job plumbing (stemkit.jobs) and the codec slot, on their own; the commands that
use the plumbing are tested end to end in test_separate_cli and test_synth_cli."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stemkit.errors import StemkitError
from stemkit.jobs import JobInput, collect_inputs, parse_shard, run_batch, take_shard


def test_shards_are_disjoint_cover_everything_and_reject_nonsense():
    items = list(range(11))
    shards = [take_shard(items, parse_shard(f"{i}/3")) for i in (1, 2, 3)]
    assert sorted(sum(shards, [])) == items and [len(s) for s in shards] == [4, 4, 3]
    assert parse_shard(None) == (0, 1)
    for bad in ("0/2", "3/2", "a/b", "1-2"):
        with pytest.raises(StemkitError, match="--shard"):
            parse_shard(bad)


def test_collect_inputs_names_files_recurses_only_when_asked_and_refuses_name_clashes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    for path in ("a/x.mid", "a/sub/y.mid", "a/.hidden.mid", "a/notes.txt", "b.mid", "other/b.mid"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    flat = collect_inputs([tmp_path / "a"], (".mid",), "MIDI files")
    assert flat == [JobInput(tmp_path / "a" / "x.mid", "x")]
    deep = collect_inputs([tmp_path / "a", tmp_path / "a" / "x.mid"], (".mid",), "MIDI files", recursive=True)
    assert [i.name for i in deep] == ["sub_y", "x"]  # the file named twice is listed once
    with pytest.raises(StemkitError, match="same output 'b'"):
        collect_inputs([tmp_path / "b.mid", tmp_path / "other" / "b.mid"], (".mid",), "MIDI files")
    with pytest.raises(StemkitError, match="notes.txt: expected MIDI files"):
        collect_inputs([tmp_path / "a" / "notes.txt"], (".mid",), "MIDI files")
    assert collect_inputs([tmp_path / "a" / "notes.txt"], (".mid",), "files", any_file=True)[0].name == "notes"
    with pytest.raises(StemkitError, match="no MIDI files in folder"):
        collect_inputs([tmp_path / "other" / ".."], (".wav",), "MIDI files")
    with pytest.raises(StemkitError, match="input not found"):
        collect_inputs([tmp_path / "nope.mid"], (".mid",), "MIDI files")


def test_run_batch_reports_written_and_skipped_for_its_shard_only(tmp_path):
    items = [JobInput(tmp_path / f"{i}.wav", str(i)) for i in range(5)]
    done = {"1", "3"}
    seen = []

    def work(item: JobInput) -> list[Path]:
        seen.append(item.name)
        return [] if item.name in done else [tmp_path / f"{item.name}.out"]

    report = run_batch(items, work, shard=(1, 2), progress=False)
    assert seen == ["1", "3"] and report.written == [] and report.skipped == ["1", "3"]
    report = run_batch(items, work, progress=False)
    assert [p.name for p in report.written] == ["0.out", "2.out", "4.out"] and report.skipped == ["1", "3"]
    assert report.summary("out/") == "wrote 3 file(s) to out/; skipped 2 input(s) whose outputs exist (--overwrite replaces them)"


def test_mel_codec_keeps_pitch_through_features_and_back():
    """The codec slot's mel codec: bounded features, 50 frames/s, and a reproducible Griffin-Lim decode in tune."""
    import librosa

    from stemkit.diffusion.codecs import Codec, build_codec

    codec = build_codec("mel", {"griffin_lim_iters": 16})
    assert isinstance(codec, Codec) and codec.hop == 320 and codec.feature_channels == 128
    t = torch.arange(16000) / 16000
    tone = (0.3 * torch.sin(2 * torch.pi * 440 * t))[None, None]
    features = codec.features(tone)
    assert features.shape == (1, 128, 50) and features.min() >= -1 and features.max() <= 1
    audio = codec.decode(features)
    assert audio.shape == (1, 1, 16000)
    assert torch.equal(codec.decode(features), audio)  # Griffin-Lim's phases start from a seed: same mel, same audio
    f0 = np.median(librosa.yin(audio[0, 0].numpy(), fmin=200, fmax=900, sr=16000))
    assert abs(12 * np.log2(f0 / 440)) < 0.3
    vae = build_codec("audio-vae", {"channels": 4, "latent_dim": 4, "strides": [4, 4], "channel_mults": [1, 2]})
    assert vae.features(torch.zeros(1, 1, 64)).shape == (1, 4, 4) and vae.feature_channels == 4
    with pytest.raises(ValueError, match="unknown codec"):
        build_codec("nope", {})
    with pytest.raises(ValueError, match="no setting"):
        build_codec("mel", {"bins": 3})
