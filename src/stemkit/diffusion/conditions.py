"""Named conditions for any denoiser: ``D(x, σ, cond)`` with ``cond`` a mapping of name → tensor.

Why a mapping: the families condition on different things, often several at once — frame-aligned
curves (pitch and envelope, concatenated to the input), token sequences with a mask (MIDI events,
read by cross-attention) and global or per-source vectors (a timbre latent, read by adaLN/FiLM). A
mapping lets one denoiser, one guidance wrapper and every sampler carry all of them unchanged:
samplers pass ``cond`` through, guidance only needs to say "this item is unconditional".

The null condition. Classifier-free guidance needs the model's unconditional answer, and training
teaches it by replacing the condition of a share of the items with a "null". Rather than each caller
building a null tensor of the right shape for each kind, the mapping carries a reserved boolean
entry, :data:`NULL` (``[B]``, True = this item is unconditional), plus optional per-condition
entries ``"null:<name>"``. Each condition module swaps in its own null where the mask says so — zeros
or a learned vector, chosen per condition — so guidance and dropout work for any kind:

>>> cond = {"curves": curves, NULL: torch.rand(B) < 0.1}     # training with condition dropout
>>> ClassifierFreeGuidance(denoiser, 2.0)(x, sigma, {"curves": curves})   # sampling with guidance

Condition modules live inside the backbone that reads them (so their learned nulls and projections
are saved with it); this module provides the three kinds and the mapping helpers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import torch
from torch import Tensor, nn

Conditions = Mapping[str, Tensor]
"""What denoisers take as ``cond``: condition name → tensor (batch first), plus :data:`NULL` entries."""

NULL = "null"
"""Reserved key: ``[B]`` bool, items whose every condition is replaced by its null."""

KINDS = ("frames", "tokens", "vector")


def mask_key(name: str) -> str:
    """The key of a token condition's mask (``[B, L]`` bool, True = a real token)."""
    return f"{name}_mask"


def times_key(name: str) -> str:
    """The key of a token condition's times (``[B, L]`` int: the decoder frame each token happens at), for
    backbones that can place tokens in time (``t5film``)."""
    return f"{name}_times"


def spans_key(name: str) -> str:
    """The key of a token condition's spans (``[B, L, 2]`` int: the decoder frames ``[start, end)`` during which
    each token's note sounds; ``start == end`` for a token that starts none), for backbones that add each
    token to the frames it covers (``t5film`` with ``span_frames``)."""
    return f"{name}_spans"


def null_mask(cond: Conditions | None, name: str, batch: int, device: torch.device) -> Tensor:
    """``[B]`` bool: where condition ``name`` must be its null — asked for by :data:`NULL` or
    ``"null:<name>"``, or everywhere when the condition is absent from ``cond``."""
    if cond is None or name not in cond:
        return torch.ones(batch, dtype=torch.bool, device=device)
    mask = torch.zeros(batch, dtype=torch.bool, device=device)
    for key in (NULL, f"null:{name}"):
        if key in cond:
            mask = mask | cond[key].to(device=device, dtype=torch.bool).reshape(-1).expand(batch)
    return mask


def with_null(cond: Conditions, batch: int, device: torch.device) -> dict[str, Tensor]:
    """A copy of ``cond`` that asks for every condition's null on every item (the guidance branch)."""
    out = dict(cond)
    out[NULL] = torch.ones(batch, dtype=torch.bool, device=device)
    return out


def concat_conditions(first: Conditions, second: Conditions, batches: tuple[int, int], device: torch.device) -> dict[str, Tensor]:
    """Stack two condition mappings along the batch (``[x; x]`` batching of guidance).

    Both must hold the same tensors; a :data:`NULL`/``"null:…"`` entry missing on one side counts as
    all False there.
    """
    keys = set(first) | set(second)
    out: dict[str, Tensor] = {}
    for key in keys:
        if key == NULL or key.startswith("null:"):
            parts = [c[key].to(device=device, dtype=torch.bool).reshape(-1).expand(n) if key in c
                     else torch.zeros(n, dtype=torch.bool, device=device) for c, n in zip((first, second), batches)]
        else:
            if key not in first or key not in second:
                raise ValueError(f"condition {key!r} is on one side of the batch only")
            parts = [first[key], second[key]]
        out[key] = torch.cat(parts)
    return out


def _select(null: Tensor, fallback: Tensor, value: Tensor) -> Tensor:
    """``value`` where ``null`` is False, ``fallback`` (broadcast) where True; ``null`` is ``[B]``."""
    shape = (-1,) + (1,) * (value.ndim - 1)
    return torch.where(null.reshape(shape), fallback.to(value.dtype).expand_as(value), value)


@dataclass
class ConditionSpec:
    """One condition a backbone reads.

    ``kind``: ``frames`` (``[B, dim, T]``, or ``[B, S, dim, T]`` per source), ``tokens`` (ids ``[B, L]``
    when ``vocab`` > 0, else features ``[B, L, dim]``; mask under :func:`mask_key`) or ``vector``
    (``[B, dim]`` global, or ``[B, S, dim]`` per source). ``null``: ``zero`` or ``learned``.
    """

    name: str
    kind: str
    dim: int
    vocab: int = 0
    null: str = "zero"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"condition {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.null not in ("zero", "learned"):
            raise ValueError(f"condition {self.name!r}: null must be zero or learned, got {self.null!r}")
        if self.dim < 1 or self.vocab < 0:
            raise ValueError(f"condition {self.name!r}: dim must be ≥ 1 and vocab ≥ 0")

    def to_dict(self) -> dict:
        return asdict(self)


