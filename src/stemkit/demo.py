"""``stemkit demo``: the built-in default job a newcomer runs first.

It generates a few test-split chorales (never seen in training), separates them with the shipped
model, and reports the model next to the two rows every result table carries — the mixture (floor)
and the ideal ratio mask (ceiling) — as a Markdown table, JSON and a bar chart. Then it
synthesizes the chorales' violin parts from their MIDI with the shipped synthesizer and scores
them against FluidSynth's renderings, next to the sine-with-envelope floor.
"""

from __future__ import annotations

from pathlib import Path

from stemkit.atomic import atomic_output
from stemkit.data.generate import GenerateConfig, generate
from stemkit.evaluation import evaluate_dataset, format_table, plot_results, write_json


def run_demo(
    out: Path,
    num: int = 3,
    seconds: float = 10.0,
    ensemble: str = "string",
    workers: int = 2,
    soundfont: Path | None = None,
    model: str | None = None,
    device: str = "auto",
    synth_model: str | None = None,
) -> str:
    from stemkit.separation.batch import collect_audio, separate_many
    from stemkit.separation.separator import DEFAULT_MODEL, Separator

    data_dir = out / "data" / f"test_{ensemble}"
    generate(
        GenerateConfig(out=data_dir, ensemble=ensemble, num=num, split="test", seconds=seconds, workers=workers, soundfont=soundfont)
    )
    separator = Separator(model or DEFAULT_MODEL, device=device)
    separated = out / "separated"
    separate_many(separator, collect_audio([data_dir]), separated, overwrite=True, progress=False)
    results = {
        "mixture (oracle)": evaluate_dataset(data_dir, oracle="mixture", workers=workers),
        separator.name: evaluate_dataset(data_dir, estimates=separated / separator.name, workers=workers),
        "IRM (oracle)": evaluate_dataset(data_dir, oracle="irm", workers=workers),
    }
    table = format_table(results)
    write_json(out / "metrics.json", results)
    with atomic_output(out / "metrics.md") as tmp:
        tmp.write_text(table + "\n")
    plot_results(results, out / "metrics.png")
    synth_table = demo_synthesis(data_dir, out, synth_model, device, workers)
    return (
        f"{table}\n\nwrote {out / 'metrics.md'}, {out / 'metrics.json'}, {out / 'metrics.png'}; "
        f"stems in {separated / separator.name} (data in {data_dir})\n\n"
        f"Violin parts synthesized from their MIDI, scored against FluidSynth's rendering:\n{synth_table}\n\n"
        f"wrote {out / 'synthesis.md'} and {out / 'synthesis.json'}; audio in {out / 'synthesized'}"
    )


def demo_synthesis(data_dir: Path, out: Path, model: str | None, device: str, workers: int) -> str:
    """Synthesize the dataset's violin parts and the sine floor; score both; write synthesis.{md,json}."""
    from stemkit.audio.io import save_audio
    from stemkit.midi.notes import read_midi
    from stemkit.synthesis.baselines import render_sine
    from stemkit.synthesis.evaluation import evaluate_synthesis
    from stemkit.synthesis.synthesize import DEFAULT_SYNTH, Synthesizer, collect_midi, synthesize_many

    synth = Synthesizer(model or DEFAULT_SYNTH, device=device)
    instrument = synth.model.config.instrument
    inputs = collect_midi([data_dir], instrument)
    generated = out / "synthesized" / synth.name
    synthesize_many(synth, inputs, generated, overwrite=True, progress=False)
    sine_dir = out / "synthesized" / "sine"
    for item in inputs:
        tracks, seconds = read_midi(item.path)
        notes = [n for track in tracks for n in track.notes]
        save_audio(sine_dir / f"{item.name}.wav", render_sine(notes, seconds, synth.sample_rate, synth.model.envelope_model, synth.model.hop),
                   synth.sample_rate)
    results = {
        "sine + envelope (floor)": evaluate_synthesis(data_dir, sine_dir, workers=workers, instrument=instrument, progress=False),
        synth.name: evaluate_synthesis(data_dir, generated, workers=workers, instrument=instrument, progress=False),
    }
    lines = ["| system | log-mel L1 ↓ | MR-STFT ↓ | pitch accuracy ↑ |", "|---|---:|---:|---:|"]
    for label, result in results.items():
        mean = result["mean"]
        lines.append(f"| {label} | {mean['log_mel_l1']:.3f} | {mean['mrstft']:.3f} | {mean['pitch_acc']:.3f} |")
    table = "\n".join(lines)
    write_json(out / "synthesis.json", results)
    with atomic_output(out / "synthesis.md") as tmp:
        tmp.write_text(table + "\n")
    return table
