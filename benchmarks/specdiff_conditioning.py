"""Does a spectrogram-diffusion model use its notes? Its denoising error with the right note tokens against
another segment's, at fixed noise levels, on validation segments.

    python benchmarks/specdiff_conditioning.py --models specdiff-chorales runs/specdiff-cpu/checkpoints/last.ckpt \\
        --data data/studio/valid --items 16

A cheap probe of training progress, long before sampled audio is any good: each of ``--items`` fixed
valid segments (seeded draw) is noised at each σ with the same noise for every model, and denoised
twice — with its own tokens and with the next item's (its previous segment, the context, stays its
own). The column that matters is the gain: how much of the error the notes remove (0 % = the model
ignores them). Segments that start a piece read the context's null, as in training. An autoregressive
model (``objective: autoregressive``) has no noise: its one cell is the teacher-forced next-frame error
with the right notes against another segment's, the same question for the paper's baseline.
"""

from __future__ import annotations

import argparse

import torch

from stemkit.models import load_model
from stemkit.synthesis.specdiff import CONTEXT
from stemkit.training.specdiff_data import NoteSegments, collate_segments, recordings_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="shipped names, exports or .ckpt files")
    parser.add_argument("--data", default="data/studio/valid", help="a chorale folder of the valid split")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0])
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.data}: {args.items} segments; denoising MSE with the right notes / another segment's notes (gain)\n")
    print("| model | " + " | ".join(f"σ = {s:g}" for s in args.sigmas) + " | next frame (autoregressive) |")
    print("|---|" + "---:|" * (len(args.sigmas) + 1))
    for name in args.models:
        model, _ = load_model(name, family="specdiff")
        segments = NoteSegments(recordings_of({"chorales": args.data}, "valid"), model.config.vocabulary(), model.sample_rate,
                                args.items, seed=args.seed, fixed=True)
        batch = collate_segments([segments[i] for i in range(args.items)])
        other = torch.roll(torch.arange(args.items), 1)
        with torch.no_grad():
            mel, previous = model.codec.encode(batch["audio"]), model.codec.encode(batch["previous"])

            def error(tokens: torch.Tensor, mask: torch.Tensor, sigma: float | None) -> float:
                cond = model.conditions(tokens, mask, previous if model.config.context else None)
                if model.config.context:
                    cond["null:" + CONTEXT] = batch["first"]
                if sigma is None:
                    return float((model.predict_frames(mel, cond) - mel).pow(2).mean())
                noisy = mel + sigma * torch.randn(mel.shape, generator=torch.Generator().manual_seed(0))
                return float((model.denoiser(noisy, torch.full((args.items,), sigma), cond) - mel).pow(2).mean())

            def cell(sigma: float | None) -> str:
                right = error(batch["tokens"], batch["token_mask"], sigma)
                wrong = error(batch["tokens"][other], batch["token_mask"][other], sigma)
                return f"{right:.4f} / {wrong:.4f} ({100 * (1 - right / wrong):.0f} %)"

            if model.config.autoregressive:
                cells = ["–"] * len(args.sigmas) + [cell(None)]
            else:
                cells = [cell(sigma) for sigma in args.sigmas] + ["–"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
