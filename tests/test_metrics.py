"""Metric code against the reference implementations: museval (BSSEval v4), mir_eval (v3), and
museval's own regression expectation on a real MUSDB18 track read through stemkit's reader."""

import json

import mir_eval
import museval
import numpy as np
import pytest
import torch

from conftest import shared_dir
from stemkit.data.musdb import list_musdb_tracks
from stemkit.metrics import aggregate, bss_eval_frames, evaluate_track, si_sdr, usdr

SR = 8000


def _signals(sources=3, samples=3 * SR, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    refs = rng.normal(size=(sources, samples, channels))
    ests = refs + 0.5 * rng.normal(size=refs.shape) + 0.2 * refs[::-1]  # noise + leakage
    return refs, ests


def test_frames_equal_museval_on_random_signals():
    refs, ests = _signals(channels=2)
    ours = bss_eval_frames(refs, ests, SR)
    sdr, isr, sir, sar = museval.evaluate(refs, ests, win=SR, hop=SR)
    for key, value in zip(("SDR", "ISR", "SIR", "SAR"), (sdr, isr, sir, sar)):
        np.testing.assert_allclose(ours[key], value)
    assert ours["SDR"].shape == (3, 3)


def test_evaluate_track_is_median_of_museval_frames():
    refs, ests = _signals(samples=5 * SR, seed=1)
    names = ["a", "b", "c"]
    scores = evaluate_track({n: torch.from_numpy(refs[i].T) for i, n in enumerate(names)}, {n: ests[i].T for i, n in enumerate(names)}, SR)
    sdr, isr, sir, sar = museval.evaluate(refs, ests, win=SR, hop=SR)
    for i, n in enumerate(names):
        assert scores[n]["cSDR"] == pytest.approx(np.nanmedian(sdr[i]))
        assert scores[n]["SIR"] == pytest.approx(np.nanmedian(sir[i]))
        assert scores[n]["SAR"] == pytest.approx(np.nanmedian(sar[i]))


def test_v3_mode_matches_mir_eval_images():
    """Whole-signal BSSEval v3 through our plumbing equals mir_eval's bss_eval_images."""
    refs, ests = _signals(sources=2, samples=2 * SR, channels=2, seed=2)
    ours = bss_eval_frames(refs, ests, SR, window=2.0, hop=2.0, mode="v3")
    sdr, isr, sir, sar, _ = mir_eval.separation.bss_eval_images(refs, ests, compute_permutation=False)
    np.testing.assert_allclose(ours["SDR"][:, 0], sdr, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours["SIR"][:, 0], sir, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours["SAR"][:, 0], sar, rtol=1e-6, atol=1e-6)


def test_usdr_and_si_sdr_known_values():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(1, 4000))
    s -= s.mean()
    n = rng.normal(size=(1, 4000))
    n -= n.mean()
    n -= (n @ s.T) / (s @ s.T) * s  # orthogonal to s
    n *= 0.1 * np.linalg.norm(s) / np.linalg.norm(n)  # 20 dB below
    assert usdr(s, s + n) == pytest.approx(20.0, abs=1e-6)
    assert si_sdr(s, s + n) == pytest.approx(20.0, abs=1e-6)
    assert si_sdr(s, 3.0 * (s + n)) == pytest.approx(20.0, abs=1e-6)  # scale does not matter
    assert usdr(s, 3.0 * (s + n)) < 0  # but it does for uSDR


def test_aggregate_conventions():
    per_track = {
        "t1": {"x": {"cSDR": 1.0, "uSDR": 1.0, "SI-SDR": 1.0, "SIR": 1, "SAR": 1, "ISR": 1}},
        "t2": {"x": {"cSDR": 2.0, "uSDR": 2.0, "SI-SDR": 2.0, "SIR": 2, "SAR": 2, "ISR": 2}},
        "t3": {"x": {"cSDR": 9.0, "uSDR": 9.0, "SI-SDR": float("nan"), "SIR": 3, "SAR": 3, "ISR": 3}},
    }
    per_target, average = aggregate(per_track | {"t4": {"y": {m: 0.0 for m in per_track["t1"]["x"]}}})
    assert per_target["x"]["cSDR"] == 2.0  # median over tracks
    assert per_target["x"]["uSDR"] == 4.0  # mean over tracks
    assert per_target["x"]["SI-SDR"] == 1.5  # NaN tracks skipped
    assert average["cSDR"] == 1.0  # mean over targets x (2.0) and y (0.0)


@pytest.mark.slow
def test_museval_regression_on_real_musdb_track():
    """sigsep-mus-eval's tests/test_regression.py, reproduced through stemkit's reader and metric code."""
    shared = shared_dir()
    if shared is None:
        pytest.skip("../shared/data is not beside this checkout")
    expected = json.loads((shared / "data/museval-regression/Music Delta - 80s Rock.json").read_text())
    tracks = list_musdb_tracks(shared / "data/MUSDB18-7-SAMPLE", subset="train")
    track = [t for t in tracks if t.name == "Music Delta - 80s Rock"][0]
    mix = track.load_mix()  # [channels, samples]
    np.random.seed(0)  # museval's test draws its estimates exactly like this, shaped [samples, channels]
    random_voc = np.random.random((mix.shape[1], mix.shape[0]))
    random_acc = np.random.random((mix.shape[1], mix.shape[0]))
    references = {"vocals": track.load_target("vocals"), "accompaniment": track.load_target("accompaniment")}
    scores = evaluate_track(references, {"vocals": random_voc.T, "accompaniment": random_acc.T}, track.sample_rate, keep_frames=True)
    for target in expected["targets"]:
        for metric in ("SDR", "SIR", "SAR", "ISR"):
            want = np.array([f["metrics"][metric] for f in target["frames"]])
            got = np.array(scores[target["name"]]["frames"][metric])
            np.testing.assert_allclose(got, want, atol=1e-3)
        assert scores[target["name"]]["cSDR"] == pytest.approx(np.median([f["metrics"]["SDR"] for f in target["frames"]]), abs=1e-3)
