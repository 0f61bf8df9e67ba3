"""``stemkit demo``: the built-in default job a newcomer runs first.

It generates a few test-split chorales (never seen in training), separates them with the shipped
model, and reports the model next to the two rows every result table carries — the mixture (floor)
and the ideal ratio mask (ceiling) — as a Markdown table, JSON and a bar chart.
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
) -> str:
    from stemkit.separation.batch import collect_inputs, separate_many
    from stemkit.separation.separator import DEFAULT_MODEL, Separator

    data_dir = out / "data" / f"test_{ensemble}"
    generate(
        GenerateConfig(out=data_dir, ensemble=ensemble, num=num, split="test", seconds=seconds, workers=workers, soundfont=soundfont)
    )
    separator = Separator(model or DEFAULT_MODEL, device=device)
    separated = out / "separated"
    separate_many(separator, collect_inputs([data_dir]), separated, overwrite=True, progress=False)
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
    return (
        f"{table}\n\nwrote {out / 'metrics.md'}, {out / 'metrics.json'}, {out / 'metrics.png'}; "
        f"stems in {separated / separator.name} (data in {data_dir})"
    )
