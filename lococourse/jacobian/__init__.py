"""The Jacobian engine for any posterior-mean predictor (PMP) x_t ↦ x̂₀: matrix-free operators and their views, the generalized power method (Algorithm 2), rank (eq. 10), linearity (eq. 4), subspaces."""
from lococourse.jacobian.linearity import Linearity, local_linearity
from lococourse.jacobian.operator import (
    MAX_DENSE_ENTRIES,
    JacobianOperator,
    check_mask,
    dense_jacobian,
    dense_jacobian_loop,
    jvp,
    masked,
    vjp,
)
from lococourse.jacobian.power import TopSVD, power_method, power_methods
from lococourse.jacobian.subspace import (
    alignment,
    numerical_rank,
    project_out,
    rank_ratio,
    ridge_project,
    ridge_project_rows,
    subspace_distance,
    symmetry,
)
from lococourse.jacobian.views import JacobianViews, OperatorView, RowMaskedView, pooled

__all__ = [
    "MAX_DENSE_ENTRIES",
    "JacobianOperator",
    "jvp",
    "vjp",
    "dense_jacobian",
    "dense_jacobian_loop",
    "check_mask",
    "masked",
    "JacobianViews",
    "OperatorView",
    "RowMaskedView",
    "pooled",
    "project_out",
    "ridge_project",
    "ridge_project_rows",
    "subspace_distance",
    "alignment",
    "symmetry",
    "numerical_rank",
    "rank_ratio",
    "TopSVD",
    "power_method",
    "power_methods",
    "Linearity",
    "local_linearity",
]
