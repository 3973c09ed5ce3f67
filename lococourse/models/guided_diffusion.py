"""Convert OpenAI guided-diffusion (and P2-weighting) UNet checkpoints to diffusers.

The paper edits FFHQ, AFHQ, Flowers and MetFaces with the P2-weighting
checkpoints of Choi et al. (CVPR 2022). Those ``.pt`` files use the layout of
OpenAI's guided-diffusion ``UNetModel``: keys such as
``input_blocks.N.0.in_layers.0.weight``, ``middle_block.1.qkv.weight``,
``output_blocks.N.1.proj_out.weight`` and ``out.2.weight``, with a learned
variance, i.e. ``2 * C`` output channels (6 for RGB).

This module maps such a state dict onto a diffusers ``UNet2DModel`` whose
config ``guided_unet_config(**hparams)`` builds from the same hyper-parameters
the original scripts take (``num_channels``, ``num_res_blocks``,
``attention_resolutions``, ``num_head_channels``, ``learn_sigma``,
``resblock_updown``, ``use_scale_shift_norm``, ...). The layout was read from the
public description (guided-diffusion ``unet.py`` / ``nn.py`` and P2-weighting's
``script_util.py`` and README); no original code is copied or run.

Layout facts the mapping relies on (one original block -> one diffusers module):

* ``time_embed.{0,2}`` -> ``time_embedding.linear_{1,2}``; the sinusoidal
  embedding is ``[cos, sin]`` of ``t * 10000**(-i/half)``, i.e. diffusers'
  ``flip_sin_to_cos=True, freq_shift=0``.
* ``input_blocks.0.0`` -> ``conv_in``; then per level ``num_res_blocks`` entries
  ``[ResBlock, (AttentionBlock)]`` and, except at the last level, one
  down-sampler (a ``ResBlock(down=True)`` if ``resblock_updown``, else a strided
  conv ``op``).
* ``middle_block.{0,1,2}`` -> ``mid_block.resnets.0``, ``mid_block.attentions.0``,
  ``mid_block.resnets.1``.
* ``output_blocks``: per level (deepest first) ``num_res_blocks + 1`` entries
  ``[ResBlock, (AttentionBlock), (up-sampler at the level's last entry)]``.
* ``out.{0,2}`` -> ``conv_norm_out``, ``conv_out``.
* ResBlock: ``in_layers.{0,2}`` -> ``norm1, conv1``; ``emb_layers.1`` ->
  ``time_emb_proj`` (``2 * C`` rows: scale then shift when
  ``use_scale_shift_norm``); ``out_layers.{0,3}`` -> ``norm2, conv2``;
  ``skip_connection`` (1x1 conv, only when channels change) -> ``conv_shortcut``.
* AttentionBlock: ``norm`` -> ``group_norm``; the 1x1 ``qkv`` conv (``3C x C x 1``)
  is split into ``to_q, to_k, to_v``; ``proj_out`` -> ``to_out.0``. With the
  default (legacy) order the ``3C`` rows are grouped *per head* as
  ``[q_h, k_h, v_h]`` (``QKVAttentionLegacy`` reshapes to ``(B*H, 3*ch, T)`` and
  splits); with ``use_new_attention_order`` they are ``[q, k, v]`` first and
  heads second.

What is verified, and how (see ``tests/models/test_guided_diffusion.py``):

* Structure: a state dict generated in the original key layout from the
  architecture description has every key consumed exactly once, every diffusers
  key filled exactly once, and matching shapes; the P2 FFHQ-256 configuration
  has the ~93M parameters its README states.
* Numerics: a hand-written plain-torch forward of one original-layout ResBlock
  (scale-shift, up, down, channel change), of one original-layout AttentionBlock
  (legacy and new qkv order), and of a whole small original-layout UNet, each
  compared with the converted diffusers module's output.

What is NOT verified: those plain-torch forwards are our re-implementation of
the published description, not OpenAI's code, which cannot be run here. In
particular the legacy per-head qkv grouping is checked against our reading of
``QKVAttentionLegacy`` — if that reading were wrong, converter and oracle would
be wrong together. No real P2 checkpoint was available to compare samples with.
"""
from __future__ import annotations

