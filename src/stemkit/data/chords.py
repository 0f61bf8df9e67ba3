"""``stemkit data chords``: the chord dataset of DisMix's simple variant (after MusicSlot).

Every distinct chord sounding in the Bach chorales (the vertical slices music21's ``chordify`` would
give, taken from the SATB voices stemkit already extracts) is split among two or three of three
instruments — piano, violin, flute — so that one *source* is all the notes one instrument plays and
its label is a multi-hot vector over :data:`NUM_PITCHES` pitches. Each source is rendered by
FluidSynth, the mixture is their sum, and what is stored is the 128-band log-mel of a 320 ms
(10-frame) crop from the sustain phase, as DisMix's Table 1 uses.

Why a note bank: a FluidSynth voice with effects off adds linearly, so a source is the sum of its
notes rendered alone. Each (soundfont, instrument, pitch, velocity) note is rendered once
(``notes/<soundfont>.npz``) and the 30,000-odd mixtures are sums of those, instead of 70,000
synthesizer instances at 0.1 s each. The bank also lets the evaluation render the ground truth of a
pitch swap exactly: the new notes by the same instrument, at the same velocity and crop.

Splits are by chord, 70/20/10, by the sha1 of the chord's pitches, so they agree everywhere. Each
split is written in shards of :data:`CHORDS_PER_SHARD` chords, each atomically, so an interrupted
run resumes where it stopped and gives the same bytes whatever the worker count.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stemkit.atomic import atomic_output
from stemkit.errors import StemkitError

#: The three instruments of the set, with their General MIDI programs (0-based).
CHORD_INSTRUMENTS: tuple[tuple[str, int], ...] = (("piano", 0), ("violin", 40), ("flute", 73))
#: Pitch classes of the labels: MIDI LOWEST_PITCH .. LOWEST_PITCH + NUM_PITCHES - 1 (A1 .. C6). The 5,287
#: chords of music21's chorales span 36 (C2) to 81 (A5); 52 classes is the paper's label size.
LOWEST_PITCH = 33
NUM_PITCHES = 52
SAMPLE_RATE = 16000
N_MELS = 128
N_FFT = 1024
HOP_LENGTH = 512
CROP_FRAMES = 10  #: 320 ms at hop 512 / 16 kHz
NOTE_SECONDS = 1.0  #: each note of the bank is held this long (and cut there, before its release)
SUSTAIN_FROM = 0.15  #: crops start after the attack …
SUSTAIN_UNTIL = 0.95  #: … and end before the note-off
VELOCITIES = (60, 80, 100)
CHORDS_PER_SHARD = 128
LOG_FLOOR = 1e-5
SPLIT_OF_BUCKET = ("train",) * 7 + ("valid",) * 2 + ("test",)


@dataclass
class ChordsConfig:
    out: Path
    soundfonts: list[Path] = field(default_factory=list)
    mixtures_per_chord: int = 6
    seed: int = 0
    workers: int = 2
    progress: bool = True
    #: the chords to use instead of every chord of the corpus (tests and quick looks; Python API only)
    chords: list[tuple[int, ...]] | None = None

    def recorded(self) -> dict:
        """What decides the dataset's bytes (recorded in ``dataset.json``; a resume must match it)."""
        return {
            "soundfonts": [Path(s).name for s in self.soundfonts],
            "mixtures_per_chord": self.mixtures_per_chord,
            "seed": self.seed,
            "instruments": [name for name, _ in CHORD_INSTRUMENTS],
            "lowest_pitch": LOWEST_PITCH,
            "num_pitches": NUM_PITCHES,
            "sample_rate": SAMPLE_RATE,
            "n_mels": N_MELS,
            "n_fft": N_FFT,
            "hop_length": HOP_LENGTH,
            "crop_frames": CROP_FRAMES,
            "velocities": list(VELOCITIES),
            "chords_per_shard": CHORDS_PER_SHARD,
        }


