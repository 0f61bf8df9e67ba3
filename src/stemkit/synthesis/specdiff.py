"""Multi-instrument spectrogram diffusion (Hawthorne et al. 2022): note tokens → mel segments → audio.

A piece is rendered one 5.12-s segment at a time. Each segment's notes become MT3-style tokens
(:mod:`stemkit.midi.tokens`: program, on/off, pitch, time in the segment, a tie section for held notes)
and an EDM denoiser over the segment's 256 mel frames — the ``t5film`` backbone: a T5 encoder over the
tokens, a second over the *previous segment's* mel (the context that keeps segments continuous), and a
FiLM-conditioned T5 decoder cross-attending to both — samples the scaled log-mel of
:class:`~stemkit.synthesis.mel_codec.MelCodec` (128 bands, hop 320, ``[-1, 1]``). Segments are
generated in order, each conditioned on the previous generated one, and the mel codec's decoder
(a trained vocoder when named, else Griffin-Lim) turns the joined mel into audio.

Conditions are dropped for 10 % of training items so classifier-free guidance works; ``context: false``
is the paper's "without context" row. ``token_times: true`` (ours, not the paper's) also tells the note
encoder at which frame each token happens, so the decoder finds a frame's notes without first learning
what a time token means. ``note_spans: true`` (ours too) adds to every frame's input the encodings of the
notes *sounding* in it (from their onset, or the segment's start for a held note, to their note-off), so a
frame in the middle of a long note need not search the token list for an onset whose note-off has not come.

``objective: autoregressive`` is the paper's autoregressive baseline with the same network: the decoder's
self-attention is causal, its input is the segment's mel shifted one frame right (silence first), and it
regresses each frame from the frames before it (MSE) — generated one frame at a time, no noise, no guidance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from stemkit.diffusion.backbones import backbone_config, build_backbone
from stemkit.diffusion.conditions import mask_key, spans_key, times_key
from stemkit.diffusion.edm import EDMConfig, EDMDenoiser
from stemkit.errors import StemkitError
from stemkit.midi.notes import MidiTrack
from stemkit.midi.tokens import PAD, NoteVocabulary, encode_piece, note_spans
from stemkit.registry import register_family
from stemkit.synthesis.mel_codec import MelCodec, MelCodecConfig

NOTES, CONTEXT = "notes", "context"
"""Names of the note-token and previous-segment conditions in the denoiser's condition mapping."""

OBJECTIVES = ("diffusion", "autoregressive")
SILENCE = -1.0
"""The scaled log-mel of silence (the codec's floor): the frame an autoregressive segment starts from."""


@dataclass
class SpecDiffConfig:
    mel: dict = field(default_factory=dict)  #: :class:`MelCodecConfig` fields (``vocoder`` names the mel → audio model)
    tokens: dict = field(default_factory=dict)  #: :class:`NoteVocabulary` fields (10 ms grid, 5.12-s segments, ≤ 2048 tokens)
    context: bool = True  #: condition each segment on the previous one's mel
    #: place each note token at its frame (the decoder's position code at the token's time; not in the paper,
    #: which leaves the model to learn what a time token means): see :mod:`stemkit.diffusion.backbones.t5film`
    token_times: bool = False
    #: add to each frame the encodings of the notes sounding in it (:func:`~stemkit.midi.tokens.note_spans`;
    #: not in the paper): see :mod:`stemkit.diffusion.backbones.t5film`, ``span_frames``
    note_spans: bool = False
    backbone: str = "t5film"
    network: dict = field(default_factory=lambda: {"width": 256, "encoder_layers": 2, "decoder_layers": 2, "heads": 4,
                                                   "mlp_dim": 512, "embedding_dim": 256})
    edm: dict = field(default_factory=lambda: {"sigma_data": 0.5})  #: features in [-1, 1]: about 0.5 wide
    cond_dropout: float = 0.1
    objective: str = "diffusion"  #: ``diffusion`` (EDM) or ``autoregressive`` (the paper's baseline)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"specdiff: objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")

    @property
    def autoregressive(self) -> bool:
        return self.objective == "autoregressive"

    def mel_config(self) -> MelCodecConfig:
        return MelCodecConfig(**self.mel)

    def vocabulary(self) -> NoteVocabulary:
        return NoteVocabulary(**self.tokens)

    @property
    def segment_frames(self) -> int:
        """Mel frames per segment (256 at the paper's settings)."""
        mel, vocab = self.mel_config(), self.vocabulary()
        return round(vocab.segment_seconds * mel.sample_rate / mel.hop)

    def backbone_config(self):
        mel, vocab = self.mel_config(), self.vocabulary()
        conditions = [{"name": NOTES, "kind": "tokens", "dim": 1, "vocab": vocab.size}]
        if self.context:
            conditions.append({"name": CONTEXT, "kind": "tokens", "dim": mel.n_mels})
        return backbone_config(self.backbone, dict(self.network, in_channels=mel.n_mels, conditions=conditions,
                                                   max_frames=self.segment_frames, max_tokens=vocab.max_tokens,
                                                   causal=self.autoregressive, span_frames=self.note_spans))

    def edm_config(self) -> EDMConfig:
        return EDMConfig(**self.edm)

    def to_dict(self) -> dict[str, Any]:
        network = {k: v for k, v in self.backbone_config().to_dict().items()
                   if k not in ("in_channels", "conditions", "max_frames", "max_tokens", "causal", "span_frames")}
        return dict(asdict(self), mel=self.mel_config().to_dict(), tokens=asdict(self.vocabulary()), network=network,
                    edm=self.edm_config().to_dict())


