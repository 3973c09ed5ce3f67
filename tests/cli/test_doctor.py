"""``lococourse doctor`` and the course mode: report structure, exit code, and the advice for simulated problems."""
from __future__ import annotations

import json
import time

import pytest

from lococourse.cli import doctor
from lococourse.cli.main import main
from lococourse.course import mode

_REAL_PROBE = doctor._hub_probe  # before the fixture replaces it

EXPECTED = {"python", "torch", "diffusers", "lococourse", "gpu", "hub", "mode", "course models", "hub checkpoints",
            "ipywidgets", "jupyterlab_widgets", "jupyterlab", "widget extension"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test touches the network or depends on this machine's mode."""
    monkeypatch.setattr(doctor, "_hub_probe", lambda timeout=doctor.HUB_TIMEOUT_S: (False, "simulated: no network"))
    monkeypatch.setattr(doctor, "_gpu", lambda: (False, "simulated: no GPU"))
    monkeypatch.delenv(mode.ENV_VAR, raising=False)
    monkeypatch.setattr(mode, "_gpu", lambda: (False, "cpu"))
    mode._reset()
    yield
    mode._reset()


def _by_name(checks):
    return {c.name: c for c in checks}


def test_report_structure():
    checks = doctor.collect()
    names = [c.name for c in checks]
    assert set(names) == EXPECTED and len(names) == len(set(names))
    for c in checks:
        assert c.status in ("ok", "info", "warn") and c.detail
        if c.status == "warn":
            assert c.advice, f"{c.name} warns without advice"
    assert _by_name(checks)["course models"].status == "ok"  # shipped with the package


def test_json_output_and_exit_code(capsys):
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {c["name"] for c in report["checks"]} == EXPECTED
    assert set(report["checks"][0]) == {"name", "status", "detail", "advice"}
    assert set(report["summary"]) == {"ok", "warnings", "counts"}


def test_text_report_exits_zero_even_with_warnings(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "_version", lambda dist: None if dist == "ipywidgets" else "1.0")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "WARN" in out and "pip install ipywidgets" in out and "warning(s): ipywidgets" in out


def test_no_gpu_is_information_with_advice():
    c = _by_name(doctor.collect())["gpu"]
    assert c.status == "info" and "fast mode" in c.detail and "GPU" in c.advice


def test_gpu_found(monkeypatch):
    monkeypatch.setattr(doctor, "_gpu", lambda: (True, "Simulated GPU 80GB"))
    c = _by_name(doctor.collect())["gpu"]
    assert c.status == "ok" and "Simulated GPU 80GB" in c.detail


@pytest.mark.parametrize("why, phrase", [("HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE"),
                                         ("huggingface.co is unreachable (timeout)", "hf download")])
def test_unreachable_hub_advice(monkeypatch, why, phrase):
    monkeypatch.setattr(doctor, "_hub_probe", lambda timeout=doctor.HUB_TIMEOUT_S: (False, why))
    c = _by_name(doctor.collect())["hub"]
    assert c.status == "info" and why in c.detail and phrase in c.advice


def test_hub_probe_never_hangs(monkeypatch):
    """A probe that stalls (e.g. in DNS resolution) is cut off after timeout + 1 s."""
    import lococourse.models.registry as registry

    monkeypatch.setattr(registry, "hub_reachable", lambda timeout=3.0: (time.sleep(5), (True, ""))[1])
    t0 = time.monotonic()
    ok, why = _REAL_PROBE(timeout=0.2)
    assert time.monotonic() - t0 < 3 and not ok and "no answer" in why


def test_missing_widget_extension_advice(monkeypatch):
    monkeypatch.setattr(doctor, "_labextension_dirs", lambda: [])
    c = _by_name(doctor.collect())["widget extension"]
    assert c.status == "warn" and "jupyterlab_widgets" in c.advice


def test_disabled_widget_extension_advice(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "_labextension_dirs", lambda: [tmp_path])
    monkeypatch.setattr(doctor, "_disabled_extensions", lambda: {doctor.WIDGET_EXTENSION})
    c = _by_name(doctor.collect())["widget extension"]
    assert c.status == "warn" and f"jupyter labextension enable {doctor.WIDGET_EXTENSION}" in c.advice


def test_disabled_extensions_read_from_page_config(monkeypatch, tmp_path):
    import jupyter_core.paths

    (tmp_path / "labconfig").mkdir()
    (tmp_path / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": {doctor.WIDGET_EXTENSION: True}}))
    monkeypatch.setattr(jupyter_core.paths, "jupyter_config_path", lambda: [str(tmp_path)])
    assert doctor.WIDGET_EXTENSION in doctor._disabled_extensions()


def test_missing_course_model_advice(monkeypatch):
    import lococourse.models.registry as registry

    real = registry.course_models()
    monkeypatch.setattr(registry, "course_models", lambda: {k: v for k, v in real.items() if k != "faces16"})
    c = _by_name(doctor.collect())["course models"]
    assert c.status == "warn" and "faces16" in c.detail and "reinstall" in c.advice


def test_forced_full_mode_without_gpu_warns(monkeypatch):
    monkeypatch.setenv(mode.ENV_VAR, "full")
    c = _by_name(doctor.collect())["mode"]
    assert c.status == "warn" and "full" in c.detail and mode.ENV_VAR in c.advice


def test_bad_mode_setting_is_reported_not_raised(monkeypatch):
    monkeypatch.setenv(mode.ENV_VAR, "turbo")
    c = _by_name(doctor.collect())["mode"]
    assert c.status == "warn" and "'turbo'" in c.detail


# ---------------------------------------------------------------------------------------- mode
def test_mode_is_fast_without_gpu():
    assert mode.get_mode() == "fast"
    line = mode.describe_mode()
    assert line.startswith("lococourse mode: fast") and "chosen automatically" in line and "\n" not in line


def test_mode_full_needs_gpu_and_hub(monkeypatch):
    import lococourse.models.registry as registry

    monkeypatch.setattr(mode, "_gpu", lambda: (True, "Simulated GPU"))
    monkeypatch.setattr(registry, "hub_reachable", lambda timeout=3.0: (True, ""))
    assert mode.detect_mode().mode == "full"
    monkeypatch.setattr(registry, "hub_reachable", lambda timeout=3.0: (False, "offline"))
    assert mode.detect_mode().mode == "fast"


def test_mode_overrides(monkeypatch):
    monkeypatch.setenv(mode.ENV_VAR, "full")
    assert mode.get_mode() == "full" and "set by LOCOCOURSE_MODE" in mode.describe_mode()
    assert mode.set_mode("fast") == "fast" and "set by set_mode()" in mode.describe_mode()
    monkeypatch.delenv(mode.ENV_VAR)
    assert mode.set_mode("auto") == "fast"


@pytest.mark.parametrize("bad", ["turbo", "", "GPU"])
def test_unknown_mode_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="must be one of 'fast', 'full' or 'auto'"):
        mode.set_mode(bad)


def test_unknown_mode_in_environment(monkeypatch):
    monkeypatch.setenv(mode.ENV_VAR, "turbo")
    with pytest.raises(ValueError, match="LOCOCOURSE_MODE must be one of"):
        mode.get_mode()


def test_install_advice_is_the_readmes_first_command():
    """doctor's reinstall advice is the README's first command (the oracle: the README itself), CPU torch first."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2 and block[1] == "python -m pytest --nbval-lax --nbval-current-env"
    assert block[0] == f"{doctor.INSTALL} && jupyter lab notebooks/"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in block[0] and doctor.INSTALL_GPU in readme
    c = _by_name(doctor.collect())["lococourse"]
    assert c.status == "ok"  # installed here; the advice is only shown when it is not
