"""A mel vocoder: log-mel frames → audio, for every model that samples mels (DisMix's decoder, spectrogram diffusion).

Why this design (Vocos, Siuzdenko 2023): instead of upsampling mel frames to samples through a stack
of transposed convolutions (HiFi-GAN), a ConvNeXt stack stays at the frame rate and predicts, per
frame, the magnitude and phase of a short-time spectrum, which an inverse STFT turns into audio. All
the work happens at 50 frames/s instead of 16 000 samples/s, so it trains and runs fast on a CPU, and
the inverse STFT puts harmonics exactly where the magnitudes say — what pitched instruments need.

The vocoder owns its mel settings (its ``mel`` field holds :class:`~stemkit.synthesis.mel_codec.MelCodecConfig` fields)
and computes its input features with the codec itself, so a vocoder and the codec whose output it
inverts agree by construction; :class:`~stemkit.synthesis.mel_codec.MelCodec` refuses a vocoder made
for other settings. Input: the codec's scaled log-mel ``[B, n_mels, F]``; output: ``[B, 1, F · hop]``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from stemkit.registry import register_family
from stemkit.synthesis.mel_codec import MelCodec, MelCodecConfig

#: the head's starting log-magnitude (quiet: most bins of music are), and its cap — a full-scale sine's peak
#: bin is about synthesis_fft / 4 (320 at the default 1280), so the cap sits well above anything real
INITIAL_LOG_MAGNITUDE = -4.0
MAX_LOG_MAGNITUDE = math.log(1e4)

#: the codec fields a vocoder must share with the codec it decodes for (all but the decoder choice)
MEL_FIELDS = tuple(f.name for f in fields(MelCodecConfig) if f.name not in ("griffin_lim_iters", "vocoder"))


def mel_settings(defaults: dict, given: dict) -> MelCodecConfig:
    """A :class:`MelCodecConfig` from a model's ``mel`` field: ``given`` over the model's ``defaults``."""
    unknown = sorted(set(given) - {f.name for f in fields(MelCodecConfig)})
    if unknown:
        raise ValueError(f"unknown mel setting(s) {', '.join(unknown)}")
    return MelCodecConfig(**{**defaults, **given})


@dataclass
class MelVocoderConfig:
    #: the mel it inverts: :class:`MelCodecConfig` fields (default: spectrogram diffusion's 128 bands, hop 320)
    mel: dict = field(default_factory=dict)
    dim: int = 256  #: ConvNeXt width
    intermediate: int = 768  #: width inside each block's pointwise MLP
    layers: int = 8
    kernel_size: int = 7
    synthesis_fft: int = 0  #: FFT (= window) size of the inverse STFT; 0 = 4 × hop (75 % overlap)

    def __post_init__(self) -> None:
        hop = self.mel_config().hop
        if self.synthesis_fft == 0:
            self.synthesis_fft = 4 * hop
        if self.synthesis_fft < hop or (self.synthesis_fft - hop) % 2:
            raise ValueError(f"synthesis_fft ({self.synthesis_fft}) must be at least hop ({hop}) and differ from it "
                             "by an even number of samples")
        if min(self.dim, self.intermediate, self.layers, self.kernel_size) < 1 or self.kernel_size % 2 == 0:
            raise ValueError("dim, intermediate and layers must be positive and kernel_size odd")

    def mel_config(self) -> MelCodecConfig:
        """The codec settings whose features this vocoder inverts (its own decoder choice left out)."""
        return mel_settings({}, {k: v for k, v in self.mel.items() if k not in ("vocoder", "griffin_lim_iters")})

    @property
    def sample_rate(self) -> int:
        return self.mel_config().sample_rate

    @property
    def hop(self) -> int:
        return self.mel_config().hop

    def to_dict(self) -> dict:
        mel = {name: getattr(self.mel_config(), name) for name in MEL_FIELDS}
        return dict(asdict(self), mel=mel)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv over frames → LayerNorm → pointwise MLP (GELU) → learned per-channel scale, plus the input."""

    def __init__(self, dim: int, intermediate: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.expand = nn.Linear(dim, intermediate)
        self.project = nn.Linear(intermediate, dim)
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(x).transpose(1, 2)
        y = self.project(torch.nn.functional.gelu(self.expand(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


def overlap_add_istft(spec: torch.Tensor, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Inverse STFT with "same" padding: complex ``[B, n_fft/2 + 1, F]`` → ``[B, F · hop]``.

    Why not ``torch.istft``: with ``center=True`` it returns ``(F − 1) · hop`` samples, one hop short of
    the ``F · hop`` a frame-rate model must produce; trimming ``(n_fft − hop) / 2`` from both ends of the
    overlap-add gives exactly ``F · hop``. Each frame is windowed, overlap-added and divided by the
    summed squared window (the least-squares inverse), which is constant inside the trimmed span."""
    n_fft = window.shape[0]
    frames = spec.shape[-1]
    pieces = torch.fft.irfft(spec, n=n_fft, dim=1) * window[None, :, None]  # [B, n_fft, F]
    total = (frames - 1) * hop + n_fft
    fold = dict(output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop))
    audio = nn.functional.fold(pieces, **fold)[:, 0, 0]
    envelope = nn.functional.fold(window.square()[None, :, None].expand(1, n_fft, frames), **fold)[0, 0, 0]
    trim = (n_fft - hop) // 2
    return audio[:, trim: total - trim] / envelope[trim: total - trim].clamp_min(1e-8)


@register_family("mel-vocoder", task="vocoding", config_class=MelVocoderConfig)
class MelVocoder(nn.Module):
    def __init__(self, config: MelVocoderConfig) -> None:
        super().__init__()
        self.config = config
        mel = config.mel_config()
        self.codec = MelCodec(mel)  # only a mel filterbank buffer, not saved
        self.embed = nn.Conv1d(mel.n_mels, config.dim, config.kernel_size, padding=config.kernel_size // 2)
        self.embed_norm = nn.LayerNorm(config.dim)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(config.dim, config.intermediate, config.kernel_size, layer_scale=1.0 / config.layers)
            for _ in range(config.layers))
        self.out_norm = nn.LayerNorm(config.dim)
        bins = config.synthesis_fft // 2 + 1
        self.head = nn.Linear(config.dim, 2 * bins)
        with torch.no_grad():  # start quiet: an untrained head's unit magnitudes are loud noise in every bin,
            self.head.bias[:bins].fill_(INITIAL_LOG_MAGNITUDE)  # and climbing down to the quiet bins' level is slow
        self.register_buffer("window", torch.hann_window(config.synthesis_fft), persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop(self) -> int:
        return self.config.hop

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """The codec's scaled log-mel of ``[B, 1, T]`` audio: what :meth:`forward` inverts."""
        return self.codec.encode(audio)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Scaled log-mel ``[B, n_mels, F]`` → audio ``[B, 1, F · hop]``."""
        x = self.embed(features)
        x = self.embed_norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        log_magnitude, phase = self.head(self.out_norm(x.transpose(1, 2))).transpose(1, 2).chunk(2, dim=1)
        magnitude = log_magnitude.clamp(max=MAX_LOG_MAGNITUDE).exp()  # a cap keeps early training from exploding
        spec = torch.polar(magnitude, phase)
        return overlap_add_istft(spec, self.config.hop, self.window).unsqueeze(1)
