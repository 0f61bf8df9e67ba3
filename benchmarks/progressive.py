"""Progressive inference on the generated test split: our standard model, the remix-aware model and
the peers, each between its one-pass line and its oracle predictor.

    python benchmarks/separation.py --steps 300 --threads 1 --test-tracks 8 --test-seconds 30   # the peers
    python benchmarks/progressive.py --tracks 8 --seconds 20 --steps 3

Every model runs ``stemkit.separation.analysis.progressive_analysis`` (the code behind ``stemkit
progressive-analysis``) on the same excerpts, twice: add-to-mixture with the linear schedule (plus the
extra ``--remix-schedules`` for the remix-aware model) and the oracle; then the same with a Wiener
filter after every step (``--wiener``; its step 1 is one pass + Wiener). The peers are the HTDemucs and
BS-RoFormer trained by ``benchmarks/separation.py`` (``--peers`` folder); they are written as a demucs
``.th`` package and a RoFormer checkpoint + training YAML and loaded through the adapters users use.
Prints the Markdown table BENCHMARKS.md records and writes one plot with every model. ``--standard`` and
``--remix`` default to the shipped ``lasaft-chorales-string`` and ``lasaft-chorales-string-remix``; a
peer whose weights are not in ``--peers`` is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch
import yaml

from stemkit.data.generate import GenerateConfig, generate
from stemkit.separation.adapters import load_separator, save_htdemucs
from stemkit.separation.analysis import progressive_analysis

REPO = Path(__file__).resolve().parent.parent


def _peer_module():
    spec = importlib.util.spec_from_file_location("bench_separation", REPO / "benchmarks" / "separation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_peers(peers: Path, out: Path) -> dict[str, tuple[Path, Path | None]]:
    """The benchmark's peer weights → the checkpoint formats their own projects write."""
    bench = _peer_module()
    found = {}
    if (peers / "htdemucs.pt").exists():
        model = bench.build("htdemucs")
        model.load_state_dict(torch.load(peers / "htdemucs.pt", weights_only=True))
        found["htdemucs"] = (save_htdemucs(model, out / "htdemucs-chorales-300.th"), None)
    if (peers / "bs-roformer.pt").exists():
        checkpoint = out / "bs-roformer-chorales-300.ckpt"
        torch.save(torch.load(peers / "bs-roformer.pt", weights_only=True), checkpoint)
        args = {k: list(v) if isinstance(v, tuple) else v for k, v in bench.PEERS["bs-roformer"].items()}
        config = out / "bs-roformer-chorales-300.yaml"
        config.write_text(yaml.safe_dump({"model": {**args, "stereo": False, "num_stems": len(bench.TARGETS)},
                                          "training": {"instruments": bench.TARGETS},
                                          "audio": {"sample_rate": bench.SAMPLE_RATE, "chunk_size": int(2.016 * bench.SAMPLE_RATE)}}))
        found["bs-roformer"] = (checkpoint, config)
    return found


def plot_all(summaries: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bases = list(dict.fromkeys(label.removesuffix(" + Wiener") for label in summaries))
    for label, summary in summaries.items():
        color = colors[bases.index(label.removesuffix(" + Wiener")) % len(colors)]
        results = summary["results"]
        for ax, metric in zip(axes, ("cSDR", "SI-SDR")):
            for method, by_step in results.items():
                if method not in ("oracle", "progressive:linear"):
                    continue
                steps = sorted(int(s) for s in by_step)  # JSON keys
                values = [by_step[str(s)][metric] for s in steps]
                oracle = method == "oracle"
                wiener = label.endswith("Wiener")
                ax.plot(steps, values, color=color, linestyle="--" if oracle else (":" if wiener else "-"),
                        marker="^" if oracle else ("s" if wiener else "o"), label=f"{label} {'oracle' if oracle else 'progressive'}")
            ax.set_xlabel("step (1 = one pass)")
            ax.set_ylabel(f"{metric} (dB, avg over parts)")
            ax.set_xticks(steps)
            ax.grid(alpha=0.3)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.suptitle("Progressive inference (linear schedule, add-to-mixture) vs its oracle predictor")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", default="data/chorales/test", help="test split with references")
    parser.add_argument("--standard", default="lasaft-chorales-string")
    parser.add_argument("--remix", default="lasaft-chorales-string-remix",
                        help="the remix-aware model (a shipped name, .ckpt or .safetensors)")
    parser.add_argument("--remix-schedules", default="adaptive", help="extra schedules for the remix-aware model")
    parser.add_argument("--peers", default="runs/bench_separation", help="folder of benchmarks/separation.py's peer weights")
    parser.add_argument("--models", default="standard,remix,htdemucs,bs-roformer")
    parser.add_argument("--tracks", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--offset", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="runs/bench_progressive")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not Path(args.test).exists():
        generate(GenerateConfig(out=Path(args.test), split="test", workers=2, progress=False))
    peers = export_peers(Path(args.peers), out)
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    summaries = {}
    for name in chosen:
        schedules = ["linear"]
        if name == "standard":
            separator = load_separator(args.standard, device="cpu")
        elif name == "remix":
            if not args.remix:
                continue
            separator = load_separator(args.remix, device="cpu")
            schedules += [s for s in args.remix_schedules.split(";") if s]
        elif name in peers:
            separator = load_separator(peers[name][0], config=peers[name][1], device="cpu")
            if name == "htdemucs":
                separator.normalize = False  # trained on raw levels by benchmarks/separation.py
        else:
            continue
        for wiener in (False, True):
            label = name + (" + Wiener" if wiener else "")
            print(f"{label}: {separator.name}", flush=True)
            summaries[label] = json.loads(json.dumps(progressive_analysis(
                args.test, separator, out / label.replace(" + ", "-"), args.steps, schedules, wiener=wiener, oracle=not wiener,
                max_tracks=args.tracks, seconds=args.seconds, offset=args.offset, progress=False)))
    plot_all(summaries, out / "progressive.png")
    print(f"\n{args.tracks} test-split chorales × {args.seconds:.0f} s (from {args.offset:.0f} s), add-to-mixture, {args.steps} steps")
    print("avg cSDR (dB); Δ = best later step − the same model's plain one pass")
    header = "| model | schedule | " + " | ".join(f"step {n}" for n in range(1, args.steps + 1)) + " | oracle at step N | best Δ |"
    print(header)
    print("|---|---|" + "---:|" * (args.steps + 2))
    for name, summary in summaries.items():
        results = summary["results"]
        one = summaries[name.removesuffix(" + Wiener")]["results"]["one-pass"]["1"]["cSDR"]  # plain one pass
        oracle = results["oracle"][str(args.steps)]["cSDR"] if "oracle" in results else float("nan")
        for method, by_step in results.items():
            if not method.startswith("progressive:"):
                continue
            values = [by_step[str(n)]["cSDR"] for n in range(1, args.steps + 1)]
            best = max(values) - one
            print(f"| {name} | {method.split(':', 1)[1]} | " + " | ".join(f"{v:.2f}" for v in values)
                  + f" | {oracle:.2f} | {best:+.2f} |")


if __name__ == "__main__":
    main()
