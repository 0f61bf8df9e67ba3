"""Lightning system for conditioned separators (LaSAFT): the training loop stays out of the model.

Training follows the paper: one random target per crop, named by its index; loss = MSE between the
estimated and the true complex spectrograms.

Remix-aware training (``remix_probability > 0``) prepares a model for progressive inference: in a
share of the crops the input is ``(1 − β)·mix + β·x̂`` where ``x̂`` is the model's own current estimate
of the target (computed without gradient, as the previous step of progressive inference would), β is
drawn from the inference schedule and given to the network as a condition. The loss still asks for
the true target, so the network learns to correct the estimate it is handed rather than to copy it —
which a frozen model given ``β`` it never saw cannot do. Boosting the *true* target instead
(``remix_oracle_share``) teaches the network to trust its input too much, since at inference the
boosted part carries the previous step's errors. Validation separates fixed excerpts of the valid split
with the same chunked inference as ``stemkit separate`` and logs raw L1 (the paper's validation loss)
and the SiSEC metrics (cSDR, uSDR) per target, so checkpoints are chosen by what users measure.
"""

from __future__ import annotations

import numpy as np
import torch

from stemkit.errors import StemkitError
from stemkit.metrics.separation import aggregate, evaluate_track
from stemkit.models import load_model
from stemkit.separation.lasaft import LaSAFT, LaSAFTConfig
from stemkit.separation.schedules import beta_schedule
from stemkit.separation.separator import separate_with_model
from stemkit.training.system import StemkitSystem


def lasaft_loss(
    model: LaSAFT,
    batch: dict,
    beta: torch.Tensor | None = None,
    query_vectors: torch.Tensor | None = None,
    use_query: torch.Tensor | None = None,
) -> torch.Tensor:
    """The paper's training loss: MSE between estimated and true complex spectrograms of the named target.

    With ``beta`` (``[B]``, remix-aware training) each crop whose β > 0 is first remixed with the
    model's own estimate of its target, ``(1 − β)·mix + β·x̂``, and β is passed as a condition.
    With ``query_vectors`` (``[B, embedding_dim]``, from the batch's query clips), the crops where
    ``use_query`` is true are conditioned on their query instead of the index and asked for every
    stem the query's instrument plays (``query_target``).
    """
    mix, index = batch["mix"], batch["target_index"]
    if beta is not None:
        mix = remix_with_own_estimate(model, mix, index, beta, oracle=batch.get("remix_oracle"), target=batch["target"])
    condition, target = model.condition(index, beta), batch["target"]
    if query_vectors is not None and use_query is not None:
        condition = torch.where(use_query[:, None], model.with_beta(query_vectors, beta), condition)
        target = torch.where(use_query[:, None, None], batch["query_target"], target)
    estimate = model.forward_spec(model.spectrogram(mix), condition)
    return torch.nn.functional.mse_loss(estimate, model.spectrogram(target))


