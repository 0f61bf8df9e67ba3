"""MIDI files → audio files with any synthesis model: the API under ``stemkit synth``.

Each synthesis family renders a MIDI file's tracks its own way through two methods of its model,
``check_tracks(tracks, source)`` and ``render_tracks(tracks, seconds, steps, sampler, cfg, generator,
progress)``: the latent synthesizer splits every track into monophonic lines and samples them in one
batch (so a quartet costs about what a solo does on a GPU); spectrogram diffusion renders all tracks
at once, segment by segment. The output is exactly as long as the MIDI (its last event), at the
model's sample rate, and scaled down only if it would clip.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stemkit.audio.io import save_audio
from stemkit.errors import StemkitError
from stemkit.jobs import JobInput, JobReport, collect_inputs, pick_device, run_batch
from stemkit.midi.notes import MidiTrack, Note, read_midi
from stemkit.models import load_model
from stemkit.synthesis.conditioning import frame_count
from stemkit.synthesis.latent_synth import LatentSynth

MIDI_SUFFIXES = (".mid", ".midi")
DEFAULT_SYNTH = "violin-ldm-chorales"
# What a model gets when neither the caller nor its JSON's ``sampling`` says otherwise.
DEFAULT_SAMPLING = {"steps": 18, "sampler": "heun", "cfg": 1.0}


class Synthesizer:
    """Load a synthesizer once and render MIDI with it.

    Args:
        model: a shipped name, an exported ``.safetensors`` or a ``stemkit fit`` ``.ckpt``.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.
        steps, sampler, cfg: EDM sampling steps, ``heun|euler|dpmpp2m``, classifier-free guidance
            weight (1 = plain conditional model). ``None`` (the default) takes the setting the model's
            JSON recommends under ``sampling`` (``stemkit export --sampling``), else 18 / heun / 1.
        instrument: the instrument asked for; an error if the model plays another.
        vocoder: for a model that samples mel spectrograms (spectrogram diffusion), the mel → audio
            decoder: a ``mel-vocoder`` model's name or file, or ``"griffin-lim"``; ``None`` keeps the
            model's own (the one its JSON names, else Griffin-Lim).
    """

    def __init__(self, model: str = DEFAULT_SYNTH, device: str = "auto", steps: int | None = None, sampler: str | None = None,
                 cfg: float | None = None, instrument: str | None = None, progress: bool = False,
                 vocoder: str | None = None) -> None:
        from stemkit.diffusion import SAMPLERS

        self.model, self.meta = load_model(model, task="synthesis")
        recommended = {**DEFAULT_SAMPLING, **(self.meta.get("sampling") or {})}
        steps = recommended["steps"] if steps is None else steps
        sampler = recommended["sampler"] if sampler is None else sampler
        cfg = recommended["cfg"] if cfg is None else cfg
        if sampler not in SAMPLERS:
            raise StemkitError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if steps < 1:
            raise StemkitError(f"--steps must be at least 1, got {steps}")
        if not cfg >= 0:
            raise StemkitError(f"--cfg must be 0 or more (1 = no guidance), got {cfg}")
        codec = getattr(self.model, "codec", None)
        if vocoder is not None and not hasattr(codec, "pick_decoder"):
            raise StemkitError(f"model {self.name} does not decode mel spectrograms: --vocoder is for mel models "
                               "(spectrogram diffusion)")
        if hasattr(codec, "pick_decoder"):
            codec.pick_decoder(vocoder)
        self.model.to(pick_device(device))
        plays = self.instrument
        if instrument is not None and plays is not None and instrument != plays:
            raise StemkitError(f"model {self.name} synthesizes {plays}, not {instrument}")
        self.steps, self.sampler, self.cfg, self.progress = steps, sampler, cfg, progress

    @property
    def name(self) -> str:
        return self.meta.get("name", "synth")

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def instrument(self) -> str | None:
        """The one instrument the model plays, or None for a model of many (General MIDI programs)."""
        return getattr(self.model.config, "instrument", None)

    def _generator(self, seed: int) -> torch.Generator:
        device = next(self.model.parameters()).device
        return torch.Generator(device=device).manual_seed(int(seed))

    @staticmethod
    def _unclipped(audio: torch.Tensor) -> torch.Tensor:
        peak = float(audio.abs().max())
        return (audio / peak * 0.99 if peak > 0.99 else audio).cpu()

    def render_lines(self, lines: list[list[Note]], seconds: float, seed: int = 0) -> torch.Tensor:
        """Latent synthesizer only: mono mix ``[1, samples]`` of monophonic ``lines`` sampled together,
        ``seconds`` long. The lines are summed as they come; only a mix that would clip is scaled down (to a
        0.99 peak), so a solo keeps the level the model learned."""
        model: LatentSynth = self.model
        samples = max(1, int(round(seconds * model.sample_rate)))
        frames = frame_count(samples, model.hop)
        cond = torch.cat([model.condition_from_notes(line, frames) for line in lines])
        return self.render_condition(cond, samples, seed)

    def render_condition(self, cond: torch.Tensor, samples: int, seed: int = 0) -> torch.Tensor:
        """Latent synthesizer only: mono mix ``[1, samples]`` of the lines conditioned by ``cond``
        ``[lines, COND_CHANNELS, frames]`` (from notes, or curves measured on audio), scaled down only if it would clip."""
        model: LatentSynth = self.model
        audio = model.render_condition(cond, samples, self.steps, self.sampler, self.cfg, self._generator(seed), self.progress)
        return self._unclipped(audio)

    def synthesize_file(self, midi_path: str | Path, seed: int = 0, tracks: list[str] | None = None) -> torch.Tensor:
        """Audio ``[1, samples]`` of the tracks of a MIDI file (all, or those named or numbered from 0
        in ``tracks``), mixed; as long as the MIDI."""
        midi_path = Path(midi_path)
        found, seconds = read_midi(midi_path, drums=getattr(self.model, "plays_drums", False))
        chosen = select_tracks(found, tracks, midi_path)
        if not any(track.notes for track in chosen):
            raise StemkitError(f"{midi_path} has no notes to synthesize" + (f" in tracks {','.join(tracks)}" if tracks else ""))
        self.model.check_tracks(chosen, str(midi_path))
        chosen = [track for track in chosen if track.notes]
        audio = self.model.render_tracks(chosen, seconds, self.steps, self.sampler, self.cfg, self._generator(seed), self.progress)
        return self._unclipped(audio)


def select_tracks(tracks: list[MidiTrack], wanted: list[str] | None, source: Path) -> list[MidiTrack]:
    """The tracks named, or numbered from 0, in ``wanted`` (all when None); unknown ones are an error."""
    if not wanted:
        return tracks
    chosen = []
    for key in wanted:
        match = [t for i, t in enumerate(tracks) if key == str(i) or key == t.name]
        if not match:
            names = ", ".join(f"{i}:{t.name or '(unnamed)'}" for i, t in enumerate(tracks))
            raise StemkitError(f"{source} has no track {key!r}; its tracks are {names}")
        chosen.extend(t for t in match if t not in chosen)
    return chosen


def _dataset_stems(instrument: str | None):
    def stems(folder: Path) -> list[JobInput]:
        from stemkit.data.layout import list_stem_files

        return [JobInput(stem.midi, stem.name) for stem in list_stem_files(folder, instrument) if stem.midi]

    return stems


def collect_midi(paths: list[str | Path], instrument: str | None = None) -> list[JobInput]:
    """Each input MIDI file, the MIDI files of a folder (recursively), or the ``stems_MIDI`` of
    ``instrument`` in a chorale dataset — named ``<track>_<stem>`` as ``stemkit eval-synth`` names a
    chorale dataset's stems."""
    what = "MIDI files" + (f" ({instrument} stems in datasets)" if instrument else "")
    return collect_inputs(paths, MIDI_SUFFIXES, what, from_dataset=_dataset_stems(instrument), recursive=True)


def synthesize_many(synth: Synthesizer, inputs: list[JobInput], out: Path, format: str = "wav", seed: int = 0,
                    overwrite: bool = False, shard: tuple[int, int] = (0, 1), single_file: bool = False,
                    tracks: list[str] | None = None, progress: bool = True) -> JobReport:
    """Render this shard's inputs to ``out/<name>.<format>`` (or to ``out`` itself with ``single_file``);
    existing outputs are skipped unless ``overwrite``, so an interrupted batch resumes."""

    def work(item: JobInput) -> list[Path]:
        target = out if single_file else out / f"{item.name}.{format}"
        if target.exists() and not overwrite:
            return []
        audio = synth.synthesize_file(item.path, seed=seed, tracks=tracks)
        return [save_audio(target, audio, synth.sample_rate)]

    return run_batch(inputs, work, shard, progress, desc="synthesizing")
