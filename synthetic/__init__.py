"""Reproducible recipes for the course models shipped in ``lococourse/assets/models/``.

Each recipe is ``python -m synthetic.<name> [--out DIR] [--work DIR] [--time-limit S]``:
a dataclass config with a seed, resumable training (lococourse.models.train), then an export of the EMA UNet
as a diffusers folder with a model card (card.json, README.md) and a grid of DDIM samples.
"""
from synthetic.common import ASSETS, RecipeConfig, list_models, load_card

__all__ = ["ASSETS", "RecipeConfig", "list_models", "load_card"]
