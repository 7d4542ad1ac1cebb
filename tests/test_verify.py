"""replication.verify on cheap committed `cpu` records: they re-measure within tolerance from the
committed checkpoints, a tampered value fails (non-zero exit), and a record whose checkpoint is not
there is unreachable, not failed. The real results files are only read: each test verifies a copy
of the records it picks, in a temporary results directory."""
import json
import os
import signal
from pathlib import Path

import pytest

from replication import paths, verify

CPU = paths.results_dir("cpu")
BASELINE = "01_baseline_training"


def _copy(dest: Path, experiment: str, keep, change=None) -> list[dict]:
    """results/cpu/<experiment>.json with only the records `keep` picks (each passed through
    `change`), and the runs they name, written under `dest`."""
    doc = json.loads((CPU / f"{experiment}.json").read_text())
    recs = [dict(r) for r in doc["records"] if keep(r)]
    recs = [change(r) if change else r for r in recs]
    used = {r["run_id"] for r in recs}
    doc.update(records=recs, runs=[r for r in doc["runs"] if r["run_id"] in used])
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{experiment}.json").write_text(json.dumps(doc))
    return recs


def _clean_r18(r):
    return r["model"] == "resnet18_cifar10" and r["metric"] == "accuracy" and r["attack"] is None and r["n"] == 2000


def _verify(tmp_path, *argv):
    out = tmp_path / "rows.json"
    rc = verify.main(["--profile", "cpu", "--json", str(out), *argv], results_dir=tmp_path / "results")
    return rc, json.loads(out.read_text())


def test_cheap_committed_records_reproduce(tmp_path):
    _copy(tmp_path / "results", "00_setup_and_data", lambda r: True)
    picked = _copy(tmp_path / "results", BASELINE, lambda r: _clean_r18(r) or (
        r["model"] == "resnet18_cifar10" and (r["attack"] or {}).get("name") == "fgsm" and abs(r["eps"] - 8 / 255) < 1e-9)
        or (r["model"] == "resnet18_cifar10" and (r["attack"] or {}).get("name") == "pgd" and r["eps"] == 0.01))
    assert len(picked) == 3
    rc, doc = _verify(tmp_path, "--max-seconds", "30")
    assert rc == 0
    status = [(r["metric"], r["attack"], r["status"], r["reason"]) for r in doc["rows"]]
    assert [s[2] for s in status] == ["pass"] * 8 + ["skipped"], status
    assert doc["counts"]["00_setup_and_data"]["passed"] == 6 and doc["counts"][BASELINE]["passed"] == 2
    fgsm = next(r for r in doc["rows"] if r["attack"].startswith("fgsm"))
    assert fgsm["eps"] == "8/255" and abs(fgsm["measured"] - fgsm["committed"]) <= fgsm["tolerance"]
    assert "too slow" in doc["rows"][-1]["reason"]  # PGD-20, stored 47.9 s > 30 s: skipped, not failed
    assert "max(3, 0.25% of n)" in doc["tolerance"]


def test_segment_counts_reproduce(tmp_path):
    picked = _copy(tmp_path / "results", "02_lime_analysis",
                   lambda r: r["metric"].startswith("segments_") and r["setting"]["segmentation"] in ("SLIC n=50", "grid 4x4 px"))
    assert len(picked) == 6
    rc, doc = _verify(tmp_path)
    assert rc == 0 and [r["status"] for r in doc["rows"]] == ["pass"] * 6
    assert all(r["measured"] == r["committed"] for r in doc["rows"])


def test_tampered_value_fails(tmp_path):
    real = (CPU / f"{BASELINE}.json").read_bytes()
    (rec,) = _copy(tmp_path / "results", BASELINE, _clean_r18, lambda r: {**r, "value": r["value"] + 0.05})
    rc, doc = _verify(tmp_path)
    assert rc != 0
    (row,) = doc["rows"]
    assert row["status"] == "fail" and row["committed"] == rec["value"]
    assert abs(row["diff_images"] + 100) < 1e-6 and "-100.0 images" in row["reason"]  # 0.05 of 2,000 images
    assert doc["counts"][BASELINE]["failed"] == 1
    assert (CPU / f"{BASELINE}.json").read_bytes() == real  # the committed file is only read


