"""`stemkit dismix swap / encode / decode` end to end on a tiny DisMix latent model, and their refusals."""

from __future__ import annotations

import pytest
import torch

from stemkit.audio.io import load_audio
from stemkit.disentanglement.dismix_ldm import DisMixLDM, DisMixLDMConfig
from stemkit.disentanglement.swap import EncodedParts, TimbreSwapper

VAE = dict(channels=8, channel_mults=[1, 2, 2], latent_channels=4, groups=4, mel={"griffin_lim_iters": 2})
EXCERPT = ["--seconds", "1", "--query-seconds", "0.5"]
SAMPLING = ["--steps", "2", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained tiny model whose every layer has weight, so pitch and timbre latents both reach the output."""
    from stemkit.models import save_model

    torch.manual_seed(0)
    model = DisMixLDM(DisMixLDMConfig(vae=VAE, hidden=16, layers=2, query_channels=8,
                                      network={"patch": 2, "width": 32, "depth": 1, "heads": 2, "embedding_dim": 32}))
    for name, p in model.named_parameters():
        if not name.startswith("vae."):
            torch.nn.init.normal_(p, std=0.2)
    return save_model(model, tmp_path_factory.mktemp("models") / "tiny-dismix-ldm.safetensors")


def _as_written(audio: torch.Tensor) -> torch.Tensor:
    """Parts as write_parts stores them: scaled down together only when the parts or their mix would clip."""
    peak = max(float(audio.sum(dim=0).abs().max()), float(audio.abs().max()))
    return audio * (0.99 / peak if peak > 0.99 else 1.0)


def _tracks(chorale_dir):
    return sorted(p for p in chorale_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _stems(folder):
    names = sorted(p.name for p in folder.iterdir())
    return names, [load_audio(folder / n)[0] for n in names]


def test_swap_writes_as_parts_with_bs_instruments_and_their_mix(cli, chorale_dir, tiny_model, tmp_path, one_thread):
    a, b = _tracks(chorale_dir)[:2]
    out = tmp_path / "swap"
    cli("dismix", "swap", str(a), "--timbre-from", str(b), "--out", str(out), "--model", str(tiny_model), *EXCERPT, *SAMPLING, check=True)
    names, audio = _stems(out)
    swapper = TimbreSwapper(str(tiny_model), device="cpu", steps=2)
    instruments_b = swapper.read(b, seconds=1, query_seconds=0.5).instruments
    assert names == sorted([f"{i}_{n}.wav" for i, n in enumerate(instruments_b)] + ["mix.wav"])
    assert all(x.shape == (1, 16000) for x in audio)
    parts = [x for n, x in zip(names, audio) if n != "mix.wav"]
    assert torch.allclose(sum(parts), audio[names.index("mix.wav")], atol=4 / 32768)  # the mix is the parts' sum

    # the files are the Python API's swap: A's pitch latents with B's timbre latents, decoded with the seed
    parts_a, parts_b = swapper.read(a, seconds=1, query_seconds=0.5), swapper.read(b, seconds=1, query_seconds=0.5)
    expected, _ = swapper.swap(parts_a, parts_b, seed=0)
    written = torch.stack([audio[names.index(f"{i}_{n}.wav")] for i, n in enumerate(instruments_b)])
    assert torch.allclose(written, _as_written(expected), atol=2 / 32768)
    # ... and B's timbre made a difference: A decoded with its own timbre sounds otherwise
    own = swapper.decode(swapper.encode(parts_a), seed=0)
    assert (own - expected).abs().max() > 1e-3

    again = tmp_path / "again"
    cli("dismix", "swap", str(a), "--timbre-from", str(b), "--out", str(again), "--model", str(tiny_model), *EXCERPT, *SAMPLING, check=True)
    assert all((out / n).read_bytes() == (again / n).read_bytes() for n in names)  # same seed, same bytes


def test_encode_then_decode_is_the_unswapped_rendering(cli, chorale_dir, tiny_model, tmp_path, one_thread):
    a = _tracks(chorale_dir)[0]
    latents = tmp_path / "a.safetensors"
    cli("dismix", "encode", str(a), "--out", str(latents), "--model", str(tiny_model), *EXCERPT, *SAMPLING, check=True)
    encoded = EncodedParts.load(latents)
    assert encoded.nu.shape[0] == encoded.tau.shape[0] == 4 and encoded.samples == 16000
    out = tmp_path / "decoded"
    cli("dismix", "decode", str(latents), "--out", str(out), *SAMPLING, check=True)  # the model named in the file
    names, audio = _stems(out)
    swapper = TimbreSwapper(str(tiny_model), device="cpu", steps=2)
    expected = swapper.decode(swapper.encode(swapper.read(a, seconds=1, query_seconds=0.5)), seed=0)
    written = torch.stack([audio[names.index(f"{i}_{n}.wav")] for i, n in enumerate(encoded.instruments)])
    assert torch.allclose(written, _as_written(expected), atol=2 / 32768)


def test_a_mixture_file_takes_one_query_per_part(cli, chorale_dir, tiny_model, tmp_path, one_thread):
    a, b = _tracks(chorale_dir)[:2]
    queries = sorted(str(p) for p in (b / "stems_audio").iterdir())
    out = tmp_path / "files"
    cli("dismix", "swap", str(a / "mix.wav"), "--queries", *sorted(str(p) for p in (a / "stems_audio").iterdir()),
        "--timbre-from", str(b / "mix.wav"), "--timbre-queries", *queries, "--out", str(out), "--model", str(tiny_model),
        *EXCERPT, *SAMPLING, check=True)
    assert len(list(out.glob("*.wav"))) == 5


def test_bad_swaps_are_one_line_and_write_nothing(cli, chorale_dir, tiny_model, tmp_path, one_thread):
    a, b = _tracks(chorale_dir)[:2]
    model = ["--model", str(tiny_model)]
    cases = {
        "has 3 parts": ["dismix", "swap", str(a), "--timbre-from", str(b / "mix.wav"), "--timbre-queries",
                    *sorted(str(p) for p in (b / "stems_audio").iterdir())[:3]],
        "give one --queries": ["dismix", "swap", str(a / "mix.wav"), "--timbre-from", str(b)],
        "run past its end": ["dismix", "swap", str(a), "--timbre-from", str(b), "--start", "3.5"],
        "drop --queries": ["dismix", "swap", str(a), "--queries", str(a / "mix.wav"), "--timbre-from", str(b)],
    }
    for i, (message, args) in enumerate(cases.items()):
        out = tmp_path / f"out{i}"
        result = cli(*args, "--out", str(out), *model, *EXCERPT, *SAMPLING)
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert not list(out.glob("*.wav"))
    not_latents = tmp_path / "x.safetensors"
    not_latents.write_bytes(b"garbage")
    result = cli("dismix", "decode", str(not_latents), "--out", str(tmp_path / "d"), *model, *SAMPLING)
    assert result.returncode != 0 and "not a latents file" in result.stderr and "Traceback" not in result.stderr
