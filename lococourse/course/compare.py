"""Learned against exact: a trained UNet's PMP next to the exact posterior mean it was trained to learn.

The course models ``molrg_d48`` and ``molrg_d192`` are UNets trained on MoLRG data (Assumption 1)
whose bases ship with them (``molrg_bases.safetensors``), so the exact PMP E[x₀|x_t] (Lemma 1) and
its Jacobian (Lemma 2) can be evaluated on the *same* x_t as the learned f_θ,t (eq. 2).  At each
point we measure (pure compute, float64; plots live in :mod:`lococourse.course.viz_compare`):

* PMP error        ‖f_θ(x_t) − E[x₀|x_t]‖ / ‖E[x₀|x_t]‖
* Jacobian error   ‖J_θ − J‖_F / ‖J‖_F, J_θ by autograd (:func:`~lococourse.jacobian.dense_jacobian`
                   of the UNet PMP), J in closed form (:meth:`MoLRG.jacobian`)
* numerical rank   eq. 10 (η = 0.99) of both, hence the rank ratio of §3.1 / Figure 2a
* alignment        ‖(I − U_r U_rᵀ) M‖_F / ‖M‖_F with U_r the top r = Σ r_k left (or right) singular
                   vectors (Theorem 1, third claim), and the share of ‖J_θ‖_F² inside span(M)
* symmetry         ‖J_θ − J_θᵀ‖_F / ‖J_θ‖_F (Lemma 3: 0 for the exact J)
* loss ratio       E[‖x₀ − f_θ‖² | x_t] / E[‖x₀ − E[x₀|x_t]‖² | x_t] = 1 + ‖f_θ − E‖² / tr Cov[x₀|x_t],
                   with tr Cov[x₀|x_t] = (1−ᾱ)/√ᾱ · tr J (second-order Tweedie): how much worse than
                   Bayes-optimal the learned x₀-prediction is *in the training loss* at x_t.

Also :func:`singular_at`, on a :func:`~lococourse.course.figure2.figure2_run`: the paper's Figure 2 (rank ratio vs t along DDIM trajectories, local
linearity vs λ) for any pixel model, the same numbers as ``lococourse rank-curve`` with the
singular spectra and the trajectory points kept for plots and widgets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from lococourse.core.checks import check_finite, check_positive_int
from lococourse.core.schedule import check_t
from lococourse.course.figure2 import Figure2Run, snap_to_ddim_grid
from lococourse.course.lab import noisy_samples
from lococourse.data.molrg_images import load_molrg
from lococourse.jacobian.operator import dense_jacobian
from lococourse.jacobian.subspace import alignment, numerical_rank, symmetry
from lococourse.models.registry import course_models, get_spec, load_model
from lococourse.theory.molrg import MoLRG

__all__ = [
    "MOLRG_BASES", "LearnedVsExact", "molrg_course_models", "learned_vs_exact", "posterior_cov_trace",
    "PointComparison", "compare_at", "ComparisonSweep", "compare_vs_t", "RankAgreement", "rank_agreement",
    "card_rank_ratio", "SingularAt", "singular_at", "HSpaceAt", "hspace_at",
]

_DT = torch.float64
#: The file a MoLRG course model ships its bases in (written by :func:`lococourse.data.molrg_images.save_molrg`).
MOLRG_BASES = "molrg_bases.safetensors"


# ---------------------------------------------------------------------------------------- the pair
@dataclass
class LearnedVsExact:
    """A learned model (anything with ``.pmp(t)`` and ``.shape``, e.g. a :class:`~lococourse.models.registry.LoadedModel`)
    and the exact MoLRG it was trained on."""

    name: str
    learned: object
    exact: MoLRG
    card: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.exact, MoLRG):
            raise TypeError(f"exact must be a MoLRG; got {type(self.exact).__name__}")
        if not callable(getattr(self.learned, "pmp", None)):
            raise TypeError(f"learned must have a .pmp(t) method (a LoadedModel); got {type(self.learned).__name__}")
        shape = tuple(getattr(self.learned, "shape", self.exact.shape))
        if shape != tuple(self.exact.shape):
            raise ValueError(f"the learned model takes images of shape {shape} but the MoLRG's shape is {self.exact.shape}")

    @property
    def d(self) -> int:
        return self.exact.d

    @property
    def r(self) -> int:
        """Σ r_k: Theorem 1's bound on the exact rank."""
        return sum(self.exact.ranks)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.exact.shape)


