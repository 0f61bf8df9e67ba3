"""T5 encoders over token sequences and a FiLM-conditioned T5 decoder over frames (spectrogram diffusion).

What the paper did. Hawthorne et al. 2022 ("Multi-instrument music synthesis with spectrogram
diffusion") render a mel spectrogram segment from MIDI: a T5 *note encoder* reads the segment's note
events, a second T5 *context encoder* reads the previous segment's (generated) spectrogram, and a
T5 *decoder* over the noisy spectrogram frames cross-attends to the **concatenation of both
encodings** (``concat_encodings``) and takes the diffusion noise level by **FiLM** — a scale and
shift regressed from the noise embedding and applied after the decoder's layer norms. Sequence
models suit the problem: notes are events, not frames, and attention lets each frame find the notes
that sound in it wherever they sit in the event list.

What this module does, and why:

- ``x`` is ``[B, C, T]`` (``C`` mel bins, ``T`` frames), read as a sequence of ``T`` frames, each
  linearly projected to ``width``.
- One encoder per ``tokens`` condition (:class:`~stemkit.diffusion.conditions.TokenCondition`):
  ids (``vocab > 0``, e.g. note events) are embedded, continuous features (``vocab == 0``, e.g. the
  previous segment's spectrogram as ``[B, L, dim]``) linearly projected. T5 style: pre-norm with
  RMSNorm (scale only, no mean, no bias), bias-free attention with the key padding mask, gated-GELU
  MLP, a final RMSNorm.
- Positions: *absolute*, added once at the input of each stack — fixed sinusoidal tables by default
  (as the released model, whose position tables are frozen), or learned tables with
  ``positions: learned``. ``max_frames`` / ``max_tokens`` bound the tables; longer inputs are an
  error. (T5's relative position buckets are not used: segments have a fixed length here, as in the
  paper, so absolute positions lose nothing and keep the attention a plain fused kernel.)
- Token times (not in the paper): a token condition given with ``<name>_times`` (``[B, L]`` int, the
  decoder frame each token happens at; :func:`~stemkit.diffusion.conditions.times_key`) also adds the
  *decoder's* frame position at that time to each token. Why: in the paper's model the encoder must
  learn what a time-shift token means from data alone before a decoder frame can find the notes at its
  time by attention, which a CPU's budget of steps barely starts; with the same position code on both
  sides, "the notes at my time" is a dot product from the first step. Whether it speeds training is
  measured in BENCHMARKS.md (issue 16's table). Null items (guidance) get no time code.
- Token spans (not in the paper; ``span_frames: true``): a token condition given with ``<name>_spans``
  (``[B, L, 2]`` int, the decoder frames ``[start, end)`` during which each token's note sounds;
  :func:`~stemkit.diffusion.conditions.spans_key`) also adds, at each frame, the sum of the *encoded* tokens
  whose span covers it, through a zero-initialised linear layer, to the decoder's input. Why: a note-on
  token happens at one frame but its note sounds for many, and a frame halfway through a note must
  otherwise find, by attention alone, an onset before it whose note-off has not yet come — an interval
  test that dot products of position codes do not express, and that a CPU's budget of steps did not
  teach (BENCHMARKS.md, issue 16). Zero-initialised, so switching it on in a trained model changes
  nothing until it trains. Null items get nothing from it.
- Mask convention: condition masks are **True = a real token** (``<name>_mask``), and that is the
  convention of a boolean ``attn_mask`` in :func:`torch.nn.functional.scaled_dot_product_attention`
  (True = may attend), so masks are passed unchanged — never inverted, as ``nn.MultiheadAttention``'s
  ``key_padding_mask`` (True = ignore) would require.
- Decoder layer: ``h += SelfAttn(FiLM(RMSNorm(h)))``, ``h += CrossAttn(RMSNorm(h), encodings)``,
  ``h += MLP(FiLM(RMSNorm(h)))``. FiLM (``y·(1+scale)+shift``, its own linear per sub-layer) sits after
  the norm of the self-attention and of the MLP sub-layers, not of the cross-attention — the
  placement of the released decoder. The FiLM input is MLP(sinusoidal(``c_noise``)) plus every global
  ``vector`` condition (``[B, dim]``) through :class:`~stemkit.diffusion.conditions.VectorCondition`.
- ``causal: true`` masks the decoder's self-attention so frame t sees frames ≤ t: the same network as
  the paper's autoregressive baseline (fed the previous frames, it predicts the next).
- Output: final RMSNorm and a zero-initialised linear back to ``C``, so at initialisation the network
  outputs exactly zero (EDM's ``D = c_skip·x``).
- Without any ``tokens`` condition there are no encoders and the decoder skips cross-attention (a
  purely noise- and vector-conditioned model); ``frames`` conditions are rejected (use ``unet1d`` or
  ``dit``, or pass frames as a continuous token sequence).
- Null conditions: a null item gets a single (zero or learned) token from ``TokenCondition``, so
  cross-attention always has a real key; ``NULL`` therefore works for classifier-free guidance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from stemkit.diffusion.backbones.dit import sinusoidal_positions
from stemkit.diffusion.backbones.registry import register_backbone
from stemkit.diffusion.backbones.unet1d import sinusoidal_embedding
from stemkit.diffusion.conditions import (ConditionSpec, Conditions, TokenCondition, VectorCondition, condition_specs, null_mask,
                                         spans_key, times_key)

POSITIONS = ("sinusoidal", "learned")


@dataclass
class T5FiLMConfig:
    in_channels: int = 128  #: mel bins per frame
    width: int = 512
    encoder_layers: int = 4  #: layers of each token encoder
    decoder_layers: int = 4
    heads: int = 8
    mlp_dim: int = 1024  #: gated-GELU hidden width
    max_frames: int = 256  #: longest frame sequence (size of the decoder's position table)
    max_tokens: int = 2048  #: longest token sequence (size of each encoder's position table)
    dropout: float = 0.0
    #: the conditions read: ``tokens`` (one encoder each) and global ``vector`` ([B, dim], into FiLM)
    conditions: list[dict] = field(default_factory=list)
    embedding_dim: int = 512  #: width of the noise embedding that drives FiLM
    positions: str = "sinusoidal"  #: absolute positions: ``sinusoidal`` (fixed) or ``learned``
    #: frame t's self-attention sees frames ≤ t only (an autoregressive decoder; False for diffusion)
    causal: bool = False
    #: add each encoded token to the decoder frames its ``<name>_spans`` cover (zero-initialised; see the module doc)
    span_frames: bool = False

    def __post_init__(self) -> None:
        kinds = {spec.kind for spec in self.specs()}
        if "frames" in kinds:
            names = [s.name for s in self.specs() if s.kind == "frames"]
            raise ValueError(f"t5film reads tokens and vector conditions, not frames ({', '.join(names)}); "
                             "use unet1d or dit, or pass the curves as a continuous tokens condition")
        for name in ("in_channels", "width", "heads", "mlp_dim", "max_frames", "max_tokens", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"t5film: {name} must be ≥ 1, got {getattr(self, name)}")
        if self.encoder_layers < 0 or self.decoder_layers < 0:
            raise ValueError("t5film: encoder_layers and decoder_layers must be ≥ 0")
        if self.width % self.heads:
            raise ValueError(f"t5film: width {self.width} is not a multiple of heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"t5film: dropout must be in [0, 1), got {self.dropout}")
        if self.positions not in POSITIONS:
            raise ValueError(f"t5film: positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")

    def specs(self) -> list[ConditionSpec]:
        return condition_specs(self.conditions)

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    """T5's layer norm: divide by the root mean square, scale; no mean subtraction, no bias."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


