"""Synthesis quality and speed on test-split violin parts: the table in BENCHMARKS.md.

Rows, all on the same parts (first ``--seconds`` of ``--parts`` violin stems of the test split):
- FluidSynth: the reference scored against itself — the ceiling (its pitch accuracy is what pYIN
  reads off the real rendering);
- sine: a sine with the MIDI's pitch and the synthesizer's modelled envelope — the floor, given the
  same information as the synthesizer;
- VAE reconstruction of the reference — the ceiling of anything decoded from these latents;
- the synthesizer from MIDI at several samplers, step counts and guidance weights, with speed in
  seconds of audio per second of wall clock (all lines of a part sampled as one batch);
- the synthesizer given the *reference's* envelope (oracle conditions) — how much the envelope
  model costs.

    python benchmarks/synthesis.py --model violin-ldm-chorales --data data/strings/test --parts 12 --seconds 15
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from stemkit.atomic import atomic_output
from stemkit.data.monophonic import find_monophonic
from stemkit.metrics.synthesis import synthesis_metrics
from stemkit.midi.notes import Note
from stemkit.synthesis.baselines import render_sine
from stemkit.synthesis.conditioning import condition_tensor, envelope_from_audio, frame_count, pitch_from_notes
from stemkit.synthesis.synthesize import Synthesizer

METRICS = ("log_mel_l1", "mrstft", "pitch_acc", "si_sdr")


def parse_configs(text: str) -> list[tuple[str, int, float]]:
    """``heun:18,euler:18:2`` → (sampler, steps, cfg) triples."""
    configs = []
    for part in text.split(","):
        fields = part.split(":")
        configs.append((fields[0], int(fields[1]), float(fields[2]) if len(fields) > 2 else 1.0))
    return configs


def load_parts(data: Path, count: int, seconds: float) -> list[dict]:
    items = [i for i in find_monophonic(data, "violin") if i.notes]
    step = max(1, len(items) // count)
    parts = []
    for item in items[::step][:count]:
        frames = min(item.frames, int(round(seconds * item.sample_rate)))
        audio = item.load(0, frames)
        length = frames / item.sample_rate
        notes = [Note(n.pitch, n.start, min(n.end, length), n.velocity) for n in item.notes if n.start < length - 0.05]
        parts.append({"name": item.name, "audio": audio, "notes": notes, "seconds": length, "rate": item.sample_rate})
    return parts


def score(parts: list[dict], render) -> tuple[dict[str, float], float]:
    """Mean metrics of ``render(part) -> audio`` over the parts, and audio seconds per wall second."""
    rows, spent = [], 0.0
    for part in parts:
        start = time.perf_counter()
        estimate = render(part)
        spent += time.perf_counter() - start
        rows.append(synthesis_metrics(part["audio"], estimate, part["rate"], part["notes"]))
    mean = {m: float(np.nanmean([r[m] for r in rows])) for m in METRICS}
    audio_seconds = sum(p["seconds"] for p in parts)
    return mean, audio_seconds / spent if spent > 0 else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="violin-ldm-chorales")
    parser.add_argument("--data", type=Path, default=Path("data/strings/test"))
    parser.add_argument("--parts", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--configs", default="heun:18,heun:8,euler:18,euler:35,dpmpp2m:10,dpmpp2m:18,heun:18:2")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/synthesis.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    synth = Synthesizer(args.model, device=args.device)
    model = synth.model
    parts = load_parts(args.data, args.parts, args.seconds)
    print(f"{len(parts)} violin parts × ≤{args.seconds:g} s from {args.data}; model {synth.name}; device {args.device}; "
          f"threads {torch.get_num_threads()}")
    results: dict[str, dict] = {}

    def record(label: str, render, timed: bool = False) -> None:
        mean, speed = score(parts, render)
        results[label] = {**mean, "speed": speed if timed else None}
        speed_text = f"{speed:8.1f}" if timed else "       –"
        print(f"| {label:<34} | " + " | ".join(f"{mean[m]:7.3f}" for m in METRICS) + f" | {speed_text} |", flush=True)

    print("| system | log-mel L1 ↓ | MR-STFT ↓ | pitch acc ↑ | SI-SDR ↑ | audio s / s |")
    print("|---|---:|---:|---:|---:|---:|")
    record("FluidSynth (reference, ceiling)", lambda p: p["audio"])
    record("sine + envelope model (floor)", lambda p: render_sine(p["notes"], p["seconds"], p["rate"], model.envelope_model, model.hop))
    record("VAE reconstruction", lambda p: model.vae.reconstruct(p["audio"].to(model.envelope_params.device)).cpu(), timed=True)
    for sampler, steps, cfg in parse_configs(args.configs):
        synth.sampler, synth.steps, synth.cfg = sampler, steps, cfg
        label = f"synth {sampler} {steps} steps" + (f" cfg {cfg:g}" if cfg != 1.0 else "")
        record(label, lambda p: synth.render_lines([p["notes"]], p["seconds"]), timed=True)

    synth.sampler, synth.steps, synth.cfg = "heun", 18, 1.0

    def oracle(part: dict) -> torch.Tensor:
        samples = part["audio"].shape[-1]
        frames = frame_count(samples, model.hop)
        pitch, voiced = pitch_from_notes(part["notes"], frames, model.hop, part["rate"])
        cond = condition_tensor(pitch, voiced, envelope_from_audio(part["audio"][0], model.hop))[None]
        return synth.render_condition(cond, samples)

    record("synth heun 18, reference envelope", oracle, timed=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.json) as tmp:
        tmp.write_text(json.dumps({"parts": [p["name"] for p in parts], "seconds": args.seconds, "model": synth.name,
                                   "device": args.device, "threads": torch.get_num_threads(), "results": results}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
