"""Separate many files: the separator's side of the shared job plumbing (:mod:`stemkit.jobs`).

Output layout follows demucs: ``OUT/<model name>/<name>/<target>.<format>``. A file's name is its
stem; a track of a chorale dataset (CocoChorales layout) is named after its track folder and its
``mix.wav`` is separated, so ``OUT/<model name>`` can be passed straight to ``stemkit eval --estimates``.
"""

from __future__ import annotations

from pathlib import Path

from stemkit.audio.io import check_finite_file
from stemkit.errors import StemkitError
from stemkit.jobs import JobInput, JobReport, collect_inputs, run_batch, take_shard
from stemkit.outputs import check_output_dir

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3", ".opus"}


def _dataset_mixtures(folder: Path) -> list[JobInput]:
    from stemkit.data.layout import list_tracks

    return [JobInput(track.mix, track.name) for track in list_tracks(folder)]


def collect_audio(paths: list[str | Path]) -> list[JobInput]:
    """Each input audio file, each audio file of an input folder, and the mixture of each track of an
    input chorale dataset, in a stable order; duplicate names are an error."""
    return collect_inputs(paths, AUDIO_SUFFIXES, "audio files", from_dataset=_dataset_mixtures, any_file=True)


def separate_many(
    separator,
    inputs: list[JobInput],
    out_dir: str | Path,
    targets: list[str] | None = None,
    format: str = "wav",
    residual: bool = False,
    overwrite: bool = False,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    query: str | Path | None = None,
    instruments: list[str] | None = None,
) -> JobReport:
    """Separate this shard's inputs; inputs whose outputs all exist are skipped unless ``overwrite``.

    Everything that can be checked is checked before the first separation: the output folder is
    writable, and every input (and the ``query`` clip) is readable and holds only finite samples. An input with some of its
    outputs (a run with other targets) gets the missing ones; an input's outputs appear together.
    """
    check_output_dir(out_dir)
    root = check_output_dir(Path(out_dir) / separator.name)
    if query is not None:
        check_finite_file(query)
    for item in take_shard(inputs, shard):
        check_finite_file(item.path)
        if (root / item.name).exists() and not (root / item.name).is_dir():
            raise StemkitError(f"{root / item.name} is a file where the outputs of {item.path} go: move it away")

    def work(item: JobInput) -> list[Path]:
        return separator.separate_file(item.path, root / item.name, targets, format, residual, overwrite=overwrite,
                                       query=query, instruments=instruments)

    return run_batch(inputs, work, shard, progress, desc="separating")
