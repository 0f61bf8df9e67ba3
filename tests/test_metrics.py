"""Metric code against answers it does not compute itself: BSSEval's definitions on a mixture whose
decomposition is known by construction, mir_eval's independent bss_eval_images, and museval's own
regression expectation on a real MUSDB18 track read through stemkit's reader."""

import json
import warnings

import mir_eval
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


def _db(num: float, den: float) -> float:
    return float(10 * np.log10(num / den))


# A two-source mixture whose BSSEval decomposition is known by construction: estimate j is
# GAIN·s_j (a spatial/gain distortion, e_spat = (GAIN − 1)·s_j) + LEAK·s_other (interference) +
# noise·n_j (artifacts: white noise outside the references' span). BSSEval's image criteria
# (Vincent et al. 2007; museval's _bss_crit) then give, with E the energies in a window,
#   SDR = E(s) / E(est − s)                      exactly (the decomposition sums to est − s),
#   ISR = E(s) / E((GAIN − 1)·s) = 1 / (GAIN − 1)²,
#   SIR = E(GAIN·s) / E(LEAK·s_other),
#   SAR = E(GAIN·s + LEAK·s_other) / E(noise·n),
# the last three up to the little noise and interference that the 512-tap projections absorb by
# chance (≈ taps · sources / samples of their energy: SAR reads ≈ 0.35 dB high here), hence the
# 0.5 dB tolerance — below the gaps between the four metrics (≈ 10.5, 14.0, 12.1 and 18.3 dB with
# noise 0.1), so a swapped key or a wrong definition fails.
GAIN, LEAK = 0.8, 0.2


def _known_mixture(samples: int, noise_levels: np.ndarray, seed: int = 0):
    """``refs``, ``ests`` ``[2, samples, 1]`` and the noise; ``noise_levels[j, w]`` scales n_j in window w."""
    rng = np.random.default_rng(seed)
    refs = rng.normal(size=(2, samples, 1))
    noise = rng.normal(size=(2, samples, 1))
    windows = noise_levels.shape[1]
    level = np.repeat(noise_levels, samples // windows, axis=1)[..., None]
    ests = GAIN * refs + LEAK * refs[::-1] + level * noise
    return refs, ests, noise


def _expected_window_metrics(refs, ests, noise, noise_levels, window: int) -> dict[str, np.ndarray]:
    """The four criteria of each source and window from the signals' energies, as above."""
    out = {key: np.zeros(noise_levels.shape) for key in ("SDR", "ISR", "SIR", "SAR")}
    for j in range(2):
        for w in range(noise_levels.shape[1]):
            cut = slice(w * window, (w + 1) * window)
            s, other, n = refs[j, cut], refs[1 - j, cut], noise_levels[j, w] * noise[j, cut]
            out["SDR"][j, w] = _db(np.sum(s**2), np.sum((ests[j, cut] - s) ** 2))
            out["ISR"][j, w] = _db(1.0, (GAIN - 1) ** 2)
            out["SIR"][j, w] = _db(np.sum((GAIN * s) ** 2), np.sum((LEAK * other) ** 2))
            out["SAR"][j, w] = _db(np.sum((GAIN * s + LEAK * other) ** 2), np.sum(n**2))
    return out


def test_v4_frames_follow_the_bsseval_definitions_on_a_known_mixture():
    """Each 1 s window's SDR/ISR/SIR/SAR is the value the decomposition predicts, per source and window."""
    rate = 4000
    levels = np.full((2, 3), 0.1)
    refs, ests, noise = _known_mixture(3 * rate, levels)
    ours = bss_eval_frames(refs, ests, rate)
    expected = _expected_window_metrics(refs, ests, noise, levels, rate)
    assert ours["SDR"].shape == (2, 3)
    np.testing.assert_allclose(ours["SDR"], expected["SDR"], rtol=1e-6)
    for key in ("ISR", "SIR", "SAR"):
        np.testing.assert_allclose(ours[key], expected[key], atol=0.5, err_msg=key)


def test_evaluate_track_is_the_median_over_windows_and_skips_silent_ones():
    """cSDR (and SIR/SAR/ISR) of a track is the median over its 1 s windows, per target in the given
    order; a window where everything is silent is NaN in museval and must not turn the median NaN.

    The noise level changes per window so that the median differs from the mean, the first window
    and the other target's value by several dB. The windows' SDR is known exactly (see above); the
    other criteria's window values are pinned by the test above, so here only their aggregation is
    checked (with noise this uneven, the loud windows' noise leaks into the quiet windows'
    projections and the per-window formulas no longer hold to 0.5 dB)."""
    rate = 2000
    levels = np.array([[0.3, 0.05, 0.05, 0.1, 2.0, 0.0], [1.0, 0.5, 1.0, 2.0, 1.0, 0.0]])
    refs, ests, noise = _known_mixture(6 * rate, levels, seed=1)
    refs[:, 5 * rate:] = 0.0  # the last window is silent in every reference and estimate
    ests[:, 5 * rate:] = 0.0
    expected = _expected_window_metrics(refs[:, : 5 * rate], ests[:, : 5 * rate], noise[:, : 5 * rate], levels[:, :5], rate)
    names = ["violin", "cello"]
    scores = evaluate_track({n: torch.from_numpy(refs[i].T) for i, n in enumerate(names)},
                            {n: ests[i].T for i, n in enumerate(names)}, rate, keep_frames=True)
    violin = expected["SDR"][0]  # ≈ 7.6, 10.9, 11.1, 10.5, −6.1 dB: median 10.5, mean 6.8
    assert abs(np.median(violin) - np.mean(violin)) > 3 and abs(np.median(violin) - violin[0]) > 2.5
    for i, name in enumerate(names):
        frames = scores[name]["frames"]
        assert np.isnan(frames["SDR"][5]) and np.isfinite(frames["SDR"][:5]).all()
        assert scores[name]["cSDR"] == pytest.approx(float(np.median(expected["SDR"][i])), rel=1e-6)
        for metric in ("SIR", "SAR", "ISR"):
            assert scores[name][metric] == pytest.approx(float(np.nanmedian(frames[metric])), rel=1e-12), metric
    assert abs(scores["violin"]["cSDR"] - scores["cello"]["cSDR"]) > 10  # the targets are not mixed up


def test_whole_signal_v4_and_v3_match_mir_eval_images():
    """With one window over the whole signal, BSSEval v4 (filters fitted on the whole track) and v3
    (fitted per window) fit the same filters, so both must equal mir_eval's bss_eval_images — an
    independent implementation of the same criteria — on all four metrics."""
    rate = 4000
    refs, ests = _signals(sources=2, samples=2 * rate, channels=2, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # bss_eval_images is deprecated in mir_eval 0.8
        sdr, isr, sir, sar, _ = mir_eval.separation.bss_eval_images(refs, ests, compute_permutation=False)
    for mode in ("v4", "v3"):
        ours = bss_eval_frames(refs, ests, rate, window=2.0, hop=2.0, mode=mode)
        for key, value in zip(("SDR", "ISR", "SIR", "SAR"), (sdr, isr, sir, sar)):
            np.testing.assert_allclose(ours[key][:, 0], value, rtol=1e-6, atol=1e-6, err_msg=f"{mode} {key}")


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
