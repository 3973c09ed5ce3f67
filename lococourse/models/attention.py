"""Attention that forward-mode autodiff can go through.

The Jacobian engine (:mod:`lococourse.jacobian`) pushes tangents through a PMP with
``torch.func.jvp`` / ``linearize``: the U ↦ J·V half of the generalized power method (Algorithm 2,
line 10).  diffusers' default processors call the fused ``F.scaled_dot_product_attention``, which
has no forward-AD rule, so a JVP through any UNet with attention blocks fails.  The processor here
computes the same function with plain differentiable ops,

    Attention(Q, K, V) = softmax(Q Kᵀ · scale + mask) V,     scale = 1/√d_head (``attn.scale``),

and returns a contiguous tensor (the next ``GroupNorm`` of a ``UNet2DModel`` views its input).

Use it for a block of code (previous processors come back on exit, also on error)::

    with jvp_safe_attention(unet):
        J_v = torch.func.jvp(f, (x,), (v,))[1]

or for good with :func:`use_jvp_safe_attention`.  It covers the diffusers ``Attention`` modules of
``UNet2DModel``, ``UNet2DConditionModel`` (self- and cross-attention, attention masks), the
added-key/value attention of DeepFloyd IF's UNet, and the VAE mid-block of ``AutoencoderKL``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = [
    "JvpSafeAttnProcessor", "jvp_safe_attention", "use_jvp_safe_attention", "restore_attention", "attention_modules",
]

# Processors whose function the jvp-safe one reproduces exactly (names, so that a diffusers version
# lacking one of them still imports).  Anything else (IP-adapter, custom) is refused, not replaced.
_REPLACEABLE = {
    "AttnProcessor", "AttnProcessor2_0", "AttnProcessorNPU", "SlicedAttnProcessor", "XFormersAttnProcessor",
    "AttnAddedKVProcessor", "AttnAddedKVProcessor2_0", "SlicedAttnAddedKVProcessor", "XFormersAttnAddedKVProcessor",
    "JvpSafeAttnProcessor",
}


def _attention_class() -> type:
    from diffusers.models.attention_processor import Attention

    return Attention


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The diffusers ``Attention`` modules inside ``model``, by qualified name."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    cls = _attention_class()
    return {name: m for name, m in model.named_modules() if isinstance(m, cls)}


class JvpSafeAttnProcessor:
    """A diffusers attention processor in plain matmul/softmax: works under jvp, vjp, vmap and linearize.

    It reproduces ``AttnProcessor`` (and the fused ``AttnProcessor2_0``): spatial and group norm,
    self- or cross-attention (with ``norm_cross``), additive attention masks, q/k norms,
    ``upcast_attention`` / ``upcast_softmax``, output projection, residual connection and
    ``rescale_output_factor``; for modules with ``added_kv_proj_dim`` (DeepFloyd IF, UnCLIP) it
    reproduces ``AttnAddedKVProcessor``.  The result is made contiguous.

    One deliberate difference: an upcast never lowers precision, so a float64 model stays float64
    throughout (diffusers' ``.float()`` upcast would round its scores to float32, which spoils
    float64 finite-difference checks).  In float32 and lower the two agree.
    """

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if getattr(attn, "added_kv_proj_dim", None) is not None:
            return self._added_kv(attn, hidden_states, encoder_hidden_states, attention_mask)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C)
        batch, seq_len, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        q, k, v = (_split_heads(z, attn.heads) for z in (query, key, value))  # (B, heads, N, d_head)
        if getattr(attn, "norm_q", None) is not None:
            q = attn.norm_q(q)
        if getattr(attn, "norm_k", None) is not None:
            k = attn.norm_k(k)
        mask = _head_mask(attn, attention_mask, seq_len, batch)
        out = _attend(attn, q, k, v, mask)  # (B, N, inner)
        out = attn.to_out[1](attn.to_out[0](out))  # linear projection, dropout
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        out = out / attn.rescale_output_factor
        return out.contiguous()

    @staticmethod
    def _added_kv(attn, hidden_states, encoder_hidden_states, attention_mask) -> torch.Tensor:
        """``AttnAddedKVProcessor``: text keys/values from ``add_k_proj``/``add_v_proj`` before the image ones."""
        residual = hidden_states
        hidden_states = hidden_states.reshape(hidden_states.shape[0], hidden_states.shape[1], -1).transpose(1, 2)
        batch, seq_len, _ = hidden_states.shape
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        q = _split_heads(attn.to_q(hidden_states), attn.heads)
        k = _split_heads(attn.add_k_proj(encoder_hidden_states), attn.heads)
        v = _split_heads(attn.add_v_proj(encoder_hidden_states), attn.heads)
        if not attn.only_cross_attention:
            k = torch.cat([k, _split_heads(attn.to_k(hidden_states), attn.heads)], dim=2)
            v = torch.cat([v, _split_heads(attn.to_v(hidden_states), attn.heads)], dim=2)
        mask = _head_mask(attn, attention_mask, seq_len, batch)
        out = _attend(attn, q, k, v, mask)
        out = attn.to_out[1](attn.to_out[0](out))
        out = out.transpose(-1, -2).reshape(residual.shape) + residual
        return out.contiguous()


def _split_heads(z: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads·d) → (B, heads, N, d)."""
    b, n, inner = z.shape
    return z.reshape(b, n, heads, inner // heads).transpose(1, 2)


def _head_mask(attn, attention_mask, seq_len: int, batch: int) -> torch.Tensor | None:
    """diffusers' additive mask, as (B, heads, N_q or 1, N_k) for broadcasting against the scores."""
    if attention_mask is None:
        return None
    mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)  # (B·heads, ·, N_k)
    return mask.reshape(batch, attn.heads, -1, mask.shape[-1])