def test_missing_checkpoint_is_unreachable_not_failed(tmp_path, monkeypatch):
    _copy(tmp_path / "results", BASELINE, _clean_r18)
    _copy(tmp_path / "results", "09_purification_and_adversarial_training",
          lambda r: r["setting"].get("explainer") == "lime" and r["attack"] is None)  # a refined model
    _copy(tmp_path / "results", "02_lime_analysis", lambda r: r["metric"] == "lime_max_abs_coef_diff_vs_lime")
    # the manifest lists the baselines but none of the files is there; the refined models are
    # dropped from it, as if never committed
    monkeypatch.setattr(paths, "CHECKPOINTS_DIR", tmp_path / "checkpoints")
    (tmp_path / "checkpoints").mkdir()
    manifest = json.loads((Path(paths.PROJECT_ROOT) / "checkpoints" / "MANIFEST.json").read_text())
    kept = {rel: e for rel, e in manifest.items() if "_refine-" not in rel}
    assert len(kept) < len(manifest)
    (tmp_path / "checkpoints" / "MANIFEST.json").write_text(json.dumps(kept))
    rc, doc = _verify(tmp_path)
    assert rc == 0
    by = {(r["experiment"][:2], r["attack"].split("-")[0]): r for r in doc["rows"]}
    assert by[("01", "clean")]["status"] == "unreachable" and "missing on disk" in by[("01", "clean")]["reason"]
    assert by[("09", "clean")]["status"] == "unreachable"
    assert by[("09", "clean")]["reason"].startswith("checkpoint not committed")
    assert all(r["status"] == "unreachable" and r["reason"].startswith("not re-measured")
               for r in doc["rows"] if r["experiment"].startswith("02"))
    assert all(c["failed"] == 0 and c["verified"] == 0 for c in doc["counts"].values())


def _baseline(r):
    return r["model"] == "resnet18_cifar10" and r["model_hash"] == _baseline_hash() and r["metric"] in ("accuracy", "robust_accuracy")


def _baseline_hash():
    doc = json.loads((CPU / f"{BASELINE}.json").read_text())
    return next(r["model_hash"] for r in doc["records"] if _clean_r18(r))


def _fgsm_at(r, eps):
    return (r["attack"] or {}).get("name") == "fgsm" and abs(r["eps"] - eps) < 1e-9


def test_refinement_curve_and_corruption_records_reproduce(tmp_path, monkeypatch):
    """Notebooks 04, 06 and 07 through their own measuring code: the baseline's clean and FGSM points
    (06's with their per-image bits, the `strong` subset's sliced from the full run), and a
    corrupted set generated afresh when the cache is gone."""
    _copy(tmp_path / "results", "04_refinement_training",
          lambda r: _baseline(r) and not r["setting"] and (r["attack"] is None or _fgsm_at(r, 0.01)))
    _copy(tmp_path / "results", "06_robustness_curves",
          lambda r: _baseline(r) and r["setting"]["subset"] in ("all", "strong") and (r["attack"] is None or _fgsm_at(r, 0.01)))
    _copy(tmp_path / "results", "07_cifar10c_table",
          lambda r: _baseline(r) and r["setting"]["corruption"] in ("none", "fog") and r["setting"]["severity"] in (0, 5)
          and (r["attack"] is None or _fgsm_at(r, 0.01)))
    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path / "cache")  # no CIFAR-10-C cache: fog is generated
    rc, doc = _verify(tmp_path)
    assert rc == 0, [r for r in doc["rows"] if r["status"] != "pass"]
    assert (tmp_path / "cache" / "cifar10c" / "cpu").exists()
    assert {e: c["passed"] for e, c in doc["counts"].items()} == {
        "04_refinement_training": 2, "06_robustness_curves": 4, "07_cifar10c_table": 4}
    agreement = [r["agreement"] for r in doc["rows"] if r["experiment"].startswith("06")]
    assert all(a is not None and a.split("/")[0] == a.split("/")[1] for a in agreement), agreement


