"""Training DisMix's latent variant on chorales: the decoder's diffusion loss plus the disentangling terms.

The objective mirrors the simple variant's, with the reconstruction term replaced by the EDM loss of
the set decoder on the sources' VAE latents (a diffusion model's ELBO, up to weighting): BCE of the
pitch-roll logits before binarisation (summed over the 129 classes, averaged over frames and parts),
the KL of τ to N(0, I) and the diagonal Barlow-Twins term between query embedding and τ (both averaged
over their dimensions). ``use_bce: false`` is Table 3's M2 row; ``net.set_decoding: false`` its M0 row.
The mel VAE is frozen and bundled into the model; an EMA of the decoder is what is exported.
Validation also logs ``valid/pitch_reliance`` (:func:`pitch_reliance`): how much worse the decoder's loss
gets when the notes are moved, the cheap sign that it reads the pitch latent at all.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from stemkit.disentanglement.dismix_ldm import NO_NOTE, DisMixLDM, DisMixLDMConfig, PartLatents
from stemkit.disentanglement.losses import barlow_twins_diagonal, kl_to_standard_normal
from stemkit.errors import StemkitError
from stemkit.training.latent_synth import weights_fingerprint
from stemkit.training.system import StemkitSystem


def load_mel_vae(name_or_path: str):
    """A mel VAE (eval mode) from its file, or the one bundled in a DisMix model."""
    from stemkit.models import load_model
    from stemkit.synthesis.mel_vae import MelVAE

    model, meta = load_model(name_or_path)
    vae = model if isinstance(model, MelVAE) else getattr(model, "vae", None)
    if not isinstance(vae, MelVAE):
        raise StemkitError(f"{name_or_path} is a {meta['family']} model and holds no mel VAE")
    return vae.eval()


def one_hot_roll(roll: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    """A class-per-frame roll ``[..., F]`` as bits ``[..., classes, F]`` (the transcriber's layout)."""
    return F.one_hot(roll, classes).transpose(-1, -2).to(dtype)


@torch.no_grad()
def pitch_reliance(model: DisMixLDM, source_latents: torch.Tensor, latents: PartLatents, seed: int = 0,
                   semitones: int = 6, roll: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's EDM loss with the parts' own pitch latents, and with every note moved by ``semitones``
    (a tritone by default: the interval whose partials overlap least), at the same σ and noise.

    Why: the diffusion loss alone cannot tell a decoder that renders the notes from one that renders a
    plausible timbre and ignores ν; the gap between the two losses can, without sampling. It is about
    zero while the decoder ignores pitch and grows as it reads it. The notes are the transcriber's (what
    inference decodes from; early in training it rarely passes the 0.5 threshold, so the gap starts at
    zero whatever the decoder can do) or, with ``roll`` ``[B, S, F]``, the true ones (what the decoder
    makes of a perfect transcription).
    """
    logits = latents.logits
    if roll is not None:  # saturated logits: the bits of the true roll pass any threshold exactly
        logits = 40.0 * (one_hot_roll(roll[..., : logits.shape[-1]], logits.shape[-2], logits.dtype) - 0.5)
    pitches = NO_NOTE  # classes 0 … NO_NOTE − 1 are MIDI pitches; NO_NOTE (silence) stays where it is
    moved_logits = logits.clone()
    moved_logits[..., :pitches, :] = logits[..., :pitches, :].roll(semitones, dims=-2)

    def loss(logits: torch.Tensor) -> torch.Tensor:
        condition = dataclasses.replace(latents, nu=model.pitch_latent(logits, latents.nu.shape[-1])).condition()
        generator = torch.Generator(device=source_latents.device).manual_seed(seed)
        return model.diffusion_loss(source_latents, condition, generator=generator)

    return loss(logits), loss(moved_logits)


class DisMixLDMSystem(StemkitSystem):
    """Trains a :class:`~stemkit.disentanglement.dismix_ldm.DisMixLDM`.

    Args:
        net: the model config; its ``vae`` field is filled from the ``vae`` file.
        vae: the trained mel VAE, frozen here: the shipped ``mel-vae-chorales`` or your own
            (``stemkit fit --config configs/dismix/mel_vae_small.yaml``).
        lr, warmup_steps, decay_steps, min_lr_ratio: Adam and its schedule.
        use_bce, use_kl, use_bt: switch terms off (``use_bce: false`` is the paper's M2).
        ema_decay: decay of the exponential moving average of the decoder's weights.
        teacher_forcing, teacher_forcing_steps: while training, this share of the parts (falling linearly to
            0 over ``teacher_forcing_steps``) get their pitch latent from the true roll of their MIDI instead of
            the transcriber's binarised roll (not in the paper; 0 = the paper). Why: early on the transcriber's
            roll is mostly noise, and a decoder that learns to ignore ν is slow to find it again; a clean roll
            first teaches the decoder to read pitch. Validation and inference always use the transcriber.
            ``teacher_forcing_steps: 0`` keeps the share for good (a floor: once the rolls are all the
            transcriber's, a decoder trained only on them unlearns part of its reading; BENCHMARKS.md).
        teacher_forcing_hold: steps for which the share stays at ``teacher_forcing`` before it starts to fall.
            Why: the transcriber learns from BCE meanwhile, so when the decoder first meets binarised rolls
            they are the confident ones of a trained transcriber rather than the noise of an untrained one.
        init_from: start from this model's weights (an export, a shipped name or a ``.ckpt`` of the same
            config), so a run continues in another session from the model it exported; the optimizer and
            schedule start afresh.
    """

    family = "dismix-ldm"

    def __init__(self, net: DisMixLDMConfig, vae: str = "mel-vae-chorales",
                 lr: float = 1e-4, warmup_steps: int = 1000, decay_steps: int = 0, min_lr_ratio: float = 0.1,
                 use_bce: bool = True, use_kl: bool = True, use_bt: bool = True, ema_decay: float = 0.999,
                 init_from: str | None = None, teacher_forcing: float = 0.0, teacher_forcing_steps: int = 0,
                 teacher_forcing_hold: int = 0) -> None:
        super().__init__()
        if isinstance(net, dict):
            net = DisMixLDMConfig(**net)
        source = load_mel_vae(vae)
        net.vae = source.config.to_dict()
        self.save_hyperparameters({"family": self.family, "net": net.to_dict(), "vae": vae, "lr": lr,
                                   "warmup_steps": warmup_steps, "decay_steps": decay_steps, "min_lr_ratio": min_lr_ratio,
                                   "use_bce": use_bce, "use_kl": use_kl, "use_bt": use_bt, "ema_decay": ema_decay,
                                   "init_from": init_from, "teacher_forcing": teacher_forcing,
                                   "teacher_forcing_steps": teacher_forcing_steps, "teacher_forcing_hold": teacher_forcing_hold})
        if not 0.0 <= teacher_forcing <= 1.0:
            raise StemkitError(f"teacher_forcing is a share of the parts, in [0, 1], not {teacher_forcing}")
        if teacher_forcing_steps < 0 or teacher_forcing_hold < 0:
            raise StemkitError(f"teacher_forcing_steps and teacher_forcing_hold are step counts (≥ 0), "
                               f"not {teacher_forcing_steps} and {teacher_forcing_hold}")
        self.config = net
        self.model = DisMixLDM(net)
        self.model.vae.load_state_dict(source.state_dict())
        self.model.vae.requires_grad_(False).eval()
        self.ema = copy.deepcopy(self.model.denoiser).requires_grad_(False)
        if init_from:
            expected = weights_fingerprint(self.model.vae)
            self.start_from(init_from)
            if weights_fingerprint(self.model.vae) != expected:  # its decoder learnt another latent space
                raise StemkitError(f"init_from {init_from}: it was trained on another mel VAE than {vae}")
            self.model.vae.requires_grad_(False).eval()

    def on_fit_start(self) -> None:
        self.model.vae.eval()
        datamodule = getattr(self.trainer, "datamodule", None)
        rate = self.config.vae_config().sample_rate
        if datamodule is not None and getattr(datamodule, "sample_rate", None) not in (None, rate):
            raise StemkitError(f"the model works at {rate} Hz, the data is at {datamodule.sample_rate} Hz")
        hop = self.model.hop
        if datamodule is not None and getattr(datamodule.hparams, "hop", hop) != hop:
            raise StemkitError(f"data.hop is {datamodule.hparams.hop} but the mel VAE's latent frame is {hop} samples")
        cached = getattr(datamodule, "vae_fingerprint", None)
        if cached is not None and cached != weights_fingerprint(self.model.vae):
            raise StemkitError(
                f"the data's latents were encoded by another VAE than this model's ({datamodule.hparams.latent_vae} vs {self.hparams.vae}): "
                "give data.latent_vae the model's `vae`")

    def _terms(self, batch: dict, drop: float) -> tuple[dict[str, torch.Tensor], PartLatents, torch.Tensor]:
        model = self.model
        with torch.no_grad():
            if "mix_latent" in batch:  # served from the data module's cache of this VAE's latents
                mix_latent, source_latents = batch["mix_latent"], batch["source_latents"]
            else:
                mix_latent = model.latent(batch["mix"])
                source_latents = model.latent(batch["sources"])
            queries = batch["queries"]
            query_mels = model.vae.mel(queries.flatten(0, 1)).unflatten(0, queries.shape[:2])
        latents = model.encode(mix_latent, query_mels)
        items = mix_latent.shape[0]
        null = torch.rand(items, device=mix_latent.device) < drop if drop > 0 else None
        roll = batch["roll"][..., : latents.logits.shape[-1]]
        if self.training:
            latents = self.teacher_forced(latents, roll)
        target = one_hot_roll(roll, self.config.pitch_classes, latents.logits.dtype)  # [B, S, C, F]
        terms = {
            "diffusion": model.diffusion_loss(source_latents, latents.condition(), null),
            "bce": F.binary_cross_entropy_with_logits(latents.logits, target, reduction="none").sum(dim=-2).mean(),
            "kl": kl_to_standard_normal(latents.tau_mean.flatten(0, 1), latents.tau_logvar.flatten(0, 1)) / self.config.latent_dim,
            "bt": barlow_twins_diagonal(latents.query_embedding.flatten(0, 1), latents.tau.flatten(0, 1)) / self.config.latent_dim,
        }
        hp = self.hparams
        used = ["diffusion"] + ["bce"] * hp.use_bce + ["kl"] * hp.use_kl + ["bt"] * hp.use_bt
        terms["total"] = sum(terms[k] for k in used)
        terms["pitch_acc"] = (model.pitch_roll(latents.logits.detach()) == roll).float().mean()
        return terms, latents, source_latents

    def teacher_forcing_share(self) -> float:
        """The share of parts decoded from their true roll at this step (see ``teacher_forcing``)."""
        hp = self.hparams
        share = hp.get("teacher_forcing", 0.0)
        if share <= 0:
            return 0.0
        steps = hp.get("teacher_forcing_steps", 0)
        fading = self.global_step - hp.get("teacher_forcing_hold", 0)  # steps since the hold ended
        if steps <= 0 or fading <= 0:
            return share
        return share * max(0.0, 1.0 - fading / steps)

    def teacher_forced(self, latents: PartLatents, roll: torch.Tensor) -> PartLatents:
        """``latents`` with ν from the true ``roll`` ``[B, S, F]`` for a random share of the parts."""
        share = self.teacher_forcing_share()
        if share <= 0:
            return latents
        batch, sources, frames = *roll.shape[:2], latents.nu.shape[-1]
        true_roll = one_hot_roll(roll, self.config.pitch_classes, latents.nu.dtype)
        true_nu = self.model.project_roll(true_roll.flatten(0, 1), frames).reshape_as(latents.nu)
        forced = (torch.rand(batch, sources, 1, 1, device=roll.device) < share)
        return dataclasses.replace(latents, nu=torch.where(forced, true_nu, latents.nu))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms, _, _ = self._terms(batch, self.config.cond_dropout)
        for name, value in terms.items():
            self.log(f"train/{name}", value, prog_bar=name == "total")
        if self.hparams.get("teacher_forcing", 0.0) > 0:
            self.log("train/teacher_forcing", self.teacher_forcing_share())
        return terms["total"]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.update_ema(self.ema, self.model.denoiser)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms, latents, source_latents = self._terms(batch, 0.0)
        own, moved = pitch_reliance(self.model, source_latents, latents, seed=batch_idx)
        terms.update(diffusion_own_pitch=own, diffusion_moved_pitch=moved, pitch_reliance=moved - own)
        own, moved = pitch_reliance(self.model, source_latents, latents, seed=batch_idx, roll=batch["roll"])
        terms["pitch_reliance_true_roll"] = moved - own
        for name, value in terms.items():
            self.log(f"valid/{name}", value, batch_size=batch["roll"].shape[0], sync_dist=True, prog_bar=name == "total")

    def configure_optimizers(self):
        trained = [p for name, p in self.model.named_parameters() if not name.startswith("vae.")]
        return self.adam_with_schedule(trained)
