"""A diffusion transformer over a *set* of sources, conditioned by adaLN-Zero (DisMix's decoder).

What the references did. DiT (Peebles & Xie 2023) cuts the input into patches, embeds each patch
as a token, runs a plain transformer and reads every condition through *adaptive* LayerNorm: the
norms have no affine weights of their own; a linear layer regresses their scale and shift, plus a
gate on each residual branch, from the conditioning vector. That linear layer starts at zero
("adaLN-Zero"), so every block starts as the identity and the network's output starts at exactly
zero — with EDM preconditioning that is ``D = c_skip·x``, the ideal denoiser of ``N(0, σ_data²)``, a
safe start. DisMix (Luo et al. 2024, CocoChorales variant) uses such a decoder to render a *set* of
sources at once: each source latent is patched along time, a sinusoidal positional encoding over
time is added, and the tokens of all sources form one sequence with full self-attention, with **no
positional encoding across sources**, so the model is permutation-equivariant in the sources: the
set stays a set, and a source is told apart from the others only by its own conditions.

What this module does, and why:

- ``x`` is ``[B, S, C, T]`` (``S`` sources of ``C`` channels and ``T`` frames) or ``[B, C, T]``
  (one source; the output keeps the input's rank). ``T`` is padded inside to a multiple of
  ``patch`` (zeros, within the last patch only, so no token is pure padding and no attention mask
  is needed) and the output is cropped back.
- Positions: a fixed sinusoidal encoding of the *patch index*, the same for every source. Nothing
  encodes which source a token belongs to, so permuting the sources (with their per-source
  conditions) permutes the output exactly.
- Conditioning is per token: ``c`` = MLP(sinusoidal(``c_noise``)) + every ``vector`` condition
  (``[B, dim]`` global, broadcast to all tokens; or ``[B, S, dim]`` per source, broadcast to that
  source's tokens) + every ``frames`` condition (``[B, S, dim, T]`` per source, or ``[B, dim, T]``
  shared by all sources), patched like ``x`` and linearly embedded per token — DisMix's
  frame-aligned pitch latent concatenated with the broadcast timbre latent becomes the sum of the two
  embeddings here. ``tokens`` conditions (sequences to cross-attend to) are not read: use ``t5film``.
- ``frames_in_tokens`` (off by default; not in DisMix) adds each frames condition's patch embedding to
  the input tokens as well. Why: through adaLN a condition can only rescale and shift normalised
  features, and the zero-initialised modulation passes it little gradient at first; a dense,
  frame-aligned content condition (a pitch roll) is usually read faster when it joins the residual
  stream, as in-context conditioning does. On DisMix-LDM it did not, alone, make the decoder read
  pitch: the pitch was lost before, in the projector (BENCHMARKS.md, "does the decoder read the pitch?").
- Each block: ``h += gate₁·Attn(LN(h)·(1+scale₁)+shift₁)``, ``h += gate₂·MLP(LN(h)·(1+scale₂)+shift₂)``
  with the six vectors from a zero-initialised ``Linear(SiLU(c))``; the final layer is an
  adaLN-modulated norm and a zero-initialised linear back to patches (DiT's pre-norm form; DisMix
  wrote post-norm blocks, but pre-norm with zero gates is what trains stably from the identity).
- Absent conditions read as their null (:mod:`stemkit.diffusion.conditions`), and ``NULL`` /
  ``"null:<name>"`` swap the null in per item, so classifier-free guidance works unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from stemkit.diffusion.backbones.registry import register_backbone
from stemkit.diffusion.backbones.unet1d import sinusoidal_embedding
from stemkit.diffusion.conditions import ConditionSpec, Conditions, FrameCondition, VectorCondition, condition_specs


@dataclass
class DiTConfig:
    in_channels: int = 8  #: channels per source (a latent's channels, or mel bins)
    patch: int = 4  #: frames per patch (token)
    width: int = 256  #: token width
    depth: int = 4  #: transformer blocks
    heads: int = 4
    mlp_ratio: float = 4.0  #: MLP hidden width / ``width``
    #: the conditions read: ``vector`` ([B, dim] global or [B, S, dim] per source) and ``frames``
    #: ([B, S, dim, T] per source or [B, dim, T] shared); ``tokens`` conditions are rejected
    conditions: list[dict] = field(default_factory=list)
    embedding_dim: int = 256  #: width of the conditioning vector ``c`` (noise embedding + conditions)
    #: also add each ``frames`` condition's patch embedding to the input tokens (in-context, beyond DisMix's
    #: adaLN-only reading): a frame-aligned content condition then enters the residual stream directly
    frames_in_tokens: bool = False

    def __post_init__(self) -> None:
        kinds = {spec.kind for spec in self.specs()}
        if "tokens" in kinds:
            names = [s.name for s in self.specs() if s.kind == "tokens"]
            raise ValueError(f"dit reads frames and vector conditions, not tokens ({', '.join(names)}); "
                             "a token sequence needs cross-attention: use the t5film backbone")
        for name in ("in_channels", "patch", "width", "depth", "heads", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"dit: {name} must be ≥ 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ValueError(f"dit: width {self.width} is not a multiple of heads {self.heads}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"dit: mlp_ratio must be > 0, got {self.mlp_ratio}")

    def specs(self) -> list[ConditionSpec]:
        return condition_specs(self.conditions)

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """``[length, dim]`` fixed Transformer positional encoding of positions ``0 … length-1``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * freqs[None]
    table = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(table, (0, dim - 2 * half))


