"""lococourse: teach, verify and apply the theory of LOCO Edit (Chen et al., NeurIPS 2024)."""
from .schedule import SCHEDULE, DDPMSchedule
from .molrg import MoLRG, MoLRGPMP
from .jacobian import (
    JacobianOperator, TopSVD, alignment, dense_jacobian, jvp, local_linearity, masked, numerical_rank,
    power_method, rank_ratio, subspace_distance, symmetry, vjp,
)

__version__ = "0.1.0"
