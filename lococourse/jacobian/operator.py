"""The Jacobian engine: works on any posterior-mean predictor (PMP) f: x_t ↦ x̂₀.

A PMP is a callable on a batch, (B, *S_in) → (B, *S_out), whose batch entries are independent:
the exact MoLRG posterior mean, a diffusers UNet behind an adapter, a latent model that decodes.
Everything here is matrix-free (JVPs and VJPs through torch.func) except :func:`dense_jacobian`,
which refuses sizes it cannot hold.  Vectors are batched first: k directions are a tensor of
shape (k, *S); the SVD results are returned as matrices U (d_out × k), V (d_in × k) as in the paper.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Literal, Sequence

import torch
from torch.func import jvp as _jvp
from torch.func import linearize as _linearize
from torch.func import vjp as _vjp
from torch.func import vmap

from lococourse.core.checks import check_finite, check_positive_int
from lococourse.core.interfaces import PMP

#: The largest dense Jacobian (d_out · d_in entries) that :func:`dense_jacobian` builds unless told otherwise:
#: 64M entries = 256 MB in float32 (d ≈ 8000).
MAX_DENSE_ENTRIES = 64_000_000


def single_image(f: PMP) -> Callable[[torch.Tensor], torch.Tensor]:
    """The PMP as a function of one image (*S) → (*S), for torch.func."""
    return lambda x: f(x.unsqueeze(0)).squeeze(0)


def check_point(x: torch.Tensor) -> torch.Tensor:
    check_finite(x, "x_t")
    return x.detach()


def _check_directions(V: torch.Tensor, shape: Sequence[int], name: str) -> torch.Tensor:
    shape = tuple(shape)
    if V.dim() != len(shape) + 1 or tuple(V.shape[1:]) != shape:
        raise ValueError(f"{name} must have shape (k, *{shape}) (k directions, batch first); got {tuple(V.shape)}")
    check_finite(V, name)
    return V


class JacobianOperator:
    """J = ∂f/∂x at one point x, as a matrix-free operator.

    The forward pass runs once, here.  ``mv(V)`` is J·V for k directions in one batched call
    (by default as the VJP of the linear map u ↦ Jᵀu, a double backward through the stored graph:
    no forward-mode AD, no trace; benchmarks/README.md measures the modes); ``rmv(U)`` is Jᵀ·U for k covectors in one batched VJP that reuses the stored
    backward graph.  Parameters of an ``nn.Module`` PMP should be frozen (``requires_grad_(False)``).
    ``chunk``: at most this many directions per batched call (``None``: all at once).

    ``forward_mode``: ``"linearize"`` (cheapest J·V per call, but the trace costs seconds for a
    UNet: worth it only for many calls), ``"jvp"`` (forward-mode AD each call, forward pass
    included), or ``"transpose"`` (J·V as the VJP of the linear map u ↦ Jᵀu held by the stored
    backward graph, a double backward: no forward-mode AD and no trace; needs twice-differentiable
    ops).  See benchmarks/README.md for timings.
    """

    def __init__(self, f: PMP, x: torch.Tensor, forward_mode: Literal["linearize", "jvp", "transpose"] = "transpose",
                 chunk: int | None = None):
        x = check_point(x)
        if chunk is not None:
            check_positive_int(chunk, "chunk")
        self.chunk = chunk
        self.f, self.x = f, x
        g = single_image(f)
        self.y, self._vjp_fn = _vjp(g, x)
        self.y = self.y.detach()
        if forward_mode == "linearize":
            with warnings.catch_warnings():  # torch's const-folding pass warns about its own internals
                warnings.simplefilter("ignore", UserWarning)
                _, self._jvp_fn = _linearize(g, x)
        elif forward_mode == "jvp":
            self._jvp_fn = lambda v: _jvp(g, (x,), (v,))[1]
        elif forward_mode == "transpose":  # u ↦ Jᵀu is linear, so its VJP (at any u) is v ↦ J v
            _, transposed = _vjp(lambda u: self._vjp_fn(u)[0], torch.zeros_like(self.y))
            self._jvp_fn = lambda v: transposed(v)[0]
        else:
            raise ValueError(f"forward_mode must be 'linearize' or 'jvp' or 'transpose'; got {forward_mode!r}")
        self.shape_in, self.shape_out = tuple(x.shape), tuple(self.y.shape)
        self.d_in, self.d_out = math.prod(self.shape_in), math.prod(self.shape_out)
        self.dtype = x.dtype

    def mv(self, V: torch.Tensor) -> torch.Tensor:
        """J·v for each of k directions: (k, *S_in) → (k, *S_out)."""
        V = _check_directions(V, self.shape_in, "V").to(self.dtype)
        return self._chunked(vmap(self._jvp_fn), V)

    def rmv(self, U: torch.Tensor) -> torch.Tensor:
        """Jᵀ·u for each of k covectors: (k, *S_out) → (k, *S_in)."""
        U = _check_directions(U, self.shape_out, "U").to(self.y.dtype)
        return self._chunked(vmap(lambda u: self._vjp_fn(u)[0]), U)

    def _chunked(self, fn, V: torch.Tensor) -> torch.Tensor:
        """fn on at most ``chunk`` stacked directions per batched call (memory of real-size models)."""
        if self.chunk is None or V.shape[0] <= self.chunk:
            return fn(V)
        return torch.cat([fn(V[i:i + self.chunk]) for i in range(0, V.shape[0], self.chunk)])


def jvp(f: PMP, x: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Batched Jacobian-vector products J(x)·v_i for V = (k, *S) in one vmapped forward-mode call."""
    x = check_point(x)
    V = _check_directions(V, x.shape, "V")
    g = single_image(f)
    return vmap(lambda v: _jvp(g, (x,), (v,))[1])(V.to(x.dtype))


