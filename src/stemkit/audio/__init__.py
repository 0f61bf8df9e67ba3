"""Audio core: file I/O, resampling, loudness, spectral transforms and overlap-add chunking.

Audio is always a float32 tensor ``[channels, samples]`` with an explicit sample rate; batches are
``[batch, channels, samples]``. Nothing here guesses a sample rate.
"""

from stemkit.audio.chunking import overlap_add
from stemkit.audio.io import audio_info, load_audio, save_audio
from stemkit.audio.loudness import integrated_loudness, normalize_loudness
from stemkit.audio.resample import resample
from stemkit.audio.spectral import istft, mel_filterbank, mel_spectrogram, stft

__all__ = [
    "audio_info",
    "integrated_loudness",
    "istft",
    "load_audio",
    "mel_filterbank",
    "mel_spectrogram",
    "normalize_loudness",
    "overlap_add",
    "resample",
    "save_audio",
    "stft",
]