def chord_split(chord: tuple[int, ...]) -> str:
    """``train`` (70 %), ``valid`` (20 %) or ``test`` (10 %), by the sha1 of the chord's pitches."""
    digest = hashlib.sha1("-".join(str(p) for p in chord).encode()).hexdigest()
    return SPLIT_OF_BUCKET[int(digest, 16) % 10]


def slices_of(voices: list) -> set[tuple[int, ...]]:
    """The distinct pitch sets sounding at each onset of a chorale's voices (what ``chordify`` slices)."""
    notes = [n for voice in voices for n in voice]
    chords = set()
    for onset in sorted({n.onset for n in notes}):
        sounding = tuple(sorted({n.pitch for n in notes if n.onset <= onset + 1e-9 < n.onset + n.duration}))
        if len(sounding) >= 2:
            chords.add(sounding)
    return chords


def _chords_of_source(path: str) -> list[tuple[int, ...]]:
    from stemkit.data.chorales import extract_satb

    voices = extract_satb(path)
    return sorted(slices_of(voices)) if voices is not None else []


def chorale_chords(workers: int = 1, progress: bool = True) -> list[tuple[int, ...]]:
    """Every distinct chord (≥ 2 pitches, all inside the label range) of the corpus's chorales, sorted."""
    from stemkit.data.chorales import chorale_sources
    from stemkit.parallel import map_with_progress

    paths = [str(s.path) for s in chorale_sources()]
    found: set[tuple[int, ...]] = set()
    for chords in map_with_progress(_chords_of_source, paths, workers, desc="chords", unit="chorale", progress=progress):
        found.update(chords)
    top = LOWEST_PITCH + NUM_PITCHES - 1
    return sorted(c for c in found if c[0] >= LOWEST_PITCH and c[-1] <= top)


# --------------------------------------------------------------------------------------------- note bank


def render_note_bank(soundfont: str, pitches: list[int] | None = None) -> np.ndarray:
    """Notes by each instrument at each velocity: ``[instrument, pitch class, velocity, samples]``.

    Only the classes in ``pitches`` (MIDI numbers; default all) are rendered, the rest stay silent:
    a dataset needs the pitches its chords use, and a small one is then quick to make.
    """
    from stemkit.data.render import FluidSynthRenderer
    from stemkit.midi.notes import Note

    renderer = FluidSynthRenderer(soundfont, SAMPLE_RATE)
    length = int(NOTE_SECONDS * SAMPLE_RATE)
    wanted = range(LOWEST_PITCH, LOWEST_PITCH + NUM_PITCHES) if pitches is None else pitches
    bank = np.zeros((len(CHORD_INSTRUMENTS), NUM_PITCHES, len(VELOCITIES), length), np.float32)
    for i, (_, program) in enumerate(CHORD_INSTRUMENTS):
        for pitch in wanted:
            for v, velocity in enumerate(VELOCITIES):
                note = Note(int(pitch), 0.0, NOTE_SECONDS + 1.0, velocity)  # held past the cut: no release
                bank[i, pitch - LOWEST_PITCH, v] = renderer.render([note], program, num_samples=length)
    return bank


def bank_path(root: Path, soundfont: str | Path) -> Path:
    return Path(root) / "notes" / f"{Path(soundfont).stem}.npz"


