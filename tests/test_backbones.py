"""The denoiser backbones (``dit``, ``t5film``, and ``unet1d`` through the registry): shapes and the
zero start, the mask convention, the set property of DiT, null conditions and guidance, and that each
learns a small conditional problem whose answer is known in closed form."""

from __future__ import annotations

import pytest
import torch

from stemkit.diffusion import ClassifierFreeGuidance, EDMConfig, EDMDenoiser, sample
from stemkit.diffusion.backbones import BACKBONES, DiT, DiTConfig, T5FiLM, T5FiLMConfig, build_backbone
from stemkit.diffusion.conditions import NULL, mask_key


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only fights other jobs


def perturb(net: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Add noise to every parameter: the zero-initialised layers would otherwise hide every path."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return net


def small_dit(null: str = "zero", **overrides) -> DiT:
    fields = dict(in_channels=2, patch=4, width=32, depth=2, heads=2, mlp_ratio=2.0, embedding_dim=32, conditions=[
        {"name": "timbre", "kind": "vector", "dim": 3, "null": null},   # per source [B, S, 3]
        {"name": "style", "kind": "vector", "dim": 2, "null": null},    # global [B, 2]
        {"name": "pitch", "kind": "frames", "dim": 4, "null": null},    # per source [B, S, 4, T]
    ])
    fields.update(overrides)
    return build_backbone("dit", fields)


def dit_inputs(batch: int = 2, sources: int = 3, length: int = 10, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, sources, 2, length, generator=g)
    cond = {"timbre": torch.randn(batch, sources, 3, generator=g), "style": torch.randn(batch, 2, generator=g),
            "pitch": torch.randn(batch, sources, 4, length, generator=g)}
    return x, torch.randn(batch, generator=g), cond


def small_t5film(null: str = "zero", **overrides) -> T5FiLM:
    fields = dict(in_channels=3, width=32, encoder_layers=1, decoder_layers=2, heads=2, mlp_dim=48, max_frames=16,
                  max_tokens=12, embedding_dim=32, conditions=[
                      {"name": "notes", "kind": "tokens", "dim": 1, "vocab": 9, "null": null},   # ids [B, L]
                      {"name": "context", "kind": "tokens", "dim": 3, "null": null},           # features [B, L, 3]
                      {"name": "style", "kind": "vector", "dim": 2, "null": null},
                  ])
    fields.update(overrides)
    return build_backbone("t5film", fields)


def t5film_inputs(batch: int = 3, length: int = 7, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, length, generator=g)
    notes_keep = torch.arange(6)[None] < torch.tensor([[6], [2], [4]])[:batch]   # a different length per item
    context_keep = torch.arange(5)[None] < torch.tensor([[1], [5], [3]])[:batch]
    cond = {"notes": torch.randint(0, 9, (batch, 6), generator=g), mask_key("notes"): notes_keep,
            "context": torch.randn(batch, 5, 3, generator=g), mask_key("context"): context_keep,
            "style": torch.randn(batch, 2, generator=g)}
    return x, torch.randn(batch, generator=g), cond


# ---------------------------------------------------------------- shapes, zero start, config


@pytest.mark.parametrize("rank", [4, 3])
def test_dit_shapes_and_zero_start(rank):
    torch.manual_seed(0)
    net = small_dit()
    x, c_noise, cond = dit_inputs(length=10)  # 10 frames: not a multiple of the patch (4)
    if rank == 3:  # one source, no S axis; conditions without it too
        x, cond = x[:, 0], {"timbre": cond["timbre"][:, 0], "style": cond["style"], "pitch": cond["pitch"][:, 0]}
    out = net(x, c_noise, cond)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))  # adaLN-Zero and a zero output layer: exactly zero at init
    out = perturb(net)(x, c_noise, cond)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().mean() > 1e-2


