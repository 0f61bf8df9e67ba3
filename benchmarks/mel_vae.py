"""How much a mel VAE loses: test chorales' own mels through the VAE, next to an untrained code of the same size.

    python benchmarks/mel_vae.py --vae mel-vae-chorales \\
        --sets data/robust/random-plain-fluidr3 data/robust/random-recital-musescore --tracks 8 --seconds 4

Why: DisMix's latent-diffusion decoder samples the VAE's latents, so the VAE's round trip is the ceiling of
everything it renders (Table 3's pitch accuracy included). For the first ``--tracks`` chorales of each set
(test split: ``stemkit data chorales --split test``), the first ``--seconds`` of the mix and of every part are
turned into the VAE's scaled log-mel and then:

- **mel**: decoded as they are (the codec's own ceiling: only the decoder loses anything);
- **VAE**: encoded to the posterior mean, decoded to a mel;
- **2× band pooling**: each pair of mel bands averaged and repeated — as many numbers per frame as the
  VAE's latent holds (8 channels × 16 bands per 4 frames = 32 per frame, the mel has 64), without learning.

Printed per set and signal (mix, parts): the L1 in the VAE's own space (scaled log-mel in [−1, 1], what it
trains on), then, after the mel decoder (``--decoder``: Griffin-Lim or a mel vocoder for these mel
settings), log-mel L1 and MR-STFT to the recording (:mod:`stemkit.metrics.synthesis`), and for parts pYIN's
pitch accuracy against the part's MIDI (mean, worst instrument in brackets).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from specdiff import load_track  # the benchmark next door: a chorale's parts with their notes
from stemkit.data.layout import list_tracks
from stemkit.metrics.synthesis import log_mel_l1, mrstft_distance, pitch_accuracy
from stemkit.models import load_model
from stemkit.synthesis.mel_codec import MelCodec


def band_pooled(mel: torch.Tensor) -> torch.Tensor:
    """Each pair of bands replaced by its mean: half the numbers, no learning (the same-size floor)."""
    pooled = mel.unflatten(-2, (mel.shape[-2] // 2, 2)).mean(dim=-2)
    return pooled.repeat_interleave(2, dim=-2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", required=True, help="a mel-vae model (name, export or checkpoint)")
    parser.add_argument("--sets", type=Path, nargs="+", required=True, help="chorale datasets (test split)")
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="excerpt length from the start (rounded down to whole latent frames)")
    parser.add_argument("--decoder", default="griffin-lim",
                        help="'griffin-lim' (the default, whatever the VAE names) or a mel-vocoder for the VAE's mel settings")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    args = parser.parse_args()
    if args.tracks < 1 or args.seconds <= 0:
        parser.error("--tracks must be at least 1 and --seconds above 0")
    torch.manual_seed(0)
    vae, _ = load_model(args.vae, family="mel-vae")
    vae.eval()
    codec = MelCodec(vae.config.mel_config())
    codec.pick_decoder(args.decoder)  # "griffin-lim" means it, even where the VAE names a vocoder of its own
    rate = vae.sample_rate
    seconds = int(args.seconds * rate) // vae.hop * vae.hop / rate
    rows = {"mel": lambda mel: mel,
            "VAE": lambda mel: vae.decode_mel(vae.encode(mel)[0]).clamp(-1.0, 1.0),
            "2× band pooling (same size)": band_pooled}
    results: dict = {}
    print(f"decoder: {args.decoder}; first {seconds:.2f} s of {args.tracks} chorales per set")
    print("| set | signal | row | VAE-space L1 | log-mel L1 | MR-STFT | pitch (worst instrument) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for root in args.sets:
        tracks = [load_track(t.path, seconds, rate) for t in list_tracks(root)[: args.tracks]]
        for row, code in rows.items():
            scores: dict[str, list[tuple[float, float, float]]] = {"mix": [], "parts": []}
            pitch: dict[str, list[float]] = defaultdict(list)
            for track in tracks:
                signals = [("mix", track["mix"], None)] + [("parts", p["audio"], p) for p in track["parts"]]
                for kind, audio, part in signals:
                    if audio.abs().max() < 1e-3:
                        continue
                    with torch.no_grad():
                        mel = vae.mel(audio[None, None])
                        coded = code(mel)
                        rendered = codec.decode(coded)[0, 0]
                    scores[kind].append(((coded - mel).abs().mean().item(), log_mel_l1(audio, rendered, rate),
                                         mrstft_distance(audio, rendered, rate)))
                    if part is not None and part["notes"]:
                        pitch[part["instrument"]].append(pitch_accuracy(rendered, rate, part["notes"]))
            for kind, values in scores.items():
                space, mel_l1, stft = np.mean(values, axis=0)
                entry = {"items": len(values), "vae_space_l1": space, "log_mel_l1": mel_l1, "mrstft": stft}
                shown = ""
                if kind == "parts":
                    per_instrument = {name: float(np.nanmean(v)) for name, v in pitch.items()}
                    entry["pitch"] = float(np.nanmean([a for v in pitch.values() for a in v]))
                    entry["pitch_per_instrument"] = per_instrument
                    worst = min(per_instrument, key=per_instrument.get)
                    shown = f"{entry['pitch']:.3f} ({per_instrument[worst]:.3f} {worst})"
                results.setdefault(root.name, {}).setdefault(kind, {})[row] = entry
                print(f"| {root.name} | {kind} | {row} | {space:.3f} | {mel_l1:.3f} | {stft:.3f} | {shown} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"vae": args.vae, "decoder": args.decoder, "seconds": seconds,
                                         "tracks": args.tracks, "sets": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