def molrg_course_models() -> list[str]:
    """Names of the registered course models that ship MoLRG bases (and so have an exact counterpart)."""

    return sorted(n for n, s in course_models().items() if (Path(s.source) / MOLRG_BASES).exists())


def learned_vs_exact(name_or_path: str) -> LearnedVsExact:
    """Load a MoLRG course model (or a model folder holding ``molrg_bases.safetensors``) with its exact MoLRG."""

    spec = get_spec(name_or_path)  # ValueError listing the registered names for an unknown one
    folder = Path(spec.source)
    card = json.loads((folder / "card.json").read_text()) if (folder / "card.json").exists() else {}
    data = card.get("data", {}) if isinstance(card.get("data"), dict) else {}
    bases = folder / data.get("bases_file", MOLRG_BASES)
    if spec.kind == "hub" or not bases.exists():
        raise ValueError(f"model {spec.name!r} ships no MoLRG bases ({MOLRG_BASES}), so it has no exact posterior "
                         f"mean to compare with; MoLRG course models: {', '.join(molrg_course_models())}")
    return LearnedVsExact(spec.name, load_model(name_or_path), load_molrg(bases), card)


def posterior_cov_trace(model: MoLRG, x_t: torch.Tensor, t) -> torch.Tensor:
    """tr Cov[x₀|x_t] = (1−ᾱ)/√ᾱ · tr J (second-order Tweedie: J = √ᾱ/(1−ᾱ) Cov[x₀|x_t]), shape (B,) or scalar."""
    check_t(t)
    J = model.jacobian(x_t, t)
    tr = torch.diagonal(J, dim1=-2, dim2=-1).sum(-1)
    return model.schedule.one_minus_alpha_bar(t) / model.schedule.sqrt_alpha_bar(t) * tr


# ---------------------------------------------------------------------------------------- one t
@dataclass
class PointComparison:
    """Learned vs exact PMP at one t, on n points x_t (per-point metrics have shape (n,))."""

    name: str
    t: float  # the learned PMP's snapped time (k+1)/T; the exact PMP is evaluated at the same t
    x_t: torch.Tensor  # (n, *S) float64
    f_learned: torch.Tensor  # (n, *S) f_θ,t(x_t)
    f_exact: torch.Tensor  # (n, *S) E[x₀|x_t]
    S_learned: torch.Tensor  # (n, d) singular values of J_θ, descending
    S_exact: torch.Tensor  # (n, d) singular values of J
    pmp_error: torch.Tensor  # (n,) ‖f_θ − E‖ / ‖E‖
    jac_error: torch.Tensor  # (n,) ‖J_θ − J‖_F / ‖J‖_F
    rank_learned: torch.Tensor  # (n,) eq. 10
    rank_exact: torch.Tensor  # (n,) eq. 10
    align_learned_U: torch.Tensor  # (n,) ‖(I − U_r U_rᵀ) M‖_F / ‖M‖_F, U_r: top-r left singular vectors of J_θ
    align_learned_V: torch.Tensor  # (n,) the same with the top-r right singular vectors (LOCO's edit directions)
    align_exact: torch.Tensor  # (n,) the same for J (U = V: J is symmetric PSD)
    energy_in_span: torch.Tensor  # (n,) ‖Mᵀ J_θ‖_F² / ‖J_θ‖_F²: share of J_θ's output inside span(M) (1 for J)
    symmetry_learned: torch.Tensor  # (n,) ‖J_θ − J_θᵀ‖_F / ‖J_θ‖_F (Lemma 3: 0 for J)
    loss_ratio: torch.Tensor  # (n,) 1 + ‖f_θ − E‖² / tr Cov[x₀|x_t]
    r: int
    d: int
    eta: float
    J_learned: torch.Tensor | None = None  # (n, d, d) when kept
    J_exact: torch.Tensor | None = None  # (n, d, d) when kept

    @property
    def n(self) -> int:
        return len(self.x_t)

    @property
    def rank_ratio_learned(self) -> float:
        """Mean numerical rank of J_θ over the points, over d (the paper's rank ratio)."""
        return float(self.rank_learned.to(_DT).mean()) / self.d

    @property
    def rank_ratio_exact(self) -> float:
        return float(self.rank_exact.to(_DT).mean()) / self.d


