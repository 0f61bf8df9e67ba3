"""Training DisMix's simple variant on the chord set, with the switches of the paper's ablations.

``use_kl: false`` is Table 1's −KLD row, ``use_bt: false`` its −L_BT row; −SB is a model setting
(``net.binarize: none``), since it changes what inference does too. Validation logs every loss term,
the transcriber's exact-set pitch accuracy, and how well the mixture is rendered from the *sum* of
the source latents (``valid/mix_from_sources``): the path an edited mixture takes.
"""

from __future__ import annotations

import torch

from stemkit.disentanglement.dismix_simple import DisMixSimple, DisMixSimpleConfig
from stemkit.disentanglement.losses import (
    barlow_twins_diagonal,
    gaussian_reconstruction,
    kl_to_standard_normal,
    mixture_tie,
    pitch_bce,
)
from stemkit.training.system import StemkitSystem


def dismix_losses(model: DisMixSimple, batch: dict, out: dict, use_kl: bool = True, use_bt: bool = True,
                  use_bce: bool = True, per_element: bool = False,
                  bce_over_classes: bool = False) -> dict[str, torch.Tensor]:
    """Every term of the objective for one batch (and ``total``, the sum of those switched on).

    ``per_element`` divides each term by the number of elements it sums (mel bins × frames, latent
    dimensions, pitch classes): the same terms, each an average, as most implementations write them.
    ``bce_over_classes`` keeps the BCE a sum over the pitch classes even then — the −log-likelihood of a
    source's whole pitch set, next to per-element reconstruction terms (measured: the transcriber learns
    several times faster, reconstruction is no worse; BENCHMARKS.md, DisMix)."""
    present = batch["present"].to(out["s"].dtype)
    latents = out["latents"]
    norm = model.normalize
    terms = {
        "rec_sources": gaussian_reconstruction(norm(out["sources"]), norm(batch["sources"]), present),
        "rec_mix": gaussian_reconstruction(norm(out["mix_from_embedding"]), norm(batch["mix"])),
        "tie": mixture_tie(out["e_m"], model.mixture_latent(out["s"], batch["present"])),
        "kl": kl_to_standard_normal(latents.tau_mean, latents.tau_logvar, present),
        "bce": pitch_bce(latents.logits, batch["pitch"], present),
    }
    mask = batch["present"].bool()
    terms["bt"] = barlow_twins_diagonal(latents.query_embedding[mask], latents.tau[mask])
    if per_element:
        cfg = model.config
        sizes = {"rec_sources": cfg.n_mels * cfg.frames, "rec_mix": cfg.n_mels * cfg.frames, "tie": cfg.embed_dim,
                 "kl": cfg.embed_dim, "bce": 1 if bce_over_classes else cfg.num_pitches, "bt": cfg.embed_dim}
        terms = {k: v / sizes[k] for k, v in terms.items()}
    used = ["rec_sources", "rec_mix", "tie"] + ["kl"] * use_kl + ["bce"] * use_bce + ["bt"] * use_bt
    terms["total"] = sum(terms[k] for k in used)
    return terms


def exact_pitch_accuracy(predicted: torch.Tensor, labels: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """The share of present sources whose predicted pitch set is exactly the labelled one."""
    exact = (predicted.bool() == labels.bool()).all(dim=-1)
    return exact[present.bool()].float().mean()


class DisMixSimpleSystem(StemkitSystem):
    """Trains a :class:`~stemkit.disentanglement.dismix_simple.DisMixSimple`.

    Args:
        net: the model's config.
        lr, warmup_steps, decay_steps, min_lr_ratio: Adam (the paper's lr 4e-4) and its schedule.
        use_kl, use_bt, use_bce: switch loss terms off for the ablations.
        per_element: each term an average over its elements instead of a sum (see :func:`dismix_losses`
            and :mod:`stemkit.disentanglement.losses`; summed terms left the transcriber at the label prior).
        bce_over_classes: with ``per_element``, the BCE still summed over the pitch classes (see
            :func:`dismix_losses`; averaged, it left the transcriber learning four times slower).
        init_from: start from this model's weights (a shipped name such as ``dismix-chords``, an export or
            a ``.ckpt`` of the same config), so training continues in another session from what shipped.
    """

    family = "dismix-simple"

    def __init__(self, net: DisMixSimpleConfig, lr: float = 4e-4, warmup_steps: int = 200, decay_steps: int = 0,
                 min_lr_ratio: float = 0.1, use_kl: bool = True, use_bt: bool = True, use_bce: bool = True,
                 per_element: bool = True, bce_over_classes: bool = True, init_from: str | None = None) -> None:
        super().__init__()
        if isinstance(net, dict):
            net = DisMixSimpleConfig(**net)
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "lr": lr, "warmup_steps": warmup_steps,
                                   "decay_steps": decay_steps, "min_lr_ratio": min_lr_ratio, "use_kl": use_kl,
                                   "use_bt": use_bt, "use_bce": use_bce, "per_element": per_element,
                                   "bce_over_classes": bce_over_classes, "init_from": init_from})
        self.config = net
        self.model = DisMixSimple(net)
        if init_from:
            self.start_from(init_from)

    def _terms(self, batch: dict, render_mixture: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
        out = self.model(batch["mix"], batch["queries"], batch["present"], render_mixture)
        hp = self.hparams
        terms = dismix_losses(self.model, batch, out, hp.use_kl, hp.use_bt, hp.use_bce, hp.per_element,
                              hp.get("bce_over_classes", False))
        return terms, out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms, _ = self._terms(batch)
        for name, value in terms.items():
            self.log(f"train/{name}", value, prog_bar=name == "total")
        return terms["total"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms, out = self._terms(batch, render_mixture=True)
        size = batch["mix"].shape[0]
        for name, value in terms.items():
            self.log(f"valid/{name}", value, batch_size=size, sync_dist=True, prog_bar=name == "total")
        norm = self.model.normalize
        mix_error = 0.5 * (norm(out["mix_from_sources"]) - norm(batch["mix"])).pow(2).sum(dim=(-2, -1)).mean()
        self.log("valid/mix_from_sources", mix_error, batch_size=size, sync_dist=True)
        accuracy = exact_pitch_accuracy(self.model.pitch_sets(out["latents"].logits), batch["pitch"], batch["present"])
        self.log("valid/pitch_acc", accuracy, batch_size=size, sync_dist=True, prog_bar=True)

    def configure_optimizers(self):
        return self.adam_with_schedule(self.model.parameters())