def _only(metric):
    """Keep every record (the checklist reads them all) but make all others too slow to re-measure."""
    return lambda r: r if r["metric"] == metric else {**r, "wall_time_s": 1e9}


def test_masking_checklist_recomputes_and_a_flipped_check_fails(tmp_path):
    """Notebook 06's checklist rows recomputed from the committed records equal the committed ones;
    a check flipped by hand fails."""
    recs = _copy(tmp_path / "results", "06_robustness_curves", lambda r: True, _only("masking_check"))
    checks = [r for r in recs if r["metric"] == "masking_check"]
    assert len(checks) > 100 and {r["setting"]["evaluated_in"] for r in checks} == {"06"}
    rc, doc = _verify(tmp_path, "--only", "06", "--max-seconds", "1e6")
    rows = [r for r in doc["rows"] if r["metric"] == "masking_check"]
    assert rc == 0 and len(rows) == len(checks) and {r["status"] for r in rows} == {"pass"}
    flip = next(r for r in checks if r["value"] == 1.0)
    _copy(tmp_path / "results", "06_robustness_curves", lambda r: True,
          lambda r: {**r, "value": 0.0} if r is flip or r == flip else _only("masking_check")(r))
    rc, doc = _verify(tmp_path, "--only", "06", "--max-seconds", "1e6")
    assert rc != 0 and [r["status"] for r in doc["rows"] if r["metric"] == "masking_check"].count("fail") == 1


def test_ssim_crosscheck_reproduces(tmp_path):
    """Notebook 10's SSIM against torchmetrics, re-measured on the committed baseline's IG maps (~10 s)."""
    _copy(tmp_path / "results", "10_attribution_stability", lambda r: r["metric"] == "ssim_crosscheck_max_diff")
    rc, doc = _verify(tmp_path)
    (row,) = doc["rows"]
    assert rc == 0 and row["status"] == "pass" and row["measured"] < 1e-6 and row["tolerance"] == 1e-6


def _verify_file(path, rows, finished="2026-12-06T00:00:00+00:00"):
    path.write_text(json.dumps({"finished_utc": finished, "rows": [
        {"experiment": "04_x", "key": k, "status": st, "reason": why, "agreement": "5/5" if k == "a" else None}
        for k, st, why in rows]}))


def test_summary_merges_narrower_reruns(tmp_path):
    _verify_file(tmp_path / "04.json", [("a", "pass", ""), ("b", "error", "ValueError: boom"),
                                        ("c", "unreachable", "no verifier yet"), ("d", "unreachable", "a timing")])
    # a narrower re-run: b and c measured now; a not selected by it, so 04.json's row stands
    _verify_file(tmp_path / "04rounds.json", [("b", "pass", ""), ("c", "fail", "off by 9 images")],
                 finished="2026-12-07T01:00:00+00:00")
    rows = verify.stored_rows("cpu", tmp_path)["04_x"]
    assert {k: r["status"] for k, r in rows.items()} == {"a": "pass", "b": "pass", "c": "fail", "d": "unreachable"}
    text = verify.summary("cpu", tmp_path)
    assert "| 04_x | 4 | 3 | 2 | 1 | 1 of 1 | 1 | 2026-12-06, 2026-12-07 | 04.json, 04rounds.json |" in text
    assert "- 04_x: 1 x FAILED: off by 9 images" in text and "boom" not in text


