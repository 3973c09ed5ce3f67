"""Recipe ``faces16``: x₀-prediction DDPM on 16×16 procedural cartoon faces (d = 768).

    python -m synthetic.faces16 [--out DIR] [--work DIR] [--time-limit S]
"""
from __future__ import annotations

from lococourse.data.faces import face_sampler
from synthetic.common import recipe_main
from synthetic.faces32 import config as _faces_config


def config(**kw):
    kw.setdefault("steps", 2000)
    kw.setdefault("batch_size", 64)
    kw.setdefault("extensions", ())
    return _faces_config(size=16, name=kw.pop("name", "faces16"), **kw)


def make():
    cfg = config()
    return cfg, face_sampler(16), {}


if __name__ == "__main__":
    recipe_main(make, module=__spec__.name)