def pad_tokens(segments: list[list[int]], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists → ids ``[N, L]`` (padded with PAD) and mask ``[N, L]`` (True = a real token)."""
    longest = max(len(s) for s in segments)
    ids = torch.full((len(segments), longest), PAD, dtype=torch.long, device=device)
    mask = torch.zeros(len(segments), longest, dtype=torch.bool, device=device)
    for i, s in enumerate(segments):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask


@register_family("specdiff", task="synthesis", config_class=SpecDiffConfig, ema_of="denoiser")
class SpecDiff(nn.Module):
    def __init__(self, config: SpecDiffConfig) -> None:
        super().__init__()
        self.config = config
        self.codec = MelCodec(config.mel_config())
        self.denoiser = EDMDenoiser(build_backbone(config.backbone, config.backbone_config()), config.edm_config())

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def token_frames(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` ids → the segment frame each token happens at: the last TIME token's step at or before it
        (0 for the tie section, before any TIME), on the mel's frame grid."""
        vocab = self.config.vocabulary()
        is_time = (tokens >= vocab.time_base) & (tokens < vocab.time_base + vocab.max_time_steps)
        steps = torch.where(is_time, tokens - vocab.time_base + 1, torch.zeros_like(tokens)).cummax(dim=1).values
        return torch.div(steps * self.config.segment_frames, vocab.segment_steps, rounding_mode="floor")

    def token_spans(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` ids → ``[B, L, 2]``: the frames ``[start, end)`` during which each token's note sounds
        (:func:`~stemkit.midi.tokens.note_spans` on the mel's frame grid; a note shorter than a frame keeps
        one), ``[0, 0)`` for tokens that start no note."""
        vocab, frames = self.config.vocabulary(), self.config.segment_frames
        rows = []
        for ids, keep in zip(tokens.tolist(), token_mask.tolist()):
            spans = note_spans([t for t, k in zip(ids, keep) if k], vocab)
            spans = [(0, 0) if end <= start else (start * frames // vocab.segment_steps,
                                                   max(start * frames // vocab.segment_steps + 1, -(-end * frames // vocab.segment_steps)))
                     for start, end in spans]
            rows.append(spans + [(0, 0)] * (len(ids) - len(spans)))
        return torch.tensor(rows, dtype=torch.long, device=tokens.device).reshape(*tokens.shape, 2)

    def conditions(self, tokens: torch.Tensor, token_mask: torch.Tensor, previous: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The denoiser's conditions for a batch of segments: note ids ``[B, L]`` with their mask (and their frames,
        with ``token_times``; the frames their notes sound in, with ``note_spans``), and the previous segment's
        mel ``[B, n_mels, F]`` (None: the first segment, which reads the context's null)."""
        cond = {NOTES: tokens, mask_key(NOTES): token_mask}
        if self.config.token_times:
            cond[times_key(NOTES)] = self.token_frames(tokens)
        if self.config.note_spans:
            cond[spans_key(NOTES)] = self.token_spans(tokens, token_mask)
        if self.config.context:
            if previous is None:
                cond["null:" + CONTEXT] = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
                previous = torch.zeros(tokens.shape[0], self.codec.feature_channels, 1, device=tokens.device)
            cond[CONTEXT] = previous.transpose(1, 2)
        return cond

    @torch.no_grad()
    def generate_mel(self, tracks: list[MidiTrack], seconds: float | None = None, steps: int = 32, sampler: str = "heun",
                     cfg: float = 1.0, generator: torch.Generator | None = None, progress: bool = False,
                     device: torch.device | str = "cpu") -> torch.Tensor:
        """The scaled log-mel ``[n_mels, frames]`` of a piece, segment by segment (each on the previous)."""
        from stemkit.diffusion.guidance import ClassifierFreeGuidance

        if self.config.autoregressive and cfg != 1.0:
            raise StemkitError("an autoregressive spectrogram model has no guidance: leave --cfg at 1")
        piece = encode_piece(tracks, self.config.vocabulary(), seconds)
        denoiser = self.denoiser if cfg == 1.0 else ClassifierFreeGuidance(self.denoiser, cfg)
        with self.denoiser.net.reusing_encodings():  # a segment's notes and context are encoded once, not per step
            return self._generate_segments(piece.segments, denoiser, steps, sampler, generator, progress, device)

    def _generate_segments(self, segments: list[list[int]], denoiser: Any, steps: int, sampler: str,
                           generator: torch.Generator | None, progress: bool, device: torch.device | str) -> torch.Tensor:
        from stemkit.diffusion.samplers import sample

        frames, mels, previous = self.config.segment_frames, [], None
        for segment in segments:
            ids, mask = pad_tokens([segment], device)
            cond = self.conditions(ids, mask, previous)
            if self.config.autoregressive:
                mel = self._generate_frames(cond, frames, device)
            else:
                shape = (1, self.codec.feature_channels, frames)
                mel = sample(denoiser, shape, steps=steps, sampler=sampler, cond=cond, config=self.denoiser.config,
                             generator=generator, device=device, progress=progress)
            mel = mel.clamp(-1.0, 1.0)
            mels.append(mel[0])
            previous = mel
        return torch.cat(mels, dim=-1)

    def predict_frames(self, mel: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """Autoregressive objective: each frame of ``mel [B, n_mels, F]`` predicted from the frames before it."""
        shifted = torch.nn.functional.pad(mel[..., :-1], (1, 0), value=SILENCE)
        return self._network(shifted, cond)

    def loss(self, mel: torch.Tensor, cond: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """The training loss of a batch of segments' mels: EDM's, or the next-frame MSE when autoregressive."""
        if self.config.autoregressive:
            return torch.nn.functional.mse_loss(self.predict_frames(mel, cond), mel)
        return self.denoiser.loss(mel, cond, generator=generator)

    def _network(self, frames: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """The backbone read without noise (the autoregressive objective has none: its noise level is fixed)."""
        return self.denoiser.net(frames, torch.zeros(frames.shape[0], device=frames.device), cond)

    def _generate_frames(self, cond: dict[str, torch.Tensor], frames: int, device: torch.device | str) -> torch.Tensor:
        """One segment frame by frame, each predicted from the ones before it (teacher-forced in training);
        the network keeps its encodings and earlier frames' keys and values (``start_decoding``), so each
        frame costs one frame's decoder pass."""
        net = self.denoiser.net
        frame = torch.full((1, self.codec.feature_channels, 1), SILENCE, device=device)
        cache, noise, out = net.start_decoding(cond, 1, frame), torch.zeros(1, device=device), []
        for _ in range(frames):
            frame = net(frame, noise, cond, cache=cache).clamp(-1.0, 1.0)
            out.append(frame)
        return torch.cat(out, dim=-1)

    @torch.no_grad()
    def synthesize(self, tracks: list[MidiTrack], seconds: float | None = None, **sampling: Any) -> torch.Tensor:
        """Audio ``[1, samples]`` of a piece (``seconds`` long, default: to its last note's end)."""
        mel = self.generate_mel(tracks, seconds, **sampling)
        audio = self.codec.decode(mel[None])[0]
        if seconds is not None:
            audio = audio[..., : round(seconds * self.sample_rate)]
        return audio

    # --- the family's side of stemkit synth (:class:`~stemkit.synthesis.synthesize.Synthesizer`) ------------
    plays_drums = True  #: drum tracks are read from MIDI and tokenised as drum hits

    def check_tracks(self, tracks: list[MidiTrack], source: str = "the MIDI") -> None:
        """Every General MIDI program and pitch has a token, so any MIDI can be rendered; nothing to refuse."""

    def render_tracks(self, tracks: list[MidiTrack], seconds: float, steps: int = 32, sampler: str = "heun", cfg: float = 1.0,
                      generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
        """All tracks at once ``[1, samples]``, ``seconds`` long, segment by segment on the model's device."""
        device = next(self.parameters()).device
        out = self.synthesize(tracks, seconds, steps=steps, sampler=sampler, cfg=cfg, generator=generator,
                              progress=progress, device=device)
        samples = max(1, int(round(seconds * self.sample_rate)))
        return torch.nn.functional.pad(out, (0, max(0, samples - out.shape[-1])))
