"""``lococourse verify-theory``: every claim passes, the CLI's JSON, and broken claims fail loudly."""
import contextlib
import io
import json
import math

import pytest
import torch

from lococourse.cli.main import main
from lococourse.theory import verify as theory
from lococourse.theory.molrg import MoLRG
from lococourse.theory.verify import Claim, verify_theory


@pytest.fixture(scope="module")
def cli_json():
    """One real run of ``lococourse verify-theory --json`` (seed 0): (exit code, parsed output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["verify-theory", "--json"])
    return rc, json.loads(out.getvalue())


def test_cli_json_all_claims_pass(cli_json):
    rc, data = cli_json
    assert rc == 0
    claims, summary = data["claims"], data["summary"]
    assert summary == {**summary, "passed": len(claims), "total": len(claims), "all_passed": True, "seed": 0}
    assert len(claims) >= 40
    for c in claims:
        assert set(c) == {"name", "measured", "tolerance", "comparison", "passed", "detail"}
        assert c["passed"] is True and c["comparison"] in {"<", "<=", ">", ">=", "=="}
        assert isinstance(c["measured"], (int, float)) and math.isfinite(c["measured"])
    names = " ".join(c["name"] for c in claims)
    for part in ("Lemma 1", "Lemma 2", "Lemma 3", "Thm 1(i)", "Thm 1(ii)", "Thm 1(iii)", "Alg. 2", "Tweedie",
                 "Monte Carlo", "scipy", "[equal r]", "[unequal r]"):
        assert part in names


def test_verify_theory_is_pure_and_deterministic(cli_json):
    n_threads = torch.get_num_threads()
    claims = verify_theory(seed=0)
    assert torch.get_num_threads() == n_threads  # the single-thread setting is restored
    assert all(isinstance(c, Claim) and c.passed for c in claims)
    rows = cli_json[1]["claims"]
    assert [c.name for c in claims] == [r["name"] for r in rows]
    assert [c.measured for c in claims] == [r["measured"] for r in rows]


def _canned(*passed):
    return [Claim(f"claim {i}", 0.5, 1.0, "<", p, "detail") for i, p in enumerate(passed)]


def test_table_output_and_exit_code(monkeypatch, capsys):
    monkeypatch.setattr(theory, "verify_theory", lambda seed, mc_samples: _canned(True, False, True))
    assert main(["verify-theory", "--seed", "3", "-v"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["claim", "measured", "tolerance", "result"]
    assert lines[-1] == "2/3 claims verified"
    assert sum(line.endswith("PASS") for line in lines) == 2 and sum(line.endswith("FAIL") for line in lines) == 1
    assert "    detail" in lines and "(seed 3," in lines[-2]
    monkeypatch.setattr(theory, "verify_theory", lambda seed, mc_samples: _canned(True, True))
    assert main(["verify-theory"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "2/2 claims verified"


def test_json_failure_summary(monkeypatch, capsys):
    monkeypatch.setattr(theory, "verify_theory", lambda seed, mc_samples: _canned(False))
    assert main(["verify-theory", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["all_passed"] is False and data["summary"]["passed"] == 0


def _no_monte_carlo(monkeypatch):
    """Skip the Monte Carlo claims (the slowest) in tests that break something else."""
    monkeypatch.setattr(theory, "_lemma1_monte_carlo", lambda *a, **k: [])


def test_a_wrong_jacobian_fails_lemma_2(monkeypatch, capsys):
    _no_monte_carlo(monkeypatch)
    exact = MoLRG.jacobian
    monkeypatch.setattr(MoLRG, "jacobian", lambda self, *a, **k: exact(self, *a, **k) * (1 + 1e-6))
    assert main(["verify-theory"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    failed = [line for line in lines if line.endswith("FAIL")]
    assert len(failed) == 2 and all(line.startswith("Lemma 2: closed-form J = autograd J") for line in failed)
    n = len([line for line in lines if line.endswith(("PASS", "FAIL"))])
    assert lines[-1] == f"{n - 2}/{n} claims verified"


def test_paper_weights_are_caught_by_monte_carlo(monkeypatch):
    # Replace the posterior mean by Lemma 1 as printed: exact for equal ranks and π, wrong otherwise.
    printed = MoLRG.posterior_mean
    monkeypatch.setattr(MoLRG, "posterior_mean", lambda self, x, t, rule="bayes": printed(self, x, t, "paper"))
    claims = verify_theory(seed=0)
    by_name = {c.name: c for c in claims}
    assert all(c.passed for c in claims if "[equal r]" in c.name)
    mc = by_name["Lemma 1: E[x0|x_t] = Monte Carlo, in MC std errors [unequal r]"]
    assert not mc.passed and mc.measured > 10
    assert not by_name["Lemma 1: MC at least 2× closer to Bayes than to paper [unequal r]"].passed


def test_a_crashing_check_is_a_failed_claim(monkeypatch):
    _no_monte_carlo(monkeypatch)

    def boom(case):
        raise RuntimeError("power method exploded")

    monkeypatch.setattr(theory, "_power_method", boom)
    claims = verify_theory(seed=0)
    raised = [c for c in claims if not c.passed]
    assert [c.name for c in raised] == ["Algorithm 2 [equal r] raised", "Algorithm 2 [unequal r] raised"]
    assert all(c.detail == "RuntimeError: power method exploded" and math.isnan(c.measured) for c in raised)


@pytest.mark.parametrize("measured, comparison, tolerance, passed", [
    (0.5, "<", 1.0, True), (1.0, "<", 1.0, False), (1.0, "<=", 1.0, True), (2.0, ">", 1.0, True),
    (1.0, ">", 1.0, False), (1.0, ">=", 1.0, True), (3, "==", 3, True), (2, "==", 3, False),
    (float("nan"), "<", 1.0, False), (float("inf"), ">", 1.0, False),
])
def test_claim_comparisons(measured, comparison, tolerance, passed):
    assert theory._claim("c", measured, comparison, tolerance).passed is passed


def test_bad_mc_samples(capsys):
    with pytest.raises(ValueError, match="mc_samples must be an integer ≥ 1600; got 10"):
        verify_theory(mc_samples=10)
    assert main(["verify-theory", "--mc-samples", "10"]) == 2
    assert "--mc-samples must be at least 1600" in capsys.readouterr().err
