"""stemkit: make multi-instrument datasets, separate, disentangle and synthesize music stems."""

__version__ = "0.1.0"

__all__ = ["ProgressiveSeparator", "Separator", "Synthesizer", "load_separator", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import stemkit` (and the CLI's --help) stays fast and torch-free until needed.
    if name == "Separator":
        from stemkit.separation.separator import Separator

        return Separator
    if name == "ProgressiveSeparator":
        from stemkit.separation.progressive import ProgressiveSeparator

        return ProgressiveSeparator
    if name == "Synthesizer":
        from stemkit.synthesis.synthesize import Synthesizer

        return Synthesizer
    if name == "load_separator":
        from stemkit.separation.adapters import load_separator

        return load_separator
    raise AttributeError(f"module 'stemkit' has no attribute {name!r}")
