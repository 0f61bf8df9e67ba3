"""stemkit: make multi-instrument datasets, separate, disentangle and synthesize music stems."""

__version__ = "0.1.0"
