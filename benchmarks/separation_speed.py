"""Separation speed of the shipped LaSAFT at the defaults, against its old one-pass-per-target inference
and against HTDemucs and BS-RoFormer of the sizes in ``benchmarks/separation.py``, measured in one run.

    python benchmarks/separation_speed.py --seconds 30 --repeats 5 --threads 2 --precision 32 bf16

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

Each row runs in every ``--precision`` (float32, and bfloat16 autocast of the network, which
``stemkit separate`` uses by default on a CPU with AMX / AVX-512 BF16), so peers and ours are compared
in the same number format as well as across formats.
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
from stemkit.precision import autocast, resolve_precision
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


def runners(model: str, overlap: float, precision: str) -> dict:
    """Each row's ``mix → stems`` with the network in ``precision`` (``32`` or ``bf16``; overlap-add in float32)."""
    shipped = Separator(model, device="cpu", overlap=overlap, precision=precision)
    net = shipped.model
    segment = net.config.segment_samples
    indices = list(range(len(net.config.targets)))
    dtype = resolve_precision(precision, "cpu")

    def network(windows):
        """The network of a row under this precision, returning float32 windows as the separator does."""
        def run(chunks: torch.Tensor) -> torch.Tensor:
            with autocast("cpu", dtype):
                return windows(chunks).float()
        return run

    paper = LaSAFT(LaSAFTConfig(**{**net.config.to_dict(), **paper_switches()})).eval()
    per_target = network(lambda c: torch.cat([net.separate_batch(c, [i]) for i in indices], dim=1))
    paper_windows = network(lambda c: paper.separate_batch(c, indices))
    rows = {
        f"{shipped.name} (shared encoder)": lambda mix: shipped.separate(mix, SAMPLE_RATE),
        f"{shipped.name} (pass per target)": lambda mix: overlap_add(per_target, mix, segment, overlap, 4),
        "lasaft paper arch (untrained)": lambda mix: overlap_add(paper_windows, mix, segment, overlap, 4),
    }
    for peer in ("htdemucs", "bs-roformer"):
        module = build(peer).eval()
        peer_windows = network(lambda c, module=module, peer=peer: separate_windows(peer, module, c))
        rows[peer] = lambda mix, peer_windows=peer_windows: overlap_add(peer_windows, mix, int(2.016 * SAMPLE_RATE), overlap, 4)
    return {f"{name}, {'bf16' if dtype else 'float32'}": run for name, run in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the LaSAFT to time (default: stemkit separate's default)")
    parser.add_argument("--data", default="data/robust/string-plain-fluidr3", help="chorale folder whose mixes are timed")
    parser.add_argument("--noise", action="store_true", help="time white noise instead of chorales")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overlap", type=float, nargs="+", default=[0.25])
    parser.add_argument("--precision", nargs="+", default=["32", "bf16"], choices=["32", "bf16"],
                        help="number formats of the networks (stemkit separate's default, auto, is bf16 on a CPU with AMX / "
                             "AVX-512 BF16); every row runs in each, and ratios are to the shipped default in the first")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mix = mixture(args.data if Path(args.data).exists() else None, args.seconds, args.noise)
    seconds = mix.shape[-1] / SAMPLE_RATE
    print(f"{seconds:.0f} s mono at {SAMPLE_RATE} Hz, {args.threads} threads, batch 4, median of {args.repeats}\n")
    print("| model | overlap | × real time | relative to the shipped default |")
    print("|---|---:|---:|---:|")
    for overlap in args.overlap:
        rows = {name: run for precision in args.precision for name, run in runners(args.model, overlap, precision).items()}
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
