"""Disentangling each instrument's pitch and timbre inside a mixture (DisMix), and the judges that score a swap."""
