"""Bad input to the public Python API: the exception type, a message naming the value and what is allowed, and no
input file changed (the autouse fixture).  Plus the MoLRG posterior mean at huge x_t against its closed form."""
import math

import pytest
import torch

from lococourse.cli.common import CLIError, Outputs
from lococourse.core.checks import check_device, check_real, check_seed, check_strength
from lococourse.data.images import ImageError, read_image
from lococourse.editing.direction import Direction, DirectionError
from lococourse.editing.masks import as_mask, ellipse, parse_mask, rectangle
from lococourse.models import registry
from lococourse.models.train import TrainConfig
from lococourse.theory.molrg import MoLRG

# ---------------------------------------------------------------------------------------- direction files
DIRECTIONS = [("dir_norm1000", "‖v‖ = 1000"), ("dir_zero", "‖v‖ = 0"), ("dir_int", "dtype torch.int32"),
              ("dir_nan", "NaN"), ("dir_flipped", "sha256"), ("dir_alltrue", "all True"),
              ("dir_truncated", "not a readable safetensors"), ("dir_empty", "not a readable safetensors"),
              ("dir_pickle", "never read"), ("dir_nokeys", "lacks"), ("dir_badt", "t = 2.0"), ("dir_folder", "is a folder")]


@pytest.mark.parametrize("name, match", DIRECTIONS, ids=[d[0] for d in DIRECTIONS])
def test_direction_load_refuses_naming_the_file(inputs, name, match):
    path = getattr(inputs, name)
    with pytest.raises(DirectionError, match=match) as e:
        Direction.load(path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------------------------------- models
def test_model_loading(inputs):
    with pytest.raises(ValueError, match="does not say what its UNet predicts") as e:
        registry.load_model(str(inputs.nocard))
    assert str(inputs.nocard) in str(e.value)
    assert registry.load_model(str(inputs.nocard), prediction_type="sample").prediction_type == "sample"
    with pytest.raises(registry.ModelIntegrityError, match="sha256"):
        registry.load_model(str(inputs.corrupt))
    with pytest.raises(registry.ModelNotAvailableError, match="could not load model 'pickled'"):
        registry.load_model(str(inputs.pickled))
    with pytest.raises(ValueError, match="torch.float16 is not supported"):
        registry.load_model(str(inputs.faces), torch.float16)
    with pytest.raises(TypeError, match="got 3"):
        registry.get_spec(3)
    with pytest.raises(ValueError, match="'' is empty"):
        registry.load_model("")
    with pytest.raises(ValueError, match="unknown text-to-image model 'tiny-xl'"):
        registry.load_t2i("tiny-xl")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_cpu_machine():
    with pytest.raises(ValueError, match="device 'cuda' is not available here"):
        registry.load_t2i("tiny-if", device="cuda")
    with pytest.raises(ValueError, match="'cuda:1' is not available"):
        check_device("cuda:1")


# ---------------------------------------------------------------------------------------- masks and images
@pytest.mark.parametrize("call, match", [
    (lambda p: parse_mask("0.2,0.2,0.8,0.8", (16, 16)), "covers no pixel.*3,3,13,13"),
    (lambda p: ellipse((16, 16), 40, 40, 2, 2), r"ellipse \(cx = 40.*contains no pixel centre"),
    (lambda p: ellipse((16, 16), 8, 8, 0, 2), "radii must be positive"),
    (lambda p: rectangle((16, 16), float("nan"), 0, 4, 4), "finite numbers"),
    (lambda p: as_mask(torch.ones(16, 16, dtype=torch.bool), (16, 16)), "all True"),
    (lambda p: parse_mask("", (16, 16), {"eyes": None}), "mask '' is empty.*eyes"),
    (lambda p: parse_mask(str(p.folder), (16, 16)), "is a folder"),
    (lambda p: parse_mask(str(p.mask_black), (16, 16)), "black everywhere"),
    (lambda p: as_mask(torch.full((16, 16), float("nan")), (16, 16)), "NaN"),
    (lambda p: rectangle((16, 16.5), 0, 0, 4, 4), r"integers H, W ≥ 1; got \(16, 16.5\)"),
])
def test_bad_masks(inputs, call, match):
    with pytest.raises(ValueError, match=match):
        call(inputs)


@pytest.mark.parametrize("name, match", [("bomb", "50000×50000"), ("holes", "transparent"), ("truncated", "could not read"),
                                         ("text", "could not read"), ("empty", "0 bytes"), ("folder", "folder")])
def test_bad_images(inputs, name, match):
    with pytest.raises(ImageError, match=match) as e:
        read_image(getattr(inputs, name))
    assert str(getattr(inputs, name)) in str(e.value)


# ---------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("call, exc, match", [
    (lambda: TrainConfig(ema_decay=5), ValueError, r"ema_decay must be a finite number in \[0, 1\); got 5"),
    (lambda: TrainConfig(steps=-5), ValueError, "steps must be a positive integer; got -5"),
    (lambda: check_seed(2 ** 64), ValueError, "0 … 2⁶⁴ − 1 = 18446744073709551615; got 18446744073709551616"),
    (lambda: check_seed("7"), ValueError, "got '7'"),
    (lambda: check_real("0.5", "tol", low=0, high=1), TypeError, r"tol must be a finite number in \[0, 1\]; got '0.5'"),
    (lambda: check_real(float("nan"), "tol", low=0, high=1, low_open=True), ValueError, r"\(0, 1\]; got nan"),
    (lambda: check_strength(1e30), ValueError, "1e\\+30 is too large: |λ| must be ≤ 10000"),
    (lambda: check_strength(float("inf")), ValueError, "finite number with |λ| ≤ 10000; got inf"),
    (lambda: check_device("gpu"), ValueError, "'gpu' is not a device torch knows"),
])
def test_bad_numbers(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_huge_strength_is_refused_before_any_work():
    """λ = 1e30 once wrote an all-black PNG and a direction; now loco_edit refuses it before touching the model."""
    from lococourse.editing.loco import loco_edit

    class Untouchable:
        name = "untouchable"

        def pmp(self, t):
            raise AssertionError("the model was used")

        def eps_model(self):
            raise AssertionError("the model was used")

    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2] = True
    with pytest.raises(ValueError, match="1e\\+30 is too large"):
        loco_edit(Untouchable(), torch.zeros(1, 4, 4), mask, 0.5, strengths=[1e30])


