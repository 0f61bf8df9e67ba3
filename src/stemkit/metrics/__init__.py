"""Metrics: separation (cSDR, uSDR, SI-SDR, SIR, SAR, ISR)."""

from stemkit.metrics.separation import (
    METRICS,
    aggregate,
    bss_eval_frames,
    evaluate_track,
    si_sdr,
    usdr,
)

__all__ = ["METRICS", "aggregate", "bss_eval_frames", "evaluate_track", "si_sdr", "usdr"]
