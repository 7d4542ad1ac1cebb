import json
import os

import pytest

from replication import paths, results
from replication.results import SchemaError, make_record, save_records


def _rec(**over):
    base = dict(experiment="e", dataset="cifar10", model="m", metric="accuracy", attack="pgd-20", eps=0.01,
                value=0.5, n=100, seed=0, profile="smoke", config_hash="abc", wall_time_s=1.0)
    return make_record(**{**base, **over})


def test_schema_rejects_missing_unknown_and_mistyped():
    with pytest.raises(SchemaError):
        results.validate_record({k: v for k, v in _rec().items() if k != "value"})
    with pytest.raises(SchemaError):
        results.validate_record({**_rec(), "surprise": 1})
    with pytest.raises(SchemaError):
        _rec(n="100")
    with pytest.raises(SchemaError):
        _rec(value=True)


def test_save_merges_by_key_and_carries_provenance(isolated_store):
    prov = results.provenance({"a": 1}, wall_time_s=2.0)
    assert {"git_commit", "packages", "device", "config_hash", "wall_time_s"} <= set(prov)
    path = save_records("e", "smoke", [_rec(), _rec(eps=0.02)], prov)
    save_records("e", "smoke", [_rec(value=0.25)], prov)
    doc = results.load_results("e", "smoke")
    assert path.parent == isolated_store / "results" / "smoke"
    assert sorted((r["eps"], r["value"]) for r in doc["records"]) == [(0.01, 0.25), (0.02, 0.5)]
    assert doc["provenance"]["packages"]["torch"] != "not installed"


def test_record_must_belong_to_the_file(isolated_store):
    with pytest.raises(SchemaError):
        save_records("other", "smoke", [_rec()], {})


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
    a = results.paper_reference("a")
    assert a["fig3_cifar10"][0] == {"attack": "FGSM", "eps": 0.01, "baseline": 54.29, "refined": 72.59}
    assert results.paper_reference("b")["table1_pgd_accuracy"][2]["cifar10"] == 76.4


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
        save_records("e", "cpu", [_rec(profile="cpu")], results.provenance())
    assert not (repo / "results" / "cpu").exists()
    results.require_clean_tree("smoke")
    monkeypatch.setenv(results.ALLOW_DIRTY_ENV, "1")
    path = save_records("e", "cpu", [_rec(profile="cpu")], results.provenance())
    assert json.loads(path.read_text())["provenance"]["dirty"] is True