def test_t5film_shapes_and_zero_start():
    torch.manual_seed(0)
    net = small_t5film()
    x, c_noise, cond = t5film_inputs()
    out = net(x, c_noise, cond)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))
    out = perturb(net)(x, c_noise, cond)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().mean() > 1e-2
    assert net(x, c_noise, None).shape == x.shape  # no conditions at all: every one reads its null
    with pytest.raises(ValueError, match="17 frames"):
        net(torch.randn(1, 3, 17), c_noise[:1])
    no_encoders = build_backbone("t5film", {"in_channels": 3, "width": 16, "heads": 2, "mlp_dim": 16, "embedding_dim": 16,
                                            "encoder_layers": 1, "decoder_layers": 1, "max_frames": 8})
    assert all(layer.cross_attn is None for layer in no_encoders.layers)  # nothing to cross-attend to
    assert perturb(no_encoders)(x, c_noise).shape == x.shape


@pytest.mark.parametrize("name,make", [("dit", small_dit), ("t5film", small_t5film)])
def test_config_round_trips_through_build_backbone(name, make):
    torch.manual_seed(0)
    net = make(null="learned", **({"positions": "learned"} if name == "t5film" else {}))
    again = build_backbone(name, net.config.to_dict())
    assert type(again) is BACKBONES[name][0] and again.config == net.config
    again.load_state_dict(net.state_dict())  # same parameters, same names


def test_build_backbone_rejects_unknown_settings_and_kinds():
    for name in ("dit", "t5film"):
        with pytest.raises(ValueError, match="no setting bogus"):
            build_backbone(name, {"bogus": 1})
    with pytest.raises(ValueError, match="tokens"):
        build_backbone("dit", {"conditions": [{"name": "notes", "kind": "tokens", "dim": 1, "vocab": 8}]})
    with pytest.raises(ValueError, match="frames"):
        T5FiLMConfig(conditions=[{"name": "pitch", "kind": "frames", "dim": 1}])
    with pytest.raises(ValueError, match="heads"):
        DiTConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="positions"):
        T5FiLMConfig(positions="rotary")


# ---------------------------------------------------------------- masks


def test_t5film_masked_tokens_do_not_matter_and_real_ones_do():
    """Masks are True = a real token; SDPA's boolean mask is True = attend. A flipped convention would
    read the padding and ignore the notes."""
    torch.manual_seed(0)
    net = perturb(small_t5film()).eval()
    x, c_noise, cond = t5film_inputs()
    base = net(x, c_noise, cond)

    changed = dict(cond)
    pad_ids = torch.randint(0, 9, cond["notes"].shape, generator=torch.Generator().manual_seed(3))
    changed["notes"] = torch.where(cond[mask_key("notes")], cond["notes"], pad_ids)
    changed["context"] = torch.where(cond[mask_key("context")][..., None], cond["context"], 5.0)
    assert not torch.equal(changed["notes"], cond["notes"])
    torch.testing.assert_close(net(x, c_noise, changed), base, atol=1e-5, rtol=1e-5)

    real = dict(cond)
    real["notes"] = cond["notes"].clone()
    real["notes"][1, 1] = (cond["notes"][1, 1] + 1) % 9  # item 1 has two real notes: change the second
    out = net(x, c_noise, real)
    assert (out[1] - base[1]).abs().max() > 1e-3
    torch.testing.assert_close(out[[0, 2]], base[[0, 2]], atol=1e-5, rtol=1e-5)  # items do not mix

    real = dict(cond)
    real["context"] = cond["context"].clone()
    real["context"][0, 0] += 1.0  # item 0's only real context frame
    assert (net(x, c_noise, real)[0] - base[0]).abs().max() > 1e-3


