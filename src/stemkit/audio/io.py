"""Read and write audio files with soundfile; writes are atomic (see :mod:`stemkit.atomic`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from stemkit.atomic import atomic_output
from stemkit.audio.resample import resample
from stemkit.errors import StemkitError

#: soundfile subtypes by the short names the CLI accepts.
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT", "PCM_16": "PCM_16", "PCM_24": "PCM_24", "FLOAT": "FLOAT"}
FORMATS = {".wav": "WAV", ".flac": "FLAC"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding it."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header facts about an audio file; raises ``StemkitError`` when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise StemkitError(f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise StemkitError(f"cannot read audio from {path}: {_short(exc)} (use wav, flac, ogg or another format soundfile reads)") from None
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames))


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    start: int = 0,
    frames: int = -1,
    mono: bool = False,
) -> tuple[torch.Tensor, int]:
    """Load ``[channels, samples]`` float32 audio and its sample rate.

    ``start``/``frames`` select a window in the file's own sample rate (read without decoding the rest,
    which is what makes random crops from disk cheap). With ``sample_rate`` the result is resampled to
    it and that rate is returned.
    """
    path = Path(path)
    if not path.is_file():
        raise StemkitError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise StemkitError(f"cannot read audio from {path}: {_short(exc)} (use wav, flac, ogg or another format soundfile reads)") from None
    audio = torch.from_numpy(np.ascontiguousarray(data.T))
    if mono and audio.shape[0] > 1:
        audio = audio.mean(dim=0, keepdim=True)
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return audio, int(rate)


def save_audio(
    path: str | os.PathLike,
    audio: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str = "PCM_16",
    overwrite: bool = True,
) -> Path:
    """Write ``[channels, samples]`` audio atomically (temp file in the same folder, then rename).

    The container follows the suffix (.wav or .flac). Integer subtypes clip to [-1, 1): clipping is
    the caller's decision, so values outside that range are reported rather than silently wrapped.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise StemkitError(f"unsupported output format {path.suffix!r} for {path}: use .wav or .flac")
    subtype = SUBTYPES.get(subtype, subtype)
    if fmt == "FLAC" and subtype == "FLOAT":
        raise StemkitError("FLAC cannot store float samples: use 16- or 24-bit, or write .wav")
    if path.exists() and not overwrite:
        raise StemkitError(f"{path} exists: pass --overwrite to replace it")
    data = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise ValueError(f"expected [channels, samples] audio, got shape {data.shape}")
    data = np.ascontiguousarray(data.T.astype(np.float32 if subtype == "FLOAT" else np.float64, copy=False))
    if subtype != "FLOAT":
        data = np.clip(data, -1.0, 1.0)
    with atomic_output(path) as tmp:
        sf.write(str(tmp), data, int(sample_rate), subtype=subtype, format=fmt)
    return path


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