def remix_with_own_estimate(
    model: LaSAFT,
    mix: torch.Tensor,
    index: torch.Tensor,
    beta: torch.Tensor,
    oracle: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(1 − β)·mix + β·x̂`` per crop, where ``x̂`` is the model's plain (β = 0) estimate, or the true
    target where ``oracle`` is true. Crops with β = 0 are returned unchanged."""
    boosted = beta > 0
    if not bool(boosted.any()):
        return mix
    with torch.no_grad():
        previous, _ = model(mix[boosted], index[boosted], torch.zeros_like(beta[boosted]))
    if oracle is not None and target is not None:
        use_truth = oracle[boosted].view(-1, 1, 1)
        previous = torch.where(use_truth, target[boosted], previous)
    weight = beta[boosted].view(-1, 1, 1).to(mix.dtype)
    mix = mix.clone()
    mix[boosted] = (1.0 - weight) * mix[boosted] + weight * previous
    return mix


def sample_remix_betas(
    batch: int, probability: float, schedule: str, max_steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """β per crop: 0 with probability ``1 − probability``, else the β of a random later step
    (2..N) of the schedule run with a random step count N ∈ 2..``max_steps``."""
    betas = torch.zeros(batch)
    for i in range(batch):
        if torch.rand((), generator=generator).item() >= probability:
            continue
        steps = int(torch.randint(2, max_steps + 1, (), generator=generator))
        step = int(torch.randint(1, steps, (), generator=generator))
        betas[i] = beta_schedule(schedule, steps)[step]
    return betas


class LaSAFTSystem(StemkitSystem):
    """Trains a :class:`~stemkit.separation.lasaft.LaSAFT`.

    Args:
        net: the architecture (sample rate, channels and targets must match the data).
        lr: Adam learning rate (the paper: 1e-3).
        warmup_steps: linear warm-up of the learning rate.
        decay_steps: cosine decay to ``min_lr_ratio · lr`` over this many steps (0 = constant).
        min_lr_ratio: floor of the decay.
        valid_overlap: overlap of the chunked inference in validation.
        valid_metrics: compute cSDR (museval) in validation, not only L1 and uSDR.
        init_from: start from these weights (a shipped name, ``.safetensors`` or ``.ckpt``); layers the
            source lacks (the β embedding of a remix-aware model) keep their initialisation.
        remix_probability: share of crops trained remix-aware (0 = the paper's training).
        remix_schedule: the inference schedule β is drawn from (linear, cosine, karras:ρ, ...).
        remix_max_steps: largest progressive step count β is drawn for.
        remix_oracle_share: share of remixed crops that boost the true target instead of the estimate.
        query_probability: share of crops conditioned on a query clip instead of the target index
            (needs ``net.query_encoder`` and data with ``conditioning: query``). The model keeps a
            running mean of the query vectors of each of ``net.instruments`` for ``--instrument``.
    """

    family = "lasaft"

    def __init__(
        self,
        net: LaSAFTConfig,
        lr: float = 1e-3,
        warmup_steps: int = 200,
        decay_steps: int = 0,
        min_lr_ratio: float = 0.1,
        valid_overlap: float = 0.25,
        valid_metrics: bool = True,
        init_from: str | None = None,
        remix_probability: float = 0.0,
        remix_schedule: str = "linear",
        remix_max_steps: int = 4,
        remix_oracle_share: float = 0.0,
        query_probability: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(net, dict):
            net = LaSAFTConfig(**net)
        if not 0.0 <= query_probability <= 1.0:
            raise ValueError("query_probability must be in [0, 1]")
        if query_probability > 0 and not net.query_encoder:
            raise ValueError("query_probability > 0 needs a model with a query encoder (net.query_encoder: true)")
        if not 0.0 <= remix_probability <= 1.0 or not 0.0 <= remix_oracle_share <= 1.0:
            raise ValueError("remix_probability and remix_oracle_share must be in [0, 1]")
        if remix_max_steps < 2:
            raise ValueError(f"remix_max_steps must be at least 2, got {remix_max_steps}")
        beta_schedule(remix_schedule, remix_max_steps)  # fails early on a bad schedule
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "lr": lr, "warmup_steps": warmup_steps,
                                   "decay_steps": decay_steps, "min_lr_ratio": min_lr_ratio,
                                   "valid_overlap": valid_overlap, "valid_metrics": valid_metrics,
                                   "init_from": init_from, "remix_probability": remix_probability,
                                   "remix_schedule": remix_schedule, "remix_max_steps": remix_max_steps,
                                   "remix_oracle_share": remix_oracle_share, "query_probability": query_probability})
        self.config = net
        self.model = LaSAFT(net)
        if init_from:
            load_matching_weights(self.model, init_from)
        self._valid_results: dict[str, dict] = {}

    def on_fit_start(self) -> None:
        self.check_data_matches(self.config)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        beta = None
        hp = self.hparams
        if hp.remix_probability > 0:
            size = batch["mix"].shape[0]
            beta = sample_remix_betas(size, hp.remix_probability, hp.remix_schedule, hp.remix_max_steps).to(self.device)
            if hp.remix_oracle_share > 0:
                batch = dict(batch, remix_oracle=(torch.rand(size) < hp.remix_oracle_share).to(self.device))
            self.log("train/remixed_share", (beta > 0).float().mean(), batch_size=size)
        query_vectors = use_query = None
        if hp.get("query_probability", 0.0) > 0:
            if "query" not in batch:
                raise StemkitError("query training needs query clips: set data.conditioning: query")
            use_query = torch.rand(batch["mix"].shape[0], device=self.device) < hp.query_probability
            query_vectors = self.model.query_condition(batch["query"])
            chosen = use_query.tolist()
            self.model.update_instrument_conditions([n for n, q in zip(batch["instrument"], chosen) if q], query_vectors[use_query])
        loss = lasaft_loss(self.model, batch, beta, query_vectors, use_query)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._valid_results = {}

    def validation_step(self, item: dict, batch_idx: int) -> None:
        cfg = self.config
        estimates = separate_with_model(self.model, item["mix"], list(range(len(cfg.targets))), overlap=self.hparams.valid_overlap,
                                        batch_size=4, device=self.device)
        references = {t: item["stems"][i] for i, t in enumerate(cfg.targets)}
        estimates = {t: estimates[i] for i, t in enumerate(cfg.targets)}
        l1 = float(np.mean([(estimates[t] - references[t]).abs().mean().item() for t in cfg.targets]))
        self.log("valid/l1", l1, batch_size=1, sync_dist=True)
        if self.hparams.valid_metrics:
            self._valid_results[item["name"]] = evaluate_track(references, estimates, cfg.sample_rate)

    def on_validation_epoch_end(self) -> None:
        if not self._valid_results:
            return
        per_target, average = aggregate(self._valid_results)  # the same reduction `stemkit eval` uses
        for target, figures in per_target.items():
            for metric in ("cSDR", "uSDR"):
                self.log(f"valid/{metric}_{target}", figures[metric], sync_dist=True)
        self.log("valid/cSDR", average["cSDR"], prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return self.adam_with_schedule(self.parameters())


#: config fields that add conditioning inputs without changing the separating network
OPTIONAL_CONDITIONING = ("beta_condition", "query_encoder", "instruments")


def load_matching_weights(model: LaSAFT, source: str) -> None:
    """Copy weights from ``source`` into ``model``; only layers the source lacks may stay new.

    The architectures must agree except for the optional conditioning parts (``beta_condition``,
    ``query_encoder``, ``instruments``), which is what lets a remix-aware or query-by-example model
    start from a plain one.
    """
    donor, meta = load_model(source, family="lasaft")
    mine, theirs = model.config.to_dict(), donor.config.to_dict()
    for key in OPTIONAL_CONDITIONING:
        mine.pop(key), theirs.pop(key)
    if mine != theirs:
        changed = sorted(k for k in mine if mine[k] != theirs.get(k))
        raise StemkitError(f"init_from {source}: architecture differs in {', '.join(changed)}")
    state = {k: v for k, v in donor.state_dict().items() if not k.startswith("instrument_")}  # re-learnt for new names
    missing, unexpected = model.load_state_dict(state, strict=False)
    new_parts = ("beta_embedding.", "query_encoder.", "instrument_")
    if unexpected or any(not key.startswith(new_parts) for key in missing):
        raise StemkitError(f"init_from {source}: weights do not match (missing {missing}, unexpected {unexpected})")
