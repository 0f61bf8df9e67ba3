"""DisMix's Table 1 on the chord set: swap pitch latents between the sources of a mixture and judge the result.

For every test mixture each source is encoded with a query (the same instrument from another test
mixture), the pitch latents ν are permuted among the mixture's sources (a derangement: every source
gets another's pitches) and each τ_i is decoded with its new ν. Judged by the classifiers:

- **disentanglement**: the decoded source's pitches should be the donor's, its instrument its own;
- **mixture rendering**: the decoder renders the edited mixture from Σ s_i, the model re-extracts
  every source from that mel with the original queries, and the same judges score the result.

Beyond the paper, a swap is also checked against **ground truth**: the note bank renders the donor's
notes on the source's own instrument (same soundfont, velocity and crop), so the decoded mel can be
compared with what it should have been, and with the original source it came from. Per instrument
pair (the timbre's instrument, the donor's) the report gives both distances and how often the
output is closer to the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stemkit.data.chords import CHORD_INSTRUMENTS, LOWEST_PITCH, crop_samples, load_banks, load_split, log_mel
from stemkit.disentanglement.classifier import MelClassifier
from stemkit.disentanglement.dismix_simple import DisMixSimple
from stemkit.errors import StemkitError
from stemkit.training.chord_data import draw_queries, instrument_pools


@dataclass
class SwapPlan:
    """Which donor each present source takes its pitches from: ``donor[m, k]`` is a slot of mixture m (−1 if absent)."""

    donor: np.ndarray


def plan_swaps(present: np.ndarray, seed: int) -> SwapPlan:
    """A derangement of each mixture's present sources (for three, one of the two cycles, drawn)."""
    rng = np.random.default_rng(seed)
    donor = np.full(present.shape, -1, np.int64)
    for m in range(len(present)):
        slots = np.flatnonzero(present[m])
        shift = 1 if len(slots) == 2 or rng.random() < 0.5 else len(slots) - 1
        donor[m, slots] = np.roll(slots, -shift)
    return SwapPlan(donor)