def condition_specs(entries: list[dict | ConditionSpec]) -> list[ConditionSpec]:
    """Specs from config entries; names must be unique and not reserved."""
    specs = [e if isinstance(e, ConditionSpec) else ConditionSpec(**e) for e in entries]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"condition names must be unique, got {names}")
    if any(n == NULL or n.startswith("null:") or n.endswith("_mask") for n in names):
        raise ValueError(f"condition names may not be {NULL!r}, start with 'null:' or end with '_mask': {names}")
    return specs


class FrameCondition(nn.Module):
    """Frame-aligned curves, returned as given with the null swapped in (zeros, or a learned value
    per channel). The backbone concatenates them to its input or patches them like the input."""

    def __init__(self, spec: ConditionSpec) -> None:
        super().__init__()
        self.spec = spec
        self.null_value = nn.Parameter(torch.zeros(spec.dim)) if spec.null == "learned" else None

    def forward(self, cond: Conditions | None, batch: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """``shape`` is one item's shape (``[dim, T]`` or ``[S, dim, T]``), used when the condition is absent."""
        name = self.spec.name
        value = cond[name].to(like.dtype) if cond is not None and name in cond else like.new_zeros(batch, *shape)
        if value.shape[-2] != self.spec.dim:
            raise ValueError(f"condition {name!r} has {value.shape[-2]} channels, the model reads {self.spec.dim}")
        null = null_mask(cond, name, batch, like.device)
        if not bool(null.any()):
            return value
        fallback = self.null_value[:, None] if self.null_value is not None else value.new_zeros(())
        return _select(null, fallback, value)


class TokenCondition(nn.Module):
    """A token sequence embedded to ``width``: ids through an embedding table, or features through a
    linear layer. Returns ``(embedded [B, L, width], mask [B, L])``. A null item becomes one token —
    zeros or a learned vector — with the rest masked, so attention always has something to read."""

    def __init__(self, spec: ConditionSpec, width: int) -> None:
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab, width) if spec.vocab else nn.Linear(spec.dim, width)
        self.null_value = nn.Parameter(torch.zeros(width)) if spec.null == "learned" else None

    def forward(self, cond: Conditions | None, batch: int, like: Tensor) -> tuple[Tensor, Tensor]:
        name = self.spec.name
        width = self.embed.embedding_dim if isinstance(self.embed, nn.Embedding) else self.embed.out_features
        if cond is None or name not in cond:
            tokens = like.new_zeros(batch, 1, width)
            mask = torch.ones(batch, 1, dtype=torch.bool, device=like.device)
        else:
            raw = cond[name]
            tokens = self.embed(raw.long()) if self.spec.vocab else self.embed(raw.to(like.dtype))
            mask = cond.get(mask_key(name))
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=like.device) if mask is None else mask.to(like.device, torch.bool)
            # an item with no real token would make attention a 0/0: it reads its null instead
            empty = ~mask.any(dim=1)
        null = null_mask(cond, name, batch, like.device)
        if cond is not None and name in cond:
            null = null | empty
        if not bool(null.any()):
            return tokens, mask
        fallback = self.null_value if self.null_value is not None else tokens.new_zeros(width)
        first = torch.zeros_like(tokens)
        first[:, 0] = fallback.to(tokens.dtype)
        null_tokens = torch.where(null[:, None, None], first, tokens)
        only_first = torch.zeros_like(mask)
        only_first[:, 0] = True
        return null_tokens, torch.where(null[:, None], only_first, mask)


class VectorCondition(nn.Module):
    """A global ``[B, dim]`` or per-source ``[B, S, dim]`` vector projected to ``width``; null items
    project zeros or read a learned vector (in the projected space)."""

    def __init__(self, spec: ConditionSpec, width: int) -> None:
        super().__init__()
        self.spec = spec
        self.project = nn.Linear(spec.dim, width)
        self.null_value = nn.Parameter(torch.zeros(width)) if spec.null == "learned" else None

    def forward(self, cond: Conditions | None, batch: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """``shape`` is one item's raw shape (``[dim]`` or ``[S, dim]``), used when the condition is absent."""
        name = self.spec.name
        value = cond[name].to(like.dtype) if cond is not None and name in cond else like.new_zeros(batch, *shape)
        null = null_mask(cond, name, batch, like.device)
        if self.null_value is None:
            return self.project(_select(null, value.new_zeros(()), value))
        projected = self.project(value)
        return _select(null, self.null_value, projected) if bool(null.any()) else projected


__all__ = [
    "KINDS",
    "NULL",
    "ConditionSpec",
    "Conditions",
    "FrameCondition",
    "TokenCondition",
    "VectorCondition",
    "concat_conditions",
    "condition_specs",
    "mask_key",
    "null_mask",
    "spans_key",
    "times_key",
    "with_null",
]
