"""``stemkit data chorales``: render chorales into the CocoChorales layout, in parallel, resumably.

Each track is built in a hidden temporary folder beside its final place and renamed into place
only when complete, so an interrupted run leaves no half-written track, and a re-run skips every
track that is already there. Only folders this generator created (``.<track>.partial-*``) are ever
removed.
"""

from __future__ import annotations

import itertools
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from tqdm.auto import tqdm

from stemkit.atomic import atomic_folder, remove_stale_staging
from stemkit.audio.io import save_audio
from stemkit.audio.loudness import normalize_loudness
from stemkit.data.chorales import ChoraleSource, ScoreNote, extract_satb, perform, select_sources, track_seed
from stemkit.data.ensembles import ENSEMBLE_CHOICES, choose_instruments, fit_to_range
from stemkit.data.layout import track_dir_name
from stemkit.data.render import FluidSynthRenderer, check_soundfont, default_soundfont, import_fluidsynth
from stemkit.data.performance import apply_recording, draw_rendering, get_style, perform_styled
from stemkit.errors import StemkitError, StemkitWarning
from stemkit.midi.notes import MidiTrack, write_midi
from stemkit.outputs import check_output_dir
from stemkit.parallel import worker_pool

TARGET_LUFS = -13.0  #: per-stem loudness, as CocoChorales
TARGET_PEAK_DB = -1.0  #: the mix's peak after the overall gain
RENDITIONS_STRIDE = 1000  #: track number = rendition * 1000 + chorale index


@dataclass
class GenerateConfig:
    out: Path
    ensemble: str = "string"
    num: int | None = None
    split: str = "train"
    seconds: float | None = None
    sample_rate: int = 16000
    soundfont: Path | list[Path] | None = None  #: one soundfont, or several: each part draws one
    seed: int = 0
    performance: str = "plain"  #: a style of :mod:`stemkit.data.performance`
    workers: int = 1
    renditions: int = 1
    progress: bool = True


@dataclass
class TrackJob:
    source: ChoraleSource
    ensemble: str
    rendition: int
    number: int
    config: GenerateConfig = field(repr=False)

    @property
    def name(self) -> str:
        return track_dir_name(self.ensemble, self.number)


@dataclass
class GenerateReport:
    written: list[str]
    skipped: list[str]
    not_satb: list[str]
    audio_seconds: float
    wall_seconds: float


def validate(config: GenerateConfig) -> GenerateConfig:
    """Check everything a user can get wrong before any work starts, each with a one-line fix."""
    if config.ensemble not in ENSEMBLE_CHOICES:
        raise StemkitError(f"unknown ensemble {config.ensemble!r}: choose one of {', '.join(ENSEMBLE_CHOICES)}")
    if config.split not in ("train", "valid", "test", "all", "excluded"):
        raise StemkitError(f"unknown split {config.split!r}: choose train, valid, test, all or excluded")
    if config.num is not None and config.num < 1:
        raise StemkitError("--num must be at least 1")
    if config.seconds is not None and config.seconds <= 0:
        raise StemkitError("--seconds must be positive")
    if not 8000 <= config.sample_rate <= 96000:
        raise StemkitError(f"--sample-rate {config.sample_rate} is outside FluidSynth's 8000–96000 Hz")
    if config.workers < 1:
        raise StemkitError("--workers must be at least 1")
    if not 1 <= config.renditions < RENDITIONS_STRIDE:
        raise StemkitError(f"--renditions must be between 1 and {RENDITIONS_STRIDE - 1}")
    get_style(config.performance)
    import_fluidsynth()
    fonts = config.soundfont if isinstance(config.soundfont, (list, tuple)) else [config.soundfont] if config.soundfont else []
    config.soundfont = [check_soundfont(f) for f in fonts] or [default_soundfont()]
    if config.split in ("train", "valid", "all") and any("musescore" in f.name.lower() for f in config.soundfont):
        warnings.warn("the MuseScore General soundfonts are kept as the unseen-timbre test: training or choosing "
                      "checkpoints on them voids that test", StemkitWarning, stacklevel=2)
    check_output_dir(config.out)
    return config


