"""lococourse.course.edits: Algorithm 1 on a coarser grid (= loco_edit at 100 steps), per-factor R², RMS in/out."""
from __future__ import annotations

import numpy as np
import torch

from lococourse.course import edits
from lococourse.theory.molrg import MoLRG


def test_sample_image_is_ddim_from_seeded_noise():
    """edits.sample_image = diffusers' DDIMScheduler loop from the same seeded CPU noise (a MoLRG's exact ε)."""
    from types import SimpleNamespace

    from diffusers import DDIMScheduler

    molrg = MoLRG.random((1, 4, 4), [1, 2], seed=0)
    model = SimpleNamespace(shape=molrg.shape, eps_model=molrg.eps_model,
                            unet=torch.nn.Linear(1, 1).double())  # the device/dtype the image is made in
    img = edits.sample_image(model, seed=5, num_steps=10)
    x = torch.randn((1, *molrg.shape), generator=torch.Generator().manual_seed(5)).double()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    sched.set_timesteps(10)
    for k in sched.timesteps.tolist():
        x = sched.step(molrg.eps_model()(x, k), k, x).prev_sample
    torch.testing.assert_close(img, x[0], rtol=0, atol=1e-4)  # diffusers keeps ᾱ in float32


def test_factor_r2_rms_and_changed_factors_against_numpy():
    from types import SimpleNamespace

    from lococourse.data.faces import FACTOR_NAMES
    from lococourse.eval.decisions import thresholds_for

    lams = [-2.0, -1.0, 1.0, 2.0]
    changes = torch.zeros(4, 9)
    i, j = FACTOR_NAMES.index("eye_size"), FACTOR_NAMES.index("gaze")
    changes[:, i] = torch.tensor([0.58, 0.26, -0.06, -0.06])
    changes[:, j] = torch.tensor([0.1, 0.05, -0.05, -0.1])  # exactly linear
    study = SimpleNamespace(part="eyes", strengths=lams, changes=changes)
    r2 = edits.factor_r2(study)
    y = changes[:, i].numpy()
    fit = np.polyval(np.polyfit(lams, y, 1), lams)
    assert np.isclose(r2["eye_size"], 1 - ((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    assert np.isclose(r2["gaze"], 1.0)
    rec = torch.zeros(2, 3, 4, 4)
    ed = rec.clone()
    ed[0, :, :2] = 1.0
    ed[0, :, 2:] = 0.1
    ed[1, :, :2] = 0.5
    sweep = SimpleNamespace(reconstructions=rec, edited=ed)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2] = True
    inside, outside = edits.rms_inside_outside(sweep, mask)
    assert np.allclose(inside, [1.0, 0.5]) and np.allclose(outside, [0.1, 0.0])
    th = thresholds_for(32)
    assert edits.changed_factors(changes[0], th) == {"eye_size": 0.58, "gaze": 0.1}