def _check_eta(eta: float) -> float:
    if not 0 < eta < 1:
        raise ValueError(f"eta must lie in (0, 1); got {eta}")
    return float(eta)


def _points(pair: LearnedVsExact, t: float, n: int, seed: int, points) -> torch.Tensor:
    """x_t (n, *S) float64: the given points, else seeded forward-process samples of the exact MoLRG at t."""

    if points is None:
        return noisy_samples(pair.exact, t, n=n, seed=seed).x_t
    if not torch.is_tensor(points):
        raise TypeError(f"points must be a tensor of shape (n, *{pair.shape}); got {type(points).__name__}")
    if points.dim() != len(pair.shape) + 1 or tuple(points.shape[1:]) != pair.shape or len(points) == 0:
        raise ValueError(f"points must have shape (n, *{pair.shape}) with n ≥ 1; got {tuple(points.shape)}")
    check_finite(points, "points")
    return points.detach().to(_DT)


def _each(fn, batch: torch.Tensor, *args) -> torch.Tensor:
    """(n,) float64: fn(batch[i], *args) for each of the n matrices in ``batch``."""
    return torch.tensor([fn(b, *args) for b in batch], dtype=_DT)


def compare_at(pair: LearnedVsExact, t: float, n: int = 4, seed: int = 0, eta: float = 0.99, points=None,
               keep_jacobians: bool = True) -> PointComparison:
    """Learned vs exact PMP, Jacobian, rank, alignment and loss at time t on the same n points x_t.

    The points are the exact MoLRG's forward process x_t = √ᾱ x₀ + √(1−ᾱ) ε (``lab.noisy_samples``
    with ``seed``: the same x₀, ε at every t), or ``points`` (n, *S).  t is snapped to the learned
    PMP's timestep grid first, so both PMPs see the same ᾱ.
    """
    check_t(t)
    check_positive_int(n, "n")
    eta = _check_eta(eta)
    f = pair.learned.pmp(t)
    ts = float(getattr(f, "t", t))  # the snapped time (k+1)/T
    x = _points(pair, ts, n, seed, points)  # (n, *S) float64
    dtype = getattr(f, "dtype", torch.float32)
    ex, M, r, d = pair.exact, pair.exact.M, pair.r, pair.d
    with torch.no_grad():
        f_l = f(x.to(dtype)).to(_DT)
    f_e = ex.posterior_mean(x, ts)
    J_e = ex.jacobian(x, ts).reshape(len(x), d, d)  # (n, d, d)
    J_l = torch.stack([dense_jacobian(f, xi.to(dtype)).to(_DT).reshape(d, d) for xi in x])  # (n, d, d)
    U_l, S_l, Vh_l = torch.linalg.svd(J_l)
    U_e, S_e, _ = torch.linalg.svd(J_e)
    diff = (f_l - f_e).flatten(1)
    pmp_err = diff.norm(dim=1) / f_e.flatten(1).norm(dim=1)
    jac_err = torch.linalg.matrix_norm(J_l - J_e) / torch.linalg.matrix_norm(J_e)
    cov_tr = posterior_cov_trace(ex, x, ts)
    return PointComparison(
        name=pair.name, t=ts, x_t=x, f_learned=f_l, f_exact=f_e, S_learned=S_l, S_exact=S_e,
        pmp_error=pmp_err, jac_error=jac_err,
        rank_learned=torch.tensor([numerical_rank(s, eta) for s in S_l]),
        rank_exact=torch.tensor([numerical_rank(s, eta) for s in S_e]),
        align_learned_U=_each(alignment, U_l[:, :, :r], M),
        align_learned_V=_each(alignment, Vh_l[:, :r].mT, M),
        align_exact=_each(alignment, U_e[:, :, :r], M),
        energy_in_span=torch.linalg.matrix_norm(M.T @ J_l) ** 2 / torch.linalg.matrix_norm(J_l) ** 2,
        symmetry_learned=_each(symmetry, J_l),
        loss_ratio=1 + (diff ** 2).sum(1) / cov_tr,
        r=r, d=d, eta=eta,
        J_learned=J_l if keep_jacobians else None, J_exact=J_e if keep_jacobians else None,
    )


