"""Notebook 06's measurements and statistics: per-image outcomes survive the results file, nested
subsets are class-balanced and sliced consistently, a rerun measures nothing twice, the paired test
and the checklist combine what they are given as stated."""
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from replication import notebook
from replication.attacks import Attack, fgsm
from replication.papers import normalised_eps_scale
from replication.paper_a import curves
from replication.profiles import get_profile


def test_hex_round_trip_keeps_every_bit():
    m = torch.tensor([1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    assert (curves.from_hex(curves.to_hex(m), len(m)) == m.numpy()).all()


def test_normalised_training_eps_is_the_paper_eps_times_the_mean_std():
    assert curves.eps_train_for("pixel") == 0.03
    assert curves.eps_train_for("normalised") == pytest.approx(0.03 * normalised_eps_scale("cifar10"))
    assert 0.0074 < curves.eps_train_for("normalised") < 0.0076


def test_subsets_are_nested_and_class_balanced(trained_tiny):
    _, test = trained_tiny
    split = test.select(torch.arange(200))
    budget = get_profile("smoke").curves
    idx = curves.subsets(split, budget, 0)
    assert len(idx["all"]) == 200 and len(idx["strong"]) == budget.strong_images
    assert set(idx["autoattack"].tolist()) <= set(idx["strong"].tolist()) <= set(idx["all"].tolist())
    counts = torch.bincount(split.y[idx["strong"]], minlength=10)
    assert counts.max() - counts.min() <= 1


@dataclass
class _TR:
    model: torch.nn.Module
    config_hash: str


def _run():
    return notebook.Run("06_robustness_curves", get_profile("smoke"), 0, {}, torch.device("cpu"))


def test_measure_matches_a_direct_attack_resumes_and_slices_consistently(trained_tiny, isolated_store, monkeypatch):
    model, test = trained_tiny
    split = test.select(torch.arange(48))
    budget = get_profile("smoke").curves
    index = curves.subsets(split, budget, 0)
    ref = curves.Refined(_TR(model, "tiny"), {})
    eps = 0.01
    jobs = [curves.Job(Attack("fgsm"), eps), curves.Job(Attack("fgsm"), eps, "strong"),
            curves.Job(Attack("pgd", steps=3), 0.03, "strong")]
    run = _run()
    assert curves.missing(run, ref, split, index, jobs) == 3 + 5  # clean x 3 subsets, the jobs and their slices
    recs = curves.measure(run, ref, split, index, jobs, batch_size=16, progress=False)
    assert len(recs) == 8 and curves.missing(_run(), ref, split, index, jobs) == 0
    assert curves.missing(_run(), ref, split, index, jobs + [curves.Job(Attack("fgsm"), 0.02, "strong")]) == 2
    by = {(r["setting"]["subset"], r["attack"]["name"] if r["attack"] else None, r["eps"]): r for r in recs}
    # FGSM is deterministic: the recorded outcome is the direct attack's, image by image
    x, y = split.float_batch(0, len(split))
    adv = fgsm(model, x, y, eps)
    with torch.no_grad():
        direct = (model(x).argmax(1) == y) & (model(adv).argmax(1) == y)
    got = curves.from_hex(by[("all", "fgsm", eps)]["extra"]["robust"], len(split))
    assert (got == direct.numpy()).all()
    assert by[("all", "fgsm", eps)]["value"] == pytest.approx(direct.float().mean().item())
    # the sliced record on a nested subset is the same images' outcomes
    sliced = curves.from_hex(by[("autoattack", "fgsm", eps)]["extra"]["robust"], budget.autoattack_images)
    assert (sliced == direct[index["autoattack"]].numpy()).all()
    # a job on a subset that an earlier job already covers is that job's slice, not a new attack
    assert by[("strong", "fgsm", eps)]["extra"]["sliced_from"] == "all"
    assert "sliced_from" not in by[("strong", "pgd", 0.03)]["extra"]
    assert by[("autoattack", "pgd", 0.03)]["extra"]["sliced_from"] == "strong"
    assert all(r["value"] <= by[(r["setting"]["subset"], None, None)]["value"] for r in recs if r["attack"])
    # a second run measures nothing: every record is reused, with the run that measured it
    monkeypatch.setattr(curves, "robust", lambda *a, **k: pytest.fail("measured twice"))
    again = curves.measure(_run(), ref, split, index, jobs, batch_size=16, progress=False)
    assert sorted(r["value"] for r in again) == sorted(r["value"] for r in recs)
    assert {r["run_id"] for r in again} == {run.run_id}


def _frame(rows):
    return pd.DataFrame([{"dataset": "cifar10", "subset": "all", "n": 8, "eps": e, "eps_train_reading": rd,
                          "row": row, "refinement": row, "train_seed": s, "point": pt, "accuracy": 100 * m.mean(),
                          "extra": {"robust": curves.to_hex(torch.from_numpy(m))}, "label": f"{row} {s}"}
                         for row, s, rd, pt, e, m in rows])


def test_paired_counts_discordant_images_over_seeds():
    a0 = np.array([1, 1, 1, 0, 0, 1, 0, 0], bool)
    b0 = np.array([1, 0, 0, 0, 1, 1, 0, 0], bool)  # a alone right on 2 images, b alone on 1
    a1 = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)
    b1 = np.array([0, 0, 0, 0, 0, 0, 0, 0], bool)  # a alone right on 2
    rows = []
    for s, (a, b) in enumerate(((a0, b0), (a1, b1))):
        rows += [(curves.rf.FULL, s, "pixel", "clean", None, a), (curves.RANDOM, s, "pixel", "clean", None, b)]
    p = curves.paired(_frame(rows))
    r = p[(p["eps_train reading"] == "pixel") & (p["point"] == "clean")].iloc[0]
    assert (r["only LIME right"], r["only random right"]) == (4, 1)
    assert r["LIME - random (pp)"] == pytest.approx(100 * ((4 - 3) / 8 + (2 - 0) / 8) / 2)
    assert r["McNemar p"] == pytest.approx(0.375)  # exact binomial: P(X <= 1 | 5, 1/2) x 2
    assert r["seeds"] == 2


def test_checklist_fails_when_any_subset_fails_and_skips_what_no_subset_answers():
    def rec(subset, attack, steps, restarts, eps, v, n):
        return {"label": "m", "model": "resnet18_cifar10", "model_hash": "h", "dataset": "cifar10", "subset": subset,
                "metric": "robust_accuracy", "attack": attack, "attack_steps": steps, "attack_restarts": restarts,
                "attack_eot": 1, "eps": eps, "value": v, "n": n}
    df = pd.DataFrame([rec("all", "pgd", 20, 1, 0.01, 0.5, 100), rec("all", "pgd", 20, 1, 0.03, 0.2, 100),
                       rec("strong", "pgd", 20, 1, 0.01, 0.5, 50), rec("strong", "pgd", 50, 2, 0.01, 0.7, 50)])
    c = curves.checklist(df).set_index("check")
    assert c.loc["accuracy non-increasing in eps", "pass"] is True
    assert c.loc["more steps / restarts never raise accuracy", "pass"] is False  # 0.7 > 0.5 on the strong subset
    assert c.loc["black-box Square never beats white-box", "pass"] is None
    assert curves.pass_grid(curves.checklist(df)).loc["m", "black-box Square never beats white-box"] == "-"
