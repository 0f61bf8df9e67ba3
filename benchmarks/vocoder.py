"""Mel → audio: how close a vocoder's rendering of a recording's own mel comes to the recording.

    python benchmarks/vocoder.py --vocoder runs/vocoder-mel-small/checkpoints/last.ckpt \\
        --sets data/robust/string-plain-fluidr3 data/robust/random-recital-musescore --tracks 8 --seconds 4

For the first ``--tracks`` chorales of each set (test-split chorales: ``stemkit data chorales --split
test``), an excerpt of the mix and of every stem is turned into the mel codec's features and back, by
Griffin-Lim (the codec's fallback) and by each vocoder. Printed per set and signal (mix, stems): log-mel
L1 and auraloss' multi-resolution STFT distance to the recording (both lower is better, 0 = identical;
:mod:`stemkit.metrics.synthesis`), and the speed as × real time on this machine. This is the "ground
truth encoded" ceiling of any model that samples mels: it cannot sound better than its vocoder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from stemkit.audio.io import load_audio
from stemkit.data.layout import list_tracks
from stemkit.metrics.synthesis import log_mel_l1, mrstft_distance
from stemkit.models import load_model
from stemkit.synthesis.mel_codec import MelCodec


def excerpts(root: Path, tracks: int, seconds: float, offset: float, rate: int) -> list[tuple[str, torch.Tensor]]:
    """``(kind, audio [1, T])`` for the mix and each stem of the first ``tracks`` chorales (silent stems skipped)."""
    out = []
    for track in list_tracks(root)[:tracks]:
        files = [("mix", track.mix)] + [("stems", stem) for stem in track.stems]
        for kind, path in files:
            audio = load_audio(path, start=int(offset * rate), frames=int(seconds * rate), mono=True)[0]
            if audio.abs().max() > 1e-3:
                out.append((kind, audio))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocoder", nargs="+", required=True, help="mel-vocoder models (names, exports or checkpoints)")
    parser.add_argument("--sets", type=Path, nargs="+", required=True, help="chorale datasets (test split)")
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--offset", type=float, default=2.0, help="excerpt start (s)")
    parser.add_argument("--no-griffin-lim", action="store_true", help="skip the Griffin-Lim row (slow)")
    args = parser.parse_args()
    torch.manual_seed(0)
    vocoders = [(str(v), load_model(v, family="mel-vocoder")[0]) for v in args.vocoder]
    settings = vocoders[0][1].config.mel_config()
    codec = MelCodec(settings)
    decoders = ([("Griffin-Lim", codec.decode)] if not args.no_griffin_lim else [])
    for name, model in vocoders:
        if model.config.mel_config() != settings:
            raise SystemExit(f"{name} was made for other mel settings than {vocoders[0][0]}")
        decoders.append((name, model))
    rate = settings.sample_rate
    print("| set | signal | items | decoder | log-mel L1 | MR-STFT | × real time |")
    print("|---|---|---:|---|---:|---:|---:|")
    for root in args.sets:
        items = excerpts(root, args.tracks, args.seconds, args.offset, rate)
        for decoder_name, decode in decoders:
            scores: dict[str, list[tuple[float, float]]] = {"mix": [], "stems": []}
            spent = 0.0
            for kind, audio in items:
                with torch.no_grad():
                    features = codec.encode(audio[None])
                    start = time.perf_counter()
                    rendered = decode(features)[0, 0]
                    spent += time.perf_counter() - start
                scores[kind].append((log_mel_l1(audio[0], rendered, rate), mrstft_distance(audio[0], rendered, rate)))
            speed = len(items) * args.seconds / spent
            for kind, values in scores.items():
                if values:
                    mel, stft = np.mean(values, axis=0)
                    print(f"| {root.name} | {kind} | {len(values)} | {decoder_name} | {mel:.3f} | {stft:.3f} | {speed:.0f} |")


if __name__ == "__main__":
    main()