# ---------------------------------------------------------------------------------------- along t
_PER_POINT = ("pmp_error", "jac_error", "rank_learned", "rank_exact", "align_learned_U", "align_learned_V",
              "align_exact", "energy_in_span", "symmetry_learned", "loss_ratio")


@dataclass
class ComparisonSweep:
    """:func:`compare_at` at each t: per-point metrics stacked to (T, n), spectra to (T, n, d)."""

    name: str
    ts: torch.Tensor  # (T,) snapped times
    pmp_error: torch.Tensor
    jac_error: torch.Tensor
    rank_learned: torch.Tensor
    rank_exact: torch.Tensor
    align_learned_U: torch.Tensor
    align_learned_V: torch.Tensor
    align_exact: torch.Tensor
    energy_in_span: torch.Tensor
    symmetry_learned: torch.Tensor
    loss_ratio: torch.Tensor
    S_learned: torch.Tensor  # (T, n, d)
    S_exact: torch.Tensor  # (T, n, d)
    r: int
    d: int
    eta: float
    seed: int

    @classmethod
    def from_points(cls, comps: Sequence[PointComparison], seed: int = 0) -> "ComparisonSweep":
        if len(comps) == 0:
            raise ValueError("a sweep needs at least one PointComparison; got none")
        c0 = comps[0]
        stacked = {k: torch.stack([getattr(c, k) for c in comps]) for k in _PER_POINT}
        return cls(c0.name, torch.tensor([c.t for c in comps], dtype=_DT), **stacked,
                   S_learned=torch.stack([c.S_learned for c in comps]), S_exact=torch.stack([c.S_exact for c in comps]),
                   r=c0.r, d=c0.d, eta=c0.eta, seed=seed)

    @property
    def rank_ratio_learned(self) -> torch.Tensor:
        """(T,) mean numerical rank of J_θ / d."""
        return self.rank_learned.to(_DT).mean(1) / self.d

    @property
    def rank_ratio_exact(self) -> torch.Tensor:
        """(T,) mean numerical rank of the exact J / d."""
        return self.rank_exact.to(_DT).mean(1) / self.d

    def mean(self, metric: str) -> torch.Tensor:
        """(T,) mean over the points of a per-point metric (one of the (T, n) fields)."""
        if metric not in _PER_POINT:
            raise ValueError(f"metric must be one of {_PER_POINT}; got {metric!r}")
        return getattr(self, metric).to(_DT).mean(1)

    def index(self, t: float) -> int:
        """The index of the swept time nearest to t."""
        check_t(t)
        return int(torch.argmin((self.ts - float(t)).abs()))


def compare_vs_t(pair: LearnedVsExact, ts, n: int = 4, seed: int = 0, eta: float = 0.99) -> ComparisonSweep:
    """:func:`compare_at` at each t (the same seeded x₀ and ε at every t: points move along forward paths)."""
    ts = [float(t) for t in torch.as_tensor(ts, dtype=_DT).flatten().tolist()]
    if not ts:
        raise ValueError("ts must hold at least one time; got an empty sequence")
    check_t(ts)
    return ComparisonSweep.from_points([compare_at(pair, t, n, seed, eta, keep_jacobians=False) for t in ts], seed)


