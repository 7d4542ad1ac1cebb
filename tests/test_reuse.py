"""The one record-reuse rule (results.stored, keyed on what describes a measurement) and lazy
models: a rerun whose records are all in the results file builds no model."""
from __future__ import annotations

import torch

from replication import notebook, results, zoo
from replication.attacks import Attack
from replication.evaluate import evaluate
from replication.profiles import get_profile
from replication.train import TrainResult

SMOKE = get_profile("smoke")


def _run(experiment="reuse_test"):
    return notebook.Run(experiment, SMOKE, 0, {}, torch.device("cpu"))


def _never_built(name="m", config_hash="h0"):
    def build():
        raise AssertionError(f"{name} was built although its records are stored")
    return zoo.Lazy(name, config_hash, build)


def test_stored_is_keyed_on_everything_that_describes_a_measurement(isolated_store):
    run = _run()
    rec = run.record(model="resnet18_cifar10", model_hash="abc", data="cifar10", metric="accuracy", value=0.5, n=100,
                     attack=Attack("pgd", steps=5).spec(0.01), eps=0.01, refinement="adv")
    run.save(quiet=True)
    assert results.stored(dict(rec, value=None, run_id="another run"))["value"] == 0.5  # value and run are not the key
    for change in ({"model_hash": "xyz"}, {"n": 99}, {"seed": 1}, {"eps": 0.02}, {"dataset": "cifar100"},
                   {"setting": {"refinement": "reg"}}, {"attack": Attack("pgd", steps=10).spec(0.01)}):
        assert results.stored({**rec, **change}) is None, change
    assert results.stored({**rec, "n": 99}, match_n=False) is not None  # n as an outcome, when asked
    assert results.stored({**rec, "eps": 0.01 + 1e-15}) is not None  # eps compared after canonical_eps


def test_the_ledger_sees_a_file_that_changed(isolated_store):
    run = _run()
    rec = run.record(model=None, data="cifar10", metric="accuracy", value=0.5, n=10)
    assert results.stored(rec) is None
    run.save(quiet=True)
    assert results.stored(rec)["value"] == 0.5
    other = _run()
    other.record(model=None, data="cifar10", metric="accuracy", value=0.7, n=10)
    other.save(quiet=True)
    assert results.stored(rec)["value"] == 0.7


def test_evaluate_with_every_record_stored_builds_nothing(isolated_store, trained_tiny):
    model, test = trained_tiny
    grid = {Attack("fgsm"): [0.01, 0.03]}
    first = _run()
    tr = TrainResult(model, [], None, True, "tinyhash")
    made = first.add(evaluate(tr, test, grid, context=first.context(model="resnet18_cifar10", model_hash="tinyhash"),
                              progress=False))
    first.save(quiet=True)
    again = _run()
    got = evaluate(_never_built(config_hash="tinyhash"), test, grid, progress=False,
                   context=again.context(model="resnet18_cifar10", model_hash="tinyhash"))
    assert [r["value"] for r in got] == [r["value"] for r in made]
    assert {r["run_id"] for r in got} == {first.run_id}  # reused records keep the run that measured them
    # one eps more: the model is built, the stored two are still reused
    built = zoo.Lazy("m", "tinyhash", lambda: tr)
    more = evaluate(built, test, {Attack("fgsm"): [0.01, 0.02, 0.03]}, progress=False,
                    context=again.context(model="resnet18_cifar10", model_hash="tinyhash"))
    assert built.built and [r["run_id"] == first.run_id for r in more] == [True, True, False, True]


def test_record_once_measures_once(isolated_store):
    run = _run()
    calls = []
    r1 = run.record_once(lambda: calls.append(1) or 0.25, model="m", model_hash="h", data="cifar10", metric="accuracy", n=4,
                         refinement="adv")
    run.save(quiet=True)
    again = _run()
    r2 = again.record_once(lambda: calls.append(2) or 0.5, model="m", model_hash="h", data="cifar10", metric="accuracy",
                           n=4, refinement="adv")
    assert calls == [1] and r2["value"] == 0.25 and r2["run_id"] == r1["run_id"] == run.run_id
    assert again.records == [r2]


