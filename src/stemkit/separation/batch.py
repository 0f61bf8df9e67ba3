"""Separate many files: find the inputs, name the outputs, shard the work, skip what is done.

Output layout follows demucs: ``OUT/<model name>/<name>/<target>.<format>``. A file's name is its
stem; a track of a chorale dataset (CocoChorales layout) is named after its track folder and its
``mix.wav`` is separated, so ``OUT/<model name>`` can be passed straight to ``stemkit eval --estimates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from stemkit.audio.io import check_finite_file
from stemkit.errors import StemkitError
from stemkit.outputs import check_output_dir

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3", ".opus"}


@dataclass
class BatchReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  #: inputs whose outputs were all present


def collect_inputs(paths: list[str | Path]) -> list[tuple[Path, str]]:
    """``(audio file, output name)`` for each input file, each audio file of an input folder and
    each track of an input chorale dataset, in a stable order; duplicate names are an error."""
    from stemkit.data.layout import list_tracks

    found: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append((path, path.stem))
        elif path.is_dir():
            tracks = list_tracks(path)
            if tracks:
                found.extend((t.mix, t.name) for t in tracks)
                continue
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise StemkitError(f"no audio files in folder {path}")
            found.extend((p, p.stem) for p in files)
        else:
            raise StemkitError(f"input not found: {path}")
    names: dict[str, Path] = {}
    for audio, name in found:
        if name in names and names[name] != audio:
            raise StemkitError(f"two inputs would write to the same folder {name!r}: {names[name]} and {audio}")
        names[name] = audio
    return list(dict.fromkeys(found))


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` (1-based) → ``(I - 1, N)``; ``None`` → the whole job."""
    if not text:
        return 0, 1
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise StemkitError(f"--shard must look like I/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= index <= count:
        raise StemkitError(f"--shard {text}: need 1 ≤ I ≤ N")
    return index - 1, count


def separate_many(
    separator,
    inputs: list[tuple[Path, str]],
    out_dir: str | Path,
    targets: list[str] | None = None,
    format: str = "wav",
    residual: bool = False,
    overwrite: bool = False,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> BatchReport:
    """Separate this shard's inputs; inputs whose outputs all exist are skipped unless ``overwrite``.

    Everything that can be checked is checked before the first separation: the output folder is
    writable, and every input is readable and holds only finite samples. An input with some of its
    outputs (a run with other targets) gets the missing ones; an input's outputs appear together.
    """
    report = BatchReport()
    index, count = shard
    mine = inputs[index::count]
    check_output_dir(out_dir)
    root = check_output_dir(Path(out_dir) / separator.name)
    for audio, name in mine:
        check_finite_file(audio)
        if (root / name).exists() and not (root / name).is_dir():
            raise StemkitError(f"{root / name} is a file where the outputs of {audio} go: move it away")
    for audio, name in tqdm(mine, desc="files", unit="file", disable=not progress or len(mine) < 2):
        written = separator.separate_file(audio, root / name, targets, format, residual, overwrite=overwrite)
        if written:
            report.written.extend(written)
        else:
            report.skipped.append(name)
    return report