@dataclass
class RankAgreement:
    """Where the learned numerical rank matches the exact one along t (mean over points, in rank units)."""

    ts: torch.Tensor  # (T,)
    rank_learned: torch.Tensor  # (T,) mean numerical rank of J_θ
    rank_exact: torch.Tensor  # (T,) mean numerical rank of J
    tol: float
    r: int

    @property
    def match(self) -> torch.Tensor:
        """(T,) bool: |learned − exact| ≤ tol."""
        return (self.rank_learned - self.rank_exact).abs() <= self.tol

    @property
    def matching_ts(self) -> list[float]:
        return [round(float(t), 4) for t in self.ts[self.match]]

    @property
    def excess(self) -> torch.Tensor:
        """(T,) learned / exact mean rank."""
        return self.rank_learned / self.rank_exact

    @property
    def middle_match_ends_depart(self) -> bool:
        """The public finding: matching somewhere strictly inside the swept range, in one contiguous run,
        with the learned rank above the exact one at both ends of the range."""
        m = self.match.tolist()
        if not any(m) or m[0] or m[-1]:
            return False
        idx = [i for i, v in enumerate(m) if v]
        contiguous = idx == list(range(idx[0], idx[-1] + 1))
        return contiguous and bool(self.excess[0] > 1) and bool(self.excess[-1] > 1)


def rank_agreement(sweep: ComparisonSweep, tol: float = 0.5) -> RankAgreement:
    """Compare mean learned and exact numerical ranks at each swept t (match: within ``tol`` ranks)."""
    if not tol >= 0:
        raise ValueError(f"tol must be ≥ 0; got {tol}")
    return RankAgreement(sweep.ts, sweep.rank_learned.to(_DT).mean(1), sweep.rank_exact.to(_DT).mean(1), float(tol), sweep.r)


def card_rank_ratio(name_or_path: str) -> dict:
    """The rank ratio vs t recorded in a course model's card at training time (``card.json["rank_ratio"]``)."""

    spec = get_spec(name_or_path)
    card_file = Path(spec.source) / "card.json"
    if spec.kind == "hub" or not card_file.exists():
        raise ValueError(f"model {spec.name!r} has no model card (card.json); course models have one")
    rr = json.loads(card_file.read_text()).get("rank_ratio")
    if not rr or not rr.get("t"):
        raise ValueError(f"the card of {spec.name!r} records no rank ratio")
    return rr


# ---------------------------------------------------------------------------------------- Figure 2
@dataclass
class SingularAt:
    """The dense Jacobian's SVD at one trajectory point: x_t, x̂₀ = f(x_t), all σ_i, the top-k right
    singular vectors v_i (LOCO Edit's editing directions) and the numerical rank (eq. 10)."""

    t: float  # the PMP's snapped time (k+1)/T
    x_t: torch.Tensor  # (*S)
    x0_hat: torch.Tensor  # (*S)
    S: torch.Tensor  # (d,) float64, descending
    V: torch.Tensor  # (k, *S) top-k right singular vectors
    rank: int
    eta: float


