"""A multi-scale 1-D U-Net denoiser for sequences of latent frames (after Diff-A-Riff's DDPM++-style net).

Why this shape: the latent is a short 1-D sequence (62.5 frames/s) whose content is set frame by
frame by the conditions (pitch, envelope), with some context needed for attacks and vibrato. A
U-Net sees the frame itself at full resolution and wider context at each halving; the
frame-aligned condition is concatenated to the noisy input and, pooled, added again at every
scale so deep levels do not have to carry it down. The noise level enters every residual block
as a FiLM scale and shift from a sinusoidal embedding of ``c_noise``; a global vector condition,
if any, is projected and added to that embedding, so it modulates every block the same way.
Signature as EDM wants: ``F(x_in, c_noise, cond)`` with ``cond`` a mapping of named conditions
(:mod:`stemkit.diffusion.conditions`): ``frames`` ones concatenated, ``vector`` ones FiLM.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from stemkit.diffusion.backbones.registry import register_backbone
from stemkit.diffusion.conditions import ConditionSpec, Conditions, FrameCondition, VectorCondition, condition_specs


@dataclass
class UNet1DConfig:
    in_channels: int = 16
    #: the conditions read: ``frames`` ([B, dim, T], concatenated in this order) and global ``vector`` ([B, dim])
    conditions: list[dict] = field(default_factory=list)
    channels: list[int] = field(default_factory=lambda: [64, 128, 256])  #: width per scale (each halves time)
    blocks_per_level: int = 2
    embedding_dim: int = 128
    kernel_size: int = 3
    attention: bool = True  #: self-attention at the coarsest scale
    heads: int = 4
    attention_window: int = 32  #: attend within windows of this many coarsest-scale frames (0 = whole sequence)

    def __post_init__(self) -> None:
        kinds = {spec.kind for spec in self.specs()}
        if kinds - {"frames", "vector"}:
            raise ValueError(f"unet1d reads frames and vector conditions, not {sorted(kinds - {'frames', 'vector'})}")

    def specs(self) -> list[ConditionSpec]:
        return condition_specs(self.conditions)

    @property
    def cond_channels(self) -> int:
        """Channels of all frame conditions together (concatenated to the input)."""
        return sum(spec.dim for spec in self.specs() if spec.kind == "frames")

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """``[B]`` → ``[B, dim]`` with geometric frequencies (Transformer-style)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = values.float()[:, None] * freqs[None] * 100.0  # c_noise spans about [-1.6, 1.1]: spread it out
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int, kernel: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.film = nn.Linear(emb, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(nn.functional.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Self-attention within non-overlapping windows of ``window`` frames.

    Why windows: the model trains on crops of a few seconds but renders whole pieces; attention over
    a sequence far longer than any it was trained on dilutes its softmax (and costs quadratic
    memory), while a window the size of the training context behaves at synthesis as it did in
    training, whatever the length. The convolutions carry context across window edges.
    """

    def __init__(self, channels: int, heads: int, window: int = 0) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, length = x.shape
        window = self.window if 0 < self.window < length else length
        pad = (-length) % window
        h = nn.functional.pad(self.norm(x), (0, pad))
        h = h.reshape(batch, channels, -1, window).permute(0, 2, 3, 1).reshape(-1, window, channels)
        mask = None
        if pad:  # padded frames of the last window are not attended to
            valid = torch.arange(length + pad, device=x.device) < length
            mask = ~valid.reshape(-1, window).repeat(batch, 1)
        out, _ = self.attn(h, h, h, key_padding_mask=mask, need_weights=False)
        out = out.reshape(batch, -1, window, channels).permute(0, 3, 1, 2).reshape(batch, channels, -1)[..., :length]
        return x + out


@register_backbone("unet1d", UNet1DConfig)
class UNet1D(nn.Module):
    """``F(x_in [B, C, T], c_noise [B], cond) → [B, C, T]``; any ``T`` (padded inside). Absent
    conditions read as their null."""

    def __init__(self, config: UNet1DConfig) -> None:
        super().__init__()
        self.config = config
        c, emb, k = config.channels, config.embedding_dim, config.kernel_size
        self.embed = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        specs = config.specs()
        # parameter-free (zero-null) frame conditions add no weights, so older checkpoints load unchanged
        self.frame_conditions = nn.ModuleList(FrameCondition(s) for s in specs if s.kind == "frames")
        self.vector_conditions = nn.ModuleList(VectorCondition(s, emb) for s in specs if s.kind == "vector")
        self.conv_in = nn.Conv1d(config.in_channels + config.cond_channels, c[0], k, padding=k // 2)
        entering = [c[0]] + list(c[:-1])  # width of h where each level starts
        self.cond_in = nn.ModuleList(nn.Conv1d(config.cond_channels, w, 1) for w in entering) if config.cond_channels else None
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, width = [], c[0]
        for level, w in enumerate(c):
            blocks = nn.ModuleList()
            for _ in range(config.blocks_per_level):
                blocks.append(ResBlock(width, w, emb, k))
                width = w
                skips.append(width)
            self.down.append(blocks)
            self.downsample.append(nn.Conv1d(width, width, 4, stride=2, padding=1) if level < len(c) - 1 else nn.Identity())
        self.mid = nn.ModuleList([ResBlock(width, width, emb, k), ResBlock(width, width, emb, k)])
        self.attention = SelfAttention(width, config.heads, config.attention_window) if config.attention else None
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(c))):
            blocks = nn.ModuleList()
            for _ in range(config.blocks_per_level):
                blocks.append(ResBlock(width + skips.pop(), c[level], emb, k))
                width = c[level]
            self.up.append(blocks)
            self.upsample.append(nn.ConvTranspose1d(width, width, 4, stride=2, padding=1) if level > 0 else nn.Identity())
        self.norm_out = nn.GroupNorm(_groups(width), width)
        self.conv_out = nn.Conv1d(width, config.in_channels, k, padding=k // 2)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: Conditions | None = None) -> torch.Tensor:
        cfg = self.config
        batch, length = x.shape[0], x.shape[-1]
        multiple = 2 ** (len(cfg.channels) - 1)
        pad = (-length) % multiple
        if self.frame_conditions:
            curves = [c(cond, batch, (c.spec.dim, length), x) for c in self.frame_conditions]
            frames = curves[0] if len(curves) == 1 else torch.cat(curves, dim=1)
            if frames.shape[-1] != length:
                raise ValueError(f"frame conditions have {frames.shape[-1]} frames, the input {length}")
            cond_frames = nn.functional.pad(frames, (0, pad))
        x = nn.functional.pad(x, (0, pad))
        emb = self.embed(sinusoidal_embedding(c_noise.reshape(-1).expand(batch), cfg.embedding_dim))
        for vector in self.vector_conditions:
            emb = emb + vector(cond, batch, (vector.spec.dim,), x)
        h = self.conv_in(torch.cat([x, cond_frames], dim=1) if self.frame_conditions else x)
        skips = []
        for level, (blocks, down) in enumerate(zip(self.down, self.downsample)):
            if self.cond_in is not None:
                pooled = nn.functional.avg_pool1d(cond_frames, 2**level) if level else cond_frames
                h = h + self.cond_in[level](pooled)
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, emb)
        if self.attention is not None:
            h = self.attention(h)
        for blocks, up in zip(self.up, self.upsample):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            h = up(h)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))[..., :length]
