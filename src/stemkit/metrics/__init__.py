"""Metrics: separation (cSDR, uSDR, SI-SDR, SIR, SAR, ISR), synthesis (log-mel L1, MR-STFT, pitch accuracy),
note F1 of a transcription, and the Fréchet distance of two embedding sets."""

from stemkit.metrics.frechet import frechet_distance, mfcc_windows
from stemkit.metrics.separation import (
    METRICS,
    aggregate,
    bss_eval_frames,
    evaluate_track,
    si_sdr,
    usdr,
)
from stemkit.metrics.synthesis import (
    SYNTHESIS_METRICS,
    PitchReport,
    log_mel_l1,
    mrstft_distance,
    pitch_accuracy,
    pitch_report,
    synthesis_metrics,
)
from stemkit.metrics.transcription import BasicPitchTranscriber, note_f1

__all__ = [
    "BasicPitchTranscriber",
    "frechet_distance",
    "mfcc_windows",
    "note_f1",
    "METRICS",
    "SYNTHESIS_METRICS",
    "PitchReport",
    "aggregate",
    "bss_eval_frames",
    "evaluate_track",
    "log_mel_l1",
    "mrstft_distance",
    "pitch_accuracy",
    "pitch_report",
    "si_sdr",
    "synthesis_metrics",
    "usdr",
]
