"""Does DisMix-LDM's decoder read the pitch latent? Its loss with the parts' own notes and with them moved.

    python benchmarks/dismix_pitch_reliance.py runs/dismix-ldm-small/checkpoints/last.ckpt \\
        --valid-dir data/random/valid --items 64

Why: a decoder that renders a plausible timbre and ignores ν reaches a diffusion loss not far from one
that renders the notes, so the loss curve cannot say whether the pitch is being learnt, and sampling and
judging swaps (``stemkit dismix eval``) takes minutes. This reads a training checkpoint (its live weights,
as validation does) and the run's validation items (same fixed draws, the VAE's cached latents), and
prints the EDM loss with the parts' own pitch latents, with every note moved a tritone, and the gap
(:func:`stemkit.training.dismix_ldm.pitch_reliance`, logged as ``valid/pitch_reliance`` by runs that have
it), once with the transcriber's notes and once with the true ones. The gap is 0 for a decoder deaf to
pitch and grows as it reads ν.
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    from stemkit.training.chorale_parts import ChoralePartsDataModule
    from stemkit.training.dismix_ldm import DisMixLDMSystem, pitch_reliance

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a DisMix-LDM training checkpoint (.ckpt)")
    parser.add_argument("--valid-dir", default="data/random/valid")
    parser.add_argument("--items", type=int, default=64, help="validation items (fixed draws, batches of 8; the first 32 are the run's own validation items)")
    parser.add_argument("--cache-dir", default="runs/latent-cache/chorale-parts", help="the VAE's latent cache")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()

    torch.manual_seed(0)
    system = DisMixLDMSystem.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
    data = ChoralePartsDataModule(train_dir=args.valid_dir, valid_dir=args.valid_dir, valid_items=args.items, batch_size=8,
                                  num_workers=0, latent_vae=system.hparams.vae, cache_dir=args.cache_dir)
    data.setup("validate")
    losses: dict[str, list[float]] = {"own": [], "moved": [], "own_true_roll": [], "moved_true_roll": []}
    with torch.no_grad():
        for index, batch in enumerate(data.val_dataloader()):
            _, latents, source_latents = system._terms(batch, 0.0)
            for suffix, roll in (("", None), ("_true_roll", batch["roll"])):
                own, moved = pitch_reliance(system.model, source_latents, latents, seed=index, roll=roll)
                losses["own" + suffix].append(own.item())
                losses["moved" + suffix].append(moved.item())
    step = torch.load(args.checkpoint, map_location="cpu", weights_only=False).get("global_step")
    result = {"checkpoint": args.checkpoint, "step": step, "items": args.items,
              **{key: sum(values) / len(values) for key, values in losses.items()}}
    for suffix, notes in (("", "the transcriber's notes"), ("_true_roll", "the true notes")):
        result["reliance" + suffix] = result["moved" + suffix] - result["own" + suffix]
        print(f"step {step}, {notes}: diffusion loss {result['own' + suffix]:.4f}, moved a tritone "
              f"{result['moved' + suffix]:.4f}, gap {result['reliance' + suffix]:+.4f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