def check_compatible(model: DisMixSimple, classifier: MelClassifier, settings: dict) -> None:
    """Refuse, in one line, a model or classifier made for other mels, pitches or instruments than the dataset's."""
    wanted = {"n_mels": settings["n_mels"], "frames": settings["crop_frames"], "num_pitches": settings["num_pitches"],
              "lowest_pitch": settings["lowest_pitch"], "instruments": list(settings["instruments"])}
    for who, config in (("model", model.config), ("classifier", classifier.config)):
        for key, value in wanted.items():
            if getattr(config, key) != value:
                raise StemkitError(f"the {who} has {key} = {getattr(config, key)}, the dataset {value}: they do not belong together")


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def swap_outputs(model: DisMixSimple, mix: torch.Tensor, queries: torch.Tensor, present: torch.Tensor,
                 donor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded sources after the swap ``[B, S, mels, frames]``, and the mixture rendered from their latents."""
    latents = model.encode(model.embed_mixture(mix), queries)
    nu = torch.gather(latents.nu, 1, donor.clamp_min(0).unsqueeze(-1).expand_as(latents.nu))
    s = model.combine(latents.tau, nu)
    return model.decode(s), model.decode(model.mixture_latent(s, present))


@torch.no_grad()
def reextract(model: DisMixSimple, mix: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Every queried source of a (rendered) mixture mel, decoded: ``[B, S, mels, frames]``."""
    latents = model.encode(model.embed_mixture(mix), queries)
    return model.decode(model.combine(latents.tau, latents.nu))


def truth_of_swap(arrays: dict, banks: list[np.ndarray], donor: np.ndarray, m: int, k: int) -> np.ndarray:
    """The donor's notes played by source k's own instrument, soundfont and velocity, at the mixture's crop."""
    pitches = np.flatnonzero(arrays["pitch"][m, donor[m, k]]) + LOWEST_PITCH
    bank = banks[int(arrays["soundfont"][m, k])]
    start = int(arrays["crop_start"][m])
    crop = slice(start, start + crop_samples())
    return sum(np.asarray(bank[k, p - LOWEST_PITCH, int(arrays["velocity"][m, k]), crop]) for p in pitches)


def evaluate_swaps(model: DisMixSimple, classifier: MelClassifier, root: str | Path, split: str = "test", seed: int = 0,
                   limit: int | None = None, batch: int = 256, progress: bool = True) -> dict:
    """Table 1's four accuracies (and the classifiers' own, and the ground-truth check) on ``split`` of ``root``."""
    from tqdm.auto import tqdm

    from stemkit.data.chords import dataset_settings

    check_compatible(model, classifier, dataset_settings(root))
    model.eval()
    classifier.eval()
    arrays = load_split(root, split)
    count = len(arrays["mix"]) if limit is None else min(limit, len(arrays["mix"]))
    arrays = {k: v[:count] for k, v in arrays.items()}
    pools = instrument_pools(arrays)
    rng = np.random.default_rng(seed)
    queries = np.stack([draw_queries(arrays, m, rng, pools) for m in range(count)])
    donor = plan_swaps(arrays["present"], seed + 1).donor
    banks = load_banks(root)

    present = arrays["present"]
    pitch = arrays["pitch"]
    m_idx, k_idx = np.nonzero(present)
    target_pitch = pitch[m_idx, donor[m_idx, k_idx]]
    swapped_all, rendered_all = [], []
    for part in tqdm(list(_batches(count, batch)), desc="swapping", unit="batch", disable=not progress):
        mix = torch.from_numpy(arrays["mix"][part].astype(np.float32))
        q = torch.from_numpy(queries[part])
        p = torch.from_numpy(present[part])
        swapped, mixture = swap_outputs(model, mix, q, p, torch.from_numpy(donor[part]))
        swapped_all.append(swapped)
        rendered_all.append(reextract(model, mixture, q))
    swapped = torch.cat(swapped_all)[m_idx, k_idx]
    rendered = torch.cat(rendered_all)[m_idx, k_idx]
    real = torch.from_numpy(arrays["sources"][m_idx, k_idx].astype(np.float32))

    def judge(mels: torch.Tensor, pitches: np.ndarray) -> tuple[float, float]:
        got_pitch, got_instrument = classifier.predict(mels)
        exact = (got_pitch.numpy() == pitches.astype(bool)).all(axis=1)
        return float(exact.mean()), float((got_instrument.numpy() == k_idx).mean())

    result = {"split": split, "mixtures": int(count), "sources": int(len(m_idx)), "seed": seed}
    result["classifier_pitch"], result["classifier_instrument"] = judge(real, pitch[m_idx, k_idx])
    result["disentangle_pitch"], result["disentangle_instrument"] = judge(swapped, target_pitch)
    result["render_pitch"], result["render_instrument"] = judge(rendered, target_pitch)
    result["ground_truth"] = ground_truth_check(model, arrays, banks, donor, m_idx, k_idx, swapped, real)
    return result


def ground_truth_check(model: DisMixSimple, arrays: dict, banks: list[np.ndarray], donor: np.ndarray, m_idx: np.ndarray,
                       k_idx: np.ndarray, swapped: torch.Tensor, real: torch.Tensor) -> dict:
    """Per (timbre instrument, donor instrument): mean squared log-mel distance (standardised units) of the
    swapped output to the truth and to the original source, and the share of outputs closer to the truth."""
    truth_audio = np.stack([truth_of_swap(arrays, banks, donor, m, k) for m, k in zip(m_idx, k_idx)])
    truth = torch.from_numpy(log_mel(truth_audio))
    norm = model.normalize
    to_truth = (norm(swapped) - norm(truth)).pow(2).mean(dim=(-2, -1)).numpy()
    to_original = (norm(swapped) - norm(real)).pow(2).mean(dim=(-2, -1)).numpy()
    names = [name for name, _ in CHORD_INSTRUMENTS]
    donors = donor[m_idx, k_idx]
    pairs = {}
    for a in range(len(names)):
        for b in range(len(names)):
            chosen = (k_idx == a) & (donors == b)
            if chosen.any():
                pairs[f"{names[a]}<-{names[b]}"] = {
                    "sources": int(chosen.sum()),
                    "to_truth": float(to_truth[chosen].mean()),
                    "to_original": float(to_original[chosen].mean()),
                    "closer_to_truth": float((to_truth[chosen] < to_original[chosen]).mean()),
                }
    return {"to_truth": float(to_truth.mean()), "to_original": float(to_original.mean()),
            "closer_to_truth": float((to_truth < to_original).mean()), "pairs": pairs}


def format_table(result: dict) -> str:
    """Table 1's row for one model, the classifiers' own accuracy, and the ground-truth check, as text."""
    gt = result["ground_truth"]
    lines = [
        f"{result['split']} split: {result['mixtures']} mixtures, {result['sources']} sources",
        f"classifiers on real sources: pitch {100 * result['classifier_pitch']:.2f} %, "
        f"instrument {100 * result['classifier_instrument']:.2f} %",
        f"disentanglement (pitch swapped): pitch {100 * result['disentangle_pitch']:.2f} %, "
        f"instrument {100 * result['disentangle_instrument']:.2f} %",
        f"mixture rendering: pitch {100 * result['render_pitch']:.2f} %, instrument {100 * result['render_instrument']:.2f} %",
        f"ground truth (log-mel MSE, standardised): to truth {gt['to_truth']:.3f}, to original {gt['to_original']:.3f}, "
        f"closer to truth {100 * gt['closer_to_truth']:.1f} %",
    ]
    for pair, row in gt["pairs"].items():
        lines.append(f"  {pair:16s} n={row['sources']:5d}  to truth {row['to_truth']:.3f}  to original "
                     f"{row['to_original']:.3f}  closer {100 * row['closer_to_truth']:.1f} %")
    return "\n".join(lines)
