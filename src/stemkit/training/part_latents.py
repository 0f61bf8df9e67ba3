"""A cache of the frozen mel VAE's latents of every chorale track, for DisMix's latent variant.

Why: the VAE is frozen, yet encoding a batch's mixture and its four parts afresh took two thirds of
each training step on a CPU (3.4 s of 5.2 s for 8 × 4-s excerpts on one core). Each track's mixture
and stems are therefore encoded once, whole, into one file per track; training slices the excerpt's
latent frames out of it. Crops start on latent frames, so the slice lines up with the excerpt's audio,
mel frames and pitch roll. A slice of a whole-track encoding is not bit-equal to encoding the excerpt
alone (the VAE's GroupNorms take their statistics over the whole input, and the edges see different
neighbours): on 4-s excerpts of valid-split chorales the two differ by 2–5 % of the latents' standard
deviation, far below the noise the decoder is trained to remove.

One file per track keeps the work resumable (an interrupted encoding keeps its finished tracks) and
parallel (tracks are encoded in spawned workers). A file is named by the track, the VAE's weights and
the track's audio files (path, size, modification time), so a changed VAE or a re-rendered track is
encoded again, never read stale.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from stemkit.atomic import atomic_output
from stemkit.audio.io import load_audio
from stemkit.data.layout import ChoraleTrack
from stemkit.parallel import map_with_progress
from stemkit.training.latent_synth import weights_fingerprint


@lru_cache(maxsize=2)
def _vae(source: str):
    """The frozen mel VAE named ``source``, loaded once per process (workers load their own)."""
    from stemkit.training.dismix_ldm import load_mel_vae

    return load_mel_vae(source)


@lru_cache(maxsize=2)
def vae_fingerprint(source: str) -> str:
    """The hash of the weights of the mel VAE ``source`` (a name, ``.safetensors`` or ``.ckpt``), computed once per process."""
    return weights_fingerprint(_vae(source))


def _files_key(track: ChoraleTrack) -> list:
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in [track.mix, *track.stems]]


def cache_file(cache_dir: str | Path, track: ChoraleTrack, fingerprint: str, min_samples: int) -> Path:
    """Where ``track``'s latents by the VAE with ``fingerprint`` are kept."""
    key = json.dumps([fingerprint, _files_key(track), int(min_samples)])
    return Path(cache_dir) / f"{track.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.safetensors"


@torch.no_grad()
def encode_track(job: tuple[str, str, ChoraleTrack, str, int]) -> str:
    """Encode one track's mixture and stems (padded to a whole number of latent frames, and to at least
    ``min_samples``) into ``[1 + S, D, T']`` float16, written atomically to ``path``."""
    source, fingerprint, track, path, min_samples = job
    vae = _vae(source)
    signals = [load_audio(p, mono=True)[0] for p in [track.mix, *track.stems]]
    length = max(max(s.shape[-1] for s in signals), min_samples)
    length = -(-length // vae.hop) * vae.hop
    audio = torch.stack([torch.nn.functional.pad(s, (0, length - s.shape[-1])) for s in signals])  # [1 + S, 1, T]
    latents = torch.cat([vae.features(audio[i : i + 1]) for i in range(audio.shape[0])])
    with atomic_output(path) as tmp:
        save_file({"latents": latents.to(torch.float16).contiguous()}, str(tmp),
                  metadata={"vae_fingerprint": fingerprint, "track": track.name})
    return path


def encode_tracks(source: str, tracks: list[ChoraleTrack], cache_dir: str | Path, min_samples: int, workers: int = 1,
                  progress: bool = True) -> list[Path]:
    """The cache files of ``tracks``, encoding those not cached yet in ``workers`` spawned processes."""
    fingerprint = vae_fingerprint(source)
    paths = [cache_file(cache_dir, t, fingerprint, min_samples) for t in tracks]
    todo = [(source, fingerprint, t, str(p), min_samples) for t, p in zip(tracks, paths) if not p.is_file()]
    if todo:
        map_with_progress(encode_track, todo, workers=workers, desc="encoding tracks with the mel VAE", unit="track",
                          progress=progress)
    return paths


def read_latents(path: str | Path, start: int, frames: int) -> torch.Tensor:
    """Latent frames ``[start, start + frames)`` of a cached track, ``[1 + S, D, frames]`` float32 (mixture first)."""
    with safe_open(str(path), "pt") as handle:
        return handle.get_slice("latents")[:, :, start : start + frames].float()
