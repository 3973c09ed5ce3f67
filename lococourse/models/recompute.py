"""Activation recomputation ("gradient checkpointing") that works under torch.func — for real-size Jacobians.

The Jacobian engine (:class:`~lococourse.jacobian.JacobianOperator`) takes one ``torch.func.vjp`` of the PMP and
keeps its backward graph: every activation of the UNet (CFG batch 2 or 3) and of the VAE decoder at 512 px.  For
Stable Diffusion 2.1-base that graph alone is ≈ 13.5 GB in float32 — more than a 24 GB machine can hold next to
the weights and one J·v.  diffusers' own ``enable_gradient_checkpointing()`` does not help: it uses
``torch.utils.checkpoint`` (saved-tensor hooks, or a reentrant ``autograd.Function`` without ``setup_context``),
and torch.func refuses both.

:func:`enable_recompute` installs, through diffusers' hook for a custom checkpointing function, a
:class:`Recompute` ``autograd.Function`` that torch.func *can* go through: its forward runs the block without
storing anything but the block's inputs; its backward recomputes the block and takes the block's VJP
(``torch.func.vjp``); its ``jvp`` pushes the tangent through the block (``torch.func.jvp``); vmap comes from
``generate_vmap_rule``.  The functions are the same: only what is stored between the forward pass and the
backward pass changes (and each block runs twice per VJP).

Which blocks: those diffusers checkpoints — in a ``UNet2DConditionModel`` each ResNet block and each
transformer block (self- and cross-attention, whose attention probabilities are most of the memory at 64×64
latents); in an ``AutoencoderKL`` decoder each ResNet block and each upsampling block.

Jacobian modes (:class:`~lococourse.jacobian.JacobianOperator` ``forward_mode``): use ``"jvp"``.  J·v then runs
by forward-mode AD, where nothing is stored and the blocks are called directly (:func:`recompute_call` steps aside
when no tensor requires grad); Jᵀ·u runs back through the stored graph, which now holds the blocks' inputs only,
recomputing one block at a time.  A recomputed block's backward runs after the PMP call has returned, so outside
the jvp-safe attention context: it recomputes attention with the model's own processor (diffusers' fused
``scaled_dot_product_attention``, the same function, whose backward does not keep the attention probabilities).
``"transpose"`` (a double backward through the blocks' backward) is not supported: torch refuses it for this
``autograd.Function`` and the error says to use ``forward_mode="jvp"``.  ``"linearize"`` gives the same numbers,
but its traced linear map keeps what forward mode needs, so recomputation does not make it lean.

Parameters must be frozen (``requires_grad_(False)``): gradients flow to the blocks' tensor inputs only.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["Recompute", "recompute_call", "enable_recompute", "disable_recompute", "is_recompute_enabled",
           "RECOMPUTE_FORWARD_MODE"]

#: The Jacobian operator's ``forward_mode`` that recomputation supports (and makes lean).
RECOMPUTE_FORWARD_MODE = "jvp"

UNSUPPORTED = ("recomputed blocks (lococourse.models.recompute) support one reverse-mode pass — torch.func.vjp or "
               "autograd.grad, i.e. the Jacobian operator's forward_mode='jvp' — not a double backward "
               "(forward_mode='transpose'); use forward_mode='jvp' or disable_recompute()")


def _check_output(out) -> torch.Tensor:
    if not torch.is_tensor(out):
        raise TypeError(f"a recomputed block must return one tensor; got {type(out).__name__}")
    return out


def _fill(template: tuple, where: tuple[int, ...], values) -> list:
    full = list(template)
    for i, v in zip(where, values):
        full[i] = v
    return full


class Recompute(torch.autograd.Function):
    """``Recompute.apply(call, *tensors)`` = ``call(*tensors)``, storing only ``tensors`` for the backward pass.

    ``call`` is a function of the tensors alone (no parameter of it may require grad).  The backward pass
    recomputes ``call`` and returns its VJP for the inputs that need one; the JVP rule pushes the tangents through
    ``call`` by ``torch.func.jvp``.  Works under ``torch.func.vjp``, ``jvp`` and ``vmap`` and in plain autograd.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(call, *tensors):
        return _check_output(call(*tensors))

    @staticmethod
    def setup_context(ctx, inputs, output):
        call, *tensors = inputs
        ctx.call = call
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)

    @staticmethod
    def backward(ctx, grad):
        tensors = ctx.saved_tensors
        where = tuple(i for i, need in enumerate(ctx.needs_input_grad[1:]) if need)
        grads = [None] * len(tensors)
        if where:
            def block(*diff):
                return ctx.call(*_fill(tensors, where, diff))

            try:
                _, pullback = torch.func.vjp(block, *(tensors[i] for i in where))
                with warnings.catch_warnings():  # vmap over the fused attention's backward loops (chunk=1: one call)
                    warnings.filterwarnings("ignore", message=".*batching rule for aten::_scaled_dot_product")
                    pulled = pullback(grad)
            except RuntimeError as e:
                raise RuntimeError(UNSUPPORTED + f" (torch: {str(e)[:200]})") from e
            for i, g in zip(where, pulled):
                grads[i] = g
        return (None, *grads)

    @staticmethod
    def jvp(ctx, _call_tangent, *tangents):
        tensors = ctx.saved_tensors
        where = tuple(i for i, t in enumerate(tangents) if t is not None)
        if not where:
            return None

        def block(*diff):
            return ctx.call(*_fill(tensors, where, diff))

        try:
            _, out = torch.func.jvp(block, tuple(tensors[i] for i in where), tuple(tangents[i] for i in where))
        except RuntimeError as e:
            raise RuntimeError(UNSUPPORTED + f" (torch: {str(e)[:200]})") from e
        return out


