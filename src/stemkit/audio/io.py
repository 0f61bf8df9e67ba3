"""Read and write audio files with soundfile; writes are atomic (see :mod:`stemkit.atomic`)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from stemkit.atomic import atomic_output
from stemkit.audio.resample import resample
from stemkit.errors import StemkitError, StemkitWarning, first_line

#: soundfile subtypes by the short names the CLI accepts.
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT", "PCM_16": "PCM_16", "PCM_24": "PCM_24", "FLOAT": "FLOAT"}
FORMATS = {".wav": "WAV", ".flac": "FLAC"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding it."""

    sample_rate: int
    channels: int
    frames: int
    subtype: str = ""

    @property
    def is_float(self) -> bool:
        """Whether samples are floats, the only encoding that can hold NaN, ±Inf or values beyond ±1."""
        return self.subtype in ("FLOAT", "DOUBLE")

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
        raise StemkitError(f"cannot read audio from {path}: {first_line(exc)} (use wav, flac, ogg or another format soundfile reads)") from None
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), str(info.subtype))


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
        raise StemkitError(f"cannot read audio from {path}: {first_line(exc)} (use wav, flac, ogg or another format soundfile reads)") from None
    audio = torch.from_numpy(np.ascontiguousarray(data.T))
    check_finite(audio, str(path), rate, offset=start)
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
    label: str | None = None,
) -> Path:
    """Write ``[channels, samples]`` audio atomically (temp file in the same folder, then rename).

    The container follows the suffix (.wav or .flac). Integer subtypes clip to [-1, 1): clipping is
    the caller's decision, so values outside that range are reported (a ``StemkitWarning``) rather
    than silently clipped or wrapped. ``label`` names the file in messages (default: ``path``).
    """
    label = label or str(path)
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
    check_finite(data, f"audio for {label}", sample_rate)
    data = np.ascontiguousarray(data.T.astype(np.float32 if subtype == "FLOAT" else np.float64, copy=False))
    if subtype != "FLOAT":
        over = int(np.count_nonzero(np.abs(data) > 1.0))
        if over:
            warnings.warn(f"{label}: {over} sample(s) beyond full scale (peak {np.abs(data).max():.2f}) were clipped "
                          f"to fit {subtype}; lower the input level to avoid it", StemkitWarning, stacklevel=2)
        data = np.clip(data, -1.0, 1.0)
    with atomic_output(path) as tmp:
        sf.write(str(tmp), data, int(sample_rate), subtype=subtype, format=fmt)
    return path


def check_finite_file(path: str | os.PathLike, block: int = 1 << 20) -> AudioInfo:
    """Refuse a file holding NaN or ±Inf before any work is done with it; returns its header facts.

    Only float files can hold such values, so integer files cost a header read; float files are
    scanned in blocks, so memory stays bounded on long files.
    """
    info = audio_info(path)
    if info.is_float:
        try:
            for start, data in _blocks(path, block):
                check_finite(data.T, str(path), info.sample_rate, offset=start)
        except StemkitError:
            raise
        except Exception as exc:
            raise StemkitError(f"cannot read audio from {path}: {first_line(exc)}") from None
    return info


def _blocks(path: str | os.PathLike, block: int):
    start = 0
    for data in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
        yield start, data
        start += data.shape[0]


def check_finite(audio: torch.Tensor | np.ndarray, source: str, sample_rate: int | None = None, offset: int = 0) -> None:
    """Refuse audio holding NaN or ±Inf, naming the first bad sample.

    Why refuse rather than repair: a network fed one NaN returns NaN everywhere (a separator wrote
    four stems of full-scale DC), and silently zeroing samples hides a broken upstream step.
    ``audio`` is ``[channels, samples]``; ``offset`` is where it starts in the file.
    """
    values = audio if isinstance(audio, torch.Tensor) else torch.from_numpy(np.asarray(audio))
    if not values.is_floating_point():
        return
    bad = ~torch.isfinite(values)
    if not bool(bad.any()):
        return
    flat = bad.reshape(-1, bad.shape[-1]) if bad.dim() > 1 else bad[None]
    sample = int(flat.any(dim=0).nonzero()[0]) + offset
    channel = int(flat[:, sample - offset].nonzero()[0])
    value = float(values.reshape(flat.shape)[channel, sample - offset])
    when = f" ({sample / sample_rate:.3f} s)" if sample_rate else ""
    raise StemkitError(f"{source} holds {int(bad.sum())} non-finite sample(s): the first is {value} at sample {sample}{when}, "
                       f"channel {channel}; fix the audio before using it")
