"""The interfaces every layer shares, as typed Protocols (structural: nothing has to inherit from them).

* :class:`PMP` — a posterior-mean predictor x_t ↦ x̂₀ = E[x₀ | x_t] at one time t (eq. 2 of Chen et al. 2024),
  on a batch: (B, *S_in) → (B, *S_out), batch entries independent.  The one canonical object of the package:
  the exact MoLRG posterior mean, a diffusers UNet behind an adapter, a latent model that decodes.
* :class:`EpsModel` — the ε-model of DDIM, (x_t, timestep) ↦ ε̂ (eq. 1 needs it; eq. 2 links it to the PMP).
* :class:`LinearOperator` — a matrix-free Jacobian J (or a view of one): J·V and Jᵀ·U on k stacked directions.
* :class:`DiffusionModel` — what Algorithm 1 needs of a model: ``pmp(t)``, ``eps_model()``, ``shape`` and ``name``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["PMP", "EpsModel", "LinearOperator", "DiffusionModel"]


@runtime_checkable
class PMP(Protocol):
    """x_t ↦ x̂₀ on a batch: (B, *S_in) → (B, *S_out).  May carry ``t`` (its time) as an attribute."""

    def __call__(self, x_t: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class EpsModel(Protocol):
    """(x_t, timestep) ↦ ε̂(x_t, timestep): (B, *S) → (B, *S); ``timestep`` an integer of the DDPM table."""

    def __call__(self, x: torch.Tensor, timestep: int) -> torch.Tensor: ...


@runtime_checkable
class LinearOperator(Protocol):
    """A matrix-free d_out × d_in linear map (a Jacobian at one point, or a view of one)."""

    shape_in: tuple
    shape_out: tuple
    d_in: int
    d_out: int
    dtype: torch.dtype

    def mv(self, V: torch.Tensor) -> torch.Tensor:
        """J·v for k directions: (k, *S_in) → (k, *S_out)."""
        ...

    def rmv(self, U: torch.Tensor) -> torch.Tensor:
        """Jᵀ·u for k covectors: (k, *S_out) → (k, *S_in)."""
        ...


@runtime_checkable
class DiffusionModel(Protocol):
    """What LOCO Edit (Algorithm 1) needs of a model: its PMP at a time, its ε-model, its image shape, a name.

    :class:`~lococourse.models.registry.LoadedModel`, :class:`~lococourse.theory.molrg.MoLRG` and
    :class:`~lococourse.models.t2i.T2IModel` all satisfy it.
    """

    name: str

    @property
    def shape(self) -> tuple: ...

    def pmp(self, t: float) -> PMP: ...

    def eps_model(self) -> EpsModel: ...
