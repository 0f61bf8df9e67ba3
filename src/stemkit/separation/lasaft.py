"""LaSAFT: one conditioned U-Net that separates whichever source its condition names.

Choi et al. 2020, "LaSAFT: Latent Source Attentive Frequency Transformation for Conditioned
Source Separation" (arXiv 2010.11631). The network is a U-Net over complex-as-channels
spectrograms ``[batch, 2·channels, frames, freqs]``:

- every block starts with a **TFC** (densely connected 2-D convolutions) whose output is refined by
  a frequency transformation: a **TDF** (fully connected layers along frequency, shared over time)
  in the encoder, and in the decoder a **LaSAFT** block — ``num_tdfs`` latent-source TDFs whose
  outputs are mixed by attention between a query made from the condition and learned keys, so a
  target can borrow the frequency patterns of the latent sources it resembles;
- decoder blocks are also modulated by **GPoCM** (gated point-wise convolutional modulation): the
  condition generates a channel-mixing matrix and bias, ``x · σ(Γ x + β)``.

Why the condition is a vector and not only an index: ``forward`` takes the embedding of a target
index, but :meth:`LaSAFT.forward_spec` takes any ``[batch, embedding_dim]`` vector, so a query
encoder (an embedding of an audio example) can drive the same network later.

Every hyper-parameter is a :class:`LaSAFTConfig` field. ``spec_mode="mapping"`` (the paper) lets the
network output the target spectrogram directly; ``"mask"`` lets it output a complex ratio mask that
multiplies the mixture, which trains faster on small budgets.

Two architectures share this module, chosen by three config switches (each can be ablated alone):

============================  ===============================  ====================================
switch                        ``"compact"`` (stemkit's first)  ``"paper"`` (the reference code)
============================  ===============================  ====================================
``condition_encoder``         False: TFC-TDF encoder blocks,   True: every encoder block is a
                              computed once for all targets    TFC-LaSAFT (conditioned)
``latent_tdfs``               ``"bottleneck"``: attention      ``"full"``: each latent TDF maps back
                              mixes bottlenecks, one shared    to every bin; attention mixes those
                              output layer                     full outputs
``gpocm``                     ``"per-block"``: middle and      ``"shared"``: one control model makes
                              decoder blocks each have a       Γ, β for every decoder block; no
                              small generator                  GPoCM in the middle block
============================  ===============================  ====================================

:func:`paper_switches` gives the reference's values. The defaults are the compact ones because the
checkpoints shipped before the switches existed were trained with them; their stored configs lack
the switches and must keep loading as what they are.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from stemkit.audio.spectral import complex_channels_multiply, from_complex_channels, to_complex_channels
from stemkit.registry import register_family
from stemkit.separation.query import QueryEncoder


class SpectrogramUNetShape:
    """What every spectrogram U-Net config here shares (LaSAFT's, the refiner's): the window, the
    depth, and the checks that make the frequency axis halve cleanly at every level."""

    n_fft: int
    hop_length: int
    num_frames: int
    n_blocks: int

    def check_shape(self) -> None:
        if self.n_blocks < 1 or self.n_blocks % 2 == 0:
            raise ValueError(f"n_blocks must be odd and positive, got {self.n_blocks}")
        if self.n_fft % 2 or self.hop_length <= 0 or self.num_frames <= 1:
            raise ValueError("n_fft must be even, hop_length positive and num_frames > 1")
        freqs = self.n_fft // 2
        if freqs % (2 ** self.depth):
            raise ValueError(f"n_fft // 2 = {freqs} must be divisible by 2**{self.depth} for {self.n_blocks} blocks")

    @property
    def depth(self) -> int:
        """Number of down-samplings (encoder blocks)."""
        return self.n_blocks // 2

    @property
    def segment_samples(self) -> int:
        """Audio samples that give exactly ``num_frames`` centred STFT frames."""
        return self.hop_length * (self.num_frames - 1)


@dataclass
class LaSAFTConfig(SpectrogramUNetShape):
    """Architecture and signal settings; defaults are the paper's MUSDB18 model."""

    sample_rate: int = 44100
    audio_channels: int = 2
    targets: list[str] = field(default_factory=lambda: ["vocals", "drums", "bass", "other"])
    n_fft: int = 2048
    hop_length: int = 1024
    num_frames: int = 128  #: STFT frames per training/inference window
    spec_mode: str = "mapping"  #: "mapping" (paper) or "mask" (complex ratio mask)
    n_blocks: int = 7  #: encoder blocks + middle + decoder blocks (odd)
    internal_channels: int = 24
    n_internal_layers: int = 5  #: convolutions per TFC
    kernel_t: int = 3
    kernel_f: int = 3
    bn_factor: int = 16  #: TDF bottleneck: freqs // bn_factor units
    min_bn_units: int = 16
    tdf_bias: bool = True
    num_tdfs: int = 6  #: latent sources per LaSAFT block
    dk: int = 32  #: attention key/query size
    embedding_dim: int = 32  #: size of the condition vector
    #: also condition on the remix level β of progressive inference (remix-aware training)
    beta_condition: bool = False
    #: encoder blocks are conditioned TFC-LaSAFT blocks (paper) instead of TFC-TDF blocks; an
    #: unconditioned encoder runs once for every target of a window, which makes separation faster
    condition_encoder: bool = False
    #: "full" (paper): each latent TDF outputs every bin and attention mixes them; "bottleneck":
    #: attention mixes the latent bottlenecks and one output layer is shared (≈5× fewer TDF weights)
    latent_tdfs: str = "bottleneck"
    #: "shared" (paper): one control model generates GPoCM's Γ, β for all decoder blocks;
    #: "per-block": the middle and every decoder block own a small generator
    gpocm: str = "per-block"
    control_layers: int = 4  #: depth of the shared control model (paper: 4, widths ×2 per layer)
    #: a query encoder maps an audio clip of an instrument to the condition (query-by-example)
    query_encoder: bool = False
    #: instruments whose mean query vectors the model stores (``stemkit separate --instrument``)
    instruments: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.check_shape()
        if self.spec_mode not in ("mapping", "mask"):
            raise ValueError(f"spec_mode must be 'mapping' or 'mask', got {self.spec_mode!r}")
        if not self.targets:
            raise ValueError("a separator needs at least one target")
        if self.latent_tdfs not in ("full", "bottleneck"):
            raise ValueError(f"latent_tdfs must be 'full' or 'bottleneck', got {self.latent_tdfs!r}")
        if self.gpocm not in ("shared", "per-block"):
            raise ValueError(f"gpocm must be 'shared' or 'per-block', got {self.gpocm!r}")
        if self.control_layers < 1:
            raise ValueError(f"control_layers must be at least 1, got {self.control_layers}")
        if self.instruments and not self.query_encoder:
            raise ValueError("stored instrument queries need a query encoder (query_encoder: true)")
        if len(set(self.instruments)) != len(self.instruments):
            raise ValueError(f"instrument names repeat: {self.instruments}")

    @property
    def architecture(self) -> str:
        """``"paper"``, ``"compact"`` or ``"mixed"`` (some switches of each), for model cards."""
        switches = {key: getattr(self, key) for key in PAPER_SWITCHES}
        if switches == PAPER_SWITCHES:
            return "paper"
        return "compact" if switches == COMPACT_SWITCHES else "mixed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The reference implementation's architecture (ws-choi/Conditioned-Source-Separation-LaSAFT,
