"""How long a spectrogram-synthesis model takes per 5.12-s segment: diffusion sampling (encoding the notes
and context once per segment, and for comparison at every sampler step, as before), and the
autoregressive baseline generating frame by frame with its cache and, for comparison, by re-running
the whole network on every frame so far (how it generated before the cache).

    python benchmarks/specdiff_speed.py --models runs/export/specdiff-preview-6000.safetensors \\
        runs/specdiff-cpu-ar/checkpoints/last.ckpt --segments 2 --threads 1

Each model renders the first ``--segments`` segments of ``--midi``; the mel only, no vocoder. Rows give
seconds per segment and how many times faster than real time that is; the autoregressive rows also check
that each cached frame is what the whole network predicts from the frames before it.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

from stemkit.errors import StemkitError
from stemkit.midi.notes import read_midi_tracks
from stemkit.midi.tokens import encode_piece
from stemkit.models import load_model
from stemkit.synthesis.specdiff import SILENCE, SpecDiff, pad_tokens


def recomputed_frames(model: SpecDiff, cond: dict[str, torch.Tensor], frames: int) -> torch.Tensor:
    """The uncached way: each new frame from one full causal pass over every frame before it."""
    mel = torch.full((1, model.codec.feature_channels, 1), SILENCE)
    for _ in range(frames):
        mel = torch.cat([mel, model.predict_frames(mel, cond)[..., -1:].clamp(-1.0, 1.0)], dim=-1)
    return mel[..., 1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="specdiff models: shipped names, exports or .ckpt files")
    parser.add_argument("--midi", type=Path, default=Path("data/robust/random-plain-fluidr3/random_track000003/mix.mid"),
                        help="the notes (default: a test chorale's MIDI)")
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--steps", type=int, default=32, help="Heun steps of the diffusion rows")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        tracks = read_midi_tracks(args.midi)
    except StemkitError as error:
        raise SystemExit(f"error: {error}") from None
    if args.segments < 1 or args.steps < 1:
        raise SystemExit("error: --segments and --steps must be at least 1")
    print(f"{args.midi}: {args.segments} segment(s), {args.threads} thread(s)\n")
    print("| model | generation | s per 5.12-s segment | × real time |")
    print("|---|---|---:|---:|")
    for name in args.models:
        model, _ = load_model(name, family="specdiff")
        model.eval()
        seconds = args.segments * model.config.vocabulary().segment_seconds
        label = Path(name).stem if Path(name).suffix else name

        def row(how: str, run) -> torch.Tensor:
            start = time.perf_counter()
            with torch.no_grad():
                mel = run()
            per_segment = (time.perf_counter() - start) / args.segments
            print(f"| {label} | {how} | {per_segment:.2f} | {model.config.vocabulary().segment_seconds / per_segment:.2f} |", flush=True)
            return mel

        if not model.config.autoregressive:
            sampled = lambda: model.generate_mel(tracks, seconds, steps=args.steps, generator=torch.Generator().manual_seed(0))  # noqa: E731
            reused = row(f"diffusion, {args.steps} Heun steps", sampled)
            net = model.denoiser.net
            net.reusing_encodings = contextlib.nullcontext  # how it sampled before: the notes and context encoded at every step
            again = row(f"diffusion, {args.steps} Heun steps, encoding at every step", sampled)
            del net.reusing_encodings
            print(f"|  | the two mels' largest difference {float((again - reused).abs().max()):.1e} | | |")
            continue
        cached = row("autoregressive, cached", lambda: model.generate_mel(tracks, seconds))

        def recomputed() -> torch.Tensor:
            piece, mels, previous = encode_piece(tracks, model.config.vocabulary(), seconds), [], None
            for segment in piece.segments:
                mel = recomputed_frames(model, model.conditions(*pad_tokens([segment]), previous), model.config.segment_frames)
                mels.append(mel[0])
                previous = mel
            return torch.cat(mels, dim=-1)

        row("autoregressive, whole network per frame", recomputed)
        # The two ways agree frame by frame, not over a whole segment: a last-bit difference in one frame
        # grows as each frame is fed back, so the check is each cached frame against the whole network's
        # prediction from the cached frames before it (one teacher-forced pass per segment).
        frames, previous, worst = model.config.segment_frames, None, 0.0
        for index, segment in enumerate(encode_piece(tracks, model.config.vocabulary(), seconds).segments):
            mel = cached[None, :, index * frames:(index + 1) * frames]
            with torch.no_grad():
                again = model.predict_frames(mel, model.conditions(*pad_tokens([segment]), previous)).clamp(-1.0, 1.0)
            worst, previous = max(worst, float((again - mel).abs().max())), mel
        print(f"|  | cached frames against the whole network's prediction: largest difference {worst:.1e} | | |")


if __name__ == "__main__":
    main()
