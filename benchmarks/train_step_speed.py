"""Seconds per training step of spectrogram diffusion in float32 and in bfloat16 autocast, measured in one run.

    python benchmarks/train_step_speed.py --config configs/specdiff/cpu.yaml --threads 2 --steps 8

The model is built from the config's ``model.init_args.net``; each step is the system's real loss
(mel of a batch of 5.12-s segments and of their previous segments, note tokens of chorale length, EDM
loss), backward and Adam, on random audio (speed does not depend on the data). Precisions alternate
step by step so machine noise hits both alike; the median of ``--steps`` is printed. bfloat16 is what
``--trainer.precision bf16-mixed`` runs: autocast around the forward pass, float32 weights and optimizer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import yaml

from stemkit.precision import autocast, cpu_has_native_bf16
from stemkit.synthesis.specdiff import SpecDiff, SpecDiffConfig, pad_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/specdiff/cpu.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=0, help="default: the config's")
    parser.add_argument("--tokens", type=int, default=180, help="note tokens per segment (chorales: about 180)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(open(args.config))
    batch = args.batch_size or config["data"]["init_args"].get("batch_size", 8)
    model = SpecDiff(SpecDiffConfig(**config["model"]["init_args"]["net"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    samples = round(model.config.vocabulary().segment_seconds * model.sample_rate)
    audio = torch.randn(batch, 1, samples, generator=torch.Generator().manual_seed(0)) * 0.1
    ids, mask = pad_tokens([list(range(10, 10 + args.tokens))] * batch)

    def step(dtype: torch.dtype | None) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            mel, previous = model.codec.encode(audio), model.codec.encode(audio)
        with autocast("cpu", dtype):
            loss = model.loss(mel, model.conditions(ids, mask, previous))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    formats = {"float32": None, "bf16 autocast": torch.bfloat16}
    for dtype in formats.values():  # warm-up: allocator, oneDNN kernels
        step(dtype)
    times: dict[str, list[float]] = {name: [] for name in formats}
    for _ in range(args.steps):
        for name, dtype in formats.items():
            times[name].append(step(dtype))
    print(f"{args.config}: batch {batch}, {args.threads} threads, median of {args.steps} steps; "
          f"native bf16 on this CPU: {cpu_has_native_bf16()}\n")
    print("| precision | s / step | relative |")
    print("|---|---:|---:|")
    reference = statistics.median(times["float32"])
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {reference / statistics.median(values):.2f}× |")


if __name__ == "__main__":
    main()
