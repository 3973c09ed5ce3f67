"""render_faces against the reference renderer of benchmarks/_render_reference.py run in float64: the layer-by-layer
"over" compositing (img ← img (1 − α) + α c) with the shapes written from their definitions.

The renderer computes the same image as one weighted sum of the layers' colours (each layer's visible weight), with
reciprocal radii: a rewrite for speed (the factor estimator renders it millions of times), which must change nothing
but rounding — images, masks and the gradients the estimator's Adam follows."""
import torch
from bench_loader import load_bench

from lococourse.data import FACTOR_NAMES, PARTS, render_faces, sample_factors

render_reference = load_bench("_render_reference").render_reference


def test_render_matches_layer_by_layer_reference_images_and_masks():
    f = sample_factors(64, torch.Generator().manual_seed(3))
    for size in (16, 32):
        b = render_faces(f, size)
        img, label = render_reference(f, size)
        assert (b.images.double() - img).abs().max() < 2e-5
        ours = torch.stack([b.masks[p] for p in PARTS]).long().argmax(0)
        # the masks are an argmax of visible weights: equal wherever the reference's top two parts are not tied
        assert (ours != label).float().mean() < 1e-3


def test_render_gradient_matches_reference_gradient():
    """What the estimator's Adam follows: ∂/∂θ of a pixel loss, through the rewritten compositing, against autograd
    through the float64 reference."""
    f = sample_factors(16, torch.Generator().manual_seed(5))
    theta = torch.stack([f[k] for k in FACTOR_NAMES], 1).clamp(0.05, 0.95)
    target = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(6)) * 2 - 1

    def grad(render, dtype):
        th = theta.to(dtype).clone().requires_grad_(True)
        img = render({k: th[:, i] for i, k in enumerate(FACTOR_NAMES)})
        ((img - target.to(dtype)) ** 2).sum().backward()
        return th.grad.double()

    ours = grad(lambda fd: render_faces(fd, 32, masks=False).images, torch.float32)
    ref = grad(lambda fd: render_reference(fd, 32)[0], torch.float64)
    assert torch.allclose(ours, ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item())