class Attention(nn.Module):
    """Bias-free multi-head attention of ``x`` to ``context`` (itself when None).

    ``keep`` is ``[B, L_context]`` bool, **True = attend to this key** (SDPA's boolean convention)."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.o = nn.Linear(width, width, bias=False)

    def _split(self, t: Tensor) -> Tensor:
        batch, length, width = t.shape
        return t.reshape(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None, keep: Tensor | None = None, causal: bool = False,
                cache: dict[str, Tensor] | None = None) -> Tensor:
        """``cache`` (incremental decoding): for self-attention, ``x`` holds only the newest positions and the
        keys and values of the earlier ones are read from the cache and extended; for cross-attention the
        context's keys and values are computed once and kept."""
        if context is None:
            keys, values = self._split(self.k(x)), self._split(self.v(x))
            if cache is not None:
                if "k" in cache:
                    keys, values = torch.cat([cache["k"], keys], dim=2), torch.cat([cache["v"], values], dim=2)
                cache["k"], cache["v"] = keys, values
        elif cache is not None and "k" in cache:
            keys, values = cache["k"], cache["v"]
        else:
            keys, values = self._split(self.k(context)), self._split(self.v(context))
            if cache is not None:
                cache["k"], cache["v"] = keys, values
        mask = keep[:, None, None, :] if keep is not None else None
        earlier = keys.shape[2] - x.shape[1]
        if causal and earlier > 0:  # the new positions follow cached ones: position i sees keys ≤ earlier + i
            mask = torch.ones(x.shape[1], keys.shape[2], dtype=torch.bool, device=x.device).tril(earlier)
            causal = False
        out = F.scaled_dot_product_attention(self._split(self.q(x)), keys, values, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0, is_causal=causal)
        return self.o(out.transpose(1, 2).reshape(x.shape))