def test_readme_quotes_the_stored_verify_pass():
    # the README's table is verify --summary's text, so it cannot drift from the stored rows
    readme = (paths.PROJECT_ROOT / "README.md").read_text()
    start, end = "<!-- verify-summary: start -->\n", "<!-- verify-summary: end -->"
    assert start in readme and end in readme, "README lost its verify-summary markers"
    quoted = readme.split(start)[1].split(end)[0]
    assert quoted == verify.summary("cpu"), "README is stale: paste `python -m replication.verify --profile cpu --summary`"


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stopped_run_resumes_from_its_json(tmp_path, monkeypatch, stop):
    """A stopped run writes the rows it measured, the rest marked pending (and between stops the file
    is rewritten at most every SAVE_EVERY_S, not after every record); --resume re-measures only those."""
    _copy(tmp_path / "results", "00_setup_and_data", lambda r: True)
    real, calls, writes = verify.verify_record, [], []
    write_json = verify.write_json
    monkeypatch.setattr(verify, "SAVE_EVERY_S", 1e9)
    monkeypatch.setattr(verify, "write_json", lambda *a: writes.append(a[-1]) or write_json(*a))
    before = signal.getsignal(signal.SIGTERM)

    def stops_at_the_third(ctx, rec, row):
        calls.append(row.key)
        if len(calls) == 3:
            if stop == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would: the handler raises SystemExit
            raise KeyboardInterrupt
        return real(ctx, rec, row)

    monkeypatch.setattr(verify, "verify_record", stops_at_the_third)
    out = tmp_path / "rows.json"
    args = ["--profile", "cpu", "--json", str(out)]
    with pytest.raises(SystemExit if stop == "sigterm" else KeyboardInterrupt):
        verify.main(args, results_dir=tmp_path / "results")
    assert signal.getsignal(signal.SIGTERM) == before  # the run's handler is gone with it
    assert writes == [False, False]  # once at the start, once at the stop: none per record
    partial = json.loads(out.read_text())
    assert partial["complete"] is False and "finished_utc" not in partial
    assert [r["status"] for r in partial["rows"]] == ["pass"] * 2 + ["pending"] * 4
    assert "--resume" in partial["rows"][-1]["reason"]
    assert "4 x not yet re-measured" in verify.summary("cpu", _dir(tmp_path, out))
    calls.clear()
    monkeypatch.setattr(verify, "verify_record", lambda ctx, rec, row: calls.append(row.key) or real(ctx, rec, row))
    assert verify.main([*args, "--resume"], results_dir=tmp_path / "results") == 0
    done = json.loads(out.read_text())
    assert done["complete"] is True and done["finished_utc"]
    assert [r["status"] for r in done["rows"]] == ["pass"] * 6
    assert calls == [r["key"] for r in partial["rows"][2:]]  # the two measured before the stop are kept
    assert done["rows"][:2] == partial["rows"][:2]


def _dir(tmp_path, out):
    d = tmp_path / "verify"
    d.mkdir(exist_ok=True)
    (d / "00.json").write_text(out.read_text())
    return d


def test_stored_passes_keep_no_path_of_the_machine_that_ran_them(tmp_path):
    # a verify JSON is committed: its command line names project paths relatively, scratch ones by name
    inside = paths.PROJECT_ROOT / "results" / "cpu" / "verify" / "03.json"
    assert verify.portable_argv(["--only", "03", "--json", str(inside)]) == ["--only", "03", "--json", "results/cpu/verify/03.json"]
    assert verify.portable_argv(["--json", str(tmp_path / "03.json")]) == ["--json", "<elsewhere>/03.json"]
    for f in sorted((CPU / "verify").glob("*.json")):
        doc = json.loads(f.read_text())
        assert not any(Path(a).is_absolute() for a in doc.get("argv", [])), f.name
        assert not Path(doc["results_dir"]).is_absolute(), f.name


def test_stored_time_counts_each_measurement_once():
    # The mean and worst-of-k records of one attack share its run and wall time: one job, not two.
    records = [{"run_id": "a", "wall_time_s": 120.0}, {"run_id": "a", "wall_time_s": 120.0},
               {"run_id": "a", "wall_time_s": 60.0}, {"run_id": "b", "wall_time_s": 120.0}, {"run_id": "b"}]
    assert verify.stored_minutes(records) == pytest.approx(5.0)
    assert verify.stored_minutes([]) == 0.0
