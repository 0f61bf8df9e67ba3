"""Interrupted jobs leave nothing half-made and resume to exactly what was asked; pools are safe and die with their job."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemkit.data.layout import list_tracks
from stemkit.separation.base import FileSeparator
from stemkit.separation.separator import DEFAULT_MODEL

TARGETS = ["soprano", "alto", "tenor", "bass"]


class ScaledSeparator(FileSeparator):
    """A stand-in separator (each target = mix × a constant): the file handling is what is tested."""

    name = "scaled"

    @property
    def targets(self) -> list[str]:
        return TARGETS

    def separate(self, mix, sample_rate, targets=None, query=None):
        return {t: mix * (i + 1) / 10 for i, t in enumerate(targets or TARGETS)}


@pytest.fixture()
def mix_file(tmp_path) -> Path:
    path = tmp_path / "song.wav"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32), 8000, subtype="PCM_16")
    return path


def test_a_crash_while_writing_leaves_none_of_the_stems(mix_file, tmp_path, monkeypatch):
    import stemkit.separation.base as base

    real_save, calls = base.save_audio, []

    def crash_on_third(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if killed while writing the third stem
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(base, "save_audio", crash_on_third)
    folder = tmp_path / "out" / "song"
    with pytest.raises(KeyboardInterrupt):
        ScaledSeparator().separate_file(mix_file, folder)
    assert not folder.exists() and not list((tmp_path / "out").iterdir())  # no stems, no staging folder
    monkeypatch.setattr(base, "save_audio", real_save)
    assert [p.name for p in ScaledSeparator().separate_file(mix_file, folder)] == [f"{t}.wav" for t in TARGETS]


def test_a_killed_runs_staging_folder_is_cleared_and_the_input_finished(mix_file, tmp_path):
    from stemkit.jobs import JobInput
    from stemkit.separation.batch import separate_many

    root = tmp_path / "out" / "scaled"
    stale = root / ".song.partial-abc123"
    stale.mkdir(parents=True)
    (stale / "soprano.wav").write_bytes(b"half a file")  # what SIGKILL leaves
    report = separate_many(ScaledSeparator(), [JobInput(mix_file, "song")], tmp_path / "out", progress=False)
    assert len(report.written) == 4 and not stale.exists()
    assert sorted(p.name for p in root.iterdir()) == ["song"]
    assert sorted(p.name for p in (root / "song").iterdir()) == sorted(f"{t}.wav" for t in TARGETS)


def test_separate_completes_incomplete_inputs_and_keeps_existing_outputs(cli, chorale_dir, tmp_path):
    """The real CLI with the shipped model: a re-run writes only what is missing; --overwrite redoes all."""
    src = tmp_path / "in"
    src.mkdir()
    for i, track in enumerate(list_tracks(chorale_dir)[:2]):
        audio, rate = sf.read(track.mix)
        sf.write(src / f"song{i}.wav", audio[: rate * 2], rate)
    args = ["separate", str(src), "--out", str(tmp_path / "out"), "--quiet"]
    cli(*args, check=True)
    root = tmp_path / "out" / DEFAULT_MODEL
    kept = (root / "song0" / "alto.wav").read_bytes()
    (root / "song0" / "bass.wav").unlink()
    (root / "song0" / "tenor.wav").unlink()
    (root / "song1" / "soprano.wav").write_bytes(b"the user's own file")
    again = cli(*args, check=True)
    assert "wrote 2 file(s)" in again.stdout and "skipped 1" in again.stdout, again.stdout
    assert (root / "song0" / "alto.wav").read_bytes() == kept
    assert sorted(p.name for p in (root / "song0").iterdir()) == sorted(f"{t}.wav" for t in TARGETS)
    assert (root / "song1" / "soprano.wav").read_bytes() == b"the user's own file"
    cli(*args, "--overwrite", check=True)
    assert sf.info(root / "song1" / "soprano.wav").frames > 0


def _track_bytes(folder: Path) -> dict[str, bytes]:
    return {t.name: t.mix.read_bytes() for t in list_tracks(folder)}


def test_num_counts_tracks_in_the_folder_and_tracks_do_not_depend_on_workers_or_history(cli, tmp_path):
    """`--num N` means N tracks; each track's bytes are the same with 1 or 2 workers and after a resume."""
    common = ["data", "chorales", "--split", "test", "--seconds", "2", "--quiet"]
    cli(*common, "--out", str(tmp_path / "one"), "--num", "4", "--workers", "1", check=True)
    reference = _track_bytes(tmp_path / "one")
    assert len(reference) == 4
    # an interruption whose finished tracks were not the first ones, resumed with another worker count
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "one", resumed)
    for track in list_tracks(resumed)[:2]:
        shutil.rmtree(track.path)
    again = cli(*common, "--out", str(resumed), "--num", "4", "--workers", "2", check=True)
    assert "wrote 2 track(s), skipped 2" in again.stdout
    assert _track_bytes(resumed) == reference


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _workers(pid: int) -> list[int]:
    """The spawned pool workers among ``pid``'s children (not multiprocessing's resource tracker)."""
    found = []
    for child in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left


