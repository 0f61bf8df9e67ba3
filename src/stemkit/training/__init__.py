"""Training: Lightning systems and data modules, and the ``stemkit fit`` entry point (LightningCLI).

Models never read files and datasets never build models; they meet here.
"""
