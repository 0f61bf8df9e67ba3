import numpy as np
import pytest
import torch

from conftest import shared_dir
from stemkit.data.datasets import CropConfig, StemCropDataset
from stemkit.data.tracks import load_stem_tracks


def test_crops_remix_and_index_conditioning(chorale_dir):
    tracks = load_stem_tracks(chorale_dir)
    data = StemCropDataset(tracks, CropConfig(segment_seconds=1.0, items_per_epoch=8, conditioning="index", seed=3))
    item = data[0]
    assert item["mix"].shape == (1, 16000) and item["stems"].shape == (4, 1, 16000)
    assert torch.allclose(item["mix"], item["stems"].sum(0))
    assert torch.equal(item["target"], item["stems"][item["target_index"]])
    assert torch.equal(data[0]["mix"], item["mix"])  # a pure function of (seed, epoch, index)
    data.set_epoch(1)
    assert not torch.equal(data[0]["mix"], item["mix"])  # new crops next epoch
    assert data.targets == ["soprano", "alto", "tenor", "bass"]


def test_validation_crops_are_fixed_and_unscaled(chorale_dir):
    tracks = load_stem_tracks(chorale_dir)
    data = StemCropDataset(tracks, CropConfig(segment_seconds=1.0, items_per_epoch=4, remix=False))
    first = [data[i]["mix"] for i in range(4)]
    data.set_epoch(7)
    assert all(torch.equal(a, data[i]["mix"]) for i, a in enumerate(first))
    # without remixing a crop is exactly a window of the written mixture
    item = data[0]
    assert any(_is_window_of(item["mix"][0].numpy(), t) for t in tracks)


def _is_window_of(crop, track):
    from stemkit.audio.io import load_audio

    mix = sum(load_audio(p)[0] for p in track._paths)[0].numpy()
    for start in range(0, len(mix) - len(crop) + 1):
        if abs(mix[start] - crop[0]) < 1e-6 and np.allclose(mix[start : start + len(crop)], crop, atol=1e-6):
            return True
    return False


def test_query_comes_from_another_track_with_the_same_instrument(chorale_dir):
    tracks = load_stem_tracks(chorale_dir)
    data = StemCropDataset(tracks, CropConfig(segment_seconds=0.5, items_per_epoch=16, conditioning="query", query_seconds=0.5, seed=1))
    for i in range(16):
        item = data[i]
        assert item["query"].shape == (1, 8000)
        assert item["query"].abs().max() > 0


def test_dataset_loader_batches(chorale_dir):
    data = StemCropDataset(load_stem_tracks(chorale_dir), CropConfig(segment_seconds=0.25, items_per_epoch=6, conditioning="index"))
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=3, num_workers=2)))
    assert batch["mix"].shape == (3, 1, 4000) and batch["target_index"].shape == (3,)


@pytest.mark.slow
def test_musdb_tracks_crop():
    shared = shared_dir()
    if shared is None:
        pytest.skip("../shared/data is not beside this checkout")
    tracks = load_stem_tracks(shared / "data/MUSDB18-7-SAMPLE", subset="train")
    data = StemCropDataset(tracks, CropConfig(segment_seconds=1.0, items_per_epoch=2, conditioning="index"))
    item = data[0]
    assert item["stems"].shape == (4, 2, 44100) and data.targets == ["vocals", "drums", "bass", "other"]
    assert item["mix"].abs().max() > 0


def test_random_eq_shapes_the_spectrum_within_its_range_and_mixes_stay_sums(chorale_dir):
    import numpy as np
    import torch

    from stemkit.data.datasets import CropConfig, StemCropDataset, random_eq
    from stemkit.data.tracks import load_stem_tracks

    noise = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    shaped = random_eq(noise, np.random.default_rng(3), 6.0, 16000)
    ratio_db = 20 * torch.log10(torch.fft.rfft(shaped).abs() / torch.fft.rfft(noise).abs().clamp_min(1e-9))
    assert ratio_db[..., 1:].abs().max() <= 6.0 + 1e-3 and ratio_db[..., 1:].std() > 0.5  # shaped, within ±6 dB
    assert torch.equal(shaped, random_eq(noise, np.random.default_rng(3), 6.0, 16000))
    tracks = load_stem_tracks(chorale_dir)
    plain = StemCropDataset(tracks, CropConfig(segment_seconds=1.0, items_per_epoch=2, eq_db=0.0))[0]
    eq = StemCropDataset(tracks, CropConfig(segment_seconds=1.0, items_per_epoch=2, eq_db=6.0))[0]
    torch.testing.assert_close(eq["mix"], eq["stems"].sum(dim=0))
    assert not torch.allclose(eq["stems"], plain["stems"])