#: The largest attention-score tensor (B·heads·N_q·N_k elements) formed at once: 2²⁷ = 512 MB in float32.  Larger
#: ones are computed in slices of query rows — exact, since each row's softmax is its own — so that a 96×96 latent
#: (LCM_Dreamshaper_v7 at 768 px: 8 heads × 9216² = 2.7 GB of scores per image) does not hold them all at once,
#: which forward mode (scores, probabilities and their tangents) would multiply.  None: never slice.
MAX_SCORE_ELEMENTS: int | None = 2 ** 27


def _attend(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(Q Kᵀ · scale + mask) V with diffusers' optional upcasts; returns (B, N_q, heads·d).

    Scores larger than :data:`MAX_SCORE_ELEMENTS` are formed a slice of query rows at a time (the same function)."""
    b, h, n_q, _ = q.shape
    per_row = b * h * k.shape[-2]
    limit = MAX_SCORE_ELEMENTS
    if limit is None or n_q * per_row <= limit or n_q == 1:
        return _attend_rows(attn, q, k, v, mask)
    step = max(1, limit // per_row)
    outs = []
    for i in range(0, n_q, step):
        m = mask if mask is None or mask.shape[-2] == 1 else mask[..., i:i + step, :]
        outs.append(_attend_rows(attn, q[:, :, i:i + step], k, v, m))
    return torch.cat(outs, dim=1)


def _attend_rows(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(Q Kᵀ · scale + mask) V for all the rows of q at once; (B, N_q, heads·d)."""
    dtype = q.dtype
    up = torch.promote_types(dtype, torch.float32)  # an upcast never lowers float64 (diffusers' .float() would)
    if attn.upcast_attention:
        q, k = q.to(up), k.to(up)
    scores = torch.matmul(q, k.transpose(-1, -2)) * attn.scale  # (B, heads, N_q, N_k)
    if mask is not None:
        scores = scores + mask.to(scores.dtype)
    if attn.upcast_softmax:
        scores = scores.to(up)
    probs = torch.softmax(scores, dim=-1).to(dtype)
    out = torch.matmul(probs, v)  # (B, heads, N_q, d)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def use_jvp_safe_attention(model: nn.Module) -> dict[str, object]:
    """Install :class:`JvpSafeAttnProcessor` in every ``Attention`` module of ``model``.

    Returns the previous processors by module name, for :func:`restore_attention` (or use
    :func:`jvp_safe_attention`, which restores them for you).  A model without attention is left
    as it is (empty dict).  Raises a ValueError, changing nothing, if a module holds a processor
    whose function the plain one does not reproduce (IP-adapter, custom processors).
    """
    mods = attention_modules(model)
    unknown = {name: type(m.processor).__name__ for name, m in mods.items()
               if type(m.processor).__name__ not in _REPLACEABLE}
    if unknown:
        first = next(iter(unknown.items()))
        raise ValueError(
            f"{len(unknown)} attention module(s) use a processor that the jvp-safe one cannot stand in for "
            f"(e.g. {first[0]}: {first[1]}); supported: {sorted(_REPLACEABLE)}"
        )
    proc = JvpSafeAttnProcessor()
    previous = {}
    for name, m in mods.items():
        previous[name] = m.processor
        m.processor = proc
    return previous


def restore_attention(model: nn.Module, previous: dict[str, object]) -> None:
    """Put back processors saved by :func:`use_jvp_safe_attention`."""
    mods = attention_modules(model)
    for name, proc in previous.items():
        mods[name].processor = proc


@contextlib.contextmanager
def jvp_safe_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: jvp-safe attention in ``model`` inside the block, the previous processors after it."""
    previous = use_jvp_safe_attention(model)
    try:
        yield model
    finally:
        restore_attention(model, previous)
