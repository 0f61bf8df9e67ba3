import numpy as np
import pytest

from stemkit.audio.io import save_audio
from stemkit.data.layout import list_tracks, read_track
from stemkit.data.reference import open_reference_dataset
from stemkit.errors import StemkitError


def _fake_track(root, name, first_voice):
    """A track as real CocoChorales ships it (voices numbered from 1) or as we write it (from 0)."""
    instruments = ["violin", "violin", "viola", "cello"]
    for i, inst in enumerate(instruments):
        save_audio(root / name / "stems_audio" / f"{i + first_voice}_{inst}.wav", np.full((1, 800), 0.01 * (i + 1)), 8000)
    save_audio(root / name / "mix.wav", np.full((1, 800), 0.1), 8000)
    (root / name / "metadata.yaml").write_text("ensemble: string\n")


@pytest.mark.parametrize("first_voice", [0, 1])
def test_reader_orders_voices_satb(tmp_path, first_voice):
    _fake_track(tmp_path, "string_track000001", first_voice)
    track = read_track(tmp_path / "string_track000001")
    assert track.targets == ["soprano", "alto", "tenor", "bass"]
    assert track.instruments == ["violin", "violin", "viola", "cello"]
    assert track.ensemble == "string"
    reference = open_reference_dataset(tmp_path)[0]
    assert reference.sample_rate == 8000
    assert float(reference.load_target("tenor")[0, 0]) == pytest.approx(0.03, abs=1e-4)


def test_split_subfolders_and_errors(tmp_path):
    _fake_track(tmp_path / "test", "string_track000002", 1)
    _fake_track(tmp_path / "train", "brass_track000003", 1)
    assert [t.name for t in list_tracks(tmp_path)] == ["string_track000002", "brass_track000003"]  # test/ before train/
    (tmp_path / "empty").mkdir()
    with pytest.raises(StemkitError, match="no tracks found"):
        open_reference_dataset(tmp_path / "empty")
    with pytest.raises(StemkitError, match="not a chorale track"):
        read_track(tmp_path / "empty")
