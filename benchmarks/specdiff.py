"""Multi-instrument synthesis from MIDI on test-split chorales: the table of issue 16 in BENCHMARKS.md.

Each test set is one ensemble rendered with one soundfont in one performance style (``stemkit data
chorales --split test``). For each row and set, the first ``--seconds`` of ``--tracks`` chorales:

Mix columns (every part rendered together from the chorale's MIDI):
- **log-mel L1** and **MR-STFT** to the set's own rendering of the same MIDI (lower is better);
- **note F1**: basic-pitch's transcription of the rendering against the MIDI's notes (onsets within
  50 ms, pitch within 50 cents, offsets ignored; :mod:`stemkit.metrics.transcription`);
- **FD**: Fréchet distance between the row's and the reference's window embeddings, pooled over the
  set, each dimension in units of the reference's spread: 1-s MFCC statistics, or with ``--judge`` the
  13-way instrument classifier's pooled trunk on 2-s windows (:mod:`stemkit.metrics.frechet`; comparable between rows, not with the paper's VGGish numbers).

Part columns (each part rendered alone from its own MIDI track):
- **pitch**: pYIN's frame pitch accuracy against the part's notes (the target is ≥ 0.8 per part);
- **instrument**: share of parts whose rendering is nearer (log-mel L1 after matching loudness) to
  FluidSynth's rendering of the same notes by the part's own instrument than by any of the other
  chorale instruments (12 distinct General MIDI programs, the part's own soundfont) — top-1 — and the share
  of those other instruments it is nearer its own than to — pairwise (0.5 = chance); with ``--judge``, also
  the share of parts the 13-way classifier assigns to their own instrument.

Rows: the reference itself (ceiling; FD 0 by definition), the reference mel through Griffin-Lim, each
``--vocoder`` and the first model's own vocoder ("encoded": the ceiling of anything generated in that mel), each ``--model``, a sine per
part with a fixed envelope (floor), and ``--violin-model`` (the latent synthesizer) on violin parts only.

    python benchmarks/specdiff.py --model specdiff-chorales --sets data/robust/string-plain-fluidr3 \\
        data/robust/random-plain-fluidr3 data/robust/string-recital-musescore --tracks 8 --seconds 10.24
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from stemkit.atomic import atomic_output
from stemkit.audio.io import load_audio
from stemkit.data.ensembles import INSTRUMENTS
from stemkit.data.render import FluidSynthRenderer
from stemkit.metrics.frechet import frechet_distance, mfcc_windows
from stemkit.metrics.synthesis import log_mel_l1, mrstft_distance, pitch_accuracy
from stemkit.metrics.transcription import BasicPitchTranscriber, note_f1
from stemkit.midi.notes import MidiTrack, Note, read_midi
from stemkit.synthesis.baselines import render_sine
from stemkit.synthesis.conditioning import EnvelopeModel

PROGRAMS = sorted({i.program for i in INSTRUMENTS.values()})


def _cut(notes: list[Note], seconds: float) -> list[Note]:
    return [Note(n.pitch, n.start, min(n.end, seconds), n.velocity) for n in notes if n.start < seconds - 0.05]


def _audio(path: Path, samples: int) -> torch.Tensor:
    audio = load_audio(path, mono=True)[0][0][:samples]
    return torch.nn.functional.pad(audio, (0, samples - audio.shape[-1]))


def load_track(folder: Path, seconds: float, rate: int) -> dict:
    """A chorale's mix and parts, cut to ``seconds``: audio, notes, program and the soundfont each part was rendered with."""
    import yaml

    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    samples = int(round(seconds * rate))
    parts = []
    fonts = meta.get("stem_soundfont") or [meta["soundfont"]] * len(meta["instrument_name"])  # several fonts: one per part
    for index, (name, program) in enumerate(zip(meta["instrument_name"], meta["midi_program_number"])):
        tracks, _ = read_midi(folder / "stems_MIDI" / f"{index}_{name}.mid")
        notes = _cut(sorted((n for t in tracks for n in t.notes), key=lambda n: n.start), seconds)
        parts.append({"instrument": name, "program": int(program), "notes": notes, "soundfont": fonts[index],
                      "audio": _audio(folder / "stems_audio" / f"{index}_{name}.wav", samples)})
    return {"name": folder.name, "seconds": seconds, "rate": rate, "mix": _audio(folder / "mix.wav", samples), "parts": parts}