def plan_jobs(config: GenerateConfig) -> list[TrackJob]:
    """The tracks to make: every chorale of the split × renditions, in key order.

    ``--num`` is applied later, after scores that are not four-voice chorales are skipped, so that
    ``--num 3`` really yields three tracks.
    """
    sources = select_sources(config.split)
    jobs = [
        TrackJob(s, config.ensemble, r, r * RENDITIONS_STRIDE + s.index, config)
        for r in range(config.renditions)
        for s in sources
    ]
    if config.num is not None and config.num > len(jobs):
        raise StemkitError(
            f"--num {config.num} is more than the {len(jobs)} chorales of the {config.split} split"
            f" × {config.renditions} rendition(s): lower --num, raise --renditions or use --split all"
        )
    return jobs


def generate(config: GenerateConfig) -> GenerateReport:
    """Make the dataset described by ``config``; the Python API behind ``stemkit data chorales``.

    ``num`` counts tracks *in the folder*: the tracks of this plan already there count first, and
    the rest are made in plan order. A folder left by an interrupted run is always part of the
    same first-N set, so a re-run completes exactly the dataset an uninterrupted run makes; and
    since every track is a pure function of (chorale, rendition, seed, settings), its bytes do not
    depend on the worker count or the history either.
    """
    config = validate(config)
    jobs = plan_jobs(config)
    for job in jobs:
        remove_stale_staging(config.out, job.name)
    present = [job.name for job in jobs if _is_complete(config.out, job.name)]
    wanted = config.num if config.num is not None else len(jobs)
    skipped = present[:wanted]
    done = set(present)
    pending = iter([job for job in jobs if job.name not in done])
    started = time.perf_counter()
    written: list[str] = []
    not_satb: list[str] = []
    audio_seconds = 0.0
    bar = tqdm(total=wanted, initial=len(skipped), desc="chorales", unit="track", disable=not config.progress)
    pool = worker_pool(config.workers) if config.workers > 1 else nullcontext()
    try:
        with pool as workers:
            while len(written) + len(skipped) < wanted:
                # exactly as many as are still missing; a score that is not a chorale frees its slot
                batch = list(itertools.islice(pending, wanted - len(written) - len(skipped)))
                if not batch:
                    break
                results = workers.imap(build_track, batch) if workers is not None else map(build_track, batch)
                for job, seconds in zip(batch, results):
                    if seconds is None:
                        not_satb.append(job.source.key)
                    else:
                        written.append(job.name)
                        audio_seconds += seconds
                        bar.update(1)
    finally:
        bar.close()
    if config.num is not None and len(written) + len(skipped) < wanted:
        raise StemkitError(
            f"only {len(written) + len(skipped)} of the {wanted} requested tracks could be made: "
            f"{len(not_satb)} scores of the {config.split} split are not four-voice chorales; lower --num"
        )
    return GenerateReport(written, skipped, not_satb, audio_seconds, time.perf_counter() - started)


def _is_complete(out: Path, name: str) -> bool:
    """A track is complete once its folder holds metadata.yaml (written last, then renamed into place)."""
    return (out / name / "metadata.yaml").is_file()


_RENDERERS: dict[tuple[str, int], FluidSynthRenderer] = {}


def _renderer(soundfont: Path, sample_rate: int) -> FluidSynthRenderer:
    key = (str(soundfont), sample_rate)
    if key not in _RENDERERS:
        _RENDERERS[key] = FluidSynthRenderer(soundfont, sample_rate)
    return _RENDERERS[key]