def vjp(f: PMP, x: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """Batched vector-Jacobian products J(x)ᵀ·u_i for U = (k, *S_out): one forward, one vmapped backward."""
    return JacobianOperator(f, x, forward_mode="jvp").rmv(U)


def _check_dense_size(d_out: int, d_in: int, max_entries: int) -> None:
    if d_out * d_in > max_entries:
        raise ValueError(
            f"a dense Jacobian of {d_out} × {d_in} = {d_out * d_in:,} entries exceeds max_entries = {max_entries:,}; "
            "use power_method() for the top singular vectors, or raise max_entries if you have the memory"
        )


def dense_jacobian(f: PMP, x: torch.Tensor, chunk_size: int = 256, max_entries: int = MAX_DENSE_ENTRIES,
                   method: Literal["vmap", "batch"] = "vmap") -> torch.Tensor:
    """The full Jacobian (d_out × d_in) by VJPs of the standard basis, ``chunk_size`` rows at a time.

    ``method="vmap"``: one forward pass, the rows by a vmapped backward.  ``method="batch"``: per chunk, one
    forward pass on c copies of x and one plain backward with the one-hot cotangents e_i…e_{i+c} — valid because
    a PMP's batch entries are independent, and faster on CPU for UNets, whose attention backward has no
    batching rule for vmap.
    """
    x = check_point(x)
    check_positive_int(chunk_size, "chunk_size")
    if method not in ("vmap", "batch"):
        raise ValueError(f"method must be 'vmap' or 'batch'; got {method!r}")
    if method == "batch":
        return _dense_jacobian_batched(f, x, chunk_size, max_entries)
    g = single_image(f)
    y, vjp_fn = _vjp(g, x)
    d_in, d_out = x.numel(), y.numel()
    _check_dense_size(d_out, d_in, max_entries)
    rows = []
    eye = torch.eye(d_out, dtype=y.dtype)
    for start in range(0, d_out, chunk_size):
        E = eye[start:start + chunk_size].reshape(-1, *y.shape)  # (c, *S_out)
        rows.append(vmap(lambda u: vjp_fn(u)[0])(E).reshape(-1, d_in).detach())
    return torch.cat(rows)


def _dense_jacobian_batched(f: PMP, x: torch.Tensor, chunk_size: int, max_entries: int) -> torch.Tensor:
    with torch.no_grad():
        d_out = f(x.unsqueeze(0)).numel()
    d_in = x.numel()
    _check_dense_size(d_out, d_in, max_entries)
    rows = []
    for start in range(0, d_out, chunk_size):
        c = min(chunk_size, d_out - start)
        xs = x.unsqueeze(0).repeat(c, *[1] * x.dim()).requires_grad_(True)  # (c, *S_in)
        y = f(xs)  # (c, *S_out)
        E = torch.zeros(c, d_out, dtype=y.dtype)
        E[torch.arange(c), torch.arange(start, start + c)] = 1
        (g,) = torch.autograd.grad(y, xs, grad_outputs=E.reshape(y.shape))
        rows.append(g.reshape(c, d_in).detach())
    return torch.cat(rows)


def dense_jacobian_loop(f: PMP, x: torch.Tensor, max_entries: int = MAX_DENSE_ENTRIES) -> torch.Tensor:
    """The same Jacobian one row per backward pass (the slow reference the benchmark compares with)."""
    x = check_point(x).clone().requires_grad_(True)
    y = single_image(f)(x)
    d_in, d_out = x.numel(), y.numel()
    _check_dense_size(d_out, d_in, max_entries)
    yf = y.reshape(-1)
    rows = [torch.autograd.grad(yf[i], x, retain_graph=True)[0].reshape(-1) for i in range(d_out)]
    return torch.stack(rows).detach()


# ---------------------------------------------------------------------------------------- masks
def check_mask(mask, shape: Sequence[int]) -> torch.Tensor:
    """Validate a boolean mask Ω over an output of shape ``shape`` and return it broadcast to that shape.

    A mask may have the full shape (C, H, W) or the spatial shape (H, W), which applies to every
    channel.  Empty and all-true masks are refused: Ω must select a proper, non-empty region.
    """
    shape = tuple(shape)
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True inside Ω); got dtype {mask.dtype}")
    spatial_ok = mask.dim() < len(shape) and tuple(mask.shape) == shape[len(shape) - mask.dim():]
    if tuple(mask.shape) != shape and not spatial_ok:
        raise ValueError(f"mask must have the output shape {shape} or a trailing part of it such as {shape[1:]}; "
                         f"got {tuple(mask.shape)}")
    n_in = int(mask.sum())
    if n_in == 0:
        raise ValueError(f"mask is empty (no True entry among {mask.numel()}); Ω must select at least one pixel")
    if n_in == mask.numel():
        raise ValueError(f"mask is all True ({n_in} of {mask.numel()}); its complement Ω^c would be empty")
    return mask.expand(shape)


def masked(f: PMP, mask: torch.Tensor, shape: Sequence[int] | None = None) -> PMP:
    """P_Ω f: the PMP with its output zeroed outside Ω.  ``masked(f, ~mask)`` is P_{Ω^c} f.

    Zeroing keeps the output shape, so ∇ P_Ω f has the rows of J inside Ω and zero rows elsewhere:
    the same singular triplets as the Jacobian of the selected entries alone.
    """
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True inside Ω); got dtype {mask.dtype}")
    checked = {} if shape is None else {tuple(shape): check_mask(mask, shape)}

    def f_masked(x: torch.Tensor) -> torch.Tensor:
        y = f(x)
        out_shape = tuple(y.shape[1:])
        if out_shape not in checked:
            checked[out_shape] = check_mask(mask, out_shape)
        return y * checked[out_shape].to(y.dtype)

    f_masked.__name__ = "masked_pmp"
    return f_masked