class GatedGELU(nn.Module):
    """T5.1.1's MLP: ``wo(GELU(wi₀·x) ⊙ wi₁·x)``, bias-free."""

    def __init__(self, width: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.wi_gate = nn.Linear(width, hidden, bias=False)
        self.wi_value = nn.Linear(width, hidden, bias=False)
        self.wo = nn.Linear(hidden, width, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.wo(self.drop(F.gelu(self.wi_gate(x), approximate="tanh") * self.wi_value(x)))


class FiLM(nn.Module):
    """``y·(1 + scale) + shift`` with scale and shift regressed from the (SiLU'd) noise embedding."""

    def __init__(self, embedding_dim: int, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embedding_dim, 2 * width)

    def forward(self, y: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.linear(F.silu(emb))[:, None].chunk(2, dim=-1)
        return y * (1 + scale) + shift


class EncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_attn = RMSNorm(width)
        self.attn = Attention(width, heads, dropout)
        self.norm_mlp = RMSNorm(width)
        self.mlp = GatedGELU(width, mlp_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, keep: Tensor) -> Tensor:
        h = h + self.drop(self.attn(self.norm_attn(h), keep=keep))
        return h + self.drop(self.mlp(self.norm_mlp(h)))


class DecoderLayer(nn.Module):
    """Self-attention (FiLM after its norm), cross-attention to the encodings, MLP (FiLM after its norm)."""

    def __init__(self, width: int, heads: int, mlp_dim: int, dropout: float, embedding_dim: int, cross: bool,
                 causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.norm_self = RMSNorm(width)
        self.film_self = FiLM(embedding_dim, width)
        self.self_attn = Attention(width, heads, dropout)
        self.norm_cross = RMSNorm(width) if cross else None
        self.cross_attn = Attention(width, heads, dropout) if cross else None
        self.norm_mlp = RMSNorm(width)
        self.film_mlp = FiLM(embedding_dim, width)
        self.mlp = GatedGELU(width, mlp_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, emb: Tensor, memory: Tensor | None, memory_keep: Tensor | None,
                cache: dict[str, dict[str, Tensor]] | None = None) -> Tensor:
        """``cache``: this layer's keys and values for incremental decoding (``h`` holds the newest frames only)."""
        self_cache, cross_cache = (None, None) if cache is None else (cache.setdefault("self", {}), cache.setdefault("cross", {}))
        h = h + self.drop(self.self_attn(self.film_self(self.norm_self(h), emb), causal=self.causal, cache=self_cache))
        if self.cross_attn is not None and memory is not None:
            h = h + self.drop(self.cross_attn(self.norm_cross(h), memory, memory_keep, cache=cross_cache))
        return h + self.drop(self.mlp(self.film_mlp(self.norm_mlp(h), emb)))


class Positions(nn.Module):
    """Absolute positions ``0 … length-1`` as ``[length, width]``: a fixed sinusoidal or a learned table."""

    def __init__(self, kind: str, max_length: int, width: int, what: str) -> None:
        super().__init__()
        self.max_length, self.what = max_length, what
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(max_length, width) * 0.02)
        else:
            self.register_buffer("table", sinusoidal_positions(max_length, width), persistent=False)

    def forward(self, length: int) -> Tensor:
        if length > self.max_length:
            raise ValueError(f"t5film: {length} {self.what}, more than the {self.max_length} the model was built for")
        return self.table[:length]

    def at(self, index: Tensor) -> Tensor:
        """The positions of ``index`` (any shape of ints, clamped to the table) as ``[*index.shape, width]``."""
        return self.table[index.long().clamp(0, self.max_length - 1)]


class TokenEncoder(nn.Module):
    """A T5 encoder over one ``tokens`` condition: ``(encoded [B, L, width], keep [B, L])``."""

    def __init__(self, spec: ConditionSpec, config: T5FiLMConfig) -> None:
        super().__init__()
        self.condition = TokenCondition(spec, config.width)
        self.positions = Positions(config.positions, config.max_tokens, config.width, f"tokens in {spec.name!r}")
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(EncoderLayer(config.width, config.heads, config.mlp_dim, config.dropout)
                                    for _ in range(config.encoder_layers))
        self.norm = RMSNorm(config.width)

    def forward(self, cond: Conditions | None, batch: int, like: Tensor, frames: Positions) -> tuple[Tensor, Tensor]:
        """``frames``: the decoder's frame positions, added at each token's time when ``<name>_times`` is given."""
        tokens, keep = self.condition(cond, batch, like)
        h = tokens + self.positions(tokens.shape[1]).to(tokens.dtype)
        name = self.condition.spec.name
        times = cond.get(times_key(name)) if cond is not None and name in cond else None
        if times is not None:
            if times.shape != tokens.shape[:2]:
                raise ValueError(f"condition {times_key(name)!r} must be [B, L] like its tokens {tuple(tokens.shape[:2])}, "
                                 f"got {tuple(times.shape)}")
            dropped = null_mask(cond, name, batch, like.device)[:, None, None]
            h = h + torch.where(dropped, 0.0, frames.at(times.to(like.device)).to(tokens.dtype))
        h = self.drop(h)
        for layer in self.layers:
            h = layer(h, keep)
        return self.drop(self.norm(h)), keep

    def over_frames(self, encoded: Tensor, cond: Conditions | None, batch: int, frames: int) -> Tensor | None:
        """``[B, frames, width]``: at each frame, the sum of the encoded tokens whose ``<name>_spans`` cover it
        (None without spans; zeros for null items)."""
        name = self.condition.spec.name
        spans = cond.get(spans_key(name)) if cond is not None and name in cond else None
        if spans is None:
            return None
        if spans.shape != (*encoded.shape[:2], 2):
            raise ValueError(f"condition {spans_key(name)!r} must be [B, L, 2] like its tokens {tuple(encoded.shape[:2])}, "
                             f"got {tuple(spans.shape)}")
        spans = spans.to(encoded.device)
        t = torch.arange(frames, device=encoded.device)[None, :, None]
        covers = (t >= spans[:, None, :, 0]) & (t < spans[:, None, :, 1])  # [B, frames, L]
        covers = covers & ~null_mask(cond, name, batch, encoded.device)[:, None, None]
        return covers.to(encoded.dtype) @ encoded


@register_backbone("t5film", T5FiLMConfig)
class T5FiLM(nn.Module):
    """``F(x_in [B, C, T], c_noise [B], cond) → [B, C, T]`` with ``T ≤ max_frames``. Absent
    conditions read as their null."""

    def __init__(self, config: T5FiLMConfig) -> None:
        super().__init__()
        self.config = config
        width, emb = config.width, config.embedding_dim
        specs = config.specs()
        self.encoders = nn.ModuleList(TokenEncoder(s, config) for s in specs if s.kind == "tokens")
        self.vector_conditions = nn.ModuleList(VectorCondition(s, emb) for s in specs if s.kind == "vector")
        self.embed = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.frames_in = nn.Linear(config.in_channels, width)
        self.positions = Positions(config.positions, config.max_frames, width, "frames")
        self.drop = nn.Dropout(config.dropout)
        cross = len(self.encoders) > 0
        self.layers = nn.ModuleList(DecoderLayer(width, config.heads, config.mlp_dim, config.dropout, emb, cross, config.causal)
                                    for _ in range(config.decoder_layers))
        self.norm = RMSNorm(width)
        self.spans_in = nn.Linear(width, width, bias=False) if config.span_frames else None
        if self.spans_in is not None:
            nn.init.zeros_(self.spans_in.weight)
        self.out = nn.Linear(width, config.in_channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def encode(self, cond: Conditions | None, batch: int, like: Tensor) -> Encodings:
        """The decoder's cross-attention memory ``[B, L, width]`` and its mask (every token encoding,
        concatenated), and with ``span_frames`` what the spans add to each frame's input."""
        if not self.encoders:
            return Encodings(None, None, None)
        encoded = [encoder(cond, batch, like, self.positions) for encoder in self.encoders]
        spanned = None
        if self.spans_in is not None:
            pooled = [p for encoder, (e, _) in zip(self.encoders, encoded)
                      if (p := encoder.over_frames(e, cond, batch, self.config.max_frames)) is not None]
            spanned = self.spans_in(torch.stack(pooled).sum(0)) if pooled else None
        # concat_encodings: one sequence, masks alike
        return Encodings(torch.cat([e for e, _ in encoded], dim=1), torch.cat([k for _, k in encoded], dim=1), spanned)

    @contextmanager
    def reusing_encodings(self) -> Iterator[None]:
        """Within this block (and without gradients), a call with the very same condition tensors as the call
        before reuses its encodings. Why: a sampler calls the network dozens of times per segment with one
        unchanging set of notes and context, and re-encoding them each time is about as costly as the
        decoder itself. Keyed on the tensors' identity and version, so new or edited conditions are encoded
        afresh; the block ends by forgetting them."""
        self._encodings: dict | None = {}
        try:
            yield
        finally:
            self._encodings = None

    def _encodings_of(self, cond: Conditions | None, batch: int, like: Tensor) -> Encodings:
        memo = getattr(self, "_encodings", None)
        if memo is None or torch.is_grad_enabled():
            return self.encode(cond, batch, like)
        tensors = tuple(sorted((k, v) for k, v in (cond or {}).items() if isinstance(v, Tensor)))
        key = (batch, like.dtype, like.device, tuple((k, id(v), v._version) for k, v in tensors))
        if key not in memo:
            memo.clear()  # one entry: the tensors it holds keep their ids from being reused while it lives
            memo[key] = (tensors, self.encode(cond, batch, like))
        return memo[key][1]

    def start_decoding(self, cond: Conditions | None, batch: int, like: Tensor) -> DecodingCache:
        """A cache for frame-by-frame decoding with a causal decoder: the encodings once, then each
        layer's keys and values as frames are fed (``forward(new_frames, c_noise, cond, cache=...)``).
        Why: generating F frames by re-running the whole network costs F encoder passes and O(F²) decoder
        work; with the cache it is one encoder pass and O(F) decoder work, and the outputs are the same."""
        if not self.config.causal:
            raise ValueError("t5film: only a causal decoder (causal: true) decodes frame by frame")
        return DecodingCache(self.encode(cond, batch, like), [{} for _ in self.layers])

    def forward(self, x: Tensor, c_noise: Tensor, cond: Conditions | None = None, cache: DecodingCache | None = None) -> Tensor:
        """``cache`` (from :meth:`start_decoding`): ``x`` is the next frames after those fed before; their outputs."""
        cfg = self.config
        if x.ndim != 3 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"t5film takes [B, {cfg.in_channels}, T], got shape {tuple(x.shape)}")
        batch, _, length = x.shape
        emb = self.embed(sinusoidal_embedding(c_noise.reshape(-1).expand(batch), cfg.embedding_dim).to(x.dtype))
        for vector in self.vector_conditions:
            raw = cond.get(vector.spec.name) if cond is not None else None
            if raw is not None and raw.shape[1:] != (vector.spec.dim,):
                raise ValueError(f"condition {vector.spec.name!r} must be [B, {vector.spec.dim}], got {tuple(raw.shape)}")
            emb = emb + vector(cond, batch, (vector.spec.dim,), x)

        if cache is None:
            encodings = self._encodings_of(cond, batch, x)
            start, layer_caches = 0, [None] * len(self.layers)
        else:
            encodings, start, layer_caches = cache.encodings, cache.length, cache.layers
            cache.length += length

        h = self.frames_in(x.transpose(1, 2))
        h = h + self.positions(start + length)[start:].to(h.dtype)
        if encodings.spanned is not None:
            h = h + encodings.spanned[:, start:start + length].to(h.dtype)
        h = self.drop(h)
        for layer, layer_cache in zip(self.layers, layer_caches):
            h = layer(h, emb, encodings.memory, encodings.keep, layer_cache)
        return self.out(self.drop(self.norm(h))).transpose(1, 2)


@dataclass
class Encodings:
    """What the conditions give the decoder: the cross-attention memory ``[B, L, width]`` and its mask, and with
    ``span_frames`` each frame's sum of the notes sounding in it ``[B, max_frames, width]`` (None otherwise)."""

    memory: Tensor | None
    keep: Tensor | None
    spanned: Tensor | None


@dataclass
class DecodingCache:
    """What :meth:`T5FiLM.start_decoding` keeps between frames: the encodings and each layer's keys and values."""

    encodings: Encodings
    layers: list[dict]
    length: int = 0  #: frames fed so far (the next frame's position)


__all__ = ["DecodingCache", "Encodings", "RMSNorm", "T5FiLM", "T5FiLMConfig"]
