"""benchmarks/bench_loco_table.py refuses bad arguments before loading any model (argparse errors name the value)."""
from __future__ import annotations

from pathlib import Path

import pytest
from bench_loader import assert_refused, load_bench

bench = load_bench("bench_loco_table")


@pytest.mark.parametrize("argv, message", [
    (["--methods", "loco,nope"], "--methods must list methods among"),
    (["--methods", ","], "--methods must list methods among"),
    (["--target", "0"], "--target (the main-factor change λ-by-target aims at) must be positive; got 0.0"),
    (["--target", "-1", "--target-unit", "tau"], "--target (the main-factor change λ-by-target aims at) must be positive; got -1.0"),
    (["--target-unit", "sigma"], "argument --target-unit: invalid choice: 'sigma'"),
    (["--images", "2", "--transfers", "2"], "--images (2) must exceed --transfers (2)"),
])
def test_bad_arguments_fail_before_any_model_work(argv, message, capsys, monkeypatch):
    assert_refused(bench, argv, message, capsys, monkeypatch, ("load_model",))


RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _saved_run(images: int = 5) -> dict:
    """The saved t = 0.6 20-face run, cut to its first ``images`` faces (their records and transfers)."""
    import json

    res = json.loads((RESULTS / "loco_table_t06_20faces.json").read_text())
    res = {k: v for k, v in res.items() if k not in ("table", "sensitivity")}
    for what in ("records", "transfer_records", "strengths"):
        res[what] = [r for r in res[what] if r["image"] < images]
    return res


def _split(res: dict, moved: str) -> tuple[dict, dict]:
    """One saved run as two: the base without ``moved``, and an extra run of loco, the paper's row, ``moved`` and the bound."""
    def keep(rows):
        return {**{k: v for k, v in res.items() if k not in ("table", "sensitivity")}, "rows": rows,
                "records": [r for r in res["records"] if r["method"] in rows],
                "transfer_records": [r for r in res["transfer_records"] if r["method"] in rows],
                "strengths": [s for s in res["strengths"] if s["method"] in rows],
                "times": {r: res["times"][r] for r in rows}}

    base = keep([r for r in res["rows"] if r != moved])
    extra = keep([bench.PAPER_ROW, "loco", moved, bench.UPPER_ROW])
    return base, extra


def test_merging_two_parts_of_one_run_gives_that_runs_table():
    """--merge of a saved 20-face run split in two (oracle: the table summarize computes from the whole run)."""
    import json

    res = _saved_run()
    whole = bench.summarize(res)
    base, extra = _split(res, "loco_band_sampler")
    merged = bench.merge(base, extra)
    assert merged["merged"]["rows"] == ["loco_band_sampler"]
    assert set(merged["table"]) == set(whole["table"])
    for row, v in whole["table"].items():
        for key in ("local_success", "transfer_success", "transfer_part_success", "leakage_median"):
            assert merged["table"][row][key] == pytest.approx(v[key], abs=1e-12), (row, key)
        for p in v["per_part"]:
            assert merged["table"][row]["per_part"][p]["local_success"] == pytest.approx(v["per_part"][p]["local_success"])
    with pytest.raises(ValueError, match="adds no row"):
        bench.merge(whole, extra)
    other = json.loads(json.dumps(extra))
    other["thresholds"]["eye_size"] += 0.01
    with pytest.raises(ValueError, match=r"differ in \['thresholds'\]"):
        bench.merge(base, other)
    other = json.loads(json.dumps(extra))
    other["target_unit"] = "tau"  # λ by a target in units of τ: not the same protocol as a run in factor units
    with pytest.raises(ValueError, match=r"differ in \['target_unit'\]"):
        bench.merge(base, other)
    other = json.loads(json.dumps(extra))
    next(r for r in other["records"] if r["method"] == "loco")["changes"][0] += 0.01
    with pytest.raises(ValueError, match="records differ in 1 of"):
        bench.merge(base, other)


def test_outputs_are_not_overwritten_unasked(tmp_path, capsys, monkeypatch):
    import json

    base, extra = _split(_saved_run(), "loco_band")
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    monkeypatch.setattr(bench, "load_model", lambda *a, **k: pytest.fail("no model is needed"))
    out = tmp_path / "merged.md"
    assert bench.main(["--merge", str(tmp_path / "base.json"), str(tmp_path / "extra.json"), "--out", str(out)]) == 0
    first = out.with_suffix(".json").read_text()
    for argv, message in [
        (["--merge", str(tmp_path / "base.json"), str(tmp_path / "extra.json"), "--out", str(out)], "exist already"),
        (["--rescore", str(tmp_path / "base.json")], "would overwrite its own input"),
        (["--rescore", str(out.with_suffix(".json")), "--out", str(out)], "would overwrite its own input"),
        (["--rescore", str(tmp_path / "none.json"), "--out", str(tmp_path / "x.md")], "no such results JSON"),
        (["--merge", str(tmp_path / "base.json"), str(tmp_path / "base.json"), "--out", str(tmp_path / "y.md")], "adds no row"),
        (["--out", str(out)], "exist already"),
        (["--merge", str(tmp_path / "base.json"), str(tmp_path / "extra.json"), "--out", str(tmp_path / "base.md"),
          "--overwrite"], "would overwrite its input"),
    ]:
        with pytest.raises(SystemExit) as e:
            bench.main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err, argv
    assert out.with_suffix(".json").read_text() == first and not (tmp_path / "x.md").exists()
    assert bench.main(["--rescore", str(out.with_suffix(".json")), "--out", str(tmp_path / "again.md")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["table"] == json.loads(first)["table"]


@pytest.mark.parametrize("name", [*(f"loco_table_t0{t}_20faces_{run}.json" for run in ("cores_select", "tau2") for t in (6, 4)),
                                  *(f"loco_table_t0{t}_20faces_tau2_allrows.json" for t in (6, 4))])
def test_the_saved_selection_row_kept_the_least_leaky_candidate(name):
    """The saved tables' ``loco_select`` row: per face and part, the candidate whose recorded ±λ edits have the least
    mean pixel leakage (each record's leakage was measured on its own edit), with that candidate's records and
    transfers unchanged."""
    import json
    import statistics

    res = json.loads((RESULTS / name).read_text())
    recs = {}
    for r in res["records"]:
        recs.setdefault((r["method"], r["image"], r["part"]), []).append(r)
    chosen = 0
    for (method, image, part), rows in recs.items():
        if method != bench.SELECT_ROW:
            continue
        mean = {m: statistics.fmean(r["leakage"] for r in recs[(m, image, part)]) for m in bench.SELECT_FROM}
        best = min(bench.SELECT_FROM, key=lambda m: (mean[m], bench.SELECT_FROM.index(m)))
        assert {r["selected"] for r in rows} == {best}, (image, part)
        assert [r["changes"] for r in rows] == [r["changes"] for r in recs[(best, image, part)]]
        assert rows[0]["candidate_leakage"] == pytest.approx([mean[m] for m in bench.SELECT_FROM], abs=2e-5)
        tr = [r["changes"] for r in res["transfer_records"] if (r["method"], r["image"], r["part"]) == (bench.SELECT_ROW, image, part)]
        assert tr == [r["changes"] for r in res["transfer_records"] if (r["method"], r["image"], r["part"]) == (best, image, part)]
        chosen += 1
    assert chosen == 100  # 20 faces × 5 parts
