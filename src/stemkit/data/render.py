"""Render note lists to audio with FluidSynth (through pyfluidsynth) and a General MIDI soundfont.

Every stem is rendered by a synthesizer made for it alone. A reused FluidSynth instance is not
stateless (``system_reset`` and ``all_sounds_off`` leave state behind: the same notes rendered twice
on one instance differ by up to 0.4 of full scale), so reuse made a track depend on which tracks the
same process rendered before it: on the worker count and the resume history. A fresh instance costs
about 0.1 s (FluidSynth shares the loaded samples between instances). Reverb and chorus are off
unless a performance style asks for them (:mod:`stemkit.data.performance`); they then run on each
stem's own instance, so a stem is its instrument in that space and the stems still add up to the
ensemble.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from stemkit.errors import StemkitError
from stemkit.midi.notes import Note

#: Where Debian/Ubuntu (fluid-soundfont-gm), Fedora and Homebrew put a General MIDI soundfont.
DEFAULT_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
)

#: Pitch-bend units per semitone at FluidSynth's default bend range (±2 semitones over ±8192).
PITCH_BEND_PER_SEMITONE = 4096
RELEASE_SECONDS = 0.5  #: audio kept after the last note-off so its release is not cut


def default_soundfont() -> Path:
    """The first General MIDI soundfont found in the usual system places (``STEMKIT_SOUNDFONT`` first)."""
    env = os.environ.get("STEMKIT_SOUNDFONT")
    for candidate in ([env] if env else []) + list(DEFAULT_SOUNDFONTS):
        if Path(candidate).is_file():
            return Path(candidate)
    raise StemkitError(
        "no General MIDI soundfont found: install one (Debian/Ubuntu: apt-get install fluid-soundfont-gm) "
        "or pass --soundfont PATH to an .sf2/.sf3 file"
    )


def check_soundfont(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise StemkitError(f"soundfont not found: {path} (pass --soundfont PATH to an .sf2/.sf3 file)")
    if path.suffix.lower() not in (".sf2", ".sf3"):
        raise StemkitError(f"{path} is not a soundfont: --soundfont needs an .sf2 or .sf3 file")
    return path


def import_fluidsynth():
    """Import pyfluidsynth, turning a missing system library into a one-line fix."""
    try:
        import fluidsynth
    except ImportError:
        raise StemkitError(
            "the FluidSynth library is not installed: apt-get install libfluidsynth3 (macOS: brew install fluid-synth)"
        ) from None
    except OSError as exc:
        raise StemkitError(f"the FluidSynth library failed to load ({exc}): reinstall libfluidsynth3") from None
    return fluidsynth


_dither_seeded = False


def _seed_dither_table() -> None:
    """Make FluidSynth's dither noise the same in every process.

    FluidSynth dithers its 16-bit output with a table it fills from the C library's ``rand()`` when
    the first synthesizer of a process is made. Anything that drew from ``rand()`` earlier in the
    process (the room simulator does) changed the table, and so the last bit of every rendered
    sample: a track then depended on what its process had done before. Seeding ``rand()`` with its
    default seed right before the first synthesizer gives the table every fresh process had.
    """
    global _dither_seeded
    if _dither_seeded:
        return
    _dither_seeded = True
    try:
        ctypes.CDLL(None).srand(1)
    except (OSError, AttributeError):  # no C library reachable this way (Windows): nothing to align
        pass


class FluidSynthRenderer:
    """Renders one monophonic-or-not voice at a time to mono float32 audio."""

    def __init__(self, soundfont: str | os.PathLike, sample_rate: int) -> None:
        import_fluidsynth()
        self.sample_rate = int(sample_rate)
        self.soundfont = Path(soundfont)
        self._new_synth()[0].delete()  # fail here, before any work, if the soundfont does not load

    def _new_synth(self, effects: dict | None = None) -> tuple:
        """A fresh FluidSynth instance with the soundfont loaded, and the soundfont's id in it."""
        fluidsynth = import_fluidsynth()
        effects = effects or {}
        _seed_dither_table()
        synth = fluidsynth.Synth(
            gain=3.0,  # FluidSynth renders quietly; more gain keeps 16-bit output well above its noise floor
            samplerate=float(self.sample_rate),
            **{"synth.reverb.active": int("reverb" in effects), "synth.chorus.active": int("chorus" in effects),
               "synth.cpu-cores": 1},
        )
        sfid = synth.sfload(str(self.soundfont))
        if sfid < 0:
            synth.delete()
            raise StemkitError(f"FluidSynth could not load the soundfont {self.soundfont}: is it a valid .sf2/.sf3?")
        if "reverb" in effects:
            r = effects["reverb"]
            synth.set_reverb(r["roomsize"], r["damping"], r["width"], r["level"])
        if "chorus" in effects:
            c = effects["chorus"]
            synth.set_chorus(c["nr"], c["level"], c["speed"], c["depth"], 0)  # 0: sine modulation
        return synth, sfid

    def render(self, notes: list[Note], program: int, num_samples: int | None = None, effects: dict | None = None,
               detune_cents: float = 0.0) -> np.ndarray:
        """Mono float32 audio of ``notes`` played by GM ``program``.

        Length: ``num_samples`` when given (notes past it are cut off with the audio), else the last
        note-off plus a short release. ``effects`` may hold ``reverb`` and ``chorus`` settings (see
        :func:`stemkit.data.performance.draw_rendering`); ``detune_cents`` bends the whole part.
        """
        synth, sfid = self._new_synth(effects)
        try:
            return self._render_on(synth, sfid, notes, program, num_samples, detune_cents)
        finally:
            synth.delete()

    def _render_on(self, synth, sfid: int, notes: list[Note], program: int, num_samples: int | None,
                   detune_cents: float = 0.0) -> np.ndarray:
        synth.program_select(0, sfid, 0, int(program))
        if detune_cents:
            synth.pitch_bend(0, int(round(detune_cents / 100.0 * PITCH_BEND_PER_SEMITONE)))
        events = []
        for note in notes:
            on = int(round(note.start * self.sample_rate))
            off = max(on + 1, int(round(note.end * self.sample_rate)))
            events.append((on, 1, note.pitch, note.velocity))
            events.append((off, 0, note.pitch, 0))
        events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons at the same instant
        if num_samples is None:
            last = max((e[0] for e in events), default=0)
            num_samples = last + int(RELEASE_SECONDS * self.sample_rate)
        chunks, cursor = [], 0
        for time, is_on, pitch, velocity in events:
            time = min(time, num_samples)
            if time > cursor:
                chunks.append(synth.get_samples(time - cursor))
                cursor = time
            if cursor >= num_samples:
                break
            if is_on:
                synth.noteon(0, int(pitch), int(velocity))
            else:
                synth.noteoff(0, int(pitch))
        if num_samples > cursor:
            chunks.append(synth.get_samples(num_samples - cursor))
        stereo = np.concatenate(chunks).astype(np.float32).reshape(-1, 2) if chunks else np.zeros((0, 2), np.float32)
        return (stereo.mean(axis=1) / 32768.0).astype(np.float32)