#: ``DCUN_TFC_GPoCM_LaSAFT`` with ``condition_to: decoder``) and stemkit's compact one.
PAPER_SWITCHES: dict[str, Any] = {"condition_encoder": True, "latent_tdfs": "full", "gpocm": "shared"}
COMPACT_SWITCHES: dict[str, Any] = {"condition_encoder": False, "latent_tdfs": "bottleneck", "gpocm": "per-block"}


def paper_switches() -> dict[str, Any]:
    """The config switches that make :class:`LaSAFT` the reference implementation's network."""
    return dict(PAPER_SWITCHES)


def _activation() -> nn.Module:
    return nn.ReLU()


class TFC(nn.Module):
    """Densely connected convolutions: ``[B, in, T, F] → [B, growth, T, F]``.

    Each layer sees the concatenation of the block input and every earlier layer's output, which
    lets a shallow stack reuse features at several receptive fields.
    """

    def __init__(self, in_channels: int, layers: int, growth: int, kernel_t: int, kernel_f: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        channels = in_channels
        for _ in range(layers):
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(channels, growth, (kernel_t, kernel_f), padding=(kernel_t // 2, kernel_f // 2)),
                    nn.BatchNorm2d(growth),
                    _activation(),
                )
            )
            channels += growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x
        out = self.layers[0](features)
        for layer in self.layers[1:]:
            features = torch.cat([out, features], dim=1)
            out = layer(features)
        return out


def _bottleneck_units(freqs: int, bn_factor: int, min_units: int) -> int:
    return max(freqs // bn_factor, min_units)


class TDF(nn.Module):
    """Time-distributed fully connected layers over frequency (a bottleneck of two linears).

    Convolutions see a few neighbouring bins; a TDF sees the whole spectrum of one frame, which is
    where harmonic structure (a fundamental and its overtones far apart) lives.
    """

    def __init__(self, channels: int, freqs: int, bn_factor: int, min_units: int, bias: bool) -> None:
        super().__init__()
        units = _bottleneck_units(freqs, bn_factor, min_units)
        self.net = nn.Sequential(
            nn.Linear(freqs, units, bias=bias),
            nn.BatchNorm2d(channels),
            _activation(),
            nn.Linear(units, freqs, bias=bias),
            nn.BatchNorm2d(channels),
            _activation(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TFCTDF(nn.Module):
    """Unconditioned encoder block: ``y = TFC(x); y + TDF(y)``."""

    def __init__(self, in_channels: int, cfg: LaSAFTConfig, freqs: int) -> None:
        super().__init__()
        self.tfc = TFC(in_channels, cfg.n_internal_layers, cfg.internal_channels, cfg.kernel_t, cfg.kernel_f)
        self.tdf = TDF(cfg.internal_channels, freqs, cfg.bn_factor, cfg.min_bn_units, cfg.tdf_bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        x = self.tfc(x)
        return x + self.tdf(x)


class LatentSourceAttention(nn.Module):
    """The LaSAFT frequency transformation.

    ``num_tdfs`` TDFs (one per latent source) run in parallel; the condition becomes a query, learned
    keys stand for the latent sources, and the softmax of their scaled dot products weights the
    latent outputs. With ``latent_tdfs="full"`` (the paper) every latent TDF is a whole bottleneck
    TDF mapping back to every bin, and the weights mix those full outputs. With ``"bottleneck"`` the
    weights mix the latent bottlenecks and one shared linear maps the mixture back to every bin.
    """

    def __init__(self, channels: int, freqs: int, cfg: LaSAFTConfig) -> None:
        super().__init__()
        self.num_tdfs = cfg.num_tdfs
        self.full = cfg.latent_tdfs == "full"
        self.scale = 1.0 / math.sqrt(cfg.dk)
        if self.full:
            # as the reference: one first layer sized for all latent sources, a full output for each
            units = _bottleneck_units(freqs * cfg.num_tdfs, cfg.bn_factor, cfg.min_bn_units)
            self.latent = nn.Sequential(
                nn.Linear(freqs, units, bias=cfg.tdf_bias),
                nn.BatchNorm2d(channels),
                _activation(),
                nn.Linear(units, freqs * cfg.num_tdfs, bias=cfg.tdf_bias),
                nn.BatchNorm2d(channels),
                _activation(),
            )
            self.to_freqs = nn.Identity()
        else:
            units = _bottleneck_units(freqs, cfg.bn_factor, cfg.min_bn_units)
            self.latent = nn.Sequential(
                nn.Linear(freqs, units * cfg.num_tdfs, bias=cfg.tdf_bias),
                nn.BatchNorm2d(channels),
                _activation(),
            )
            self.to_freqs = nn.Sequential(nn.BatchNorm2d(channels), nn.Linear(units, freqs, bias=cfg.tdf_bias), _activation())
        self.query = nn.Linear(cfg.embedding_dim, cfg.dk)
        self.keys = nn.Parameter(torch.randn(cfg.dk, cfg.num_tdfs))

    def attention(self, condition: torch.Tensor) -> torch.Tensor:
        """``[B, num_tdfs]`` weights of the latent sources for each condition."""
        return (self.query(condition) @ self.keys * self.scale).softmax(dim=-1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, _ = x.shape
        values = self.latent(x).view(batch, channels, frames, -1, self.num_tdfs)
        weights = self.attention(condition).view(batch, 1, 1, self.num_tdfs, 1)
        return self.to_freqs((values @ weights).squeeze(-1))


def gated_pocm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``x · σ(Γ x + β)`` with a per-item channel-mixing matrix ``Γ [B, C, C]`` and bias ``β [B, C]``."""
    modulation = torch.einsum("bij,bjtf->bitf", gamma, x) + beta[:, :, None, None]
    return x * modulation.sigmoid()


class GPoCM(nn.Module):
    """Gated point-wise convolutional modulation: ``x · σ(Γ(c) x + β(c))``.

    The condition generates a full channel-mixing matrix Γ and a bias β (a 1×1 convolution whose
    weights depend on the target), and its sigmoid gates the features — a richer FiLM.
    """

    def __init__(self, channels: int, embedding_dim: int) -> None:
        super().__init__()
        self.channels = channels
        self.generator = nn.Sequential(
            weight_norm(nn.Linear(embedding_dim, embedding_dim)),
            nn.ReLU(),
            weight_norm(nn.Linear(embedding_dim, channels * channels + channels)),
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        params = self.generator(condition)
        gamma = params[:, : self.channels**2].view(-1, self.channels, self.channels)
        return gated_pocm(x, gamma, params[:, self.channels**2 :])


class ControlModel(nn.Module):
    """The paper's shared GPoCM control model: one network makes Γ and β for every decoder block.

    A dense block widens the condition (×2 per layer, dropout and batch norm after the first
    layer), then two linears emit all blocks' ``Γ [C, C]`` and ``β [C]`` at once, each batch-
    normalised without affine parameters — the reference implementation's ``pocm_control_model``
    with ``pocm_norm: batch_norm``.
    """

    def __init__(self, embedding_dim: int, channels: int, blocks: int, layers: int) -> None:
        super().__init__()
        self.channels, self.blocks = channels, blocks
        dims = [embedding_dim * 2**i for i in range(layers)]
        stack: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(zip(dims[:-1], dims[1:])):
            stack += [nn.Linear(width_in, width_out), nn.ReLU()]
            if i:
                stack += [nn.Dropout(), nn.BatchNorm1d(width_out)]
        self.dense = nn.Sequential(*stack)
        self.gamma = nn.Sequential(nn.Linear(dims[-1], blocks * channels**2), nn.BatchNorm1d(blocks * channels**2, affine=False))
        self.beta = nn.Sequential(nn.Linear(dims[-1], blocks * channels), nn.BatchNorm1d(blocks * channels, affine=False))

    def forward(self, condition: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One ``(Γ [B, C, C], β [B, C])`` per decoder block, outermost block last.

        A training batch of one item has no batch statistics to normalise by (the reference
        implementation fails there); its batch norms then use their running statistics.
        """
        norms = [m for m in self.modules() if isinstance(m, nn.BatchNorm1d)]
        alone = self.training and condition.shape[0] == 1
        for norm in norms if alone else []:
            norm.eval()
        try:
            hidden = self.dense(condition)
            gammas = self.gamma(hidden).view(-1, self.blocks, self.channels, self.channels)
            betas = self.beta(hidden).view(-1, self.blocks, self.channels)
        finally:
            for norm in norms if alone else []:
                norm.train()
        return [(gammas[:, i], betas[:, i]) for i in range(self.blocks)]


class TFCLaSAFT(nn.Module):
    """Conditioned block: ``y = TFC(x)``, gated by GPoCM where the block has one, then ``y + LaSAFT(y, c)``.

    ``own_gpocm`` gives the block its own Γ/β generator (compact architecture). Otherwise Γ and β
    come from outside (the paper's shared control model) through ``pocm``, or the block has no GPoCM.
    """

    def __init__(self, in_channels: int, cfg: LaSAFTConfig, freqs: int, own_gpocm: bool) -> None:
        super().__init__()
        self.tfc = TFC(in_channels, cfg.n_internal_layers, cfg.internal_channels, cfg.kernel_t, cfg.kernel_f)
        self.gpocm = GPoCM(cfg.internal_channels, cfg.embedding_dim) if own_gpocm else None
        self.lasaft = LatentSourceAttention(cfg.internal_channels, freqs, cfg)

    def forward(self, x: torch.Tensor, condition: torch.Tensor, pocm: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.tfc(x)
        if self.gpocm is not None:
            x = self.gpocm(x, condition)
        elif pocm is not None:
            x = gated_pocm(x, *pocm)
        return x + self.lasaft(x, condition)


class BetaEmbedding(nn.Module):
    """Maps the remix level β ∈ [0, 1] to a vector added to the target embedding.

    The last layer starts at zero, so a remix-aware model fine-tuned from a plain one starts out
    computing exactly what the plain one did, at every β.
    """

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, beta: torch.Tensor) -> torch.Tensor:
        return self.net(beta.unsqueeze(-1))


def _down(channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, channels, 2, stride=2), nn.BatchNorm2d(channels), _activation())


def _up(channels: int) -> nn.Module:
    return nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, stride=2), nn.BatchNorm2d(channels), _activation())


@register_family("lasaft", task="separation", config_class=LaSAFTConfig)
class LaSAFT(nn.Module):
    """CUNet of TFC-TDF or TFC-LaSAFT encoder blocks and TFC-LaSAFT(-GPoCM) middle/decoder blocks.

    ``forward(mix [B, C, samples], target_index [B]) → (estimate [B, C, samples], estimate spectrogram)``.
    The Nyquist bin is dropped inside (so frequency halves cleanly) and restored as zero.
    """

    def __init__(self, config: LaSAFTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        ch = cfg.internal_channels
        spec_channels = 2 * cfg.audio_channels
        freqs = cfg.n_fft // 2
        self.embedding = nn.Embedding(len(cfg.targets), cfg.embedding_dim)
        self.beta_embedding = BetaEmbedding(cfg.embedding_dim) if cfg.beta_condition else None
        self.first_conv = nn.Sequential(nn.Conv2d(spec_channels, ch, 1), nn.BatchNorm2d(ch), _activation())
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        own_gpocm = cfg.gpocm == "per-block"
        for level in range(cfg.depth):
            if cfg.condition_encoder:
                self.encoders.append(TFCLaSAFT(ch, cfg, freqs >> level, own_gpocm=False))
            else:
                self.encoders.append(TFCTDF(ch, cfg, freqs >> level))
            self.downs.append(_down(ch))
        self.middle = TFCLaSAFT(ch, cfg, freqs >> cfg.depth, own_gpocm=own_gpocm)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(cfg.depth)):
            self.ups.append(_up(ch))
            self.decoders.append(TFCLaSAFT(2 * ch, cfg, freqs >> level, own_gpocm=own_gpocm))
        self.control = None if own_gpocm else ControlModel(cfg.embedding_dim, ch, cfg.depth, cfg.control_layers)
        self.last_conv = nn.Conv2d(ch, spec_channels, 1)
        self.query_encoder = QueryEncoder(cfg.n_fft, cfg.hop_length, cfg.embedding_dim) if cfg.query_encoder else None
        # running means of the query vectors of each named instrument, kept up to date by training
        # (absent, not empty, without instruments: checkpoints from before queries have no such keys)
        stored = bool(cfg.instruments)
        self.register_buffer("instrument_conditions", torch.zeros(len(cfg.instruments), cfg.embedding_dim) if stored else None)
        self.register_buffer("instrument_counts", torch.zeros(len(cfg.instruments)) if stored else None)

    # --- spectrogram plumbing -------------------------------------------------------------
    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, C, samples]`` → complex-as-channels ``[B, 2C, frames, n_fft // 2]``."""
        return to_complex_channels(audio, self.config.n_fft, self.config.hop_length)

    def waveform(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of :meth:`spectrogram`."""
        return from_complex_channels(spec, self.config.n_fft, self.config.hop_length, length)

    def condition(self, target_index: torch.Tensor, beta: torch.Tensor | float | None = None) -> torch.Tensor:
        """Condition vectors ``[B, embedding_dim]`` for target indices ``[B]``.

        ``beta`` (``[B]`` or a number) is the share of the previous estimate remixed into the input by
        progressive inference (``None`` means 0: plain separation); a model built without
        ``beta_condition`` ignores it.
        """
        return self.with_beta(self.embedding(target_index), beta)

    def with_beta(self, vector: torch.Tensor, beta: torch.Tensor | float | None) -> torch.Tensor:
        """Add the remix level's embedding to condition vectors (a model without ``beta_condition`` ignores β)."""
        if self.beta_embedding is not None:
            beta = torch.as_tensor(0.0 if beta is None else beta, dtype=vector.dtype, device=vector.device).expand(vector.shape[0])
            vector = vector + self.beta_embedding(beta)
        return vector

    def query_condition(self, clip: torch.Tensor) -> torch.Tensor:
        """Condition vectors ``[B, embedding_dim]`` from query clips ``[B, C, samples]`` at the model's rate."""
        if self.query_encoder is None:
            raise ValueError("this model has no query encoder")
        return self.query_encoder(clip)

    def instrument_condition(self, name: str) -> torch.Tensor:
        """The stored mean query vector of a named instrument ``[embedding_dim]``."""
        if name not in self.known_instruments:
            raise KeyError(name)
        return self.instrument_conditions[self.config.instruments.index(name)]

    @property
    def known_instruments(self) -> list[str]:
        """Instruments with a stored query vector (seen in training)."""
        if self.instrument_counts is None:
            return []
        return [n for n, count in zip(self.config.instruments, self.instrument_counts.tolist()) if count > 0]

    @torch.no_grad()
    def update_instrument_conditions(self, names: list[str], vectors: torch.Tensor, momentum: float = 0.99) -> None:
        """Fold training query vectors into the per-instrument running means (exponential, so the
        stored vectors follow the encoder as it learns; the first vector of an instrument sets it)."""
        for name, vector in zip(names, vectors.detach()):
            if name not in self.config.instruments:
                continue
            index = self.config.instruments.index(name)
            if self.instrument_counts[index] == 0:
                self.instrument_conditions[index] = vector
            else:
                self.instrument_conditions[index].mul_(momentum).add_(vector, alpha=1.0 - momentum)
            self.instrument_counts[index] += 1

    # --- network --------------------------------------------------------------------------
    def _pad_frames(self, spec: torch.Tensor) -> torch.Tensor:
        pad = (-spec.shape[2]) % (2 ** self.config.depth)
        return torch.nn.functional.pad(spec, (0, 0, 0, pad)) if pad else spec

    def encode(self, mix_spec: torch.Tensor, condition: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encoder: the bottleneck features and the skips. ``condition`` is used (and needed) only
        when ``condition_encoder``; otherwise the encoding serves every target of the mixture."""
        x = self.first_conv(self._pad_frames(mix_spec))
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x, condition)
            skips.append(x)
            x = down(x)
        return x, skips

    def decode(
        self,
        mix_spec: torch.Tensor,
        x: torch.Tensor,
        skips: list[torch.Tensor],
        condition: torch.Tensor,
    ) -> torch.Tensor:
        """Middle block and decoder for one condition per item, then the output layer (and mask)."""
        controls = self.control(condition) if self.control is not None else [None] * len(self.decoders)
        x = self.middle(x, condition)
        for up, decoder, skip, pocm in zip(self.ups, self.decoders, reversed(skips), controls):
            x = decoder(torch.cat([up(x), skip], dim=1), condition, pocm)
        out = self.last_conv(x)[:, :, : mix_spec.shape[2]]
        if self.config.spec_mode == "mask":
            out = complex_channels_multiply(out, mix_spec)
        return out

    def forward_spec(self, mix_spec: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Estimate the conditioned target's spectrogram from the mixture's (same layout)."""
        x, skips = self.encode(mix_spec, condition)
        return self.decode(mix_spec, x, skips, condition)

    def forward(
        self, mix: torch.Tensor, target_index: torch.Tensor, beta: torch.Tensor | float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spec = self.forward_spec(self.spectrogram(mix), self.condition(target_index, beta))
        return self.waveform(spec, mix.shape[-1]), spec

    def separate_batch(self, mix: torch.Tensor, target_indices: list[int | torch.Tensor], beta: float | None = None) -> torch.Tensor:
        """All requested targets of a batch of windows: ``[B, C, samples] → [B, targets, C, samples]``.

        A target is an index, or a condition vector ``[embedding_dim]`` (a query's, an instrument's).

        An unconditioned encoder is run once and its features are reused for every target (four
        targets then take 0.71 of the time of four full passes: BENCHMARKS.md, "Separation speed");
        a conditioned encoder runs per target.
        """
        batch = mix.shape[0]
        spec = self.spectrogram(mix)
        shared = None if self.config.condition_encoder else self.encode(spec, None)
        outs = []
        for index in target_indices:
            if isinstance(index, torch.Tensor):
                condition = self.with_beta(index.to(mix.device, mix.dtype).expand(batch, -1), beta)
            else:
                condition = self.condition(torch.full((batch,), index, dtype=torch.long, device=mix.device), beta)
            x, skips = shared if shared is not None else self.encode(spec, condition)
            outs.append(self.waveform(self.decode(spec, x, skips, condition), mix.shape[-1]))
        return torch.stack(outs, dim=1)
