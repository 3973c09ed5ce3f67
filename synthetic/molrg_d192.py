"""Recipe ``molrg_d192``: x₀-prediction DDPM on image-shaped MoLRG data, d = 192 = 3×8×8, ranks [4, 8, 12].

    python -m synthetic.molrg_d192 [--out DIR] [--work DIR] [--time-limit S]
"""
from __future__ import annotations

from synthetic.common import recipe_main
from synthetic.molrg_d48 import config as d48_config
from synthetic.molrg_d48 import make_from


def config(**kw):
    kw.setdefault("name", "molrg_d192")
    kw.setdefault("shape", (3, 8, 8))
    kw.setdefault("ranks", (4, 8, 12))
    kw.setdefault("channels", (32, 64, 64))
    kw.setdefault("steps", 2000)
    return d48_config(**kw)


def make():
    return make_from(config())


if __name__ == "__main__":
    recipe_main(make, module=__spec__.name)
