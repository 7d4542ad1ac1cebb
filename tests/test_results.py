import json
import os

import pytest

from replication import paths, results
from replication.results import SchemaError, make_record, save_records


def _rec(run_id="r1", **over):
    base = dict(experiment="e", dataset="cifar10", model="m", metric="accuracy",
                attack=results.attack_spec("pgd", steps=20, step_size=0.00125), eps=0.01, eps_reading="pixel",
                value=0.5, n=100, seed=0, profile="smoke", run_id=run_id, model_hash="abc", wall_time_s=1.0)
    return make_record(**{**base, **over})


def _run(run_id="r1"):
    return results.provenance({"a": 1}, wall_time_s=2.0, run_id=run_id)


def test_schema_rejects_missing_unknown_and_mistyped():
    with pytest.raises(SchemaError):
        results.validate_record({k: v for k, v in _rec().items() if k != "value"})
    with pytest.raises(SchemaError):
        results.validate_record({**_rec(), "surprise": 1})
    with pytest.raises(SchemaError):
        _rec(n="100")
    with pytest.raises(SchemaError):
        _rec(value=True)
    with pytest.raises(SchemaError, match="metrics.yaml"):
        _rec(metric="accuracy[pgd@0.01]")  # structure in a metric name: refused
    with pytest.raises(SchemaError, match="flat"):
        _rec(setting={"spec": {"lam": 1}})
    with pytest.raises(SchemaError, match="attack_spec"):
        _rec(attack={"name": "pgd"})
    with pytest.raises(SchemaError, match="eps_reading"):
        _rec(eps_reading="percent")
    assert _rec(eps=0.01 * 0.2507).get("eps") == results.canonical_eps(0.01 * 0.2507)


def test_save_merges_by_key_and_keeps_who_measured_what(isolated_store):
    r1, r2 = _run("r1"), _run("r2")
    assert {"run_id", "git_commit", "packages", "device", "config_hash", "wall_time_s", "precision"} <= set(r1)
    path = save_records("e", "smoke", [_rec(), _rec(eps=0.02)], r1)
    save_records("e", "smoke", [_rec("r2", value=0.25)], r2)  # remeasures eps 0.01 only
    doc = results.load_results("e", "smoke")
    assert path.parent == isolated_store / "results" / "smoke"
    assert sorted((r["eps"], r["value"], r["run_id"]) for r in doc["records"]) == [(0.01, 0.25, "r2"), (0.02, 0.5, "r1")]
    assert [r["run_id"] for r in doc["runs"]] == ["r1", "r2"]
    save_records("e", "smoke", [_rec("r3", value=0.3), _rec("r3", eps=0.02, value=0.4)], _run("r3"))
    assert [r["run_id"] for r in results.load_results("e", "smoke")["runs"]] == ["r3"]  # runs nobody points at go
    with pytest.raises(SchemaError, match="runs"):
        save_records("e", "smoke", [_rec("ghost")], _run("r4"))


def test_query_filters_fields_settings_and_eps(isolated_store):
    run = _run()
    recs = [_rec(setting={"refinement": "adv", "lambda": 0.1}), _rec(setting={"refinement": "adv"}, eps=0.03),
            _rec(model="other", attack=None, eps=None, eps_reading=None, value=0.9)]
    save_records("e", "smoke", recs, run)
    df = results.query("smoke", "e")
    assert len(df) == 3 and set(df["attack"]) == {"pgd", None}
    assert len(results.query("smoke", "e", refinement="adv")) == 2
    assert len(results.query("smoke", "e", refinement="adv", **{"lambda": None})) == 1
    assert len(results.query("smoke", "e", eps=0.01 * 1.0000000000001)) == 1
    assert results.query("smoke", "e", model="other")["attack"].tolist() == [None]
    assert df["git_commit"].iloc[0] == run["git_commit"]
    assert len(results.query("smoke", "nothing-here")) == 0


def test_record_must_belong_to_the_file(isolated_store):
    with pytest.raises(SchemaError):
        save_records("other", "smoke", [_rec()], _run())


def test_atomic_write_leaves_old_file_on_failure(isolated_store, monkeypatch):
    target = isolated_store / "r.json"
    results.atomic_write_text(target, json.dumps({"old": True}))

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        results.atomic_write_text(target, json.dumps({"new": True}))
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in isolated_store.iterdir()] == ["r.json"]  # no temp file left


def test_paper_numbers_are_data():
    from replication import papers

    a = papers.reference("a")
    assert a["fig3_cifar10"][0] == {"attack": "FGSM", "eps": 0.01, "baseline": 54.29, "refined": 72.59}
    assert papers.reference("b")["table1_pgd_accuracy"][2]["cifar10"] == 76.4
    assert papers.eps_reading(0.01 * papers.normalised_eps_scale("cifar10"), "cifar10") == "normalised"
    assert papers.eps_reading(8 / 255, "cifar10") == "pixel"


def test_reported_profiles_refuse_uncommitted_code(tmp_path, monkeypatch):
    import subprocess

    repo = tmp_path / "repo"
    (repo / "replication").mkdir(parents=True)
    (repo / "results").mkdir()
    (repo / "replication" / "m.py").write_text("x = 1\n")
    (repo / "results" / "r.json").write_text("{}\n")
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=repo,  # noqa: E731
                                    check=True, capture_output=True)
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    monkeypatch.setattr(paths, "PROJECT_ROOT", repo)
    monkeypatch.delenv(results.ALLOW_DIRTY_ENV, raising=False)
    (repo / "results" / "r.json").write_text('{"new": 1}\n')  # outputs do not make the code dirty
    assert results.code_changes() == [] and not results.git_commit().endswith("+dirty")
    results.require_clean_tree("cpu")
    (repo / "replication" / "m.py").write_text("x = 2\n")
    (repo / "replication" / "new.py").write_text("y = 1\n")
    assert sorted(results.code_changes()) == ["replication/m.py", "replication/new.py"]
    assert results.git_commit().endswith("+dirty") and results.provenance()["dirty"] is True
    for profile in ("cpu", "full"):
        with pytest.raises(results.DirtyTreeError, match="replication/m.py.*REPLICATION_ALLOW_DIRTY"):
            results.require_clean_tree(profile)
    with pytest.raises(results.DirtyTreeError):
        save_records("e", "cpu", [_rec(profile="cpu")], _run())
    assert not (repo / "results" / "cpu").exists()
    results.require_clean_tree("smoke")
    monkeypatch.setenv(results.ALLOW_DIRTY_ENV, "1")
    path = save_records("e", "cpu", [_rec(profile="cpu")], _run())
    assert json.loads(path.read_text())["runs"][0]["dirty"] is True


def test_parallel_writers_merge_instead_of_overwriting(isolated_store):
    """Jobs of a SLURM array (one seed each) save into the same file at once: no record is lost."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_save_seed, args=(s,)) for s in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(r["seed"] for r in results.load_results("e", "smoke")["records"]) == list(range(6))


def _save_seed(seed):
    run = _run(f"r{seed}")
    for _ in range(5):  # repeated read-merge-writes widen the window a lost update would need
        save_records("e", "smoke", [_rec(f"r{seed}", seed=seed)], run)
