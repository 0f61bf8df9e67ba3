"""Synthesis: an audio VAE, a MIDI-driven latent diffusion synthesizer conditioned on pitch and envelope."""
