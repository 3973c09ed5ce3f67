"""The reference renderer of the procedural faces: lococourse.data.faces written from its definitions, layer by layer.

Each shape's opacity is σ(−s/τ) of its signed distance s — the first-order ellipse distance (q − 1)/|∇q| for every
shape (the eyes' circles included, where it is exact) — and the layers are composited back to front by "over",
img ← img (1 − α) + α c, one after another (the renderer's earlier formulation).  ``render_faces`` computes the same
image as one weighted sum of the colours with each layer's visible weight, and reciprocal radii (fewer and cheaper
autograd nodes, and the circles' distance directly): tests/benchmarks/test_render_reference.py checks they agree (images, masks, gradients) in float64,
and bench_renderer.py times the two side by side, alone and inside the factor estimator.
"""
from __future__ import annotations

import math

import torch

from lococourse.data.faces import PARTS


def render_reference(f: dict, size: int = 32, dtype: torch.dtype = torch.float64,
                     labels: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images (n, 3, S, S), part labels (n, S, S)) of the factors ``f`` (name → (n,)), composited one layer after
    another in ``dtype`` (``labels=False``: None for the labels, which are then not computed)."""
    d = dtype
    n = f["gaze"].numel()
    g = (torch.arange(size, dtype=d) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(g, g, indexing="ij")
    tau = 1.0 / size  # EDGE_PX = 0.5 px in image units (the image spans 2)

    def p(k):
        return f[k].to(d).reshape(n, 1, 1)

    def ellipse(cx, cy, rx, ry):  # (q − 1)/|∇q|, q = ‖((u−cx)/rx, (v−cy)/ry)‖; for rx = ry = r, exactly dist − r
        du, dv = (u - cx) / rx, (v - cy) / ry
        q = torch.sqrt(du ** 2 + dv ** 2).clamp(min=1e-6)
        grad_norm = torch.sqrt((du / rx) ** 2 + (dv / ry) ** 2) / q
        return (q - 1) / grad_norm

    def circle(cx, cy, r):
        return ellipse(cx, cy, r, r)

    def alpha(s):
        return torch.sigmoid(-s / tau)

    def bezier(a, b, c, s):
        a, b, c = (torch.tensor(x, dtype=d).reshape(1, 3, 1, 1) for x in (a, b, c))
        s = s.reshape(n, 1, 1, 1)
        return (1 - s) ** 2 * a + 2 * s * (1 - s) * b + s ** 2 * c

    h = p("bg_hue").reshape(n, 1) + torch.tensor([0.0, 1 / 3, 2 / 3], dtype=d)
    bg = (0.55 + 0.3 * torch.cos(2 * math.pi * h)).reshape(n, 3, 1, 1)
    hair = bezier((0.12, 0.07, 0.04), (0.55, 0.22, 0.08), (0.95, 0.82, 0.40), p("hair_colour"))
    skin = bezier((0.98, 0.86, 0.74), (0.80, 0.58, 0.42), (0.40, 0.26, 0.17), p("skin_tone"))
    fry = 0.68
    a_face = alpha(ellipse(0.0, 0.08, 0.48 + 0.2 * p("face_width"), fry))
    a_hair = alpha(torch.maximum(ellipse(0.0, 0.0, 0.82, fry + 0.14), v - (-0.25 + 0.8 * p("hair_length"))))
    er = 0.10 + 0.08 * p("eye_size")
    eyes = torch.minimum(circle(-0.26, -0.05, er), circle(0.26, -0.05, er))
    px = (p("gaze") * 2 - 1) * 0.42 * er
    pupils = torch.minimum(circle(-0.26 + px, -0.05, 0.55 * er), circle(0.26 + px, -0.05, 0.55 * er))
    mw = 0.14 + 0.16 * p("mouth_width")
    curve = (p("mouth_curve") * 2 - 1) * 0.13
    my = 0.38 + curve * (1 - (u / mw).clamp(-1, 1) ** 2) - curve / 2
    a_mouth = alpha(torch.maximum((v - my).abs() - 0.055, u.abs() - mw))
    const = [torch.tensor(c, dtype=d).reshape(1, 3, 1, 1) for c in ((0.97,) * 3, (0.08, 0.10, 0.25), (0.65, 0.08, 0.15))]
    layers = [(0, torch.ones(n, size, size, dtype=d), bg), (1, a_hair, hair), (2, a_face, skin),
              (3, alpha(eyes), const[0]), (3, alpha(torch.maximum(pupils, eyes)), const[1]), (4, a_mouth, const[2])]
    img = torch.zeros(n, 3, size, size, dtype=d)
    for _, a, c in layers:
        img = img * (1 - a.unsqueeze(1)) + a.unsqueeze(1) * c
    if not labels:
        return img * 2 - 1, None
    vis = torch.zeros(len(PARTS), n, size, size, dtype=d)
    for i, (part, a, _) in enumerate(layers):
        w = a.clone()
        for _, b, _ in layers[i + 1:]:
            w = w * (1 - b)
        vis[part] += w
    return img * 2 - 1, vis.argmax(0)
