"""Our LaSAFT against HTDemucs and BS-RoFormer, trained from scratch on the same chorales for the same steps.

    python benchmarks/separation.py --train data/chorales/train --steps 300 --threads 2

Every model sees the identical stream of remixed training crops (same seed, same batch size), for
the same number of optimizer steps, each with its own published loss (LaSAFT: complex-spectrogram
MSE on one named target per crop; HTDemucs: L1 on all waveforms; BS-RoFormer: L1 + multi-resolution
STFT, from its package). The peers are sized down for a CPU (``PEERS`` below) to about LaSAFT-small's
cost per step. Each model then separates the same test-split excerpts (``--test-tracks`` chorales ×
``--test-seconds``) in a fresh process, which gives separation speed and peak RAM, and the estimates
are scored with museval next to the mixture and IRM oracles. Prints the Markdown table that
BENCHMARKS.md records.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import torch
import yaml

from stemkit.audio.io import load_audio, save_audio
from stemkit.data.datasets import CropConfig, StemCropDataset
from stemkit.data.generate import GenerateConfig, generate
from stemkit.data.layout import list_tracks
from stemkit.data.tracks import load_stem_tracks
from stemkit.evaluation import evaluate_dataset
from stemkit.separation.lasaft import LaSAFT, LaSAFTConfig
from stemkit.separation.separator import separate_with_model

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["soprano", "alto", "tenor", "bass"]
SAMPLE_RATE = 16000

# Peers sized for a CPU budget; the architecture classes are the packages' own.
PEERS = {
    "htdemucs": dict(channels=16, depth=4, nfft=1024, t_layers=2, t_heads=4, dconv_comp=4, segment=2.016, samplerate=SAMPLE_RATE),
    "bs-roformer": dict(
        dim=48,
        depth=2,
        heads=4,
        dim_head=16,
        mask_estimator_depth=1,
        num_residual_streams=1,
        stft_n_fft=1024,
        stft_hop_length=512,
        stft_win_length=1024,
        dim_freqs_in=513,
        # 513 bins: fine bands where the low voices' harmonics are, wide ones above
        freqs_per_bands=(2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 2 + (33,),
        multi_stft_resolutions_window_sizes=(2048, 1024, 512, 256),
        multi_stft_hop_size=256,
        flash_attn=False,
    ),
}


def lasaft_config() -> LaSAFTConfig:
    config = yaml.safe_load((REPO / "configs" / "lasaft" / "chorales_small.yaml").read_text())
    return LaSAFTConfig(**config["model"]["init_args"]["net"])


def build(name: str) -> torch.nn.Module:
    if name == "lasaft":
        return LaSAFT(lasaft_config())
    if name == "htdemucs":
        from demucs.htdemucs import HTDemucs

        return HTDemucs(sources=TARGETS, audio_channels=1, **PEERS[name])
    if name == "bs-roformer":
        from bs_roformer import BSRoformer

        return BSRoformer(stereo=False, num_stems=len(TARGETS), **PEERS[name])
    raise ValueError(f"unknown model {name}")


def loss_of(name: str, model: torch.nn.Module, batch: dict) -> torch.Tensor:
    if name == "lasaft":
        from stemkit.training.separation import lasaft_loss

        return lasaft_loss(model, batch)
    if name == "htdemucs":
        return torch.nn.functional.l1_loss(model(batch["mix"]), batch["stems"])
    return model(batch["mix"], target=batch["stems"])


def separate_windows(name: str, model: torch.nn.Module, chunks: torch.Tensor) -> torch.Tensor:
    """``[B, 1, T]`` → ``[B, S, 1, T]`` for the peers (LaSAFT goes through ``separate_with_model``)."""
    out = model(chunks)
    return out if out.dim() == 4 else out.unsqueeze(2)


def train(name: str, train_dir: str, steps: int, batch_size: int, segment: float, threads: int, out: str) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name).train()
    dataset = StemCropDataset(load_stem_tracks(train_dir), CropConfig(segment_seconds=segment, items_per_epoch=steps * batch_size,
                                                                      conditioning="index", seed=0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3 if name == "lasaft" else 3e-4)
    start = time.perf_counter()
    losses = []
    for step, batch in enumerate(loader):
        loss = loss_of(name, model, batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            print(f"  {name} step {step + 1}/{steps} loss {sum(losses[-50:]) / 50:.4f}", flush=True)
    wall = time.perf_counter() - start
    torch.save(model.state_dict(), Path(out) / f"{name}.pt")
    params = sum(p.numel() for p in model.parameters())
    (Path(out) / f"{name}.train.json").write_text(json.dumps({"params": params, "train_seconds": wall, "steps": steps}))


def separate(name: str, test_dir: str, threads: int, out: str) -> None:
    torch.set_num_threads(threads)
    model = build(name)
    model.load_state_dict(torch.load(Path(out) / f"{name}.pt", weights_only=True))
    model.eval()
    audio_seconds = compute = 0.0
    segment = lasaft_config().segment_samples if name == "lasaft" else int(2.016 * SAMPLE_RATE)
    for track in list_tracks(test_dir):
        mix, rate = load_audio(track.mix)
        start = time.perf_counter()
        with torch.inference_mode():
            if name == "lasaft":
                stems = separate_with_model(model, mix, list(range(len(TARGETS))), overlap=0.25, batch_size=4)
            else:
                from stemkit.audio.chunking import overlap_add

                stems = overlap_add(lambda c: separate_windows(name, model, c), mix, segment, 0.25, 4)
        compute += time.perf_counter() - start
        audio_seconds += mix.shape[-1] / rate
        for target, stem in zip(TARGETS, stems):
            save_audio(Path(out) / name / track.name / f"{target}.wav", stem, rate, subtype="FLOAT")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB on Linux
    (Path(out) / f"{name}.sep.json").write_text(json.dumps({"speed": audio_seconds / compute, "peak_ram_mib": peak}))


def in_child(fn, *args) -> None:
    """Run in a fresh process, so peak RAM is the model's own and a crash names the model."""
    process = mp.get_context("spawn").Process(target=fn, args=args)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"{fn.__name__}{args[:1]} failed with exit code {process.exitcode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="data/chorales/train")
    parser.add_argument("--test", default="data/bench_test", help="test excerpts (made here if absent)")
    parser.add_argument("--test-tracks", type=int, default=12)
    parser.add_argument("--test-seconds", type=float, default=30.0)
    parser.add_argument("--models", default="lasaft,htdemucs,bs-roformer")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment", type=float, default=2.016)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench_separation")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generate(GenerateConfig(out=Path(args.test), split="test", num=args.test_tracks, seconds=args.test_seconds, workers=2, progress=False))
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    rows = {}
    for name in names:
        print(f"training {name} for {args.steps} steps", flush=True)
        in_child(train, name, args.train, args.steps, args.batch_size, args.segment, args.threads, str(out))
        in_child(separate, name, args.test, args.threads, str(out))
        rows[name] = {**json.loads((out / f"{name}.train.json").read_text()), **json.loads((out / f"{name}.sep.json").read_text())}
        rows[name]["result"] = evaluate_dataset(args.test, estimates=out / name, workers=2, progress=False)
    oracles = {k: evaluate_dataset(args.test, oracle=o, workers=2, progress=False) for k, o in (("mixture", "mixture"), ("IRM", "irm"))}
    (out / "results.json").write_text(json.dumps({"rows": rows, "oracles": oracles}, indent=1, default=str))
    print(f"\n{args.test_tracks} test-split chorales × {args.test_seconds:.0f} s, {args.steps} steps × batch {args.batch_size} "
          f"× {args.segment} s crops, {args.threads} threads")
    print("| model | " + " | ".join(TARGETS) + " | avg cSDR | params | train time | sep. speed (× real time) | peak RAM |")
    print("|---|" + "---:|" * (len(TARGETS) + 5))
    for name, row in {**{k: {"result": v} for k, v in oracles.items()}, **rows}.items():
        per = row["result"]["per_target"]
        cells = [f"{per[t]['cSDR']:.2f}" for t in TARGETS] + [f"**{row['result']['average']['cSDR']:.2f}**"]
        if "params" in row:
            cells += [f"{row['params'] / 1e6:.2f} M", f"{row['train_seconds'] / 60:.1f} min", f"{row['speed']:.1f}",
                      f"{row['peak_ram_mib']:.0f} MiB"]
        else:
            cells += ["–"] * 4
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