def _make_bank(job: tuple[str, str, list[int]]) -> str:
    """Render (or complete) one soundfont's bank; pitches it already holds are kept, so a re-run renders nothing."""
    soundfont, path, pitches = job
    held: list[int] = []
    if Path(path).exists():
        with np.load(path) as found:
            held = found["pitches"].tolist()
    missing = sorted(set(pitches) - set(held))
    if missing:
        bank = render_note_bank(soundfont, sorted(set(pitches) | set(held)))
        save_arrays(path, {"notes": bank, "pitches": np.array(sorted(set(pitches) | set(held)), np.int16)})
    return path


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` written atomically with fixed entry dates, so the same arrays give the same bytes
    (``np.savez`` stamps each entry with the current time)."""
    import zipfile

    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


# --------------------------------------------------------------------------------------------- mixtures


@dataclass(frozen=True)
class SourcePlan:
    instrument: int  #: index into CHORD_INSTRUMENTS
    pitches: tuple[int, ...]  #: MIDI pitches
    velocity: int  #: index into VELOCITIES
    soundfont: int  #: index into the dataset's soundfonts


@dataclass(frozen=True)
class MixturePlan:
    chord: tuple[int, ...]
    sources: tuple[SourcePlan, ...]
    crop_start: int  #: first sample of the crop


def crop_samples() -> int:
    """Samples giving exactly :data:`CROP_FRAMES` frames without padding: (frames − 1) · hop + n_fft."""
    return (CROP_FRAMES - 1) * HOP_LENGTH + N_FFT


def plan_mixtures(chord: tuple[int, ...], count: int, seed: int, num_soundfonts: int) -> list[MixturePlan]:
    """``count`` ways of sharing ``chord`` among 2–3 distinct instruments, drawn from a per-chord seed.

    Each instrument plays at least one note, each note is played by exactly one instrument; velocity
    and soundfont are drawn per source, the crop per mixture.
    """
    digest = hashlib.sha1(f"{seed}/{'-'.join(map(str, chord))}".encode()).hexdigest()
    rng = np.random.default_rng(int(digest[:16], 16))
    first = int(SUSTAIN_FROM * SAMPLE_RATE)
    last = int(SUSTAIN_UNTIL * SAMPLE_RATE) - crop_samples()
    plans = []
    for _ in range(count):
        num_sources = int(rng.integers(2, min(3, len(chord)) + 1))
        instruments = sorted(rng.choice(len(CHORD_INSTRUMENTS), size=num_sources, replace=False).tolist())
        owner = np.concatenate([np.arange(num_sources), rng.integers(0, num_sources, size=len(chord) - num_sources)])
        owner = rng.permutation(owner)
        sources = tuple(
            SourcePlan(
                instrument=int(inst),
                pitches=tuple(int(p) for p, o in zip(chord, owner) if o == k),
                velocity=int(rng.integers(len(VELOCITIES))),
                soundfont=int(rng.integers(num_soundfonts)),
            )
            for k, inst in enumerate(instruments)
        )
        plans.append(MixturePlan(chord, sources, int(rng.integers(first, last + 1))))
    return plans


def log_mel(audio: np.ndarray) -> np.ndarray:
    """``[..., samples]`` → natural-log mel ``[..., N_MELS, frames]`` (floored at :data:`LOG_FLOOR`), uncentred frames."""
    import torch

    from stemkit.audio.spectral import framed_log_mel

    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return framed_log_mel(x, SAMPLE_RATE, N_FFT, HOP_LENGTH, N_MELS, LOG_FLOOR).numpy()


def source_audio(plan: MixturePlan, source: SourcePlan, banks: list[np.ndarray]) -> np.ndarray:
    """A source's crop: the sum of its notes from the bank."""
    bank = banks[source.soundfont]
    crop = slice(plan.crop_start, plan.crop_start + crop_samples())
    return sum(bank[source.instrument, p - LOWEST_PITCH, source.velocity, crop] for p in source.pitches)


def multi_hot(pitches: tuple[int, ...]) -> np.ndarray:
    label = np.zeros(NUM_PITCHES, bool)
    label[[p - LOWEST_PITCH for p in pitches]] = True
    return label


def build_shard(plans: list[MixturePlan], banks: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of one shard. Sources sit in the slot of their instrument; ``present`` says which are there."""
    n, slots = len(plans), len(CHORD_INSTRUMENTS)
    audio = np.zeros((n, slots, crop_samples()), np.float32)
    present = np.zeros((n, slots), bool)
    pitch = np.zeros((n, slots, NUM_PITCHES), bool)
    velocity = np.zeros((n, slots), np.int8)
    soundfont = np.zeros((n, slots), np.int8)
    for m, plan in enumerate(plans):
        for source in plan.sources:
            k = source.instrument
            audio[m, k] = source_audio(plan, source, banks)
            present[m, k] = True
            pitch[m, k] = multi_hot(source.pitches)
            velocity[m, k] = source.velocity
            soundfont[m, k] = source.soundfont
    return {
        "mix": log_mel(audio.sum(axis=1)).astype(np.float16),
        "sources": log_mel(audio).astype(np.float16),
        "present": present,
        "pitch": pitch,
        "velocity": velocity,
        "soundfont": soundfont,
        "crop_start": np.array([p.crop_start for p in plans], np.int32),
        "chord": np.array([_chord_code(p.chord) for p in plans], np.uint64),
    }


def _chord_code(chord: tuple[int, ...]) -> int:
    """A chord as a bit set over the label range (fits 64 bits for 52 classes)."""
    return sum(1 << (p - LOWEST_PITCH) for p in chord)


def chord_of_code(code: int) -> tuple[int, ...]:
    """The chord a stored ``chord`` bit set stands for (the inverse of :func:`_chord_code`)."""
    return tuple(LOWEST_PITCH + b for b in range(NUM_PITCHES) if int(code) >> b & 1)


@dataclass
class ShardJob:
    path: str
    chords: list[tuple[int, ...]]
    banks: list[str]
    count: int
    seed: int


def _make_shard(job: ShardJob) -> str:
    if Path(job.path).exists():
        return job.path
    banks = [_read_bank(b) for b in job.banks]
    plans = [plan for chord in job.chords for plan in plan_mixtures(chord, job.count, job.seed, len(banks))]
    save_arrays(job.path, build_shard(plans, banks))
    return job.path


def _read_bank(path: str | Path) -> np.ndarray:
    with np.load(path) as found:
        return found["notes"]


@dataclass
class ChordsReport:
    chords: dict[str, int]
    mixtures: dict[str, int]
    written: int
    skipped: int


def _cached_chords(root: Path, config: ChordsConfig) -> list[tuple[int, ...]]:
    """The corpus's chords, extracted once per dataset folder (parsing every chorale takes a minute)."""
    cache = root / "chords.json"
    if cache.exists():
        return [tuple(c) for c in json.loads(cache.read_text())]
    chords = chorale_chords(config.workers, config.progress)
    with atomic_output(cache) as tmp:
        tmp.write_text(json.dumps([list(c) for c in chords]))
    return chords


def _check_record(root: Path, recorded: dict) -> None:
    meta = root / "dataset.json"
    if meta.exists():
        try:
            known = json.loads(meta.read_text())
        except (OSError, ValueError):
            raise StemkitError(f"{meta} is unreadable: remove it, or choose another --out") from None
        if known.get("settings") != recorded:
            raise StemkitError(f"{root} holds a chord dataset made with other settings: choose another --out")


def make_chords(config: ChordsConfig) -> ChordsReport:
    """Build (or finish) the chord dataset in ``config.out``: note banks, then every split's shards."""
    from stemkit.data.render import check_soundfont, default_soundfont
    from stemkit.outputs import check_output_dir
    from stemkit.parallel import map_with_progress

    if config.mixtures_per_chord < 1:
        raise StemkitError(f"--mixtures-per-chord must be at least 1, got {config.mixtures_per_chord}")
    if config.workers < 1:
        raise StemkitError(f"--workers must be at least 1, got {config.workers}")
    soundfonts = [check_soundfont(s) for s in config.soundfonts] or [default_soundfont()]
    if len({s.stem for s in soundfonts}) != len(soundfonts):
        raise StemkitError("two --soundfont files share a name: the note banks are named after them")
    config.soundfonts = soundfonts
    root = check_output_dir(config.out)
    recorded = config.recorded()
    _check_record(root, recorded)
    if not (root / "dataset.json").exists():  # recorded before any work, so an interrupted folder is recognised too
        with atomic_output(root / "dataset.json") as tmp:
            tmp.write_text(json.dumps({"settings": recorded}, indent=2) + "\n")

    chords = config.chords if config.chords is not None else _cached_chords(root, config)
    if not chords:
        raise StemkitError("no chords to render")
    pitches = sorted({p for chord in chords for p in chord})
    if pitches[0] < LOWEST_PITCH or pitches[-1] >= LOWEST_PITCH + NUM_PITCHES:
        raise StemkitError(f"chords must lie within MIDI {LOWEST_PITCH}..{LOWEST_PITCH + NUM_PITCHES - 1}")
    banks = map_with_progress(_make_bank, [(str(s), str(bank_path(root, s)), pitches) for s in soundfonts], config.workers,
                              desc="note banks", unit="soundfont", progress=config.progress)
    by_split = {s: [c for c in chords if chord_split(c) == s] for s in ("train", "valid", "test")}
    jobs = []
    for split, members in by_split.items():
        for k in range(0, len(members), CHORDS_PER_SHARD):
            path = root / split / f"shard-{k // CHORDS_PER_SHARD:04d}.npz"
            jobs.append(ShardJob(str(path), members[k:k + CHORDS_PER_SHARD], banks, config.mixtures_per_chord, config.seed))
    skipped = sum(Path(j.path).exists() for j in jobs)
    map_with_progress(_make_shard, jobs, config.workers, desc="shards", unit="shard", progress=config.progress)
    counts = {s: len(m) for s, m in by_split.items()}
    summary = {
        "settings": recorded,
        "chords": counts,
        "mixtures": {s: n * config.mixtures_per_chord for s, n in counts.items()},
    }
    with atomic_output(root / "dataset.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return ChordsReport(counts, summary["mixtures"], len(jobs) - skipped, skipped)


def dataset_settings(root: str | Path) -> dict:
    """The recorded settings of a chord dataset; a one-line error when ``root`` is not one."""
    meta = Path(root) / "dataset.json"
    if not meta.is_file():
        raise StemkitError(f"{root} is not a chord dataset (no dataset.json): make one with stemkit data chords --out {root}")
    return json.loads(meta.read_text())["settings"]


def load_split(root: str | Path, split: str) -> dict[str, np.ndarray]:
    """Every shard of ``split`` concatenated, in shard order."""
    dataset_settings(root)
    if "mixtures" not in json.loads((Path(root) / "dataset.json").read_text()):
        raise StemkitError(f"{root} is an unfinished chord dataset: finish it by rerunning stemkit data chords --out {root}")
    shards = sorted((Path(root) / split).glob("shard-*.npz"))
    if not shards:
        raise StemkitError(f"{root} has no {split} shards: finish it with stemkit data chords --out {root}")
    parts = [dict(np.load(s)) for s in shards]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def bank_pitches(root: str | Path) -> list[int]:
    """The MIDI pitches every note bank of the dataset holds (the others are silent in the banks)."""
    held = None
    for name in dataset_settings(root)["soundfonts"]:
        with np.load(bank_path(root, name)) as found:
            pitches = set(found["pitches"].tolist())
        held = pitches if held is None else held & pitches
    return sorted(held or ())


def load_banks(root: str | Path) -> list[np.ndarray]:
    """The dataset's note banks, in the order its sources index them."""
    return [_read_bank(bank_path(root, name)) for name in dataset_settings(root)["soundfonts"]]


__all__ = ["ChordsConfig", "make_chords", "load_split", "load_banks", "dataset_settings", "chord_split", "plan_mixtures",
           "slices_of", "CHORD_INSTRUMENTS", "NUM_PITCHES", "LOWEST_PITCH"]