def recompute_call(module: nn.Module, *args):
    """``module(*args)`` through :class:`Recompute` (diffusers' ``gradient_checkpointing_func`` signature).

    Only where a reverse-mode pass records (some tensor argument requires grad: plain autograd, or inside
    ``torch.func.vjp``); otherwise — no grad, or forward-mode ``torch.func.jvp`` alone, where nothing is stored —
    the block is called directly, so a J·v by forward mode does not pay for the forward pass twice.
    Non-tensor arguments (``None``, dicts of attention kwargs) are passed through as they are.
    """
    where = tuple(i for i, a in enumerate(args) if torch.is_tensor(a))
    if not any(args[i].requires_grad for i in where):
        return module(*args)

    def call(*tensors):
        return module(*_fill(args, where, tensors))

    return Recompute.apply(call, *(args[i] for i in where))


def _check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module) or not hasattr(model, "enable_gradient_checkpointing"):
        raise TypeError("recomputation needs a diffusers model (UNet2DModel, UNet2DConditionModel, AutoencoderKL); "
                        f"got {type(model).__name__}")
    if not getattr(model, "_supports_gradient_checkpointing", False):
        raise ValueError(f"{type(model).__name__} has no checkpointable blocks (diffusers' "
                         "_supports_gradient_checkpointing is False)")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(f"recomputation computes gradients for the inputs only: freeze the model first "
                         f"(requires_grad_(False)); {len(trainable)} parameter(s) require grad, e.g. {trainable[0]}")
    return model


def _decoder_leaves(model: nn.Module) -> list[nn.Module]:
    """The ResNet and upsampling blocks of a VAE decoder: recomputed one by one (instead of diffusers' whole up
    blocks, which at 512–768 px hold several GB each; Recompute does not nest)."""
    decoder = getattr(model, "decoder", None)
    if decoder is None or getattr(decoder, "up_blocks", None) is None:
        return []
    from diffusers.models.resnet import ResnetBlock2D, Upsample2D

    return [m for m in decoder.modules() if isinstance(m, (ResnetBlock2D, Upsample2D))]


def _recomputed_leaf(block: nn.Module, hidden_states, *args):
    return recompute_call(block._lococourse_plain_forward, hidden_states, *args)


def _recomputed_resnet(block: nn.Module, input_tensor, temb=None):
    return recompute_call(block._lococourse_plain_forward, input_tensor, temb)


def enable_recompute(model: nn.Module) -> nn.Module:
    """Recompute ``model``'s checkpointable blocks in every backward pass (in place; returns ``model``).

    The model must be a frozen diffusers model.  Outputs, J·v and Jᵀ·u are unchanged (to float rounding); the
    stored graph keeps each block's inputs only.  In a VAE decoder the blocks are its ResNet and upsampling blocks,
    one by one (an up block at 512–768 px holds several GB of activations).  :func:`disable_recompute` undoes it.
    """
    import functools

    _check_model(model).enable_gradient_checkpointing(gradient_checkpointing_func=recompute_call)
    leaves = _decoder_leaves(model)
    if leaves:
        for m in model.decoder.modules():  # the decoder's own (whole-up-block) checkpointing off: leaves instead
            if hasattr(m, "gradient_checkpointing"):
                m.gradient_checkpointing = False
    from diffusers.models.resnet import ResnetBlock2D

    for block in leaves:
        if not hasattr(block, "_lococourse_plain_forward"):
            block._lococourse_plain_forward = block.forward
            wrap = _recomputed_resnet if isinstance(block, ResnetBlock2D) else _recomputed_leaf
            block.forward = functools.partial(wrap, block)
    return model


def disable_recompute(model: nn.Module) -> nn.Module:
    """Store every activation again (diffusers' default; in place; returns ``model``)."""
    _check_model(model).disable_gradient_checkpointing()
    for block in _decoder_leaves(model):
        if hasattr(block, "_lococourse_plain_forward"):
            del block.forward  # the instance attribute: the class's forward again
            del block._lococourse_plain_forward
    return model


def is_recompute_enabled(model: nn.Module) -> bool:
    """Whether :func:`enable_recompute` is active on some block of ``model``."""
    return any((getattr(m, "gradient_checkpointing", False) and getattr(m, "_gradient_checkpointing_func", None)
                is recompute_call) or hasattr(m, "_lococourse_plain_forward") for m in model.modules())
