"""Learned models: diffusers adapters (PMP and ε-model per parameterisation), jvp-safe attention, DDIM on the paper's grid, text-to-image pipelines, the registry, tiny stand-ins and training."""
