"""Edit metrics against hand computations and scikit-image."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from lococourse.editing.metrics import composability, leakage, linearity_r2, psnr_outside, ssim_outside


def _setup():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 16, 16, generator=g) * 2 - 1
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[4:9, 3:10] = True
    return a, m, g


def test_leakage_and_psnr_against_hand_computation():
    a, m, g = _setup()
    b = a.clone()
    b[:, m] += 0.4
    b[:, ~m] += 0.01
    assert leakage(a, b, m) == pytest.approx(0.01 / 0.4, rel=1e-6)
    ref = peak_signal_noise_ratio(a[:, ~m].numpy(), b[:, ~m].numpy(), data_range=2.0)
    assert psnr_outside(a, b, m) == pytest.approx(ref, rel=1e-6)


def test_ssim_outside_ignores_changes_inside():
    a, m, g = _setup()
    b = a.clone()
    b[:, m] = torch.rand(3, int(m.sum()), generator=g)
    assert ssim_outside(a, b, m) == pytest.approx(1.0, abs=1e-12)
    b[:, ~m] += 0.2 * torch.randn(3, int((~m).sum()), generator=g)
    assert ssim_outside(a, b, m) < 0.95


def test_linearity_r2_and_composability():
    lam = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert linearity_r2(lam, 3 * lam + 1) == pytest.approx(1.0)
    assert linearity_r2(lam, lam ** 2) < 0.1
    a, m, g = _setup()
    d1, d2 = torch.randn(3, 16, 16, generator=g), torch.randn(3, 16, 16, generator=g)
    assert composability(a, a + d1 + d2, [a + d1, a + d2]) < 1e-6  # float32 rounding only
    assert composability(a, a + d1, [a + d1, a + d2]) > 0.5


def test_metric_bad_input():
    a, m, _ = _setup()
    with pytest.raises(ValueError, match="spatial size"):
        leakage(a, a, torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        leakage(a, a[:2], m)
    with pytest.raises(ValueError, match="neither empty"):
        leakage(a, a, torch.zeros(16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="≥ 3 strengths"):
        linearity_r2([1.0, 2.0], [1.0, 2.0])
