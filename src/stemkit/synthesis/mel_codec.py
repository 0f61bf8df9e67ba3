"""A log-mel codec: the features spectrogram diffusion samples (Hawthorne et al. 2022).

Settings follow the paper's code: 16 kHz, 128 mel bands from 0 to 8 kHz, FFT 1024, window 640, hop
320 (50 frames/s); log magnitude clipped at 1e-5, then ``[ln 1e-5, 4]`` mapped linearly to ``[-1, 1]``
so the diffusion model sees bounded, roughly unit-scale features.

Decoding needs a vocoder: ``vocoder`` names a trained ``mel-vocoder`` model made for these settings
(:mod:`stemkit.synthesis.vocoder`). Without one, ``decode`` inverts with Griffin-Lim (librosa): slow and
phasey, but the codec is complete without any weights and any mel model has a floor to beat.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import librosa
import numpy as np
import torch
from torch import nn

from stemkit.audio.spectral import mel_filterbank
from stemkit.diffusion.codecs import register_codec
from stemkit.errors import StemkitError

#: the vocoder name that asks for Griffin-Lim (no trained vocoder)
GRIFFIN_LIM = "griffin-lim"


@dataclass
class MelCodecConfig:
    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 1024
    win_length: int = 640
    hop: int = 320
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5  #: magnitudes below this are clipped before the log
    log_ceiling: float = 4.0  #: ln-magnitude mapped to +1
    griffin_lim_iters: int = 32
    vocoder: str | None = None  #: a mel-vocoder model's name or path; None = Griffin-Lim

    def to_dict(self) -> dict:
        return asdict(self)


@register_codec("mel", MelCodecConfig)
class MelCodec(nn.Module):
    """Audio ``[B, 1, T]`` ↔ scaled log-mel ``[B, n_mels, T / hop]``."""

    def __init__(self, config: MelCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("basis", mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax),
                             persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop(self) -> int:
        return self.config.hop

    @property
    def feature_channels(self) -> int:
        return self.config.n_mels

    def _scale(self, log_mel: torch.Tensor) -> torch.Tensor:
        low, high = math.log(self.config.log_floor), self.config.log_ceiling
        return (log_mel - low) / (high - low) * 2 - 1

    def _unscale(self, features: torch.Tensor) -> torch.Tensor:
        low, high = math.log(self.config.log_floor), self.config.log_ceiling
        return (features.clamp(-1, 1) + 1) / 2 * (high - low) + low

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` → ``[B, n_mels, T // hop]`` in ``[-1, 1]``."""
        cfg = self.config
        window = torch.hann_window(cfg.win_length, device=audio.device)
        spec = torch.stft(audio.reshape(-1, audio.shape[-1]), cfg.n_fft, cfg.hop, cfg.win_length, window, center=True,
                          return_complex=True)
        mel = torch.matmul(self.basis.to(audio.device), spec.abs())[..., : audio.shape[-1] // cfg.hop]
        return self._scale(mel.clamp_min(cfg.log_floor).log())

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.encode(audio)

    def vocoder(self) -> nn.Module | None:
        """The trained vocoder named in the config (loaded once, kept outside the module tree so it is
        never saved with a model that holds this codec), or None for Griffin-Lim."""
        if not self.config.vocoder:
            return None
        if "_vocoder" not in self.__dict__:
            from stemkit.models import load_model
            from stemkit.synthesis.vocoder import MEL_FIELDS

            model, _ = load_model(self.config.vocoder, family="mel-vocoder")
            mel = model.config.mel_config()
            differ = [f for f in MEL_FIELDS if getattr(mel, f) != getattr(self.config, f)]
            if differ:
                raise StemkitError(f"vocoder {self.config.vocoder} was made for other mel settings ({', '.join(differ)} differ)")
            self.__dict__["_vocoder"] = model
        return self.__dict__["_vocoder"]

    def use_vocoder(self, vocoder: str | None) -> None:
        """Decode with another trained vocoder (a name or file), or with Griffin-Lim (``None`` or
        ``"griffin-lim"``): a choice made at inference, which the weights of the model that samples the mels
        do not depend on. The vocoder is loaded, and its mel settings checked, at once, so a wrong one fails
        before any work."""
        if vocoder is not None and vocoder.lower() == GRIFFIN_LIM:
            vocoder = None
        self.config = replace(self.config, vocoder=vocoder or None)
        self.__dict__.pop("_vocoder", None)
        self.vocoder()

    def pick_decoder(self, vocoder: str | None) -> None:
        """The caller's choice of decoder (a vocoder name or file, or ``"griffin-lim"``), or with ``None`` the
        config's own, loaded now either way so that a missing or mismatched vocoder fails before any work."""
        if vocoder is not None:
            self.use_vocoder(vocoder)
        else:
            self.vocoder()

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, F]`` → audio ``[B, 1, F · hop]``, by the trained vocoder if one is named, else Griffin-Lim."""
        vocoder = self.vocoder()
        if vocoder is not None:
            vocoder.to(features.device)
            with torch.no_grad():
                return vocoder(features)
        cfg = self.config
        magnitude = self._unscale(features).exp().detach().cpu().double().numpy()
        out = []
        for mel in magnitude:
            # librosa's mel_to_audio starts Griffin-Lim from unseeded random phases; a fixed phase seed makes
            # the same mel give the same audio (the project's same-seed-same-bytes rule)
            stft = librosa.feature.inverse.mel_to_stft(mel, sr=cfg.sample_rate, n_fft=cfg.n_fft, power=1.0, fmin=cfg.fmin,
                                                       fmax=cfg.fmax, htk=False, norm="slaney")
            audio = librosa.griffinlim(stft, n_iter=cfg.griffin_lim_iters, hop_length=cfg.hop, win_length=cfg.win_length,
                                       n_fft=cfg.n_fft, random_state=0)
            length = mel.shape[-1] * cfg.hop
            out.append(np.pad(audio, (0, max(0, length - len(audio))))[:length].astype(np.float32))
        return torch.from_numpy(np.stack(out))[:, None].to(features.device)