def build_track(job: TrackJob) -> float | None:
    """Render one track into a temporary folder and rename it into place.

    Returns the track's length in seconds, or ``None`` when the score is not a four-voice chorale.
    """
    config = job.config
    voices = extract_satb(job.source.path)
    if voices is None:
        return None
    rng = np.random.default_rng(track_seed(config.seed, job.source.key, job.ensemble, job.rendition))
    instruments = choose_instruments(job.ensemble, rng)
    fitted = []
    for voice, instrument in zip(voices, instruments):
        pitches = fit_to_range([n.pitch for n in voice], instrument)
        fitted.append([ScoreNote(n.onset, n.duration, p, n.fermata) for n, p in zip(voice, pitches)])
    style = get_style(config.performance)
    if style.name == "plain":  # the original generator, draw for draw, so older datasets reproduce
        performance = perform(fitted, rng, config.seconds)
        voices, tempo, factors, rendering = performance.voices, performance.tempo, {"style": "plain"}, {}
    else:
        styled = perform_styled(fitted, rng, style, config.seconds)
        voices, tempo, factors = styled.voices, styled.tempo, styled.factors
        rendering = draw_rendering(style, rng, len(instruments), config.sample_rate)
    fonts = config.soundfont
    stem_fonts = [fonts[0]] * len(instruments) if len(fonts) == 1 else [fonts[int(rng.integers(len(fonts)))] for _ in instruments]
    sr = config.sample_rate
    if config.seconds is not None:
        num_samples = int(round(config.seconds * sr))
    else:
        last = max((n.end for v in voices for n in v), default=0.0)
        num_samples = int(round(last * sr)) + int(0.5 * sr)

    effects = {k: rendering[k] for k in ("reverb", "chorus") if k in rendering}
    detunes = factors.get("detune_cents", [0.0] * len(instruments))
    raw = [_renderer(font, sr).render(notes, instrument.program, num_samples, effects, detune)
           for notes, instrument, font, detune in zip(voices, instruments, stem_fonts, detunes)]
    if rendering:
        raw = apply_recording(raw, rendering, sr)
    balance = rendering.get("balance_db", [0.0] * len(instruments))
    stems, loudness, factors_gain = [], [], []
    for audio, offset in zip(raw, balance):
        normalized, gain, lufs = normalize_loudness(np.asarray(audio, dtype=np.float64), sr, TARGET_LUFS + offset)
        stems.append(normalized)
        loudness.append(lufs)
        factors_gain.append(gain)
    peak = float(np.max(np.abs(np.sum(stems, axis=0)))) if num_samples else 0.0
    target_peak = 10.0 ** (TARGET_PEAK_DB / 20.0)
    overall_gain = target_peak / peak if peak > 0 else 1.0
    # Quantise stems to 16 bit first and sum the integers: the written mix is then exactly the sum
    # of the written stems (a float sum quantised afterwards would differ by rounding).
    stems_int = [np.round(np.clip(s * overall_gain, -1.0, 1.0 - 2**-15) * 32768.0).astype(np.int32) for s in stems]
    mix_int = np.sum(stems_int, axis=0)
    if np.max(np.abs(mix_int), initial=0) > 32767:
        raise RuntimeError(f"{job.name}: the mix overflows 16 bit although it was normalised to {TARGET_PEAK_DB} dBFS")

    final = config.out / job.name
    if final.exists():
        raise StemkitError(f"{final} exists but has no metadata.yaml; it was not made by stemkit: move it away and re-run")
    with atomic_folder(final) as tmp:  # the track appears whole or not at all
        stem_names = [f"{i}_{inst.name}" for i, inst in enumerate(instruments)]
        midi_tracks = [MidiTrack(name, inst.program, notes) for name, inst, notes in zip(stem_names, instruments, voices)]
        write_midi(tmp / "mix.mid", midi_tracks, tempo)
        for track in midi_tracks:
            write_midi(tmp / "stems_MIDI" / f"{track.name}.mid", [track], tempo)
        for name, stem in zip(stem_names, stems_int):
            save_audio(tmp / "stems_audio" / f"{name}.wav", stem[None] / 32768.0, sr, "PCM_16")
        save_audio(tmp / "mix.wav", mix_int[None] / 32768.0, sr, "PCM_16")
        metadata = {
            "midi_file": "mix.mid",
            "tempo": round(tempo, 3),
            "ensemble": job.ensemble,
            "instrument_name": [inst.name for inst in instruments],
            "midi_program_number": [inst.program for inst in instruments],
            "normalization_factor": [float(f) for f in factors_gain],
            "target_peak": TARGET_PEAK_DB,
            "normalized": True,
            "overall_gain": float(overall_gain),
            "stem_integrated_loudness": [float(x) for x in loudness],
            "target_loudness": TARGET_LUFS,
            "source_chorale": job.source.key,
            "split": job.source.split,
            "soundfont": str(fonts[0]) if len(fonts) == 1 else [str(f) for f in fonts],
            "stem_soundfont": [str(f) for f in stem_fonts],
            "performance": factors,
            "rendering": rendering,
            "seed": config.seed,
            "rendition": job.rendition,
            "sample_rate": sr,
            "num_samples": num_samples,
        }
        # metadata.yaml is written last: its presence marks a complete track.
        (tmp / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    return num_samples / sr
