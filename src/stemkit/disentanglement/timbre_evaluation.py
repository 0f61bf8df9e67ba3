"""DisMix's Table 3 on chorales: give every part of a mixture the timbre of another mixture's same part.

For each test chorale A, the next chorale B of the set (sorted order, wrapping) donates its timbres: A's
excerpt and B's are encoded (queries cut from each part's own stem outside the excerpt), A's timbre
latents are all replaced by B's, part for part (SATB), and the decoder renders the parts. Judged as the
paper judges:

- **instrument accuracy**: the 13-way classifier (:class:`~stemkit.disentanglement.classifier.MelClassifier`)
  should hear B's instrument in each decoded part;
- **pitch accuracy**: pYIN on each decoded part should hear A's notes of that part
  (:func:`stemkit.metrics.synthesis.pitch_accuracy`);
- **FD**: Fréchet distance between the classifier's embeddings of the decoded parts and of real parts of
  the same set — on *our* classifier's embedding, not VGGish, so it compares rows of our table only.

Beyond the paper, every swap is checked against **ground truth**: FluidSynth renders A's notes of the part
with B's instrument (B's soundfont), and the decoded part is compared (log-mel L1 after matching
loudness) with that and with A's original part; per instrument pair (A's → B's) the report gives both
distances and how often the output is closer to the truth.

The classifiers' own accuracy on the real parts of the excerpts is reported with the table so a reader
knows how far to trust the judge.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from stemkit.data.ensembles import INSTRUMENTS
from stemkit.data.layout import list_tracks
from stemkit.disentanglement.classifier import MelClassifier
from stemkit.disentanglement.swap import TimbreSwapper, read_window
from stemkit.errors import StemkitError
from stemkit.midi.notes import Note, read_midi_tracks


def excerpt_notes(midi: Path, start: float, seconds: float) -> list[Note]:
    """A part's notes that sound in ``[start, start + seconds)``, clipped to it and moved to start at 0."""
    notes = [n for t in read_midi_tracks(midi) for n in t.notes]
    return [Note(n.pitch, max(0.0, n.start - start), min(seconds, n.end - start), n.velocity)
            for n in notes if n.end > start and n.start < start + seconds - 0.02]


