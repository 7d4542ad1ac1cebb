"""The schema-1 -> 2 converter: the committed cpu results render the same tables after conversion.

tests/fixtures/results_v1/cpu/ holds the schema-1 files as committed before the conversion and
tests/fixtures/report_v1_cpu.md the README block that schema 1's renderer made from them.
"""
import json
import re
import shutil
from pathlib import Path

import pytest

from replication import paths, report, results, results_v1

FIXTURES = Path(__file__).parent / "fixtures"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.fixture
def converted(tmp_path, monkeypatch):
    target = tmp_path / "results" / "cpu"
    shutil.copytree(FIXTURES / "results_v1" / "cpu", target)
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
    done = results_v1.convert_dir(target)
    assert len(done) == 6
    return target


def test_converted_results_render_the_v1_tables_value_for_value(converted):
    old = (FIXTURES / "report_v1_cpu.md").read_text().rstrip("\n").splitlines()
    new = report.render("cpu").splitlines()
    assert len(new) == len(old)
    relabelled = []
    for a, b in zip(old, new):
        if a.startswith("| ") and b.startswith("| "):
            # every number in the same cell; a row's name may read differently (labels are now
            # rendered from model + setting, not stored)
            assert _cells(a)[1:] == _cells(b)[1:], (a, b)
            if _cells(a)[0] != _cells(b)[0]:
                relabelled.append((_cells(a)[0], _cells(b)[0]))
        else:
            assert a == b
    assert relabelled == [("resnet18_cifar10_shortcut · shortcut model", "resnet18_cifar10_shortcut")]


def test_converted_files_validate_and_keep_every_value(converted):
    for path in sorted(converted.glob("*.json")):
        v1 = json.loads((FIXTURES / "results_v1" / "cpu" / path.name).read_text())
        doc = results.load_results(path.stem, "cpu")  # validates every record
        assert [r["run_id"] for r in doc["runs"]] == [doc["records"][0]["run_id"]]
        assert doc["runs"][0]["git_commit"] == v1["provenance"]["git_commit"]
        # no record parses labels any more: model is a registry name or null
        assert {r["model"] for r in doc["records"]} <= {None, "resnet18_cifar10", "resnet18_cifar100",
                                                         "resnet50_cifar10", "resnet18_cifar10_shortcut"}
        # every v1 accuracy is a v2 accuracy with the same value (pp/percent metrics change unit)
        acc1 = sorted(r["value"] for r in v1["records"] if r["metric"] == "accuracy")
        acc2 = sorted(r["value"] for r in doc["records"] if r["metric"] == "accuracy")
        assert acc1 == acc2


def test_labels_and_strings_become_fields():
    rec = {"experiment": "04_refinement_training", "dataset": "cifar10", "attack": "none", "eps": None,
           "model": "resnet18_cifar10 · control: random mask + reg + adv · seed 2", "metric": "seed_mean[pgd-20@0.002507]",
           "value": 0.25, "n": 500, "seed": 0, "profile": "cpu", "config_hash": "seeds", "wall_time_s": 0.0,
           "extra": {"std_pp": 1.5, "seeds": [0, 1, 2]}}
    mean, std = results_v1.convert_record(rec, "r1")
    assert mean["model"] == "resnet18_cifar10" and mean["metric"] == "accuracy_mean_over_seeds"
    assert mean["setting"]["refinement"] == "control: random mask + reg + adv"
    assert mean["setting"]["train_seeds"] == [0, 1, 2] and "train_seed" not in mean["setting"]
    assert mean["attack"]["name"] == "pgd" and mean["attack"]["steps"] == 20
    assert mean["eps"] == results.canonical_eps(0.01 * sum((0.2470, 0.2435, 0.2616)) / 3)
    assert mean["eps_reading"] == "normalised" and mean["model_hash"] is None and mean["wall_time_s"] is None
    assert std["metric"] == "accuracy_std_over_seeds" and std["value"] == pytest.approx(0.015)
    gain = dict(rec, model="resnet18_cifar10 · refined", metric="gain_pp[FGSM@0.03, pixel reading]", value=28.1,
                extra={"paper_gain_pp": 28.1})
    (g,) = results_v1.convert_record(gain, "r1", rounds=3)
    assert (g["metric"], g["eps"], g["eps_reading"], g["setting"]["round"]) == ("accuracy_gain", 0.03, "pixel", 3)
    assert g["value"] == pytest.approx(0.281)
    with pytest.raises(ValueError, match="no v1 conversion rule"):
        list(results_v1.convert_record(dict(rec, metric="mystery"), "r1"))


def test_committed_cpu_results_are_schema_2():
    for path in sorted((paths.PROJECT_ROOT / "results" / "cpu").glob("*.json")):
        assert json.loads(path.read_text())["schema_version"] == results.SCHEMA_VERSION, path