def test_outputs_refuse_inputs_and_model_folders(inputs, tmp_path):
    with pytest.raises(CLIError, match="never overwrite an input"):
        Outputs([("--out", inputs.face)], overwrite=True, inputs=[("--image", inputs.face)])
    with pytest.raises(CLIError, match="inside the model folder"):
        Outputs([("--out", inputs.faces / "x.png")], overwrite=True)
    with pytest.raises(CLIError, match="also"):
        Outputs([("--out", tmp_path / "a.png"), ("copy", tmp_path / "a.png")])


# ---------------------------------------------------------------------------------------- MoLRG at huge x_t
@pytest.mark.parametrize("t", [0.001, 0.3, 0.9])
@pytest.mark.parametrize("scale", [1e3, 1e50, 1e155, 1e200, 1e300])
def test_molrg_posterior_mean_is_finite_and_exact_for_huge_x(t, scale):
    """For x_t in the span of one class, E[x₀|x_t] → √ᾱ P_k x_t as ‖x_t‖ grows (the weights become one-hot);
    for a generic x_t the limit is √ᾱ P_{k*} x_t with k* = argmax ‖M_kᵀ x_t‖.  Closed forms in float64;
    ‖M_kᵀx‖² overflows past 1e154 and made the softmax NaN before."""
    m = MoLRG.random(30, [3, 5, 2], seed=2)
    g = torch.Generator().manual_seed(0)
    ab = float(m.schedule.alpha_bar(t))
    for k, M in enumerate(m.bases):
        x = (M @ torch.randn(M.shape[1], generator=g, dtype=torch.float64)) * scale
        got = m.posterior_mean(x, t)
        want = math.sqrt(ab) * (M @ (M.T @ x))
        assert torch.isfinite(got).all()
        if scale >= 1e50:  # one-hot weights: exact up to rounding
            assert float(((got - want) / scale).norm() / (want / scale).norm()) < 1e-12  # norms of x/scale: no overflow
    x = torch.randn(30, generator=g, dtype=torch.float64) * scale
    proj = torch.stack([(M.T @ (x / scale)).norm() for M in m.bases])
    M = m.bases[int(proj.argmax())]
    got = m.posterior_mean(x, t)
    assert torch.isfinite(got).all() and torch.isfinite(m.score(x, t)).all()
    if scale >= 1e50:
        want = math.sqrt(ab) * (M @ (M.T @ x))
        assert float(((got - want) / scale).norm() / (want / scale).norm()) < 1e-12
    w = m.log_weights(x, t).exp()
    assert torch.isfinite(w).all() and float(w.sum()) == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------------------------- found by this suite, fixed
def test_local_linearity_with_no_lambdas():
    from lococourse import local_linearity

    m = MoLRG.random(12, [2, 3])
    x = torch.randn(12, dtype=torch.float64)
    with pytest.raises(ValueError, match="lambdas"):
        local_linearity(m.pmp(0.5), x, torch.randn(12, dtype=torch.float64), [])


def test_t_as_a_string():
    m = MoLRG.random(12, [2, 3])
    with pytest.raises((ValueError, TypeError), match=r"t must .*\(0, 1\]; got '0.5'"):
        m.pmp("0.5")


@pytest.mark.parametrize("tol", [float("nan"), float("inf"), 0.0, -1e-3])
def test_power_method_tolerance(tol):
    from lococourse.jacobian.power import power_method

    m = MoLRG.random(12, [2, 3])
    with pytest.raises(ValueError, match=r"tol must be a finite number > 0; got"):
        power_method(m.pmp(0.5), torch.randn(12, dtype=torch.float64), k=2, tol=tol)
