import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from stemkit.audio import (
    integrated_loudness,
    istft,
    load_audio,
    mel_filterbank,
    mel_spectrogram,
    normalize_loudness,
    overlap_add,
    resample,
    save_audio,
    stft,
)
from stemkit.errors import StemkitError


def _noise(channels=2, samples=16000, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).uniform(-0.5, 0.5, (channels, samples)).astype(np.float32))


@pytest.mark.parametrize(("suffix", "subtype", "tol"), [(".wav", "PCM_16", 2**-15), (".wav", "PCM_24", 2**-23), (".wav", "FLOAT", 0), (".flac", "PCM_16", 2**-15)])
def test_save_load_roundtrip(tmp_path, suffix, subtype, tol):
    audio = _noise()
    path = save_audio(tmp_path / f"x{suffix}", audio, 16000, subtype)
    loaded, rate = load_audio(path)
    assert rate == 16000 and loaded.shape == audio.shape
    assert torch.max(torch.abs(loaded - audio)) <= tol
    assert [p.name for p in tmp_path.iterdir()] == [f"x{suffix}"]  # no temporary file left behind


def test_save_refuses_overwrite_and_bad_format(tmp_path):
    path = save_audio(tmp_path / "a.wav", _noise(), 16000)
    before = path.read_bytes()
    with pytest.raises(StemkitError, match="--overwrite"):
        save_audio(path, _noise(seed=1), 16000, overwrite=False)
    assert path.read_bytes() == before
    with pytest.raises(StemkitError, match="unsupported output format"):
        save_audio(tmp_path / "a.mp3", _noise(), 16000)


def test_load_window_and_errors(tmp_path):
    audio = _noise()
    path = save_audio(tmp_path / "a.wav", audio, 16000, "FLOAT")
    window, _ = load_audio(path, start=1000, frames=500)
    assert torch.equal(window, audio[:, 1000:1500])
    with pytest.raises(StemkitError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(StemkitError, match="cannot read audio"):
        load_audio(tmp_path / "bad.wav")


def test_resample_keeps_frequency_and_length():
    sr, new_sr = 44100, 16000
    t = torch.arange(sr) / sr
    tone = torch.sin(2 * torch.pi * 440.0 * t)[None]
    out = resample(tone, sr, new_sr)
    assert out.shape == (1, new_sr)
    spectrum = np.abs(np.fft.rfft(out[0].numpy()))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # 1 s of audio: bin k is k Hz
    assert torch.equal(resample(tone, sr, sr), tone)


def test_stft_roundtrip_and_shape():
    audio = _noise(2, 12345)
    spec = stft(audio, 1024, 256)
    assert spec.shape == (2, 513, 12345 // 256 + 1)
    back = istft(spec, 1024, 256, 12345)
    assert torch.allclose(back, audio, atol=1e-5)


def test_mel_matches_librosa():
    audio = _noise(1, 8000)[0]
    assert np.allclose(mel_filterbank(16000, 1024, 64).numpy(), librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64))
    ours = mel_spectrogram(audio, 16000, n_fft=1024, hop_length=256, n_mels=64).numpy()
    ref = librosa.feature.melspectrogram(y=audio.numpy(), sr=16000, n_fft=1024, hop_length=256, n_mels=64, pad_mode="reflect")
    assert np.allclose(ours, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("length", "segment", "overlap", "batch"), [(10000, 1000, 0.25, 3), (999, 1000, 0.5, 1), (5000, 640, 0.0, 2), (7777, 1024, 0.75, 4)])
def test_overlap_add_reconstructs_pointwise_functions(length, segment, overlap, batch):
    audio = _noise(2, length)
    calls = []

    def fn(chunks):
        calls.append(chunks.shape[0])
        assert chunks.shape[1:] == (2, segment)
        return torch.stack([chunks * 2.0, -chunks], dim=1)  # two "sources"

    out = overlap_add(fn, audio, segment, overlap, batch_size=batch)
    assert out.shape == (2, 2, length)
    assert torch.allclose(out[0], audio * 2, atol=1e-5) and torch.allclose(out[1], -audio, atol=1e-5)
    assert max(calls) <= batch  # memory bound: never more than batch_size windows at once


def test_overlap_add_crossfades_between_windows():
    """A function that adds each window's start offset shows the cross-fade: output stays between neighbours."""
    audio = torch.zeros(1, 4000)
    offsets = iter(range(100))

    def fn(chunks):
        return chunks + torch.tensor([float(next(offsets)) for _ in range(chunks.shape[0])])[:, None, None]

    out = overlap_add(fn, audio, 1000, 0.5, batch_size=1)[0]
    assert out[0] == pytest.approx(0.0) and out[-1] == pytest.approx(6.0)
    assert torch.all(out[1:] >= out[:-1] - 1e-6)  # a monotone ramp, no jumps back


def test_loudness_normalisation_hits_target():
    audio = _noise(1, 48000) * 0.1
    scaled, gain, before = normalize_loudness(audio, 16000, -13.0)
    assert integrated_loudness(scaled, 16000) == pytest.approx(-13.0, abs=0.01)
    assert gain == pytest.approx(10 ** ((-13.0 - before) / 20))
    silent, gain, lufs = normalize_loudness(torch.zeros(1, 16000), 16000, -13.0)
    assert gain == 1.0 and lufs == float("-inf")


def test_short_clip_loudness_is_defined():
    assert np.isfinite(integrated_loudness(_noise(1, 1000), 16000))


def test_sf_sanity(tmp_path):
    """soundfile writes what we think it writes: a 24-bit file is 24-bit."""
    path = save_audio(tmp_path / "a.wav", _noise(), 16000, "24")
    assert sf.info(str(path)).subtype == "PCM_24"


def test_atomic_output_gets_ordinary_permissions(tmp_path):
    import os
    import stat

    from stemkit.atomic import atomic_output

    with atomic_output(tmp_path / "x.txt") as tmp:
        tmp.write_text("hi")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~mask
