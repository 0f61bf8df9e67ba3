"""Fréchet distance between two sets of audio embeddings — how far generated audio sits from real
audio *as a distribution*, whatever the notes.

The spectrogram-diffusion paper reports Fréchet distances on VGGish and TRILL embeddings; both need
weights downloaded from TF-Hub, which this project's machines cannot reach. The embedding here is one
that needs no weights: per window (1 s by default), the mean and standard deviation over frames of 20
MFCCs (librosa) — the timbre-and-loudness statistics the classic Fréchet-audio-distance embeddings
also capture, without their learned semantics. Numbers therefore compare rows of *our* tables, not
the paper's.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

N_MFCC = 20


def mfcc_windows(audio: torch.Tensor | np.ndarray, sample_rate: int, window_seconds: float = 1.0) -> np.ndarray:
    """``[windows, 2·N_MFCC]``: mean and std of the MFCCs in each whole window of mono ``audio``."""
    import librosa

    mono = np.asarray(audio.detach().cpu() if isinstance(audio, torch.Tensor) else audio, dtype=np.float32)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    size = int(round(window_seconds * sample_rate))
    rows = []
    for start in range(0, len(mono) - size + 1, size):
        mfcc = librosa.feature.mfcc(y=mono[start:start + size], sr=sample_rate, n_mfcc=N_MFCC, n_fft=1024, hop_length=256)
        rows.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
    return np.stack(rows) if rows else np.zeros((0, 2 * N_MFCC))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``‖μa − μb‖² + tr(Σa + Σb − 2(ΣaΣb)^½)`` of two sets of row vectors (each ≥ 2 rows)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance needs two [n ≥ 2, d] sets of the same d, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(root).all():  # a singular product: nudge both covariances, as the FID reference code does
        eps = np.eye(a.shape[1]) * 1e-6
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = root.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))