def test_t5film_decoding_frame_by_frame_with_its_cache_equals_the_whole_causal_pass():
    """The cache keeps the encodings and each layer's keys and values; feeding the frames one, then
    several, at a time must give exactly what one causal pass over all of them gives."""
    torch.manual_seed(0)
    net = perturb(small_t5film(causal=True)).eval()
    x, c_noise, cond = t5film_inputs(length=9)
    with torch.no_grad():
        whole = net(x, c_noise, cond)
        cache = net.start_decoding(cond, x.shape[0], x)
        pieces = [net(x[..., :1], c_noise, cond, cache=cache), net(x[..., 1:2], c_noise, cond, cache=cache),
                  net(x[..., 2:6], c_noise, cond, cache=cache), net(x[..., 6:], c_noise, cond, cache=cache)]
    torch.testing.assert_close(torch.cat(pieces, dim=-1), whole, atol=1e-5, rtol=1e-5)
    assert cache.length == 9
    with pytest.raises(ValueError, match="causal"):
        small_t5film().start_decoding(cond, x.shape[0], x)  # a diffusion decoder sees every frame at once


def test_t5film_reuses_encodings_only_for_the_very_same_conditions():
    torch.manual_seed(0)
    net = perturb(small_t5film()).eval()
    x, c_noise, cond = t5film_inputs()
    with torch.no_grad():
        base = net(x, c_noise, cond)
        with net.reusing_encodings():
            assert torch.equal(net(x, c_noise, cond), base) and torch.equal(net(x * 0.5, c_noise, cond), net(x * 0.5, c_noise, dict(cond)))
            cond["context"].mul_(-1.0)  # edited in place: encoded afresh, not read from the stale encoding
            edited = net(x, c_noise, cond)
            other = {**cond, "notes": (cond["notes"] + 1) % 9}  # new tensors: encoded afresh
            changed = net(x, c_noise, other)
        assert torch.equal(edited, net(x, c_noise, cond)) and not torch.equal(edited, base)
        assert torch.equal(changed, net(x, c_noise, other))
    assert net._encodings is None  # forgotten when the block ends


# ---------------------------------------------------------------- DiT: a set stays a set


@pytest.mark.parametrize("in_tokens", [False, True], ids=["adaln", "adaln+tokens"])
def test_dit_permuting_sources_permutes_the_output(in_tokens):
    torch.manual_seed(0)
    net = perturb(small_dit(frames_in_tokens=in_tokens)).eval()
    x, c_noise, cond = dit_inputs(sources=3)
    perm = torch.tensor([2, 0, 1])
    permuted = {"timbre": cond["timbre"][:, perm], "style": cond["style"], "pitch": cond["pitch"][:, perm]}
    out = net(x, c_noise, cond)
    torch.testing.assert_close(net(x[:, perm], c_noise, permuted), out[:, perm], atol=1e-5, rtol=1e-5)
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-2  # the sources do differ, so the check has teeth


def test_dit_swapping_two_sources_conditions_swaps_their_outputs():
    """Same input on sources 0 and 1: only their conditions tell them apart, so nothing about where a
    source sits in the sequence may leak into its output."""
    torch.manual_seed(0)
    net = perturb(small_dit()).eval()
    x, c_noise, cond = dit_inputs(sources=3)
    x[:, 1] = x[:, 0]
    swap = torch.tensor([1, 0, 2])
    swapped = {"timbre": cond["timbre"][:, swap], "style": cond["style"], "pitch": cond["pitch"][:, swap]}
    out, out_swapped = net(x, c_noise, cond), net(x, c_noise, swapped)
    torch.testing.assert_close(out_swapped, out[:, swap], atol=1e-5, rtol=1e-5)
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-2


@pytest.mark.parametrize("in_tokens", [False, True], ids=["adaln", "adaln+tokens"])
def test_dit_frames_in_tokens_reads_the_condition_through_the_tokens(in_tokens):
    """With the frames condition's adaLN embedding zeroed, the pitch reaches the output only if
    ``frames_in_tokens`` adds it to the tokens."""
    torch.manual_seed(0)
    net = perturb(small_dit(frames_in_tokens=in_tokens)).eval()
    with torch.no_grad():
        for layer in net.frame_in:
            layer.weight.zero_()
            layer.bias.zero_()
    x, c_noise, cond = dit_inputs(sources=3, length=12)
    changed = {**cond, "pitch": cond["pitch"].clone()}
    changed["pitch"][:, 1, :, 4:8] += 1.0  # source 1's second patch
    delta = (net(x, c_noise, changed) - net(x, c_noise, cond)).abs()
    if not in_tokens:
        assert delta.max() < 1e-6
    else:
        assert delta[:, 1].max() > 1e-3
        assert len(net.frame_tokens) == 1


