"""Separation metrics with the field's exact conventions, so our numbers sit next to papers'.

Three different numbers are all called "SDR" in the literature; we name them apart:

- **cSDR** — SiSEC18/MUSDB: BSSEval v4 (museval, the reference implementation: time-invariant
  512-tap distortion filters, image metrics) on 1 s windows with 1 s hop; the *median over windows*
  per track (silent windows are NaN and skipped), then the *median over tracks*. SIR, SAR and ISR
  are aggregated the same way.
- **uSDR** — MDX'21/SDX'23 "utterance" SDR: ``10 log10(Σ s² / Σ (s − ŝ)²)`` over the whole signal,
  *mean over tracks*.
- **SI-SDR** — scale-invariant SDR over the whole signal (channels flattened), *mean over tracks*.

The headline "average" is the mean over targets of the per-target figures (the papers' avg column).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

#: Metric names in table order; the first four come from BSSEval v4 frames.
METRICS = ("cSDR", "uSDR", "SI-SDR", "SIR", "SAR", "ISR")
FRAME_METRICS = {"cSDR": "SDR", "SIR": "SIR", "SAR": "SAR", "ISR": "ISR"}
TRACK_AGGREGATION = {"cSDR": "median", "SIR": "median", "SAR": "median", "ISR": "median", "uSDR": "mean", "SI-SDR": "mean"}


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def usdr(reference: torch.Tensor | np.ndarray, estimate: torch.Tensor | np.ndarray, eps: float = 1e-8) -> float:
    """MDX utterance SDR over the whole signal (all channels together), in dB."""
    ref, est = _np(reference), _np(estimate)
    num = np.sum(ref**2) + eps
    den = np.sum((ref - est) ** 2) + eps
    return float(10.0 * np.log10(num / den))


def si_sdr(reference: torch.Tensor | np.ndarray, estimate: torch.Tensor | np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant SDR (Le Roux et al. 2019) in dB, zero-mean, channels flattened into one signal."""
    ref, est = _np(reference).ravel(), _np(estimate).ravel()
    ref = ref - ref.mean()
    est = est - est.mean()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    target = alpha * ref
    noise = est - target
    return float(10.0 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


def bss_eval_frames(
    references: np.ndarray,
    estimates: np.ndarray,
    sample_rate: int,
    window: float = 1.0,
    hop: float = 1.0,
    mode: str = "v4",
) -> dict[str, np.ndarray]:
    """BSSEval framewise metrics via museval: ``{"SDR","ISR","SIR","SAR": [sources, frames]}``.

    ``references``/``estimates`` are ``[sources, samples, channels]``; estimates are cut or zero-padded
    to the references' length, as museval does. ``mode="v4"`` is SiSEC18's (one set of distortion
    filters per track); ``mode="v3"`` refits them per window, as mir_eval's ``bss_eval_images``.
    """
    import museval

    refs = np.asarray(references, dtype=np.float64)
    ests = np.asarray(estimates, dtype=np.float64)
    if ests.shape[1] != refs.shape[1]:
        ests = ests[:, : refs.shape[1]]
        ests = np.pad(ests, ((0, 0), (0, refs.shape[1] - ests.shape[1]), (0, 0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # silent frames: museval yields NaN, as intended
        sdr, isr, sir, sar = museval.evaluate(
            refs, ests, win=int(window * sample_rate), hop=int(hop * sample_rate), mode=mode, padding=True
        )
    return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}


def evaluate_track(
    references: dict[str, torch.Tensor | np.ndarray],
    estimates: dict[str, torch.Tensor | np.ndarray],
    sample_rate: int,
    keep_frames: bool = False,
) -> dict[str, dict]:
    """All metrics for one track: ``{target: {metric: value, ["frames": {...}]}}``.

    Targets are evaluated jointly (SIR measures leakage between them), in the order of ``references``.
    Audio is ``[channels, samples]``.
    """
    targets = list(references)
    missing = [t for t in targets if t not in estimates]
    if missing:
        raise KeyError(f"no estimate for target(s): {', '.join(missing)}")
    refs = np.stack([_np(references[t]).T for t in targets])
    length = refs.shape[1]
    ests = []
    for t in targets:
        est = _np(estimates[t]).T
        if est.shape[1] != refs.shape[2]:
            raise ValueError(f"estimate for {t} has {est.shape[1]} channels, reference has {refs.shape[2]}")
        est = est[:length]
        ests.append(np.pad(est, ((0, length - est.shape[0]), (0, 0))))
    ests = np.stack(ests)
    # A reference that is silent throughout has no SDR of any kind (museval refuses it outright), so
    # it is left out of the joint evaluation and gets NaN, which the drivers report as undefined.
    sounding = [i for i in range(len(targets)) if np.any(refs[i])]
    frames = bss_eval_frames(refs[sounding], ests[sounding], sample_rate) if sounding else {}
    result: dict[str, dict] = {}
    for i, target in enumerate(targets):
        entry: dict = {m: float("nan") for m in METRICS}
        if i in sounding:
            row = sounding.index(i)
            for name, key in FRAME_METRICS.items():
                values = frames[key][row]
                entry[name] = float(np.nanmedian(values)) if np.any(np.isfinite(values)) else float("nan")
            entry["uSDR"] = usdr(refs[i], ests[i])
            entry["SI-SDR"] = si_sdr(refs[i], ests[i])
        result[target] = {m: entry[m] for m in METRICS}
        if keep_frames:
            result[target]["frames"] = {key: [float(v) for v in frames[key][sounding.index(i)]] if i in sounding else []
                                        for key in ("SDR", "SIR", "SAR", "ISR")}
    return result


def aggregate(per_track: dict[str, dict[str, dict]]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per-target figures over tracks (median for frame metrics, mean for uSDR/SI-SDR) and their average.

    Returns ``(per_target, average)``; NaN tracks (a target silent in the whole track) are skipped, and
    a metric no track has is NaN.
    """
    targets: list[str] = []
    for track in per_track.values():
        for target in track:
            if target not in targets:
                targets.append(target)
    per_target: dict[str, dict[str, float]] = {}
    for target in targets:
        per_target[target] = {}
        for metric in METRICS:
            values = np.array([t[target].get(metric, math.nan) for t in per_track.values() if target in t], dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size == 0:
                per_target[target][metric] = float("nan")
            elif TRACK_AGGREGATION[metric] == "median":
                per_target[target][metric] = float(np.median(values))
            else:
                per_target[target][metric] = float(np.mean(values))
    average = {}
    for metric in METRICS:
        values = [per_target[t][metric] for t in targets if math.isfinite(per_target[t][metric])]
        average[metric] = float(np.mean(values)) if values else float("nan")
    return per_target, average