def evaluate_timbre_swaps(swapper: TimbreSwapper, classifier: MelClassifier, dataset: str | Path, limit: int | None = None,
                          start: float = 0.0, seconds: float = 4.0, seed: int = 0, progress: bool = True) -> dict:
    """Table 3's row for ``swapper``'s model on the chorale set ``dataset`` (see the module docstring)."""
    from tqdm import tqdm

    from stemkit.data.render import FluidSynthRenderer
    from stemkit.metrics.frechet import frechet_distance
    from stemkit.metrics.synthesis import log_mel_l1, pitch_accuracy

    rate = swapper.sample_rate
    if classifier.sample_rate != rate:
        raise StemkitError(f"the classifier reads {classifier.sample_rate} Hz audio, the model makes {rate} Hz")
    classes = list(classifier.config.instruments)
    tracks = list_tracks(dataset)
    if len(tracks) < 2:
        raise StemkitError(f"{dataset} holds {len(tracks)} chorale track(s): a swap needs at least two")
    unknown = sorted({i for t in tracks for i in t.instruments} - set(classes))
    if unknown:
        raise StemkitError(f"{dataset} has parts played by {', '.join(unknown)}, which the classifier does not know")
    chosen = tracks[: limit or len(tracks)]
    renderers: dict[str, FluidSynthRenderer] = {}

    def judge(audio: torch.Tensor) -> tuple[int, torch.Tensor]:
        with torch.no_grad():
            mel = classifier.log_mel(audio.reshape(1, -1))
            return int(classifier(mel)[1].argmax()), classifier.embed(mel)[0]

    rows, fake, real = [], [], []
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for index, a in enumerate(tqdm(chosen, desc="swaps", unit="mixture", disable=not progress)):
        b = tracks[(tracks.index(a) + 1) % len(tracks)]
        if len(a.stems) != len(b.stems):
            raise StemkitError(f"{a.path} and {b.path} have different part counts")
        parts_a = swapper.read(a.path, start=start, seconds=seconds)
        parts_b = swapper.read(b.path, start=start, seconds=seconds)
        decoded, _ = swapper.swap(parts_a, parts_b, seed=seed + index)
        samples = decoded.shape[-1]
        soundfont = b.metadata.get("soundfont")
        for part in range(len(a.stems)):
            notes = excerpt_notes(a.path / "stems_MIDI" / f"{a.stems[part].stem}.mid", start, samples / rate)
            if not notes:
                continue
            audio = decoded[part, 0]
            heard, embedding = judge(audio)
            original = _stem_excerpt(a.stems[part], start, samples, rate)
            real_heard, real_embedding = judge(original)
            fake.append(embedding.numpy())
            real.append(real_embedding.numpy())
            row = {"instrument_ok": classes[heard] == b.instruments[part], "pitch": pitch_accuracy(audio, rate, notes),
                   "classifier_ok": classes[real_heard] == a.instruments[part]}
            if soundfont and Path(soundfont).is_file():
                renderer = renderers.setdefault(soundfont, FluidSynthRenderer(soundfont, rate))
                truth = torch.from_numpy(renderer.render(notes, INSTRUMENTS[b.instruments[part]].program, samples))
                to_truth = log_mel_l1(truth, audio, rate, match_loudness=True)
                to_original = log_mel_l1(original, audio, rate, match_loudness=True)
                row.update(to_truth=to_truth, to_original=to_original)
                pairs[f"{a.instruments[part]}→{b.instruments[part]}"].append((to_truth, to_original))
            rows.append(row)
    if not rows:
        raise StemkitError(f"no part of {dataset} plays a note in the excerpt ({start:g} s + {seconds:g} s)")
    judged = [r for r in rows if "to_truth" in r]
    result = {
        "mixtures": len(chosen), "parts": len(rows), "seconds": seconds, "start": start,
        "instrument": float(np.mean([r["instrument_ok"] for r in rows])),
        "pitch": float(np.nanmean([r["pitch"] for r in rows])),
        "fd": frechet_distance(np.stack(real), np.stack(fake)) if len(rows) >= 2 else float("nan"),
        "classifier_instrument": float(np.mean([r["classifier_ok"] for r in rows])),
        "ground_truth": {
            "parts": len(judged),
            "to_truth": float(np.mean([r["to_truth"] for r in judged])) if judged else float("nan"),
            "to_original": float(np.mean([r["to_original"] for r in judged])) if judged else float("nan"),
            "closer_to_truth": float(np.mean([r["to_truth"] < r["to_original"] for r in judged])) if judged else float("nan"),
            "pairs": {pair: {"parts": len(v), "to_truth": float(np.mean([t for t, _ in v])),
                             "to_original": float(np.mean([o for _, o in v])),
                             "closer_to_truth": float(np.mean([t < o for t, o in v]))} for pair, v in sorted(pairs.items())},
        },
    }
    return result


def _stem_excerpt(stem: Path, start: float, samples: int, rate: int) -> torch.Tensor:
    """``samples`` of a stem from ``start`` seconds (zero-padded past its end), mono ``[samples]``."""
    piece = read_window(stem, rate, int(round(start * rate)), samples)[0]
    return torch.nn.functional.pad(piece, (0, samples - piece.shape[-1]))


def format_timbre_table(result: dict) -> str:
    """Table 3's row for one model, the judge's own accuracy, and the ground-truth check, as text."""
    gt = result["ground_truth"]
    lines = [
        f"{result['mixtures']} mixtures, {result['parts']} parts, {result['seconds']:g} s from {result['start']:g} s",
        f"classifier on the real parts: instrument {100 * result['classifier_instrument']:.2f} %",
        f"timbre swapped: instrument {100 * result['instrument']:.2f} %, pitch {100 * result['pitch']:.2f} %, FD {result['fd']:.2f}",
        f"ground truth (log-mel L1, loudness matched): to truth {gt['to_truth']:.3f}, to original {gt['to_original']:.3f}, "
        f"closer to truth {100 * gt['closer_to_truth']:.1f} % of {gt['parts']} parts",
    ]
    for pair, row in gt["pairs"].items():
        lines.append(f"  {pair:28s} n={row['parts']:4d}  to truth {row['to_truth']:.3f}  to original {row['to_original']:.3f}  "
                     f"closer {100 * row['closer_to_truth']:.1f} %")
    return "\n".join(lines)
