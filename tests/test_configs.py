"""Every shipped training config trains one step, and `stemkit fit` refuses broken input in one line.

Why each config runs for real (``--trainer.fast_dev_run 1``: one training batch and one validation
batch through the actual CLI) rather than only being parsed: a config can parse and still not train —
``musdb_base.yaml`` asked for a MUSDB subset that does not exist and crashed in setup. The configs are
found by glob, so a new one is tested without anyone remembering to add it.

What the runs change, and why it is only data and hardware: the data paths point at tiny data (three
4-second chorales, the shared MUSDB sample, a VAE trained here for two steps), the batch is one item,
crops and validation excerpts are short, and everything runs in fp32 on the CPU (Lightning turns a GPU
config's ``16-mixed`` into ``bf16-mixed`` on a CPU, which is about 20× slower there than fp32). The
latent synthesizers also validate with 2 sampling steps instead of 18 (validation cost, not the model).
The architecture, optimiser and callbacks stay as shipped: shrinking them would test a different model.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli, shared_dir, split_folders
from stemkit.cli import main
from stemkit.errors import StemkitError

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
VAE_TINY = REPO / "configs" / "synth" / "violin_vae_tiny.yaml"
MEL_VAE_TINY = REPO / "configs" / "dismix" / "mel_vae_tiny.yaml"
MUSDB_SAMPLE_TRACK = "Music Delta - 80s Rock"
MUSDB_VALID_NAME = "Actions - One Minute Smile"  # one of the 14 tracks of musdb's validation split


def _config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _kind(config: dict) -> str:
    """Which tiny data a config needs, from its data module (and, for stems, its targets)."""
    data = config["data"]["class_path"].rsplit(".", 1)[-1]
    if data == "StemDataModule":
        targets = config["model"]["init_args"]["net"]["targets"]
        return "musdb" if "vocals" in targets else "chorales"
    kinds = {"MonophonicDataModule": "monophonic", "LatentDataModule": "latent", "ChordDataModule": "chords",
             "ChoralePartsDataModule": "parts", "NoteSegmentsDataModule": "segments",
             "ChoraleInstrumentsDataModule": "instruments"}
    if data not in kinds:
        pytest.fail(f"test_configs.py does not know the data module {data}: give it tiny data in _overrides")
    return kinds[data]


@pytest.fixture(scope="module")
def chorale_splits(chorale_dir, tmp_path_factory) -> dict[str, Path]:
    """The session's three chorales as a train folder (two) and a disjoint valid folder (one), by symlinks."""
    return split_folders(chorale_dir, tmp_path_factory.mktemp("splits"))


def _musdb_sample() -> Path:
    shared = shared_dir()
    sample = shared / "data" / "MUSDB18-7-SAMPLE" if shared else None
    if sample is None or not (sample / "train" / f"{MUSDB_SAMPLE_TRACK}.stem.mp4").is_file():
        pytest.skip(f"the shared MUSDB sample (../shared/data/MUSDB18-7-SAMPLE/train/{MUSDB_SAMPLE_TRACK}.stem.mp4) is absent")
    return sample


@pytest.fixture(scope="module")
def musdb_root(tmp_path_factory) -> Path:
    """A MUSDB root whose train subset holds the shared sample track twice: under its own name (so in
    musdb's train split) and as a copy under a validation-track name (so in its valid split). A copy,
    not a link: the data module treats two names of one file as the same recording."""
    sample = _musdb_sample()
    root = tmp_path_factory.mktemp("musdb")
    (root / "train").mkdir()
    source = sample / "train" / f"{MUSDB_SAMPLE_TRACK}.stem.mp4"
    shutil.copyfile(source, root / "train" / source.name)
    shutil.copyfile(source, root / "train" / f"{MUSDB_VALID_NAME}.stem.mp4")
    return root


def _train_tiny(config: Path, splits: dict[str, Path], root: Path) -> Path:
    """A tiny config trained for two steps on the split folders with the real CLI; its last checkpoint."""
    run_cli("fit", "--config", str(config), "--data.train_dir", str(splits["train"]), "--data.valid_dir", str(splits["valid"]),
            "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root), "--trainer.max_steps", "2",
            "--trainer.accelerator", "cpu", check=True)
    last = root / "checkpoints" / "last.ckpt"
    assert last.is_file()
    return last


@pytest.fixture(scope="module")
def tiny_vae(chorale_splits, tmp_path_factory) -> Path:
    """A VAE for the latent-diffusion configs."""
    return _train_tiny(VAE_TINY, chorale_splits, tmp_path_factory.mktemp("vae"))


@pytest.fixture(scope="module")
def tiny_mel_vae(chorale_splits, tmp_path_factory) -> Path:
    """A mel VAE for DisMix's latent variant."""
    return _train_tiny(MEL_VAE_TINY, chorale_splits, tmp_path_factory.mktemp("mel-vae"))