# ---------------------------------------------------------------- null conditions and guidance


@pytest.mark.parametrize("make,inputs", [(small_dit, dit_inputs), (small_t5film, t5film_inputs)], ids=["dit", "t5film"])
@pytest.mark.parametrize("null", ["zero", "learned"])
def test_null_ignores_the_condition_values(make, inputs, null):
    torch.manual_seed(0)
    net = perturb(make(null=null)).eval()
    x, c_noise, cond = inputs(seed=1)
    _, _, other = inputs(seed=2)
    if "notes" in other:  # other lengths too
        other = {**other, "notes": other["notes"][:, :3], mask_key("notes"): other[mask_key("notes")][:, :3]}
    batch = x.shape[0]
    null_a = net(x, c_noise, {**cond, NULL: torch.ones(batch, dtype=torch.bool)})
    null_b = net(x, c_noise, {**other, NULL: torch.ones(batch, dtype=torch.bool)})
    torch.testing.assert_close(null_a, null_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net(x, c_noise, {}), null_a, atol=1e-5, rtol=1e-5)  # absent = null
    assert (net(x, c_noise, cond) - net(x, c_noise, other)).abs().max() > 1e-3  # without NULL they matter
    partly = net(x, c_noise, {**cond, NULL: torch.tensor([True] + [False] * (batch - 1))})
    torch.testing.assert_close(partly[0], null_a[0], atol=1e-5, rtol=1e-5)  # per item
    torch.testing.assert_close(partly[1:], net(x, c_noise, cond)[1:], atol=1e-5, rtol=1e-5)


def null_parameters(net: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in net.named_parameters() if name.endswith("null_value")}


@pytest.mark.parametrize("make,inputs", [(small_dit, dit_inputs), (small_t5film, t5film_inputs)], ids=["dit", "t5film"])
def test_learned_nulls_are_trained_by_condition_dropout(make, inputs):
    """From the zero start, gradient reaches the conditions after a few steps; the learned nulls must
    get it when (and only when) items are dropped to their null."""
    for dropout in (True, False):
        torch.manual_seed(0)
        net = make(null="learned")
        nulls = null_parameters(net)
        assert len(nulls) == 3
        denoiser = EDMDenoiser(net)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(4)
        for step in range(4):
            x, _, cond = inputs(seed=10 + step)
            if dropout:
                cond[NULL] = torch.arange(x.shape[0]) % 2 == 0  # half the items unconditional
            optimizer.zero_grad()
            denoiser.loss(x, cond, generator=g).backward()
            optimizer.step()
        for name, p in nulls.items():
            if dropout:
                assert p.grad is not None and p.grad.abs().max() > 0, name
                assert p.detach().abs().max() > 0, name
            else:
                assert p.grad is None or not p.grad.any(), name