def midi_tracks(track: dict, parts: list[dict] | None = None) -> list[MidiTrack]:
    return [MidiTrack(p["instrument"], p["program"], p["notes"]) for p in (parts or track["parts"])]


def recognised(estimate: torch.Tensor, part: dict, renderings: dict[int, torch.Tensor], rate: int) -> tuple[bool, float]:
    """Is the rendering nearest to its own instrument's rendering of the same notes among all the chorale programs
    (top-1), and the share of the other programs it is nearer to its own than to (pairwise)?"""
    distances = {program: log_mel_l1(audio, estimate, rate, match_loudness=True) for program, audio in renderings.items()}
    own = distances[part["program"]]
    others = [d for program, d in distances.items() if program != part["program"]]
    return min(distances, key=distances.get) == part["program"], float(np.mean([own < d for d in others]))


class Rows:
    """Render functions of the table's rows: ``render(track) -> (mix or None, [part audio or None])``."""

    def __init__(self, args: argparse.Namespace) -> None:
        from stemkit.synthesis.synthesize import Synthesizer

        self.args = args
        label = lambda v: f"{Path(v).parents[1].name}/{Path(v).name}" if Path(v).suffix == ".ckpt" else Path(v).stem  # noqa: E731
        make = lambda name, vocoder=None: Synthesizer(name, device=args.device, steps=args.steps, sampler=args.sampler,  # noqa: E731
                                                      cfg=args.cfg, vocoder=vocoder)
        self.models = [make(name) for name in args.model]
        # each model's row again with each --model-vocoder as its decoder: the same sampled mels (same seed), decoded otherwise
        self.labels = {s.name: s for s in self.models}
        if len(self.labels) < len(self.models):
            raise SystemExit(f"--model: two models are named alike ({', '.join(s.name for s in self.models)}): export them under other names")
        for name, base in zip(args.model, list(self.models)):
            for vocoder in args.model_vocoder:
                self.labels[f"{base.name} → {label(vocoder)}"] = make(name, vocoder)
        self.models = list(self.labels.values())
        self.violin = Synthesizer(args.violin_model, device=args.device) if args.violin_model else None
        from stemkit.synthesis.mel_codec import MelCodec, MelCodecConfig

        # the "encoded" rows: the reference mel through Griffin-Lim, each --vocoder and the first model's own decoder
        self.decoders = {"Griffin-Lim": MelCodec(MelCodecConfig())}
        self.decoders.update({label(v): MelCodec(MelCodecConfig(vocoder=v)) for v in args.vocoder})
        own = next((s for s in self.models if hasattr(s.model, "codec")), None)
        if own is not None and own.model.codec.config.vocoder:
            self.decoders[f"{own.name}'s decoder"] = own.model.codec
        self.envelope = EnvelopeModel()

    def names(self) -> list[str]:
        names = ["reference (ceiling)"] + [f"reference mel → {label} (encoded)" for label in self.decoders]
        names += list(self.labels) + ["sine per part (floor)"]
        return names + ([f"{self.violin.name} (violin parts)"] if self.violin else [])

    def render(self, row: str, track: dict) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        seconds, rate = track["seconds"], track["rate"]
        samples = int(round(seconds * rate))
        fit = lambda audio: torch.nn.functional.pad(audio.reshape(-1)[:samples], (0, max(0, samples - audio.numel())))  # noqa: E731
        if row.startswith("reference ("):
            return track["mix"], [p["audio"] for p in track["parts"]]
        if row.endswith("(encoded)"):
            codec = self.decoders[row[len("reference mel → "):-len(" (encoded)")]]
            with torch.no_grad():
                code = lambda audio: fit(codec.decode(codec.encode(audio[None, None]))[0])  # noqa: E731
                return code(track["mix"]), [code(p["audio"]) for p in track["parts"]]
        if row.startswith("sine"):
            parts = [fit(render_sine(p["notes"], seconds, rate, self.envelope)) for p in track["parts"]]
            return sum(parts), parts
        if self.violin is not None and row.startswith(self.violin.name):
            return None, [fit(self.violin.render_lines([p["notes"]], seconds)) if p["instrument"] == "violin" else None
                          for p in track["parts"]]
        synth = self.labels[row]
        generator = lambda: synth._generator(0)  # noqa: E731
        play = lambda tracks: fit(synth.model.render_tracks(tracks, seconds, synth.steps, synth.sampler, synth.cfg, generator()))  # noqa: E731
        return play(midi_tracks(track)), [play(midi_tracks(track, [p])) for p in track["parts"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="*", default=["specdiff-chorales"], help="multi-instrument synthesizers to score")
    parser.add_argument("--violin-model", default="violin-ldm-chorales", help="the latent synthesizer ('' to skip)")
    parser.add_argument("--vocoder", nargs="*", default=[], help="mel-vocoders for more encoded rows (Griffin-Lim's and "
                        "the first model's own decoder are always there)")
    parser.add_argument("--model-vocoder", nargs="*", default=[], help="mel-vocoders (or griffin-lim) to decode each model's "
                        "samples with as well: one more row per model and vocoder")
    parser.add_argument("--sets", nargs="+", type=Path, default=[Path("data/robust/string-plain-fluidr3")])
    parser.add_argument("--tracks", type=int, default=8, help="chorales per set (spread over the set)")
    parser.add_argument("--seconds", type=float, default=10.24)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--sampler", default="heun")
    parser.add_argument("--cfg", type=float, default=None, help="guidance weight (default: each model's recommendation, else 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--judge", default="", help="a 13-way chorale instrument classifier (configs/dismix/classifier_chorales.yaml): "
                        "adds its accuracy on each part and computes the Fréchet distance on its embedding instead of MFCCs")
    parser.add_argument("--no-transcription", action="store_true", help="skip note F1 (basic-pitch not installed)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/specdiff.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = Rows(args)
    rate = 16000
    judge = None
    if args.judge:
        from stemkit.models import load_model

        judge, _ = load_model(args.judge, task="classification")

    def embed(audio: torch.Tensor) -> np.ndarray:
        """Per-window embeddings of a mix: the judge's pooled trunk on 2-s windows, else 1-s MFCC statistics."""
        if judge is None:
            return mfcc_windows(audio, rate)
        size = 2 * rate
        windows = audio.reshape(-1)[: audio.numel() // size * size].reshape(-1, size)
        with torch.no_grad():
            return judge.embed(judge.log_mel(windows)).numpy()

    def judged(audio: torch.Tensor, instrument: str) -> float:
        with torch.no_grad():
            logits = judge(judge.log_mel(audio.reshape(1, -1)))[1][0]
        return float(judge.config.instruments[int(logits.argmax())] == instrument)
    transcribe = None if args.no_transcription else BasicPitchTranscriber()
    results: dict[str, dict] = {}
    for folder in args.sets:
        tracks = sorted(p for p in folder.iterdir() if (p / "metadata.yaml").exists())
        tracks = tracks[:: max(1, len(tracks) // args.tracks)][: args.tracks]
        loaded = [load_track(t, args.seconds, rate) for t in tracks]
        renderers: dict[str, FluidSynthRenderer] = {}
        alternatives = []  # per track, per part: {program: FluidSynth rendering of the part's notes}

        def renderings(part: dict, samples: int) -> dict[int, torch.Tensor]:
            """The part's notes played by every chorale program, with the soundfont the part was rendered with."""
            if part["soundfont"] not in renderers:
                renderers[part["soundfont"]] = FluidSynthRenderer(part["soundfont"], rate)
            renderer = renderers[part["soundfont"]]
            return {program: torch.from_numpy(renderer.render(part["notes"], program, samples)) for program in PROGRAMS}

        for track in loaded:
            alternatives.append([renderings(p, int(round(track["seconds"] * rate))) for p in track["parts"]])
        reference_embedding = np.concatenate([embed(t["mix"]) for t in loaded])
        centre, spread = reference_embedding.mean(axis=0), reference_embedding.std(axis=0) + 1e-8
        standard = lambda e: (e - centre) / spread  # noqa: E731
        print(f"\n{folder}: {len(loaded)} chorales × {args.seconds:g} s", flush=True)
        print("| row | log-mel L1 ↓ | MR-STFT ↓ | note F1 ↑ | FD ↓ | pitch ↑ (worst instrument) | instrument top-1 / pairwise ↑ | judge ↑ | s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        results[str(folder)] = {}
        for row in rows.names():
            start = time.perf_counter()
            mix_scores, pitch, known, embeddings, heard = [], [], [], [], []
            for track, others in zip(loaded, alternatives):
                mix, parts = rows.render(row, track)
                if mix is not None:
                    all_notes = sorted((n for p in track["parts"] for n in p["notes"]), key=lambda n: n.start)
                    mix_scores.append({"log_mel_l1": log_mel_l1(track["mix"], mix, rate), "mrstft": mrstft_distance(track["mix"], mix, rate),
                                       "note_f1": note_f1(all_notes, transcribe(mix, rate)) if transcribe else math.nan})
                    embeddings.append(embed(mix))
                for part, audio, renderings in zip(track["parts"], parts, others):
                    if audio is None or not part["notes"]:
                        continue
                    pitch.append((part["instrument"], pitch_accuracy(audio, rate, part["notes"])))
                    known.append(recognised(audio, part, renderings, rate))
                    if judge is not None:
                        heard.append(judged(audio, part["instrument"]))
            spent = time.perf_counter() - start
            summary = {k: float(np.mean([s[k] for s in mix_scores])) if mix_scores else math.nan
                       for k in ("log_mel_l1", "mrstft", "note_f1")}
            summary["fd"] = frechet_distance(standard(reference_embedding), standard(np.concatenate(embeddings))) if embeddings else math.nan
            by_instrument = {name: float(np.nanmean([a for n, a in pitch if n == name])) for name in sorted({n for n, _ in pitch})}
            summary.update(pitch=float(np.nanmean([a for _, a in pitch])) if pitch else math.nan, pitch_by_instrument=by_instrument,
                           instrument=float(np.mean([top for top, _ in known])) if known else math.nan,
                           instrument_pairwise=float(np.mean([pair for _, pair in known])) if known else math.nan,
                           judge=float(np.mean(heard)) if heard else math.nan, seconds=spent)
            results[str(folder)][row] = summary
            worst = min(by_instrument.values()) if by_instrument else math.nan
            print(f"| {row} | {summary['log_mel_l1']:.3f} | {summary['mrstft']:.3f} | {summary['note_f1']:.3f} | {summary['fd']:.1f} | "
                  f"{summary['pitch']:.3f} ({worst:.3f}) | {summary['instrument']:.2f} / {summary['instrument_pairwise']:.2f} | {summary['judge']:.2f} | {spent:.0f} |", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.json) as tmp:
        tmp.write_text(json.dumps({"sets": [str(s) for s in args.sets], "tracks": args.tracks, "seconds": args.seconds,
                                   "models": args.model, "model_vocoders": args.model_vocoder, "judge": args.judge or None, "steps": args.steps, "sampler": args.sampler,
                                   "cfg": {synth.name: synth.cfg for synth in rows.models},
                                   "device": args.device, "threads": torch.get_num_threads(), "results": results}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