import torch

# guided-diffusion's default channel multipliers per image size (script_util.py)
_DEFAULT_CHANNEL_MULT = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


# ----------------------------------------------------------------------------- config
def _parse_channel_mult(channel_mult, image_size):
    """Tuple of level multipliers from a guided-diffusion ``channel_mult`` argument."""
    if channel_mult in ("", None):
        if image_size not in _DEFAULT_CHANNEL_MULT:
            raise ValueError(
                f"no default channel_mult for image_size={image_size!r}; "
                f"pass channel_mult or use one of {sorted(_DEFAULT_CHANNEL_MULT)}"
            )
        return _DEFAULT_CHANNEL_MULT[image_size]
    if isinstance(channel_mult, str):
        channel_mult = tuple(int(m) for m in channel_mult.split(","))
    mult = tuple(channel_mult)
    if not mult or mult[0] != 1:
        raise ValueError(
            f"channel_mult must start with 1 (the time embedding width is num_channels), got {mult!r}"
        )
    return mult


def _attention_downsample_rates(attention_resolutions, image_size):
    """Downsample rates ``image_size // res`` at which attention is used (as the scripts do)."""
    if isinstance(attention_resolutions, str):
        attention_resolutions = [int(r) for r in attention_resolutions.split(",") if r.strip()]
    rates = []
    for res in attention_resolutions:
        if res <= 0 or image_size % res:
            raise ValueError(f"attention resolution {res!r} does not divide image_size={image_size}")
        rates.append(image_size // res)
    return set(rates)


def _head_dim(widths_with_attention, num_heads, num_head_channels, num_heads_upsample):
    """diffusers' single ``attention_head_dim`` (channels per head) for all attention layers."""
    if num_head_channels != -1:
        bad = [w for w in widths_with_attention if w % num_head_channels]
        if bad:
            raise ValueError(f"widths {bad} not divisible by num_head_channels={num_head_channels}")
        return num_head_channels
    if num_heads_upsample not in (-1, num_heads):
        raise ValueError(
            f"num_heads_upsample={num_heads_upsample} != num_heads={num_heads} is not representable in UNet2DModel"
        )
    dims = {w // num_heads for w in widths_with_attention}
    if len(dims) != 1 or any(w % num_heads for w in widths_with_attention):
        raise ValueError(
            f"num_heads={num_heads} gives unequal head widths over attention widths {sorted(widths_with_attention)}; "
            "UNet2DModel needs one attention_head_dim (pass num_head_channels instead)"
        )
    return dims.pop()


def _block_types(attn_levels, n_levels, resblock_updown):
    """diffusers down/up block type names per level (up: deepest level first)."""
    plain_down = "ResnetDownsampleBlock2D" if resblock_updown else "DownBlock2D"
    plain_up = "ResnetUpsampleBlock2D" if resblock_updown else "UpBlock2D"
    down = ["AttnDownBlock2D" if lv in attn_levels else plain_down for lv in range(n_levels)]
    up = ["AttnUpBlock2D" if lv in attn_levels else plain_up for lv in reversed(range(n_levels))]
    return down, up


def guided_unet_config(
    image_size: int = 256,
    num_channels: int = 128,
    num_res_blocks: int = 1,
    channel_mult="",
    attention_resolutions="16",
    num_heads: int = 4,
    num_head_channels: int = 64,
    num_heads_upsample: int = -1,
    learn_sigma: bool = True,
    use_scale_shift_norm: bool = True,
    resblock_updown: bool = True,
    use_new_attention_order: bool = False,
    class_cond: bool = False,
    num_classes: int = 1000,
    dropout: float = 0.0,
    in_channels: int = 3,
) -> dict:
    """A diffusers ``UNet2DModel`` config equivalent to guided-diffusion's ``create_model``.

    Arguments are the original script flags; defaults are P2-weighting's FFHQ 256
    model. ``attention_resolutions`` are pixel resolutions (``"16"`` = attention
    at 16x16), converted to downsample rates as the scripts do. The returned dict
    keeps the flags under the private key ``"_guided_hparams"`` (diffusers ignores
    keys starting with ``_``) so ``convert_guided_state_dict`` knows the qkv order.
    """
    mult = _parse_channel_mult(channel_mult, image_size)
    widths = [int(m * num_channels) for m in mult]
    rates = _attention_downsample_rates(attention_resolutions, image_size)
    attn_levels = {lv for lv in range(len(mult)) if 2**lv in rates}
    head_dim = _head_dim([widths[lv] for lv in attn_levels] + [widths[-1]],
                         num_heads, num_head_channels, num_heads_upsample)
    down, up = _block_types(attn_levels, len(mult), resblock_updown)
    hparams = dict(image_size=image_size, num_channels=num_channels, num_res_blocks=num_res_blocks,
                   channel_mult=list(mult), attention_downsample_rates=sorted(rates),
                   use_new_attention_order=use_new_attention_order, resblock_updown=resblock_updown,
                   use_scale_shift_norm=use_scale_shift_norm, learn_sigma=learn_sigma)
    return {
        "_class_name": "UNet2DModel",
        "_guided_hparams": hparams,
        "sample_size": image_size,
        "in_channels": in_channels,
        "out_channels": 2 * in_channels if learn_sigma else in_channels,
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "down_block_types": down,
        "up_block_types": up,
        "mid_block_type": "UNetMidBlock2D",
        "block_out_channels": widths,
        "layers_per_block": num_res_blocks,
        "mid_block_scale_factor": 1,
        "downsample_padding": 1,
        "downsample_type": "resnet" if resblock_updown else "conv",
        "upsample_type": "resnet" if resblock_updown else "conv",
        "dropout": dropout,
        "act_fn": "silu",
        "attention_head_dim": head_dim,
        "norm_num_groups": 32,
        "attn_norm_num_groups": 32,  # without it diffusers drops the mid attention's GroupNorm under scale_shift
        "norm_eps": 1e-5,
        "resnet_time_scale_shift": "scale_shift" if use_scale_shift_norm else "default",
        "add_attention": True,
        "class_embed_type": None,
        "num_class_embeds": num_classes if class_cond else None,
    }


# ----------------------------------------------------------------------------- key map
_RESNET_PARTS = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}


def _structure(config):
    """Levels, res-blocks per level, attention levels and up/down style of a UNet2DModel config."""
    n_levels = len(config["block_out_channels"])
    attn_levels = {lv for lv, t in enumerate(config["down_block_types"]) if t.startswith("Attn")}
    updown = config.get("downsample_type", "conv") == "resnet"
    return n_levels, config["layers_per_block"], attn_levels, updown


def _input_block_map(n_levels, n_res, attn_levels, updown):
    """[(original prefix, diffusers prefix, kind)] for ``input_blocks``."""
    pairs, idx = [("input_blocks.0.0", "conv_in", "plain")], 1
    for lv in range(n_levels):
        for j in range(n_res):
            pairs.append((f"input_blocks.{idx}.0", f"down_blocks.{lv}.resnets.{j}", "resnet"))
            if lv in attn_levels:
                pairs.append((f"input_blocks.{idx}.1", f"down_blocks.{lv}.attentions.{j}", "attn"))
            idx += 1
        if lv != n_levels - 1:
            if updown:
                pairs.append((f"input_blocks.{idx}.0", f"down_blocks.{lv}.downsamplers.0", "resnet"))
            else:
                pairs.append((f"input_blocks.{idx}.0.op", f"down_blocks.{lv}.downsamplers.0.conv", "plain"))
            idx += 1
    return pairs


def _output_block_map(n_levels, n_res, attn_levels, updown):
    """[(original prefix, diffusers prefix, kind)] for ``output_blocks`` (deepest level first)."""
    pairs, idx = [], 0
    for u, lv in enumerate(reversed(range(n_levels))):
        for i in range(n_res + 1):
            pairs.append((f"output_blocks.{idx}.0", f"up_blocks.{u}.resnets.{i}", "resnet"))
            k = 1
            if lv in attn_levels:
                pairs.append((f"output_blocks.{idx}.1", f"up_blocks.{u}.attentions.{i}", "attn"))
                k = 2
            if lv > 0 and i == n_res:
                if updown:
                    pairs.append((f"output_blocks.{idx}.{k}", f"up_blocks.{u}.upsamplers.0", "resnet"))
                else:
                    pairs.append((f"output_blocks.{idx}.{k}.conv", f"up_blocks.{u}.upsamplers.0.conv", "plain"))
            idx += 1
    return pairs


def guided_block_map(config: dict) -> list[tuple[str, str, str]]:
    """Every original module prefix with its diffusers prefix and kind (plain/resnet/attn)."""
    n_levels, n_res, attn_levels, updown = _structure(config)
    pairs = [("time_embed.0", "time_embedding.linear_1", "plain"),
             ("time_embed.2", "time_embedding.linear_2", "plain")]
    if config.get("num_class_embeds"):
        pairs.append(("label_emb", "class_embedding", "plain"))
    pairs += _input_block_map(n_levels, n_res, attn_levels, updown)
    pairs += [("middle_block.0", "mid_block.resnets.0", "resnet"),
              ("middle_block.1", "mid_block.attentions.0", "attn"),
              ("middle_block.2", "mid_block.resnets.1", "resnet")]
    pairs += _output_block_map(n_levels, n_res, attn_levels, updown)
    pairs += [("out.0", "conv_norm_out", "plain"), ("out.2", "conv_out", "plain")]
    return pairs


# ----------------------------------------------------------------------------- tensors
def split_qkv(qkv: torch.Tensor, num_heads: int, new_order: bool = False):
    """Split a ``(3C, ...)`` qkv weight or bias into q, k, v of shape ``(C, ...)``.

    Legacy order: rows grouped per head as ``[q_h, k_h, v_h]`` (shape ``H, 3, ch``).
    New order: ``[q, k, v]`` first, heads second (shape ``3, H, ch``).
    """
    rest = qkv.shape[1:]
    ch = qkv.shape[0] // (3 * num_heads)
    if new_order:
        q, k, v = qkv.reshape(3, num_heads, ch, *rest).unbind(0)
    else:
        q, k, v = qkv.reshape(num_heads, 3, ch, *rest).unbind(1)
    return tuple(t.reshape(num_heads * ch, *rest) for t in (q, k, v))


def _attn_tensors(sd, src, dst, num_heads, new_order):
    """{diffusers key: tensor} of one AttentionBlock, and the original keys it consumed."""
    out, used = {}, []
    for p in ("weight", "bias"):
        out[f"{dst}.group_norm.{p}"] = sd[f"{src}.norm.{p}"]
        qkv = sd[f"{src}.qkv.{p}"]
        qkv = qkv[..., 0] if p == "weight" else qkv  # (3C, C, 1) conv1d -> (3C, C)
        for name, t in zip(("to_q", "to_k", "to_v"), split_qkv(qkv, num_heads, new_order)):
            out[f"{dst}.{name}.{p}"] = t
        proj = sd[f"{src}.proj_out.{p}"]
        out[f"{dst}.to_out.0.{p}"] = proj[..., 0] if p == "weight" else proj
        used += [f"{src}.norm.{p}", f"{src}.qkv.{p}", f"{src}.proj_out.{p}"]
    return out, used


def _prefix_tensors(sd, src, dst, parts=None):
    """{diffusers key: tensor} for keys ``src.<part>.<leaf>`` renamed to ``dst.<new>.<leaf>``."""
    out, used = {}, []
    for key, value in sd.items():
        if not key.startswith(src + "."):
            continue
        rest = key[len(src) + 1:]
        if parts is not None:
            part = next((p for p in parts if rest.startswith(p + ".")), None)
            if part is None:
                continue
            rest = parts[part] + rest[len(part):]
        out[f"{dst}.{rest}"] = value
        used.append(key)
    return out, used


def _expected_state(config):
    """{key: shape} of the diffusers UNet2DModel built from ``config`` on the meta device."""
    from diffusers import UNet2DModel

    with torch.device("meta"):
        model = UNet2DModel.from_config(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_complete(converted, sd_keys, used, expected):
    """ValueError naming unmapped original keys, missing/unexpected targets, shape mismatches."""
    problems = []
    unmapped = sorted(set(sd_keys) - set(used))
    if unmapped:
        problems.append(f"unmapped original keys ({len(unmapped)}): {unmapped[:8]}")
    dup = sorted({k for k in used if used.count(k) > 1})
    if dup:
        problems.append(f"original keys used twice: {dup[:8]}")
    missing = sorted(set(expected) - set(converted))
    if missing:
        problems.append(f"diffusers keys not filled ({len(missing)}): {missing[:8]}")
    extra = sorted(set(converted) - set(expected))
    if extra:
        problems.append(f"converted keys unknown to UNet2DModel ({len(extra)}): {extra[:8]}")
    bad = [f"{k}: {tuple(converted[k].shape)} != {expected[k]}"
           for k in sorted(set(converted) & set(expected)) if tuple(converted[k].shape) != expected[k]]
    if bad:
        problems.append(f"shape mismatches ({len(bad)}): {bad[:8]}")
    if problems:
        raise ValueError("guided-diffusion state dict does not match the config: " + "; ".join(problems))


def convert_guided_state_dict(sd: dict, config: dict) -> dict:
    """Map an original guided-diffusion UNet state dict onto ``UNet2DModel(**config)`` keys.

    ``config`` comes from ``guided_unet_config``. Every original key must be used
    exactly once and every diffusers key filled exactly once with the right
    shape; otherwise ValueError names the offending keys. Tensors keep their dtype.
    """
    if not isinstance(sd, dict) or not sd:
        raise ValueError(f"sd must be a non-empty dict of tensors, got {type(sd).__name__}")
    new_order = config.get("_guided_hparams", {}).get("use_new_attention_order", False)
    head_dim = config["attention_head_dim"]
    converted, used = {}, []
    try:
        for src, dst, kind in guided_block_map(config):
            if kind == "attn":
                heads = sd[f"{src}.qkv.weight"].shape[0] // (3 * head_dim)
                part, keys = _attn_tensors(sd, src, dst, heads, new_order)
            else:
                part, keys = _prefix_tensors(sd, src, dst, _RESNET_PARTS if kind == "resnet" else None)
            converted.update(part)
            used += keys
    except KeyError as err:
        raise ValueError(f"guided-diffusion state dict lacks key {err.args[0]!r} required by the config") from None
    _check_complete(converted, list(sd), used, _expected_state(config))
    return converted


def load_guided_unet(sd: dict, config: dict, dtype=torch.float32):
    """A diffusers ``UNet2DModel`` holding the converted weights of an original state dict."""
    from diffusers import UNet2DModel

    converted = convert_guided_state_dict(sd, config)
    model = UNet2DModel.from_config(config)
    if dtype != torch.float32:
        model = model.to(dtype)  # before loading, so float64 weights are not rounded through float32
    model.load_state_dict(converted, strict=True)
    model.converted_from = "guided-diffusion"
    return model.eval()