def _overrides(kind: str, request, root: Path) -> list[str]:
    """Tiny data for one config kind (fixtures are requested lazily so each config needs only its own)."""
    if kind == "musdb":
        data = request.getfixturevalue("musdb_root")
        return ["--data.init_args.train_dir", str(data), "--data.init_args.valid_seconds", "1", "--data.init_args.valid_tracks", "1"]
    if kind == "chords":
        return ["--data.init_args.root", str(request.getfixturevalue("chord_dir")), "--data.init_args.valid_items", "2"]
    splits = request.getfixturevalue("chorale_splits")
    if kind == "segments":  # split folders named train/valid: the chorales reader takes the split from the name
        return ["--data.init_args.train", f"{{chorales: {splits['train']}, chorale_stems: {splits['train']}}}",
                "--data.init_args.valid", f"{{chorales: {splits['valid']}, chorale_stems: {splits['valid']}}}",
                "--data.init_args.valid_items", "1"]
    paths = ["--data.init_args.train_dir", str(splits["train"]), "--data.init_args.valid_dir", str(splits["valid"])]
    if kind == "chorales":
        return [*paths, "--data.init_args.valid_seconds", "1", "--data.init_args.valid_tracks", "1"]
    if kind == "monophonic":
        return [*paths, "--data.init_args.segment_frames", "32", "--data.init_args.valid_items", "1"]
    if kind == "instruments":  # the test chorales are string quartets: the 13 classes still fit
        return [*paths, "--data.init_args.batch_size", "2", "--data.init_args.valid_items", "2", "--data.init_args.seconds", "0.5"]
    if kind == "parts":  # model and data name the same VAE: the data serves its cached latents
        mel_vae = str(request.getfixturevalue("tiny_mel_vae"))
        return [*paths, "--model.init_args.vae", mel_vae, "--data.init_args.latent_vae", mel_vae, "--data.init_args.cache_dir",
                str(root / "cache"), "--data.init_args.segment_seconds", "0.64", "--data.init_args.query_seconds", "0.32",
                "--data.init_args.valid_items", "1"]
    vae = str(request.getfixturevalue("tiny_vae"))
    return [*paths, "--model.init_args.vae", vae, "--data.init_args.vae", vae, "--data.init_args.cache_dir", str(root / "cache"),
            "--data.init_args.cache_crops", "2", "--data.init_args.cache_frames", "64", "--data.init_args.segment_frames", "64",
            "--data.init_args.valid_crops", "1",
            # validation samples with Heun: 18 steps of the base U-Net were 45 of its 65 s on 2 busy CPU cores
            "--model.init_args.valid_steps", "2"]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_every_config_trains_one_step_on_tiny_data(config, request, tmp_path, monkeypatch, capsys):
    kind = _kind(_config(config))
    work = tmp_path / "cwd"
    work.mkdir()
    args = ["fit", "--config", str(config), *_overrides(kind, request, tmp_path), "--trainer.fast_dev_run", "1",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--data.init_args.batch_size", "1"]
    if kind != "latent":
        args += ["--data.init_args.num_workers", "0"]
    monkeypatch.chdir(work)  # any path the overrides missed lands here, and is caught below
    start = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - start
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    with capsys.disabled():
        print(f"\n  fast_dev_run {config.relative_to(REPO)}: {seconds:.1f} s")
    # a smoke test writes nothing: no logs, no checkpoint to be resumed by the real run later
    assert not list(work.iterdir()) and not (tmp_path / "run").exists()


# --- the data modules never validate on training tracks silently --------------------------------------


def test_musdb_validates_on_musdbs_validation_split(musdb_root):
    from stemkit.training.data import StemDataModule

    data = StemDataModule(train_dir=str(musdb_root), valid_dir=None, train_subset="train", valid_subset="valid", valid_tracks=0)
    data.setup("fit")
    assert [t.name for t in data.train_set.tracks] == [MUSDB_SAMPLE_TRACK]
    assert [t.name for t in data.valid_set.tracks] == [MUSDB_VALID_NAME]


def test_musdb_without_validation_tracks_is_an_error():
    from stemkit.training.data import StemDataModule

    data = StemDataModule(train_dir=str(_musdb_sample()), valid_dir=None, train_subset="train", valid_subset="valid")
    with pytest.raises(StemkitError, match="validation split"):
        data.setup("fit")


def test_implicit_validation_overlapping_training_is_an_error(musdb_root):
    from stemkit.training.data import StemDataModule

    data = StemDataModule(train_dir=str(musdb_root), valid_dir=None, train_subset="train+valid", valid_subset="valid")
    with pytest.raises(StemkitError, match="also training tracks"):
        data.setup("fit")


def test_chorales_without_valid_dir_is_an_error(chorale_splits):
    from stemkit.training.data import StemDataModule
    from stemkit.training.monophonic_data import MonophonicDataModule

    with pytest.raises(StemkitError, match="valid_dir is not set"):
        StemDataModule(train_dir=str(chorale_splits["train"]), valid_dir=None).setup("fit")
    with pytest.raises(StemkitError, match="valid_dir is not set"):
        MonophonicDataModule(train_dir=str(chorale_splits["train"]), valid_dir=None).setup("fit")


def test_validating_on_the_training_folder_on_purpose_is_warned(chorale_splits, caplog):
    from stemkit.training.data import StemDataModule

    folder = str(chorale_splits["train"])
    with caplog.at_level(logging.WARNING):
        StemDataModule(train_dir=folder, valid_dir=folder, valid_tracks=0).setup("fit")
    assert "2 of 2 validation tracks are also training tracks" in caplog.text


# --- broken input: one line, no traceback, nothing left behind ----------------------------------------


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _tiny_config(tmp_path: Path, data: Path, **data_args) -> Path:
    """chorales_tiny.yaml with every output under tmp_path (so "nothing left behind" can be checked)."""
    config = _config(REPO / "configs" / "lasaft" / "chorales_tiny.yaml")
    run = tmp_path / "run"
    config["trainer"]["default_root_dir"] = str(run)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(run)
    config["trainer"]["accelerator"] = "cpu"
    config["data"]["init_args"].update(train_dir=str(data), valid_dir=str(data), **data_args)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("case", ["binary", "not_a_mapping", "unknown_key", "unknown_nested_key", "missing"])
def test_broken_config_is_one_line(cli, case, tmp_path):
    config = _tiny_config(tmp_path, tmp_path / "data")
    if case == "binary":
        config.write_bytes(bytes(range(256)) * 4)
    elif case == "not_a_mapping":
        config.write_text("- model\n- data\n")
    elif case == "unknown_key":
        config.write_text(config.read_text() + "bogus_key: 1\n")
    elif case == "unknown_nested_key":
        content = _config(config)
        content["model"]["init_args"]["bogus"] = 3
        config.write_text(yaml.safe_dump(content))
    else:
        config = tmp_path / "no_such.yaml"
    before = _tree(tmp_path)
    result = cli("fit", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("stemkit fit: error:"), result.stderr
    expected = {"binary": "not a text", "not_a_mapping": "must be a YAML mapping", "unknown_key": "'bogus_key' is not accepted",
                "unknown_nested_key": "model (LaSAFTSystem): Option 'bogus' is not accepted", "missing": "does not exist"}[case]
    assert expected in result.stderr
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("case", ["no_data", "no_valid_dir", "wrong_targets"])
def test_failing_before_training_leaves_no_log_folders(case, chorale_splits, tmp_path):
    """Failures after the loggers exist (data errors in setup, a model/data mismatch in on_fit_start, which
    comes after the config was saved into version_N): one error line, no traceback, no new folders, and
    folders of earlier runs untouched."""
    data = tmp_path / "nothing_here" if case == "no_data" else chorale_splits["train"]
    config = _tiny_config(tmp_path, data)
    extra = {"no_valid_dir": ["--data.init_args.valid_dir", "null"],
             "wrong_targets": ["--model.init_args.net.targets", "[vocals, drums, bass, other]"]}.get(case, [])
    earlier = tmp_path / "run" / "logs" / "version_0"
    earlier.mkdir(parents=True)
    (earlier / "metrics.csv").write_text("step\n1\n")
    before = _tree(tmp_path)
    result = run_cli("fit", "--config", str(config), *extra)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    expected = {"no_data": "no dataset at", "no_valid_dir": "valid_dir is not set", "wrong_targets": "model targets"}[case]
    assert last.startswith("stemkit: error:") and expected in last, result.stderr
    assert _tree(tmp_path) == before


def test_monophonic_data_adds_each_tracks_mixture_with_all_its_notes_on_request(chorale_splits, tmp_path):
    """A vocoder for spectrogram diffusion decodes mixtures, so its data can hold them beside the stems."""
    from stemkit.data.monophonic import find_monophonic
    from stemkit.training.monophonic_data import MonophonicDataModule

    stems = find_monophonic(chorale_splits["train"], instrument=None)
    with_mixes = find_monophonic(chorale_splits["train"], instrument=None, mixes=True)
    mixes = [i for i in with_mixes if i.name.endswith("_mix")]
    assert len(stems) == 8 and len(mixes) == 2 and len(with_mixes) == 10
    for mix in mixes:
        track = mix.name.removesuffix("_mix")
        parts = [i for i in stems if i.name.startswith(track)]
        assert mix.path.name == "mix.wav" and len(mix.notes) == sum(len(p.notes) for p in parts)
        assert mix.frames == parts[0].frames
    copy = tmp_path / "copy"
    shutil.copytree(mixes[0].path.parent.resolve(), copy / mixes[0].path.parent.name)
    (copy / mixes[0].path.parent.name / "mix.mid").unlink()  # no mix.mid: the union of the stems' notes
    key = lambda n: (n.start, n.pitch, n.end)  # noqa: E731
    copied = next(i for i in find_monophonic(copy, instrument=None, mixes=True) if i.name.endswith("_mix"))
    assert sorted(copied.notes, key=key) == sorted(mixes[0].notes, key=key)
    data = MonophonicDataModule(train_dir=str(chorale_splits["train"]), valid_dir=str(chorale_splits["valid"]),
                                instrument=None, mixes=True, hop=320, segment_frames=10, items_per_epoch=4, valid_items=2)
    data.setup("fit")
    assert sum(i.name.endswith("_mix") for i in data.valid_set.items) == 1
