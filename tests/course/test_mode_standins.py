"""The stand-in switch of lococourse.course.mode (LOCOCOURSE_STANDINS) and the full-mode helpers, without building a
real-size network (the builders are replaced by recorders)."""
from __future__ import annotations

import pytest

from lococourse.course import mode, tloco_lab
from lococourse.models.t2i import FAMILIES


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for var in (mode.ENV_VAR, mode.STANDINS_ENV, tloco_lab.FAMILIES_ENV):
        monkeypatch.delenv(var, raising=False)
    mode._reset()
    yield
    mode._reset()


def test_standins_make_full_mode_and_say_random_weights(monkeypatch):
    monkeypatch.setenv(mode.STANDINS_ENV, "1")
    info = mode.mode_info()
    assert info.mode == "full" and info.standins and info.source == mode.STANDINS_ENV
    line = mode.describe_mode()
    assert "RANDOM" in line and "LOCOCOURSE_STANDINS=1" in line
    assert mode.full_mode_settings() is mode.STANDIN_SETTINGS
    assert mode.STANDIN_SETTINGS.ddim_steps < mode.PAPER_SETTINGS.ddim_steps
    assert "REDUCED" in mode.STANDIN_SETTINGS.describe()


@pytest.mark.parametrize("value, standins", [("", False), ("0", False), ("off", False), ("1", True), ("yes", True)])
def test_standins_values(monkeypatch, value, standins):
    monkeypatch.setenv(mode.STANDINS_ENV, value)
    assert mode.standins() is standins


def test_bad_or_conflicting_standin_settings_are_named(monkeypatch):
    monkeypatch.setenv(mode.STANDINS_ENV, "sometimes")
    with pytest.raises(ValueError, match="LOCOCOURSE_STANDINS must be 1.*'sometimes'"):
        mode.mode_info()
    mode._reset()
    monkeypatch.setenv(mode.STANDINS_ENV, "1")
    monkeypatch.setenv(mode.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="unset one of them"):
        mode.mode_info()


def test_without_standins_nothing_changes(monkeypatch):
    monkeypatch.setenv(mode.ENV_VAR, "fast")
    assert mode.get_mode() == "fast" and not mode.mode_info().standins
    assert mode.full_mode_settings() is mode.PAPER_SETTINGS


def test_full_mode_model_and_t2i_use_the_real_size_standins(monkeypatch):
    import lococourse.models.real_size as real_size

    calls = []
    monkeypatch.setattr(real_size, "standin_model", lambda name: calls.append(("model", name)) or "M")
    monkeypatch.setattr(real_size, "standin_t2i", lambda name, num_steps=None, recompute=False:
                        calls.append(("t2i", name, num_steps, recompute)) or "P")
    monkeypatch.setenv(mode.STANDINS_ENV, "1")
    assert mode.full_mode_model("ddpm-celebahq-256") == "M"
    assert mode.full_mode_t2i("sd-2.1-base") == "P"
    assert mode.full_mode_t2i("deepfloyd-if-i-m") == "P"
    # the latent models recompute their blocks (their 512 px Jacobian does not fit 24 GB otherwise); IF does not need to
    assert calls == [("model", "ddpm-celebahq-256"), ("t2i", "sd-2.1-base", mode.STANDIN_SETTINGS.t2i_steps["sd"], True),
                     ("t2i", "deepfloyd-if-i-m", mode.STANDIN_SETTINGS.t2i_steps["if"], False)]
    setup = tloco_lab.tloco_setup()
    assert setup.kind == "standin" and setup.random_weights and setup.settings["max_iter"] == 1
    assert "RANDOM" in setup.describe() and setup.prompts == (tloco_lab.SOURCE, tloco_lab.EDIT)
    assert all(len(u) == 2 and u[0] == 0.0 for u, _ in setup.strengths.values())
    assert setup.families == FAMILIES  # all three unless LOCOCOURSE_STANDIN_FAMILIES says otherwise
    monkeypatch.setenv(tloco_lab.FAMILIES_ENV, "lcm, SD")
    setup = tloco_lab.tloco_setup()
    assert setup.families == ("sd", "lcm") and "families sd, lcm only" in setup.describe()


def test_standin_families_bad_value(monkeypatch):
    """A family name that does not exist is an error naming the value and the choices, before any pipeline."""
    monkeypatch.setenv(tloco_lab.FAMILIES_ENV, "sd,dalle")
    with pytest.raises(ValueError, match=r"LOCOCOURSE_STANDIN_FAMILIES must list families from sd, if, lcm.*'sd,dalle'"):
        tloco_lab.standin_families()
    assert tloco_lab.standin_families("") == FAMILIES
    monkeypatch.delenv(tloco_lab.FAMILIES_ENV)
    monkeypatch.setenv(mode.ENV_VAR, "fast")
    with pytest.raises(ValueError, match=r"families must be among.*'dalle'"):
        tloco_lab.run_tloco(tloco_lab.tloco_setup(), families=("dalle",))


def test_fast_mode_runs_the_tiny_pipelines(monkeypatch):
    monkeypatch.setenv(mode.ENV_VAR, "fast")
    setup = tloco_lab.tloco_setup()
    assert setup.kind == "tiny" and setup.random_weights
    run = tloco_lab.run_tloco(setup, families=("sd",))
    c = run.checks["sd"]
    assert c.all_hold and set(run.results) == {"sd unsupervised", "sd text"} and "sd" in run.models
    assert run.masks["sd"].shape == run.models["sd"].out_shape[1:]
    from lococourse.course import viz_edit

    assert viz_edit.plot_tloco_grid(run.results, run.masks) is not None
    with pytest.raises(ValueError, match="family must be one of"):
        tloco_lab.load_pipeline(setup, "dalle")
