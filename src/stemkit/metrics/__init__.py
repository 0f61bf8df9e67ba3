"""Metrics: separation (cSDR, uSDR, SI-SDR, SIR, SAR, ISR) and synthesis (log-mel L1, MR-STFT, pitch accuracy)."""

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

__all__ = [
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
