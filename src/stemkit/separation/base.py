"""The interface every separator satisfies: ours, peer adapters and oracles alike."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class SupportsSeparate(Protocol):
    """``separate(mix [channels, samples], sample_rate, targets, query) -> {target: [channels, samples]}``.

    ``targets`` selects which stems to return (all when ``None``); ``query`` is an optional audio
    example of the wanted instrument for query-conditioned models.
    """

    def separate(
        self,
        mix: torch.Tensor,
        sample_rate: int,
        targets: list[str] | None = None,
        query: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]: ...