@pytest.mark.parametrize("make,inputs", [(small_dit, dit_inputs), (small_t5film, t5film_inputs)], ids=["dit", "t5film"])
def test_classifier_free_guidance_over_the_backbones(make, inputs):
    torch.manual_seed(0)
    denoiser = EDMDenoiser(perturb(make(null="learned"))).eval()
    x, _, cond = inputs()
    sigma = torch.full((x.shape[0],), 1.5)
    conditional = denoiser(x, sigma, cond)
    unconditional = denoiser(x, sigma, {**cond, NULL: torch.ones(x.shape[0], dtype=torch.bool)})
    assert (conditional - unconditional).abs().max() > 1e-3
    torch.testing.assert_close(ClassifierFreeGuidance(denoiser, 1.0)(x, sigma, cond), conditional)
    torch.testing.assert_close(ClassifierFreeGuidance(denoiser, 0.0)(x, sigma, cond), unconditional)
    # w = 3 runs both branches in one batch of [cond; null]: masks and per-source conditions stacked
    # (a batch of 2B rounds differently from two of B, and w = 3 amplifies it: hence 1e-4)
    torch.testing.assert_close(ClassifierFreeGuidance(denoiser, 3.0)(x, sigma, cond),
                               unconditional + 3.0 * (conditional - unconditional), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- learning a conditional toy problem

EDM = EDMConfig(sigma_data=1.0, p_std=2.0)  # wide σ: the large-σ steps are where the level is decided


def toy_dit():
    """Two sources, each a constant curve at its own level (±1, given as a per-source vector): the
    samples must put each source at its own level — the set routing, through attention with no
    source positions."""
    sources, channels, length = 2, 1, 8
    net = build_backbone("dit", dict(in_channels=channels, patch=4, width=32, depth=2, heads=2, mlp_ratio=2.0,
                                     embedding_dim=32, conditions=[{"name": "level", "kind": "vector", "dim": 1}]))

    def batch(n: int, g: torch.Generator):
        level = torch.randint(0, 2, (n, sources, 1), generator=g).float() * 2 - 1
        return level[..., None].expand(n, sources, channels, length).clone(), {"level": level}

    return net, batch, 2.0  # spread between the classes: |1 - (-1)|


def toy_t5film():
    """A note id k → every frame at level_k; the id is repeated over a random number of real tokens and
    the padding holds random ids, so the answer is readable only through the mask."""
    channels, length, tokens = 2, 8, 4
    levels = torch.tensor([-1.5, 0.0, 1.5])
    net = build_backbone("t5film", dict(in_channels=channels, width=32, encoder_layers=1, decoder_layers=2, heads=2,
                                        mlp_dim=64, max_frames=length, max_tokens=tokens, embedding_dim=32,
                                        conditions=[{"name": "notes", "kind": "tokens", "dim": 1, "vocab": 3}]))

    def batch(n: int, g: torch.Generator):
        k = torch.randint(0, 3, (n,), generator=g)
        keep = torch.arange(tokens)[None] < torch.randint(1, tokens + 1, (n, 1), generator=g)
        ids = torch.where(keep, k[:, None], torch.randint(0, 3, (n, tokens), generator=g))
        return levels[k][:, None, None].expand(n, channels, length).clone(), {"notes": ids, mask_key("notes"): keep}

    return net, batch, 1.5


def toy_unet1d():
    """x0 = 1.5 × the frame condition, a rising or a falling ramp."""
    length = 16
    net = build_backbone("unet1d", dict(in_channels=1, channels=[16, 32], blocks_per_level=1, embedding_dim=32,
                                        attention=False, conditions=[{"name": "curve", "kind": "frames", "dim": 1}]))
    ramp = torch.linspace(-1, 1, length)
    patterns = torch.stack([ramp, -ramp])

    def batch(n: int, g: torch.Generator):
        curve = patterns[torch.randint(0, 2, (n,), generator=g)][:, None]
        return 1.5 * curve, {"curve": curve}

    return net, batch, (1.5 * (patterns[0] - patterns[1])).abs().mean().item()


@pytest.mark.parametrize("toy", [toy_dit, toy_t5film, toy_unet1d], ids=["dit", "t5film", "unet1d"])
def test_backbone_learns_a_conditional_toy(toy):
    torch.manual_seed(0)
    net, batch, spread = toy()
    denoiser = EDMDenoiser(net, EDM)

    def sampled_error() -> float:
        x0, cond = batch(256, torch.Generator().manual_seed(5))
        with torch.no_grad():
            drawn = sample(denoiser, x0.shape, steps=12, cond=cond, config=EDM, generator=torch.Generator().manual_seed(2))
        return (drawn - x0).abs().mean().item()

    assert sampled_error() > 0.25 * spread  # untrained: samples ~N(0, 1), whatever the condition
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        x0, cond = batch(64, g)
        loss = denoiser.loss(x0, cond, generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert sampled_error() < 0.25 * spread
