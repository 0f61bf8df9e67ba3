"""DisMix's simple variant: the chord set, stochastic binarisation, the loss terms on known inputs, and the CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import REPO, run_cli, tiny_chord_list
from stemkit.data.chords import (
    CHORD_INSTRUMENTS,
    LOWEST_PITCH,
    NUM_PITCHES,
    ChordsConfig,
    chord_split,
    load_split,
    make_chords,
    plan_mixtures,
    slices_of,
)
from stemkit.disentanglement.dismix_simple import DisMixSimple, DisMixSimpleConfig, stochastic_binarize
from stemkit.disentanglement.losses import (
    barlow_twins_diagonal,
    gaussian_reconstruction,
    kl_to_standard_normal,
    mixture_tie,
    pitch_bce,
)

TINY = str(REPO / "configs" / "dismix" / "chords_tiny.yaml")
CLASSIFIER_TINY = str(REPO / "configs" / "dismix" / "classifier_tiny.yaml")


# --- the chord set ----------------------------------------------------------------------------------


def test_slices_are_the_distinct_pitch_sets_sounding_at_each_onset():
    from stemkit.data.chorales import ScoreNote

    soprano = [ScoreNote(0.0, 2.0, 72, False), ScoreNote(2.0, 1.0, 74, False)]
    bass = [ScoreNote(0.0, 1.0, 48, False), ScoreNote(1.0, 2.0, 48, False)]
    alto = [ScoreNote(0.0, 3.0, 64, False)]
    # onsets 0, 1 and 2: {48, 64, 72} twice (deduplicated), then {48, 64, 74}
    assert slices_of([soprano, alto, bass]) == {(48, 64, 72), (48, 64, 74)}


def test_a_real_chorale_gives_chords_inside_the_label_range():
    from stemkit.data.chorales import chorale_sources
    from stemkit.data.chords import _chords_of_source

    chords = _chords_of_source(str(chorale_sources()[0].path))
    assert len(chords) > 10
    assert all(len(c) >= 2 and LOWEST_PITCH <= c[0] and c[-1] < LOWEST_PITCH + NUM_PITCHES for c in chords)


def test_splits_are_by_chord_and_near_70_20_10():
    from itertools import combinations

    chords = [c for size in (3, 4) for c in combinations(range(48, 72), size)]
    counts = {s: sum(chord_split(c) == s for c in chords) / len(chords) for s in ("train", "valid", "test")}
    assert abs(counts["train"] - 0.7) < 0.02 and abs(counts["valid"] - 0.2) < 0.02 and abs(counts["test"] - 0.1) < 0.02
    assert chord_split((60, 64, 67)) == chord_split((60, 64, 67))


def test_every_note_of_a_chord_goes_to_exactly_one_of_two_or_three_distinct_instruments():
    chord = (48, 55, 64, 72)
    plans = plan_mixtures(chord, 50, seed=3, num_soundfonts=2)
    assert plans == plan_mixtures(chord, 50, seed=3, num_soundfonts=2)  # seeded
    assert plans != plan_mixtures(chord, 50, seed=4, num_soundfonts=2)
    sizes = set()
    for plan in plans:
        instruments = [s.instrument for s in plan.sources]
        assert len(set(instruments)) == len(instruments) and 2 <= len(instruments) <= 3
        assert sorted(p for s in plan.sources for p in s.pitches) == list(chord)
        assert all(s.pitches for s in plan.sources)
        sizes.add(len(instruments))
    assert sizes == {2, 3}
    assert {s.soundfont for p in plans for s in p.sources} == {0, 1}


def test_the_chord_set_holds_mels_whose_mixture_is_the_sum_of_its_sources(chord_dir):
    settings = json.loads((chord_dir / "dataset.json").read_text())
    chords = tiny_chord_list()
    assert settings["mixtures"] == {s: 4 * sum(chord_split(c) == s for c in chords) for s in ("train", "valid", "test")}
    assert settings["mixtures"]["train"] == 24 and settings["mixtures"]["test"] >= 8
    train = load_split(chord_dir, "train")
    assert train["mix"].shape == (24, 128, 10) and train["sources"].shape == (24, 3, 128, 10)
    assert set(train["present"].sum(axis=1)) <= {2, 3}
    # every present source has notes, and together they are the chord
    for m in range(24):
        slots = np.flatnonzero(train["present"][m])
        assert all(train["pitch"][m, k].any() for k in slots)
        assert not train["pitch"][m, ~train["present"][m]].any()
    # mel energy adds up (approximately: sources are not phase-aligned, so powers add only on average)
    mix_energy = np.exp(train["mix"].astype(np.float64)).sum(axis=(1, 2))
    source_energy = (np.exp(train["sources"].astype(np.float64)) * train["present"][..., None, None]).sum(axis=(1, 2, 3))
    ratio = mix_energy / source_energy
    assert 0.5 < np.median(ratio) < 2.0
    assert np.isfinite(train["sources"]).all() and (train["sources"][train["present"]].max(axis=(1, 2)) > -5).all()


def test_the_chord_set_is_the_same_bytes_whatever_the_workers_and_resumes(chord_dir, tmp_path):
    chords = tiny_chord_list()
    again = tmp_path / "one-worker"
    make_chords(ChordsConfig(again, mixtures_per_chord=4, workers=1, progress=False, chords=chords))
    shards = sorted(p.relative_to(chord_dir) for p in chord_dir.rglob("shard-*.npz"))
    assert shards and shards == sorted(p.relative_to(again) for p in again.rglob("shard-*.npz"))
    for shard in shards:
        assert (chord_dir / shard).read_bytes() == (again / shard).read_bytes(), shard
    # an interrupted run (a shard missing) resumes to the same bytes, rendering nothing already there
    lost = again / shards[0]
    kept = again / shards[-1]
    before = kept.stat().st_mtime_ns
    lost.unlink()
    report = make_chords(ChordsConfig(again, mixtures_per_chord=4, workers=1, progress=False, chords=chords))
    assert report.written == 1 and report.skipped == len(shards) - 1
    assert lost.read_bytes() == (chord_dir / shards[0]).read_bytes() and kept.stat().st_mtime_ns == before


def test_reshared_training_mixtures_are_new_sharings_of_training_chords_made_as_the_set_makes_them(chord_dir):
    """reshare: each draw is a fresh sharing of a train-split chord (transposed ones only when they too hash
    to train and the bank holds their notes), with the same mels ``stemkit data chords`` would store for
    that sharing; seeded by (seed, epoch, item), new at every epoch."""
    from stemkit.data.chords import bank_pitches, build_shard, load_banks, plan_mixtures
    from stemkit.training.chord_data import ChordDataModule, ResharedChordMixtures, reshared_collate, train_chords

    train = load_split(chord_dir, "train")
    chords = train_chords(train)
    assert chords == sorted(c for c in tiny_chord_list() if chord_split(c) == "train")
    dataset = ResharedChordMixtures(chord_dir, train, seed=0, transpose=5)
    assert len(dataset) == len(train["mix"]) and bank_pitches(chord_dir) == [60, 62, 64, 65, 67, 69]
    moved = set()
    for index in range(300):
        item = dataset[index]
        pitches = tuple(int(p) for p in LOWEST_PITCH + np.flatnonzero(item["pitch"].numpy().any(axis=0)))
        assert chord_split(pitches) == "train" and set(pitches) <= set(bank_pitches(chord_dir))
        if pitches not in chords:
            moved.add(pitches)
        assert item["queries"][~item["present"]].abs().sum() == 0 and item["queries"][item["present"]].abs().sum() > 0
    assert moved == {(65, 67, 69)}  # the one transposition of these chords (60-62-64 up 5) that stays in train and the bank
    first = reshared_collate([dataset[3], dataset[4]])
    again = reshared_collate([dataset[3], dataset[4]])
    assert all(torch.equal(first[k], again[k]) for k in first)
    dataset.set_epoch(1)
    assert not torch.equal(reshared_collate([dataset[3]])["mix"], first["mix"][:1])
    # a given sharing gives exactly the mels the chord set stores for it
    plan = plan_mixtures(chords[0], 1, 7, 1)[0]
    dataset._plan = lambda rng: plan
    batch, stored = reshared_collate([dataset[0]]), build_shard([plan], load_banks(chord_dir))
    assert torch.equal(batch["mix"][0], torch.from_numpy(stored["mix"][0].astype(np.float32)))
    assert torch.equal(batch["sources"][0], torch.from_numpy(stored["sources"][0].astype(np.float32)))
    assert torch.equal(batch["pitch"][0], torch.from_numpy(stored["pitch"][0].astype(np.float32)))
    with pytest.raises(ValueError, match="transpose needs reshare"):
        ChordDataModule(str(chord_dir), transpose=2)
    with pytest.raises(ValueError, match="transpose must be at least 0"):
        ChordDataModule(str(chord_dir), reshare=True, transpose=-1)


def test_an_unfinished_chord_set_is_refused_until_finished(tmp_path, monkeypatch):
    import stemkit.data.chords as chords
    from stemkit.errors import StemkitError

    original, done = chords._make_shard, []

    def interrupted(job):  # the second shard is interrupted (Ctrl-C)
        if done:
            raise KeyboardInterrupt
        done.append(original(job))
        return done[-1]

    config = dict(mixtures_per_chord=2, workers=1, progress=False, chords=tiny_chord_list())
    monkeypatch.setattr(chords, "_make_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_chords(ChordsConfig(tmp_path, **config))
    monkeypatch.setattr(chords, "_make_shard", original)
    assert len(list(tmp_path.rglob("shard-*.npz"))) == 1 and not list(tmp_path.rglob("*partial*"))
    with pytest.raises(StemkitError, match="unfinished"):
        load_split(tmp_path, "train")
    make_chords(ChordsConfig(tmp_path, **config))
    assert len(load_split(tmp_path, "train")["mix"]) == 2 * 6


def test_a_folder_made_with_other_settings_is_refused(chord_dir):
    from stemkit.errors import StemkitError

    with pytest.raises(StemkitError, match="other settings"):
        make_chords(ChordsConfig(chord_dir, mixtures_per_chord=5, workers=1, progress=False, chords=tiny_chord_list()))


def test_data_chords_refuses_bad_options_in_one_line(cli, tmp_path):
    result = cli("data", "chords", "--out", str(tmp_path / "x"), "--mixtures-per-chord", "0")
    assert result.returncode == 1 and "--mixtures-per-chord must be at least 1" in result.stderr
    result = cli("data", "chords", "--out", str(tmp_path / "y"), "--soundfont", str(tmp_path / "missing.sf2"))
    assert result.returncode == 1 and "soundfont not found" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "y" / "notes").exists()


# --- stochastic binarisation ------------------------------------------------------------------------


def test_stochastic_binarisation_is_bits_forward_and_the_sigmoid_backward():
    torch.manual_seed(0)
    logits = torch.randn(4000, requires_grad=True)
    bits = stochastic_binarize(logits, training=True)
    assert set(bits.detach().unique().tolist()) <= {0.0, 1.0}
    # with h ~ U(0, 1), a unit fires with probability sigmoid(logit)
    probs = torch.sigmoid(logits.detach())
    assert abs(bits.detach().mean().item() - probs.mean().item()) < 0.03
    high = probs > 0.9
    assert bits.detach()[high].mean() > 0.85
    # straight through: the gradient is the sigmoid's, as if the forward pass had been sigmoid(logits)
    weights = torch.randn(4000)
    (bits * weights).sum().backward()
    assert torch.allclose(logits.grad, weights * probs * (1 - probs), atol=1e-6)


def test_evaluation_binarises_at_one_half():
    logits = torch.tensor([-2.0, -0.01, 0.01, 3.0])
    for _ in range(3):
        assert stochastic_binarize(logits, training=False).tolist() == [0.0, 0.0, 1.0, 1.0]


# --- the loss terms on known inputs -----------------------------------------------------------------


def test_gaussian_reconstruction_is_half_the_squared_error_summed_per_mel_and_weighted():
    estimate = torch.zeros(2, 3, 4, 5)
    target = torch.ones(2, 3, 4, 5)
    assert gaussian_reconstruction(estimate, target).item() == pytest.approx(0.5 * 20 * 3)  # 3 sources of 20 bins, mean over 2
    weight = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    assert gaussian_reconstruction(estimate, target, weight).item() == pytest.approx(0.5 * 20 * 3 / 2)


def test_kl_is_zero_at_the_prior_and_matches_the_closed_form():
    mean, logvar = torch.zeros(3, 2, 8), torch.zeros(3, 2, 8)
    assert kl_to_standard_normal(mean, logvar).item() == pytest.approx(0.0)
    mean = torch.ones(1, 1, 8)
    logvar = torch.full((1, 1, 8), math.log(4.0))
    expected = 8 * 0.5 * (1 + 4 - 1 - math.log(4.0))
    assert kl_to_standard_normal(mean, logvar).item() == pytest.approx(expected)
    torch_kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, logvar.mul(0.5).exp()),
                                                 torch.distributions.Normal(0.0, 1.0)).sum()
    assert kl_to_standard_normal(mean, logvar).item() == pytest.approx(torch_kl.item(), rel=1e-5)


def test_the_mixture_tie_is_the_gaussian_with_sigma_one_quarter():
    e_m = torch.zeros(2, 4)
    total = torch.full((2, 4), 0.5)
    assert mixture_tie(e_m, total).item() == pytest.approx(4 * 0.25 / (2 * 0.0625))


def test_pitch_bce_sums_classes_and_counts_only_present_sources():
    logits = torch.tensor([[[0.0, 0.0], [5.0, -5.0]]])  # [batch 1, 2 slots, 2 classes]
    labels = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert pitch_bce(logits, labels, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(2 * math.log(2))
    both = pitch_bce(logits, labels, torch.tensor([[1.0, 1.0]])).item()
    assert both == pytest.approx(2 * math.log(2) + 2 * math.log1p(math.exp(-5)), rel=1e-5)


def test_barlow_twins_diagonal_is_zero_for_correlated_and_four_per_dimension_for_anticorrelated():
    torch.manual_seed(0)
    a = torch.randn(256, 6)
    assert barlow_twins_diagonal(a, 3 * a + 1).item() == pytest.approx(0.0, abs=1e-4)
    assert barlow_twins_diagonal(a, -a).item() == pytest.approx(4 * 6, rel=1e-4)
    unrelated = barlow_twins_diagonal(a, torch.randn(256, 6)).item()
    assert 3 < unrelated < 9  # ≈ one per dimension


# --- the model --------------------------------------------------------------------------------------


def _tiny_model(**changes) -> DisMixSimple:
    return DisMixSimple(DisMixSimpleConfig(embed_dim=8, conv_channels=16, conv_layers=2, hidden=16, gru_hidden=8, **changes))


def test_the_model_renders_sources_and_the_mixture_and_every_parameter_learns(one_thread):
    from stemkit.training.dismix_simple import dismix_losses

    torch.manual_seed(0)
    model = _tiny_model().train()
    batch = {"mix": torch.randn(4, 128, 10) - 7, "sources": torch.randn(4, 3, 128, 10) - 7,
             "queries": torch.randn(4, 3, 128, 10) - 7, "present": torch.tensor([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 1]]).bool(),
             "pitch": (torch.rand(4, 3, 52) > 0.9).float()}
    out = model(batch["mix"], batch["queries"], batch["present"], render_mixture=True)
    assert out["sources"].shape == (4, 3, 128, 10) and out["mix_from_sources"].shape == (4, 128, 10)
    assert not out["sources"][~batch["present"]].any()
    terms = dismix_losses(model, batch, out)
    assert set(terms) == {"rec_sources", "rec_mix", "tie", "kl", "bce", "bt", "total"}
    terms["total"].backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent
    # an absent source changes nothing: its slot's content is ignored by every term
    changed = dict(batch, sources=batch["sources"].clone(), queries=batch["queries"].clone())
    changed["sources"][0, 2] += 10
    torch.manual_seed(1)
    first = dismix_losses(model, batch, model(batch["mix"], batch["queries"], batch["present"]))
    torch.manual_seed(1)
    second = dismix_losses(model, changed, model(changed["mix"], changed["queries"], changed["present"]))
    assert first["rec_sources"].item() == pytest.approx(second["rec_sources"].item())


def test_the_ablations_switch_their_terms_off():
    from stemkit.training.dismix_simple import dismix_losses

    torch.manual_seed(0)
    model = _tiny_model(binarize="none").eval()
    batch = {"mix": torch.randn(3, 128, 10), "sources": torch.randn(3, 3, 128, 10), "queries": torch.randn(3, 3, 128, 10),
             "present": torch.ones(3, 3, dtype=torch.bool), "pitch": torch.zeros(3, 3, 52)}
    out = model(batch["mix"], batch["queries"], batch["present"])
    full = dismix_losses(model, batch, out)
    no_kl = dismix_losses(model, batch, out, use_kl=False)
    no_bt = dismix_losses(model, batch, out, use_bt=False)
    assert no_kl["total"].item() == pytest.approx(full["total"].item() - full["kl"].item(), rel=1e-5)
    assert no_bt["total"].item() == pytest.approx(full["total"].item() - full["bt"].item(), rel=1e-5)
    # without SB, ν is a function of the sigmoid probabilities, not of bits
    latents = model.encode(model.embed_mixture(batch["mix"]), batch["queries"])
    assert torch.allclose(latents.nu, model.projector(torch.sigmoid(latents.logits)))


def test_per_element_averages_each_term_and_bce_over_classes_keeps_the_pitch_set_likelihood():
    from stemkit.training.dismix_simple import dismix_losses

    torch.manual_seed(0)
    model = _tiny_model().eval()
    batch = {"mix": torch.randn(3, 128, 10), "sources": torch.randn(3, 3, 128, 10), "queries": torch.randn(3, 3, 128, 10),
             "present": torch.ones(3, 3, dtype=torch.bool), "pitch": (torch.rand(3, 3, 52) > 0.9).float()}
    out = model(batch["mix"], batch["queries"], batch["present"])
    summed = dismix_losses(model, batch, out)
    averaged = dismix_losses(model, batch, out, per_element=True)
    mixed = dismix_losses(model, batch, out, per_element=True, bce_over_classes=True)
    assert averaged["rec_sources"].item() == pytest.approx(summed["rec_sources"].item() / (128 * 10), rel=1e-6)
    assert averaged["kl"].item() == pytest.approx(summed["kl"].item() / 8, rel=1e-6)  # the tiny model's 8-d τ
    assert averaged["bce"].item() == pytest.approx(summed["bce"].item() / 52, rel=1e-6)
    assert mixed["bce"].item() == pytest.approx(summed["bce"].item(), rel=1e-6)
    assert mixed["rec_sources"].item() == pytest.approx(averaged["rec_sources"].item(), rel=1e-6)
    assert mixed["total"].item() == pytest.approx(averaged["total"].item() - averaged["bce"].item() + summed["bce"].item(), rel=1e-5)


def test_a_run_starts_from_an_exported_model_of_the_same_config_and_refuses_another(tmp_path):
    """init_from: training continues in another session from the model it shipped (its weights exactly);
    a model of another size is one line of error, not a partial load."""
    from stemkit.errors import StemkitError
    from stemkit.models import save_model
    from stemkit.training.dismix_simple import DisMixSimpleSystem

    torch.manual_seed(3)
    donor = _tiny_model()
    path = save_model(donor, tmp_path / "donor")
    system = DisMixSimpleSystem(net=donor.config.to_dict(), init_from=str(path))
    for name, value in donor.state_dict().items():
        torch.testing.assert_close(system.model.state_dict()[name], value, rtol=0, atol=0)
    assert system.hparams["init_from"] == str(path)
    with pytest.raises(StemkitError, match="config differs in hidden"):
        DisMixSimpleSystem(net=dict(donor.config.to_dict(), hidden=32), init_from=str(path))


def test_swaps_are_derangements():
    from stemkit.disentanglement.evaluation import plan_swaps

    present = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1], [1, 1, 1]] * 10, bool)
    donor = plan_swaps(present, 0).donor
    for m in range(len(present)):
        slots = np.flatnonzero(present[m])
        assert sorted(donor[m, slots]) == list(slots) and all(donor[m, k] != k for k in slots)
        assert (donor[m, ~present[m]] == -1).all()


# --- the command line, end to end on a tiny model ---------------------------------------------------


@pytest.fixture(scope="module")
def trained(chord_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dismix")
    for config, name in ((TINY, "model"), (CLASSIFIER_TINY, "judge")):
        run_cli("fit", "--config", config, "--data.init_args.root", str(chord_dir), "--trainer.default_root_dir",
                str(root / name), "--trainer.logger.init_args.save_dir", str(root / name), check=True)
    return root / "model" / "checkpoints" / "last.ckpt", root / "judge" / "checkpoints" / "last.ckpt"


def test_dismix_eval_scores_swaps_end_to_end(cli, trained, chord_dir, tmp_path):
    model, judge = trained
    out = tmp_path / "table1.json"
    result = cli("dismix", "eval", "--dataset", str(chord_dir), "--model", str(model), "--classifier", str(judge),
                 "--json", str(out), "--quiet", check=True)
    assert "disentanglement (pitch swapped)" in result.stdout and "mixture rendering" in result.stdout
    table = json.loads(out.read_text())
    assert table["mixtures"] == 4 * sum(chord_split(c) == "test" for c in tiny_chord_list())
    assert table["sources"] >= 2 * table["mixtures"]
    for key in ("classifier_pitch", "classifier_instrument", "disentangle_pitch", "disentangle_instrument", "render_pitch",
                "render_instrument"):
        assert 0.0 <= table[key] <= 1.0
    pairs = table["ground_truth"]["pairs"]
    assert pairs and all("<-" in p for p in pairs)
    assert sum(row["sources"] for row in pairs.values()) == table["sources"]
    names = {name for name, _ in CHORD_INSTRUMENTS}
    assert all(p.split("<-")[0] in names and p.split("<-")[1] in names and p.split("<-")[0] != p.split("<-")[1]
               for p in pairs)


def test_the_ground_truth_of_a_swap_is_the_donors_notes_on_the_own_instrument(chord_dir):
    from stemkit.data.chords import crop_samples, load_banks, log_mel
    from stemkit.disentanglement.evaluation import plan_swaps, truth_of_swap

    arrays = load_split(chord_dir, "test")
    banks = load_banks(chord_dir)
    # with the identity as the "swap", the truth is the source itself: the stored mel is reproduced
    identity = np.where(arrays["present"], np.arange(3)[None, :], -1)
    m, k = np.argwhere(arrays["present"])[0]
    again = log_mel(truth_of_swap(arrays, banks, identity, m, k)[None])[0]
    assert np.allclose(again, arrays["sources"][m, k].astype(np.float32), atol=0.05)
    donor = plan_swaps(arrays["present"], 0).donor
    audio = truth_of_swap(arrays, banks, donor, m, k)
    assert audio.shape == (crop_samples(),) and np.abs(audio).max() > 0


def test_dismix_eval_refuses_a_folder_that_is_not_a_chord_set_in_one_line(cli, trained, tmp_path):
    model, judge = trained
    result = cli("dismix", "eval", "--dataset", str(tmp_path), "--model", str(model), "--classifier", str(judge))
    assert result.returncode == 1 and "is not a chord dataset" in result.stderr and "Traceback" not in result.stderr
    result = cli("dismix", "eval", "--dataset", str(tmp_path), "--model", str(judge), "--classifier", str(judge))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    result = cli("dismix", "eval", "--dataset", str(tmp_path), "--model", str(model), "--vocoder", "griffin-lim")
    assert result.returncode == 1 and "--vocoder is for DisMix latent models" in result.stderr and "Traceback" not in result.stderr
