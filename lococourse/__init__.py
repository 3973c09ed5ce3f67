"""lococourse: teach, verify and apply the theory of LOCO Edit (Chen et al., NeurIPS 2024).

Layers (each a subpackage; the import-linter contract in pyproject.toml enforces the order):
``core`` → ``jacobian`` → ``theory`` → ``models`` | ``data`` → ``editing`` → ``eval`` → ``course`` → ``cli``.
The names below are the theory lab's everyday tools, re-exported for ``from lococourse import …``.
"""
from lococourse.core.schedule import SCHEDULE, DDPMSchedule
from lococourse.jacobian.linearity import local_linearity
from lococourse.jacobian.operator import JacobianOperator, dense_jacobian, jvp, masked, vjp
from lococourse.jacobian.power import TopSVD, power_method
from lococourse.jacobian.subspace import alignment, numerical_rank, rank_ratio, subspace_distance, symmetry
from lococourse.theory.molrg import MoLRG, MoLRGPMP

__version__ = "0.1.0"

__all__ = [
    "SCHEDULE",
    "DDPMSchedule",
    "MoLRG",
    "MoLRGPMP",
    "JacobianOperator",
    "TopSVD",
    "alignment",
    "dense_jacobian",
    "jvp",
    "local_linearity",
    "masked",
    "numerical_rank",
    "power_method",
    "rank_ratio",
    "subspace_distance",
    "symmetry",
    "vjp",
]