def singular_at(run: Figure2Run, t: float, point: int = 0, k: int = 4, eta: float = 0.99) -> SingularAt:
    """Dense Jacobian (autograd) and its SVD at ``run.points_at(t)[point]``, for one model of :func:`figure2_run`.

    ``t`` snaps to the run's DDIM grid (0.4 → 0.401 on the 100-step grid), as :func:`figure2_run` snaps its times:
    the PMP is evaluated at the timestep of the trajectory point it is given.
    """
    check_t(t)
    eta = _check_eta(eta)
    if run.model is None:
        raise ValueError("this Figure2Run holds no model; build it with figure2_run()")
    if isinstance(point, bool) or not isinstance(point, int) or not 0 <= point < run.n:
        raise ValueError(f"point must be an integer in 0..{run.n - 1} (the run has {run.n} trajectories); got {point!r}")
    check_positive_int(k, "k", upper=run.d, upper_name="the dimension d")
    t = snap_to_ddim_grid([t], run.grid)[0]
    f = run.model.pmp(t)
    x = run.points_at(t)[point]
    J = dense_jacobian(f, x).to(_DT).reshape(run.d, run.d)
    _, S, Vh = torch.linalg.svd(J)
    with torch.no_grad():
        x0 = f(x.unsqueeze(0))[0]
    return SingularAt(float(getattr(f, "t", t)), x.detach(), x0.detach(), S, Vh[:k].reshape(k, *x.shape), numerical_rank(S, eta), eta)


# ---------------------------------------------------------------------------------------- h-space (App. D.3)
class _MidBlock:
    """A forward hook on ``unet.mid_block``: records its output h, or replaces it with a given tensor."""

    def __init__(self, unet):
        block = getattr(unet, "mid_block", None)
        if block is None:
            raise ValueError(f"{type(unet).__name__} has no mid_block: h-space (the UNet's bottleneck) is undefined")
        self.block, self.replace, self.h = block, None, None

    def __enter__(self):
        self.handle = self.block.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def _hook(self, module, inputs, output):
        self.h = output
        return self.replace if self.replace is not None else output


@dataclass
class HSpaceAt:
    """The three Jacobians of App. D.3 at one x_t: ∂h/∂x_t (h = the UNet's mid-block output), ∂x̂₀/∂h with x_t
    held fixed (the skip connections still carry x_t), and the PMP's ∂x̂₀/∂x_t; numerical ranks (eq. 10) and
    Frobenius norms."""

    t: float
    d_x: int
    d_h: int
    rank_h_x: int
    rank_x0_h: int
    rank_x0_x: int
    fro_h_x: float
    fro_x0_h: float
    fro_x0_x: float
    eta: float

    @property
    def rank_ratios(self) -> dict[str, float]:
        """Each numerical rank over the smaller side of its Jacobian."""
        return {"∂h/∂x_t": self.rank_h_x / min(self.d_h, self.d_x), "∂x̂₀/∂h": self.rank_x0_h / min(self.d_h, self.d_x),
                "∂x̂₀/∂x_t": self.rank_x0_x / self.d_x}


def hspace_at(model, x_t: torch.Tensor, t: float, eta: float = 0.99) -> HSpaceAt:
    """Dense ∂h/∂x_t, ∂x̂₀/∂h and ∂x̂₀/∂x_t of a pixel UNet (a LoadedModel) at one x_t (*S), for App. D.3's comparison."""
    check_t(t)
    eta = _check_eta(eta)
    f = model.pmp(t)
    x = x_t.detach().to(getattr(f, "dtype", torch.float32))
    with _MidBlock(model.unet) as mb:
        with torch.no_grad():
            f(x.unsqueeze(0))
        h0 = mb.h.detach()[0]

        def h_of_x(xb):
            f(xb)
            return mb.h

        def x0_of_h(hb):
            mb.replace = hb
            try:
                return f(x.unsqueeze(0).expand(len(hb), *x.shape))
            finally:
                mb.replace = None

        J_hx = dense_jacobian(h_of_x, x, method="batch").to(_DT)
        J_xh = dense_jacobian(x0_of_h, h0, method="batch").to(_DT)
    J_xx = dense_jacobian(f, x, method="batch").to(_DT)
    ranks = [numerical_rank(torch.linalg.svdvals(J), eta) for J in (J_hx, J_xh, J_xx)]
    fro = [float(torch.linalg.matrix_norm(J)) for J in (J_hx, J_xh, J_xx)]
    return HSpaceAt(float(getattr(f, "t", t)), x.numel(), h0.numel(), *ranks, *fro, eta)
