"""Timbre swaps with DisMix's latent variant: A's notes played by B's instruments, part by part.

A mixture's parts are encoded into a pitch latent ν (what each part plays, frame by frame) and a
timbre latent τ (how it sounds), each part found by a *query* — a clip of that part's instrument from
elsewhere. Swapping replaces A's τ of part i with B's τ of part i (the same SATB voice for chorales),
keeps A's ν, and lets the diffusion decoder render the parts, which the mel VAE and its vocoder turn
into audio. Encoding and decoding are also exposed separately, so a user can edit the latents
(``stemkit dismix encode`` → a ``.safetensors`` of ν and τ → ``stemkit dismix decode``).

Inputs are either a chorale track folder (CocoChorales layout: the queries are cut from the part's own
stem *outside* the excerpt, so they carry the instrument, not the excerpt's notes) or a mixture file
with one query file per part.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from stemkit.audio.io import audio_info, load_audio
from stemkit.data.layout import is_track_dir, read_track
from stemkit.errors import StemkitError

LATENT_FORMAT = "stemkit-dismix-latents/1"


@dataclass
class PartsInput:
    """A mixture excerpt ``[1, T]`` and one query ``[1, Tq]`` per part, with the parts' instrument names."""

    mix: torch.Tensor
    queries: torch.Tensor  #: ``[S, 1, Tq]``
    instruments: list[str]
    source: str


