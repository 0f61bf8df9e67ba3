"""Query-by-example: turn an audio clip of an instrument into the condition vector LaSAFT separates by.

Why a clip: a user's mixture may hold an instrument in a part the model's part names do not fit (an
oboe that plays the alto line in one piece and the soprano in the next), or they may simply know
the sound they want. LaSAFT is conditioned through one vector per item (see
:meth:`~stemkit.separation.lasaft.LaSAFT.forward_spec`), so a small encoder from a clip to that
vector is all a query needs; training takes queries from *other* tracks, so the encoder learns the
instrument's timbre, not the notes the clip happens to share with the mixture.

The encoder looks at the log-magnitude spectrogram (phase says nothing about timbre), downsamples
it with strided convolutions, averages over time (a clip of any length gives one vector) and keeps
frequency, where timbre lives, for the final linear map.
"""

from __future__ import annotations

import torch
from torch import nn

from stemkit.audio.spectral import stft

#: strided convolution stages: each halves time and frequency
QUERY_STAGES = 4


class QueryEncoder(nn.Module):
    """``clip [B, C, samples]`` → condition vector ``[B, embedding_dim]``.

    Channels are averaged first (timbre does not depend on panning); clips shorter than one STFT
    window are zero-padded by the STFT itself.
    """

    def __init__(self, n_fft: int, hop_length: int, embedding_dim: int, channels: int = 32) -> None:
        super().__init__()
        freqs = n_fft // 2
        if freqs % 2**QUERY_STAGES:
            raise ValueError(f"n_fft // 2 = {freqs} must be divisible by {2 ** QUERY_STAGES} for the query encoder")
        self.n_fft, self.hop_length = n_fft, hop_length
        widths = [1] + [channels] * QUERY_STAGES
        self.convs = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU())
            for a, b in zip(widths[:-1], widths[1:])
        ])
        self.project = nn.Linear(channels * (freqs >> QUERY_STAGES), embedding_dim)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        spec = stft(clip.mean(dim=1), self.n_fft, self.hop_length)[:, :-1]  # [B, F, frames], Nyquist dropped
        features = torch.log1p(spec.abs()).transpose(1, 2).unsqueeze(1)  # [B, 1, frames, F]
        features = self.convs(features).mean(dim=2)  # [B, channels, F / 16]: time averaged away
        return self.project(features.flatten(1))