def test_records_once_measures_a_group_once(isolated_store):
    import pytest

    run = _run()
    calls = []
    got = run.records_once(lambda: calls.append(1) or {"lime_batched_s_per_image": 1.5, "lime_inference_s_per_image": 2.0},
                           ["lime_batched_s_per_image", "lime_inference_s_per_image"], model="m", model_hash="h",
                           data="cifar10", n=8, n_samples=1000)
    assert calls == [1] and got["lime_inference_s_per_image"]["value"] == 2.0
    run.save(quiet=True)
    again = _run()
    same = again.records_once(lambda: calls.append(2) or {}, ["lime_batched_s_per_image", "lime_inference_s_per_image"],
                              model="m", model_hash="h", data="cifar10", n=8, n_samples=1000)
    assert calls == [1] and {r["run_id"] for r in same.values()} == {run.run_id} and len(again.records) == 2
    # one metric missing: the group is measured again; a compute() that measures something else fails
    with pytest.raises(ValueError, match="expected"):
        again.records_once(lambda: {"lime_batched_s_per_image": 1.0}, ["lime_batched_s_per_image", "lime_speedup_vs_lime_bs10"],
                           model="m", model_hash="h", data="cifar10", n=8, n_samples=1000)


def test_train_time_reads_history_only_when_missing(isolated_store):
    run = _run()
    tr = TrainResult(None, [{"epoch_time_s": 2.0}, {"epoch_time_s": 3.0}], None, True, "h1")
    r = run.train_time(tr, model="m", data="cifar10", with_history=True, refinement="adv")
    assert (r["value"], r["n"], r["extra"]["history"][1]["epoch_time_s"]) == (5.0, 2, 3.0)
    run.save(quiet=True)
    assert _run().train_time(_never_built(config_hash="h1"), model="m", data="cifar10", refinement="adv")["value"] == 5.0


def test_lazy_zoo_models_know_their_hash_without_training(isolated_store):
    """The committed cpu checkpoints' names are what zoo.lazy announces, for every zoo model with one."""
    import os

    from replication import paths

    P = get_profile("cpu")
    # not in cpu: the wrn28 / resnet50 PGD-AT models (the full profile's); notebook 11's x2-wide
    # ResNet-18 (10.7 MiB in fp32, over the 8 MiB a committed file may hold: rebuilt by its command)
    names = {n for n in zoo.ZOO if not n.startswith(("wrn28", "resnet50_cifar10_pgdat", "resnet18x2"))}
    for n in names:
        h = zoo.lazy(n, P, 0).config_hash
        committed = paths.PACKAGE_DIR.parent / "checkpoints" / "cpu" / f"{n}-{h}.safetensors"
        assert committed.exists(), (n, h, sorted(os.listdir(committed.parent)))


def test_a_lazy_model_that_builds_another_hash_is_an_error():
    import pytest

    bad = zoo.Lazy("m", "announced", lambda: TrainResult(None, [], None, True, "other"))
    with pytest.raises(RuntimeError, match="announced"):
        bad.model


def test_a_rerun_that_reproduces_a_record_keeps_the_run_that_made_it(isolated_store):
    first = _run()
    first.record(model=None, data="cifar10", metric="accuracy_gain", value=0.1, n=10, wall_time_s=None)
    first.save(quiet=True)
    again = _run()
    again.record(model=None, data="cifar10", metric="accuracy_gain", value=0.1, n=10)
    again.record(model=None, data="cifar100", metric="accuracy_gain", value=0.2, n=10)
    again.save(quiet=True)
    doc = results.load_results("reuse_test", "smoke")
    by_data = {r["dataset"]: r["run_id"] for r in doc["records"]}
    assert by_data == {"cifar10": first.run_id, "cifar100": again.run_id}
    changed = _run()
    changed.record(model=None, data="cifar10", metric="accuracy_gain", value=0.3, n=10)
    changed.save(quiet=True)
    assert results.stored({**doc["records"][0], "value": None})["run_id"] == changed.run_id


def test_a_finished_notebook_drops_records_of_models_it_no_longer_builds(isolated_store, capsys):
    old = _run()
    for h in ("kept_by_lookup", "stale", "kept_by_record"):  # three models (a record's key has no hash)
        old.record(model=f"m_{h}", model_hash=h, data="cifar10", metric="accuracy", value=0.5, n=10)
    old.record(model=None, data="cifar10", metric="segments_mean", value=3.0, n=10)  # no model: never dropped
    old.save(quiet=True)
    new = _run()
    assert results.stored(dict(old.records[0], run_id="x")) is not None  # looked up: still built today
    new.record(model="m_kept_by_record", model_hash="kept_by_record", data="cifar10", metric="accuracy", value=0.5, n=10)
    new.save(quiet=True)
    new.check()
    doc = results.load_results("reuse_test", "smoke")
    assert sorted(str(r["model_hash"]) for r in doc["records"]) == ["None", "kept_by_lookup", "kept_by_record"]
    assert "dropped" not in capsys.readouterr().out  # smoke prunes quietly (its check cell's output is compared)
    assert new.prune() == []  # nothing more to drop: the file is left alone
