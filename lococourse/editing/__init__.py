"""Editing: directions, LOCO Edit (Algorithm 1), T-LOCO (Algorithms 3–4), masks and pixel metrics."""