def _start_generation(out: Path) -> subprocess.Popen:
    """A generation job far longer than the test waits. Ctrl-C is restored to its default in the child:
    a shell that runs this suite in the background hands its children SIGINT ignored."""
    return subprocess.Popen([sys.executable, "-m", "stemkit", "data", "chorales", "--out", str(out), "--split", "train",
                             "--num", "60", "--seconds", "8", "--workers", "2", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_killing_the_main_process_ends_its_workers(tmp_path):
    main = _start_generation(tmp_path / "data")
    try:
        assert _wait_for(lambda: len(_workers(main.pid)) == 2, 300)
        time.sleep(1.0)
        workers = _workers(main.pid)
        main.send_signal(signal.SIGKILL)
        main.wait()
        assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 15), "workers outlived their job"
    finally:
        main.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_interrupting_the_main_process_alone_stops_the_work(tmp_path):
    out = tmp_path / "data"
    main = _start_generation(out)
    try:
        assert _wait_for(lambda: any(out.glob("*/metadata.yaml")), 240)
        workers = _workers(main.pid)
        assert len(workers) == 2
        main.send_signal(signal.SIGINT)  # to the main process only, not its process group
        _, stderr = main.communicate(timeout=60)
        assert main.returncode == 130 and "interrupted" in stderr
        assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 15)
        finished = sorted(p.parent.name for p in out.glob("*/metadata.yaml"))
        time.sleep(2.0)
        assert sorted(p.parent.name for p in out.glob("*/metadata.yaml")) == finished  # nothing written afterwards
        assert len(finished) < 60 and not list(out.glob(".*partial*"))
    finally:
        main.kill()


MARK = "set in the parent"


def _report(_job: int) -> tuple[str, int]:
    return MARK, torch.get_num_threads()


def test_pool_workers_start_clean_after_torch_has_run():
    """Workers are spawned (they do not inherit the parent's state, so none of torch's locks) and use one thread."""
    from stemkit.parallel import map_with_progress

    global MARK
    torch.ones(512, 512) @ torch.ones(512, 512)  # start torch's thread pool first, as the demo does
    MARK = "changed after import"
    try:
        results = map_with_progress(_report, range(4), workers=2, progress=False)
    finally:
        MARK = "set in the parent"
    assert results == [("set in the parent", 1)] * 4


class _MarkDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> str:
        return MARK


def test_training_data_loader_workers_start_clean_after_torch_has_run():
    """Data-loader workers come from a fork server, not a fork of the (threaded) training process."""
    from stemkit.parallel import loader_processes

    global MARK
    torch.ones(512, 512) @ torch.ones(512, 512)
    MARK = "changed after import"
    try:
        loader = torch.utils.data.DataLoader(_MarkDataset(), batch_size=None, **loader_processes(1))
        seen = list(loader)
    finally:
        MARK = "set in the parent"
    assert seen == ["set in the parent"] * 2
    assert loader_processes(0) == {"num_workers": 0}