@dataclass
class EncodedParts:
    """The latents of a mixture's parts: ``nu [S, D, T']`` (pitch) and ``tau [S, D]`` (timbre)."""

    nu: torch.Tensor
    tau: torch.Tensor
    instruments: list[str]
    samples: int
    model: str

    def save(self, path: str | Path) -> Path:
        """Write the latents as safetensors (atomically), with what is needed to decode them in the metadata."""
        from safetensors.torch import save_file

        from stemkit.atomic import atomic_output

        meta = {"format": LATENT_FORMAT, "instruments": json.dumps(self.instruments), "samples": str(self.samples),
                "model": self.model}
        with atomic_output(path) as tmp:
            save_file({"nu": self.nu.contiguous().cpu(), "tau": self.tau.contiguous().cpu()}, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "EncodedParts":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise StemkitError(f"latents file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # a file that is not safetensors at all
            raise StemkitError(f"{path} is not a latents file from stemkit dismix encode ({exc})") from None
        if meta.get("format") != LATENT_FORMAT or set(tensors) != {"nu", "tau"}:
            raise StemkitError(f"{path} is not a latents file from stemkit dismix encode")
        nu, tau = tensors["nu"], tensors["tau"]
        instruments = json.loads(meta["instruments"])
        agree = nu.ndim == 3 and tau.ndim == 2 and nu.shape[0] == tau.shape[0] == len(instruments) and nu.shape[1] == tau.shape[1]
        if not agree or not torch.isfinite(nu).all() or not torch.isfinite(tau).all():
            raise StemkitError(f"{path}: nu [S, D, T'] and tau [S, D] must agree and be finite, got {tuple(nu.shape)} "
                               f"and {tuple(tau.shape)}")
        return cls(nu, tau, instruments, int(meta["samples"]), meta.get("model", ""))


def _instrument_of(path: Path) -> str:
    """``2_viola.wav`` → ``viola``; any other name → its stem."""
    match = re.fullmatch(r"\d+_(.+)", path.stem)
    return match.group(1) if match else path.stem


def read_window(path: str | Path, rate: int, start: int, samples: int) -> torch.Tensor:
    """``[1, ≤ samples]`` mono audio at ``rate`` from sample ``start`` (counted at ``rate``); only that window
    is read when the file is already at ``rate``."""
    if audio_info(path).sample_rate == rate:
        return load_audio(path, start=start, frames=samples, mono=True)[0]
    return load_audio(path, rate, mono=True)[0][..., start:start + samples]


def _query_start(length: int, query: int, excerpt: tuple[int, int], hop: int) -> int:
    """Where a query of ``query`` samples is cut: right after the excerpt, else ending before it, else the start."""
    after = -(-excerpt[1] // hop) * hop
    if after + query <= length:
        return after
    before = (excerpt[0] - query) // hop * hop
    return max(0, before)


class TimbreSwapper:
    """A DisMix latent model, loaded once: encode parts, decode latents, swap timbres.

    Args:
        model: a shipped name, an exported ``.safetensors`` or a ``stemkit fit`` ``.ckpt`` of the ``dismix-ldm`` family.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        steps, sampler, cfg: the decoder's EDM sampling.
        single: decode each part alone rather than all parts together (Table 3's "Single" column).
        vocoder: the decoded mels' path to audio: a ``mel-vocoder`` model made for the model's mel settings
            (name or file), or ``"griffin-lim"``; ``None`` keeps the model's own (its JSON's, else Griffin-Lim).
    """

    def __init__(self, model: str = "dismix-chorales", device: str = "auto", steps: int = 32, sampler: str = "heun",
                 cfg: float = 1.0, progress: bool = False, single: bool = False, vocoder: str | None = None) -> None:
        from stemkit.diffusion import SAMPLERS
        from stemkit.models import load_model
        from stemkit.jobs import pick_device

        if sampler not in SAMPLERS:
            raise StemkitError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if steps < 1:
            raise StemkitError(f"--steps must be at least 1, got {steps}")
        self.model, self.meta = load_model(model, family="dismix-ldm")
        self.model.vae.codec.pick_decoder(vocoder)
        self.device = pick_device(device)
        self.model.to(self.device)
        self.name = self.meta.get("name", str(model))
        self.source = str(model)  #: what the user named: recorded in latents files so decode finds the model again
        self.steps, self.sampler, self.cfg, self.progress, self.single = steps, sampler, cfg, progress, single

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def _excerpt(self, length: int, start: float, seconds: float, source: str) -> tuple[int, int]:
        rate, hop = self.sample_rate, self.model.hop
        if start < 0 or not seconds > 0:
            raise StemkitError(f"--start must be ≥ 0 and --seconds > 0, got {start} and {seconds}")
        begin = int(round(start * rate))
        span = int(seconds * rate) // hop * hop
        if span < hop:
            raise StemkitError(f"--seconds {seconds} is shorter than one latent frame ({hop / rate:.3f} s)")
        if begin + span > length:
            raise StemkitError(f"{source} is {length / rate:.2f} s long: --start {start:g} + --seconds {seconds:g} run past its end")
        return begin, begin + span

    def read(self, path: str | Path, queries: list[str | Path] | None = None, start: float = 0.0, seconds: float = 4.0,
             query_seconds: float = 2.0) -> PartsInput:
        """A chorale track folder, or a mixture file with one query file per part, as model input."""
        path, rate, hop = Path(path), self.sample_rate, self.model.hop
        query_span = max(hop, int(query_seconds * rate) // hop * hop)
        if path.is_dir():
            if queries:
                raise StemkitError(f"{path} is a chorale folder: its queries come from its own stems, drop --queries")
            if not is_track_dir(path):
                raise StemkitError(f"{path} is not a chorale track folder (mix.wav and stems_audio/) nor a mixture file")
            track = read_track(path)
            info = audio_info(track.mix)
            length = round(info.frames * rate / info.sample_rate)
            begin, end = self._excerpt(length, start, seconds, str(path))
            at = _query_start(length, query_span, (begin, end), hop)
            query_audio = [read_window(s, rate, at, query_span) for s in track.stems]
            mix = read_window(track.mix, rate, begin, end - begin)
            names = list(track.instruments)
        else:
            if not queries:
                raise StemkitError(f"{path} is a mixture file: give one --queries clip per part (or pass a chorale folder)")
            full = load_audio(path, rate, mono=True)[0]
            begin, end = self._excerpt(full.shape[-1], start, seconds, str(path))
            mix = full[..., begin:end]
            query_audio = [read_window(q, rate, 0, query_span) for q in queries]
            names = [_instrument_of(Path(q)) for q in queries]
        query_audio = [torch.nn.functional.pad(q, (0, query_span - q.shape[-1])) for q in query_audio]
        return PartsInput(mix, torch.stack(query_audio), names, str(path))

    @torch.no_grad()
    def encode(self, parts: PartsInput) -> EncodedParts:
        model = self.model
        mix_latent = model.latent(parts.mix.to(self.device)[None])
        query_mels = model.vae.mel(parts.queries.to(self.device))[None]
        latents = model.encode(mix_latent, query_mels)
        return EncodedParts(latents.nu[0].cpu(), latents.tau[0].cpu(), list(parts.instruments), parts.mix.shape[-1], self.source)

    @torch.no_grad()
    def decode(self, parts: EncodedParts, seed: int = 0) -> torch.Tensor:
        """The parts' audio ``[S, 1, samples]`` for the latents (sampled with ``seed``)."""
        d = self.model.config.latent_dim
        if parts.nu.shape[1] != d or parts.tau.shape[1] != d:
            raise StemkitError(f"the latents have {parts.nu.shape[1]} dimensions; model {self.name} uses {d}")
        nu, tau = parts.nu.to(self.device), parts.tau.to(self.device)
        condition = torch.cat([nu, tau.unsqueeze(-1).expand_as(nu)], dim=1)[None]
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        source_latents = self.model.decode(condition, self.steps, self.sampler, self.cfg, generator, self.progress,
                                           single=self.single)
        audio = self.model.render(source_latents)[0].cpu()
        return torch.nn.functional.pad(audio, (0, max(0, parts.samples - audio.shape[-1])))[..., : parts.samples]

    def swap(self, a: PartsInput, b: PartsInput, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
        """A's notes with B's timbre, part i from part i: audio ``[S, 1, samples]`` and B's instrument names."""
        if len(a.instruments) != len(b.instruments):
            raise StemkitError(f"{a.source} has {len(a.instruments)} parts and {b.source} has {len(b.instruments)} parts: "
                               "a swap takes part i's timbre from part i")
        encoded_a, encoded_b = self.encode(a), self.encode(b)
        swapped = EncodedParts(encoded_a.nu, encoded_b.tau, list(b.instruments), encoded_a.samples, self.source)
        return self.decode(swapped, seed), list(b.instruments)


def write_parts(out: str | Path, audio: torch.Tensor, instruments: list[str], sample_rate: int) -> list[Path]:
    """``out/<i>_<instrument>.wav`` per part and ``out/mix.wav``, all appearing together (one atomic unit);
    the mix is scaled down only if it would clip."""
    from stemkit.atomic import atomic_folder
    from stemkit.audio.io import save_audio

    out = Path(out)
    names = [f"{i}_{name}.wav" for i, name in enumerate(instruments)] + ["mix.wav"]
    mix = audio.sum(dim=0)
    peak = float(mix.abs().max())
    parts_peak = float(audio.abs().max())
    scale = 0.99 / max(peak, parts_peak) if max(peak, parts_peak) > 0.99 else 1.0
    with atomic_folder(out) as staging:
        for name, track in zip(names, [*audio, mix]):
            save_audio(staging / name, track * scale, sample_rate)
    return [out / n for n in names]
