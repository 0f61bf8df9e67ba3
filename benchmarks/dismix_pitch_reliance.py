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
pitch and grows as it reads ν. It also prints how far apart the projector puts the ν of different held
notes, against ν's own size, now and at initialisation (:func:`projector_spread`), and how many of the
transcriber's classes the binarised roll turns on per frame (:func:`roll_density`): one for a monophonic
part, many for a transcriber that has learnt a code of its own rather than the notes (Table 3's M2).

``--p-mean`` draws σ as another run was trained (so runs trained with other ``edm.p_mean`` compare on
one footing), and ``--sigmas`` adds the gap at single noise levels: the notes matter most where the noisy
input no longer shows them (σ of the order of the latents' std and above), and the training
distribution's average can hide that.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from contextlib import contextmanager
from pathlib import Path

import torch


def projector_spread(model, pitches: tuple[int, ...] = (48, 54, 60, 66)) -> dict[str, float]:
    """ν of a held note for each of ``pitches``: its RMS, and the mean RMS distance between two pitches' ν.

    Why: a projector that maps every pitch to (almost) the same ν has thrown the pitch away before the
    decoder could read it; the distance against the RMS says how much of ν still tells notes apart."""
    import itertools

    rolls = torch.zeros(len(pitches), model.config.pitch_classes, 40)
    for row, pitch in enumerate(pitches):
        rolls[row, pitch] = 1.0
    with torch.no_grad():
        nu = model.project_roll(rolls, 10)[..., 3:7].mean(dim=-1)  # frames away from the edges
    rms = nu.pow(2).mean(dim=1).sqrt()
    pairs = [(nu[a] - nu[b]).pow(2).mean().sqrt() for a, b in itertools.combinations(range(len(pitches)), 2)]
    return {"nu_rms": rms.mean().item(), "pitch_distance": torch.stack(pairs).mean().item()}


def roll_density(logits: torch.Tensor, generator: torch.Generator) -> tuple[float, float]:
    """Classes on per frame of the binarised roll: at inference's threshold 0.5, and at training's h ~ U(0, 1)."""
    probabilities = torch.sigmoid(logits)
    random_thresholds = torch.rand(probabilities.shape, generator=generator)
    return ((probabilities > 0.5).float().sum(dim=-2).mean().item(),
            (probabilities > random_thresholds).float().sum(dim=-2).mean().item())


@contextmanager
def noise_levels(model, p_mean: float, p_std: float):
    """Draw the decoder's training σ from ``ln σ ~ N(p_mean, p_std²)`` inside the block (``p_std`` 0: one σ)."""
    denoiser = model.denoiser
    saved = denoiser.config
    denoiser.config = dataclasses.replace(saved, p_mean=p_mean, p_std=p_std)
    try:
        yield
    finally:
        denoiser.config = saved


def main() -> None:
    from stemkit.training.chorale_parts import ChoralePartsDataModule
    from stemkit.training.dismix_ldm import DisMixLDMSystem, pitch_reliance

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a DisMix-LDM training checkpoint (.ckpt)")
    parser.add_argument("--valid-dir", default="data/random/valid")
    parser.add_argument("--items", type=int, default=64, help="validation items (fixed draws, batches of 8; the first 32 are the run's own validation items)")
    parser.add_argument("--cache-dir", default="runs/latent-cache/chorale-parts", help="the VAE's latent cache")
    parser.add_argument("--p-mean", type=float, help="draw σ with this P_mean (and the model's P_std) instead of the model's own")
    parser.add_argument("--sigmas", type=float, nargs="*", default=[], help="also give the gap at each of these single σ")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    if any(not (math.isfinite(sigma) and sigma > 0) for sigma in args.sigmas):
        parser.error(f"--sigmas must be positive and finite, got {args.sigmas}")
    if args.p_mean is not None and not math.isfinite(args.p_mean):
        parser.error(f"--p-mean must be a finite number, got {args.p_mean}")
    if args.items < 1:
        parser.error(f"--items must be at least 1, got {args.items}")
    if not Path(args.checkpoint).is_file():
        parser.error(f"no checkpoint at {args.checkpoint}")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        parser.error(f"--json {args.json}: its folder does not exist")

    torch.manual_seed(0)
    system = DisMixLDMSystem.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
    data = ChoralePartsDataModule(train_dir=args.valid_dir, valid_dir=args.valid_dir, valid_items=args.items, batch_size=8,
                                  num_workers=0, latent_vae=system.hparams.vae, cache_dir=args.cache_dir)
    data.setup("validate")
    own_config = system.model.denoiser.config
    draws = {"": (own_config.p_mean if args.p_mean is None else args.p_mean, own_config.p_std)}
    draws.update({f"_sigma{sigma:g}": (math.log(sigma), 0.0) for sigma in args.sigmas})
    losses: dict[str, list[float]] = {}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for index, batch in enumerate(data.val_dataloader()):
            _, latents, source_latents = system._terms(batch, 0.0)
            at_half, at_random = roll_density(latents.logits, generator)
            losses.setdefault("roll_classes_on", []).append(at_half)
            losses.setdefault("roll_classes_on_training", []).append(at_random)
            for level, (p_mean, p_std) in draws.items():
                for suffix, roll in (("", None), ("_true_roll", batch["roll"])):
                    with noise_levels(system.model, p_mean, p_std):
                        own, moved = pitch_reliance(system.model, source_latents, latents, seed=index, roll=roll)
                    losses.setdefault("own" + suffix + level, []).append(own.item())
                    losses.setdefault("moved" + suffix + level, []).append(moved.item())
    step = torch.load(args.checkpoint, map_location="cpu", weights_only=False).get("global_step")
    result = {"checkpoint": args.checkpoint, "step": step, "items": args.items, "p_mean": draws[""][0],
              **{key: sum(values) / len(values) for key, values in losses.items()}, **projector_spread(system.model)}
    torch.manual_seed(0)
    fresh = projector_spread(type(system.model)(system.model.config).eval())
    result.update(fresh_nu_rms=fresh["nu_rms"], fresh_pitch_distance=fresh["pitch_distance"])
    print(f"step {step}: a held note's ν has RMS {result['nu_rms']:.4f} and lies {result['pitch_distance']:.4f} from another "
          f"pitch's (at initialisation {fresh['nu_rms']:.4f} and {fresh['pitch_distance']:.4f})")
    print(f"step {step}: the binarised roll turns on {result['roll_classes_on']:.2f} classes per frame at threshold 0.5 "
          f"({result['roll_classes_on_training']:.2f} at training's random thresholds)")
    for level in draws:
        where = f"σ = {float(level[6:]):g}" if level else f"ln σ ~ N({draws[''][0]:g}, {draws[''][1]:g}²)"
        for suffix, notes in (("", "the transcriber's notes"), ("_true_roll", "the true notes")):
            key = suffix + level
            result["reliance" + key] = result["moved" + key] - result["own" + key]
            print(f"step {step}, {where}, {notes}: diffusion loss {result['own' + key]:.4f}, moved a tritone "
                  f"{result['moved' + key]:.4f}, gap {result['reliance' + key]:+.4f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