def _patchify(x: Tensor, patch: int) -> Tensor:
    """``[B, S, C, T]`` (``T`` a multiple of ``patch``) → ``[B, S, T/patch, C·patch]``."""
    batch, sources, channels, length = x.shape
    x = x.reshape(batch, sources, channels, length // patch, patch)
    return x.permute(0, 1, 3, 2, 4).reshape(batch, sources, length // patch, channels * patch)


def _unpatchify(tokens: Tensor, channels: int, patch: int) -> Tensor:
    """``[B, S, N, C·patch]`` → ``[B, S, C, N·patch]`` (inverse of :func:`_patchify`)."""
    batch, sources, n, _ = tokens.shape
    x = tokens.reshape(batch, sources, n, channels, patch).permute(0, 1, 3, 2, 4)
    return x.reshape(batch, sources, channels, n * patch)


class SelfAttention(nn.Module):
    """Full multi-head self-attention over one sequence (no mask: every token is real)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        batch, length, width = h.shape
        q, k, v = self.qkv(h).reshape(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out(out.transpose(1, 2).reshape(batch, length, width))


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero: norms without affine, scale/shift/gate from ``c``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, embedding_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = max(1, int(round(width * mlp_ratio)))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.modulation = nn.Linear(embedding_dim, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """``h`` ``[B, L, width]``, ``c`` ``[B, L, embedding_dim]`` (per token)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, dim=-1)
        h = h + gate1 * self.attn(self.norm1(h) * (1 + scale1) + shift1)
        return h + gate2 * self.mlp(self.norm2(h) * (1 + scale2) + shift2)


class FinalLayer(nn.Module):
    """adaLN-modulated norm and a zero-initialised projection back to patch values."""

    def __init__(self, width: int, out_features: int, embedding_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(embedding_dim, 2 * width)
        self.linear = nn.Linear(width, out_features)
        for layer in (self.modulation, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(F.silu(c)).chunk(2, dim=-1)
        return self.linear(self.norm(h) * (1 + scale) + shift)


@register_backbone("dit", DiTConfig)
class DiT(nn.Module):
    """``F(x_in [B, S, C, T] or [B, C, T], c_noise [B], cond) →`` the same shape; any ``T``.

    Permutation-equivariant in the sources: no encoding of the source index anywhere. Absent
    conditions read as their null."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        width, emb, patch = config.width, config.embedding_dim, config.patch
        specs = config.specs()
        self.patch_in = nn.Linear(config.in_channels * patch, width)
        self.embed = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.vector_conditions = nn.ModuleList(VectorCondition(s, emb) for s in specs if s.kind == "vector")
        self.frame_conditions = nn.ModuleList(FrameCondition(s) for s in specs if s.kind == "frames")
        self.frame_in = nn.ModuleList(nn.Linear(s.dim * patch, emb) for s in specs if s.kind == "frames")
        self.frame_tokens = nn.ModuleList(nn.Linear(s.dim * patch, width) for s in specs
                                          if s.kind == "frames" and config.frames_in_tokens)
        self.blocks = nn.ModuleList(DiTBlock(width, config.heads, config.mlp_ratio, emb) for _ in range(config.depth))
        self.final = FinalLayer(width, config.in_channels * patch, emb)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Conditions | None = None) -> Tensor:
        cfg = self.config
        single = x.ndim == 3
        if single:
            x = x[:, None]
        if x.ndim != 4:
            raise ValueError(f"dit takes [B, S, C, T] or [B, C, T], got shape {tuple(x.shape)}")
        batch, sources, channels, length = x.shape
        if channels != cfg.in_channels:
            raise ValueError(f"dit: input has {channels} channels, the model reads {cfg.in_channels}")
        patch = cfg.patch
        pad = (-length) % patch
        n = (length + pad) // patch

        h = self.patch_in(_patchify(F.pad(x, (0, pad)), patch))  # [B, S, N, width]
        h = h + sinusoidal_positions(n, cfg.width, x.device).to(h.dtype)  # time only, same for every source

        c = self.embed(sinusoidal_embedding(c_noise.reshape(-1).expand(batch), cfg.embedding_dim).to(x.dtype))
        c = c[:, None, None]  # [B, 1, 1, E]
        for vector in self.vector_conditions:
            c = c + self._vector(vector, cond, batch, sources, x)
        for index, (frames, embed) in enumerate(zip(self.frame_conditions, self.frame_in)):
            patches = _patchify(F.pad(self._frames(frames, cond, batch, sources, length, x), (0, pad)), patch)
            c = c + embed(patches)
            if cfg.frames_in_tokens:
                h = h + self.frame_tokens[index](patches)
        c = c.expand(batch, sources, n, cfg.embedding_dim).reshape(batch, sources * n, cfg.embedding_dim)

        h = h.reshape(batch, sources * n, cfg.width)  # one sequence: every token of every source
        for block in self.blocks:
            h = block(h, c)
        out = self.final(h, c).reshape(batch, sources, n, channels * patch)
        out = _unpatchify(out, channels, patch)[..., :length]
        return out[:, 0] if single else out

    @staticmethod
    def _vector(module: VectorCondition, cond: Conditions | None, batch: int, sources: int, x: Tensor) -> Tensor:
        """The projected vector condition as ``[B, 1 or S, 1, E]`` (global, or per source)."""
        name, dim = module.spec.name, module.spec.dim
        raw = cond.get(name) if cond is not None else None
        per_source_ok = raw is not None and raw.ndim == 3 and raw.shape[1] in (1, sources)
        if raw is not None and (raw.shape[-1] != dim or not (raw.ndim == 2 or per_source_ok)):
            raise ValueError(f"condition {name!r} must be [B, {dim}] or [B, {sources}, {dim}], got {tuple(raw.shape)}")
        value = module(cond, batch, (dim,), x)
        return value[:, None, None] if value.ndim == 2 else value[:, :, None]

    @staticmethod
    def _frames(module: FrameCondition, cond: Conditions | None, batch: int, sources: int, length: int, x: Tensor) -> Tensor:
        """The frame condition as ``[B, 1 or S, dim, T]`` (shared by all sources, or per source)."""
        name, dim = module.spec.name, module.spec.dim
        frames = module(cond, batch, (dim, length), x)
        if frames.ndim == 3:
            frames = frames[:, None]
        if frames.ndim != 4 or frames.shape[1] not in (1, sources) or frames.shape[-1] != length:
            raise ValueError(f"condition {name!r} must be [B, {sources}, {dim}, {length}] or [B, {dim}, {length}], "
                             f"got {tuple(frames.shape)}")
        return frames


__all__ = ["DiT", "DiTBlock", "DiTConfig", "sinusoidal_positions"]
