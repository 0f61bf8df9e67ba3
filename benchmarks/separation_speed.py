"""Separation speed of the shipped LaSAFT at the defaults, against its old one-pass-per-target inference
and against HTDemucs and BS-RoFormer of the sizes in ``benchmarks/separation.py``, measured in one run.

    python benchmarks/separation_speed.py --seconds 30 --repeats 5 --threads 2

Every row separates the same mixture (a test chorale, or noise with ``--noise``) into the four parts
with the same chunked inference (2.016 s windows, batch 4, the given overlap). Rows are timed in
turn, ``--repeats`` times, and the median is printed: on a shared machine one run's noise hits
every row alike, so read ratios, not absolute speeds. Peers run with random weights — speed does not
depend on the weights, and the peers' trained weights are not in the repository.

Rows:
- ``lasaft (shared encoder)``: ``stemkit separate`` as shipped. The compact LaSAFT's encoder is
  unconditioned, so one window's encoding serves all four targets.
- ``lasaft (pass per target)``: the same model and windows with every target separated by its own full
  pass (how separation ran before, and how a conditioned-encoder model must run).
- ``lasaft paper arch (untrained)``: the faithful architecture (conditioned encoder, full latent TDFs,
  shared GPoCM) at the shipped model's sizes.
- ``htdemucs`` / ``bs-roformer``: one pass returns every source.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from stemkit.audio.chunking import overlap_add
from stemkit.audio.io import load_audio
from stemkit.data.layout import list_tracks
from stemkit.separation.lasaft import LaSAFT, LaSAFTConfig, paper_switches
from stemkit.separation.separator import DEFAULT_MODEL, Separator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from separation import build, separate_windows  # noqa: E402  (the peers exactly as the quality benchmark builds them)

SAMPLE_RATE = 16000
warnings.filterwarnings("ignore", message="A window was not provided")  # inside BS-RoFormer


def mixture(data: str | None, seconds: float, noise: bool) -> torch.Tensor:
    if noise or not data:
        return torch.randn(1, int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(0)) * 0.1
    pieces, total = [], 0
    for track in list_tracks(data):
        audio, rate = load_audio(track.mix)
        if rate != SAMPLE_RATE:
            raise SystemExit(f"{track.mix} is {rate} Hz; the benchmark expects {SAMPLE_RATE} Hz chorales")
        pieces.append(audio.mean(dim=0, keepdim=True))
        total += audio.shape[-1]
        if total >= seconds * SAMPLE_RATE:
            break
    return torch.cat(pieces, dim=-1)[:, : int(seconds * SAMPLE_RATE)]


def runners(model: str, overlap: float) -> dict:
    shipped = Separator(model, device="cpu", overlap=overlap)
    net = shipped.model
    segment = net.config.segment_samples
    indices = list(range(len(net.config.targets)))

    def per_target(mix: torch.Tensor) -> torch.Tensor:
        def windows(chunks: torch.Tensor) -> torch.Tensor:
            return torch.cat([net.separate_batch(chunks, [i]) for i in indices], dim=1)

        return overlap_add(windows, mix, segment, overlap, 4)

    paper = LaSAFT(LaSAFTConfig(**{**net.config.to_dict(), **paper_switches()})).eval()
    rows = {
        f"{shipped.name} (shared encoder)": lambda mix: shipped.separate(mix, SAMPLE_RATE),
        f"{shipped.name} (pass per target)": per_target,
        "lasaft paper arch (untrained)": lambda mix: overlap_add(lambda c: paper.separate_batch(c, indices), mix, segment, overlap, 4),
    }
    for peer in ("htdemucs", "bs-roformer"):
        module = build(peer).eval()
        rows[peer] = lambda mix, module=module, peer=peer: overlap_add(
            lambda c: separate_windows(peer, module, c), mix, int(2.016 * SAMPLE_RATE), overlap, 4)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the LaSAFT to time (default: stemkit separate's default)")
    parser.add_argument("--data", default="data/robust/string-plain-fluidr3", help="chorale folder whose mixes are timed")
    parser.add_argument("--noise", action="store_true", help="time white noise instead of chorales")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overlap", type=float, nargs="+", default=[0.25])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mix = mixture(args.data if Path(args.data).exists() else None, args.seconds, args.noise)
    seconds = mix.shape[-1] / SAMPLE_RATE
    print(f"{seconds:.0f} s mono at {SAMPLE_RATE} Hz, {args.threads} threads, batch 4, median of {args.repeats}\n")
    print("| model | overlap | × real time | relative to the shipped default |")
    print("|---|---:|---:|---:|")
    for overlap in args.overlap:
        rows = runners(args.model, overlap)
        times: dict[str, list[float]] = {name: [] for name in rows}
        with torch.inference_mode():
            for name, run in rows.items():
                run(mix[:, : SAMPLE_RATE * 3])  # warm-up: allocator, thread pool
            for _ in range(args.repeats):
                for name, run in rows.items():
                    start = time.perf_counter()
                    run(mix)
                    times[name].append(time.perf_counter() - start)
        reference = statistics.median(next(iter(times.values())))
        for name, values in times.items():
            median = statistics.median(values)
            print(f"| {name} | {overlap} | {seconds / median:.1f} | {reference / median:.2f} |")


if __name__ == "__main__":
    main()
