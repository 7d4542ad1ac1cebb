"""Notebook 07's evaluation of every CIFAR-10-C set resumes: what a killed run measured is saved
after each corruption and reused, never measured twice; robust accuracy never exceeds clean."""
import numpy as np
import pytest
import torch

from replication import cifar10c, notebook
from replication.paper_a import corrupted
from replication.profiles import get_profile


def _sets(test, tmp_path, n=24):
    clean = test.select(torch.arange(n))
    hwc = clean.x.permute(0, 2, 3, 1).contiguous().numpy()
    idx = np.arange(n)
    raw, _, _ = cifar10c.generate(hwc, idx, ["contrast", "gaussian_noise"], [1, 5], 0, tmp_path / "c10c", progress=False)
    images = {k: torch.from_numpy(v).permute(0, 3, 1, 2).contiguous() for k, v in raw.items() if k[1] in (1, 5)}
    return cifar10c.CorruptedSets("generated", clean, idx, images, None, True)


def _run():
    return notebook.Run("07_cifar10c_table", get_profile("smoke"), 0, {}, torch.device("cpu"))


def _evaluate(run, model, sets):
    return corrupted.evaluate_sets(run, model, model_name="resnet18_cifar10", model_hash="tiny", setting={},
                                   sets=sets, pgd_steps=2, batch_size=16, progress=False)


def test_a_killed_run_resumes_from_the_last_corruption_it_finished(trained_tiny, isolated_store, monkeypatch):
    model, test = trained_tiny
    sets = _sets(test, isolated_store)
    first = _run()
    calls = {"n": 0}
    real = corrupted._measure

    def dies_in_the_last_corruption(*a, **k):
        calls["n"] += 1
        if calls["n"] > 12 * 3:  # uncorrupted + contrast x 2 severities done, then killed
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(corrupted, "_measure", dies_in_the_last_corruption)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(first, model, sets)
    monkeypatch.setattr(corrupted, "_measure", real)
    second = _run()
    recs = _evaluate(second, model, sets)
    assert len(recs) == 5 * 13  # uncorrupted + 2 x 2 sets, clean + 12 attacked points each
    by_run = {r["run_id"] for r in recs if r["setting"]["corruption"] in ("none", "contrast")}
    assert by_run == {first.run_id}  # measured before the kill: reused, not measured again
    assert {r["run_id"] for r in recs if r["setting"]["corruption"] == "gaussian_noise"} == {second.run_id}
    third = _evaluate(_run(), model, sets)
    assert [r["value"] for r in third] == [r["value"] for r in recs]  # all reused: nothing measured twice
    for c, s in [("none", 0), ("contrast", 1), ("gaussian_noise", 5)]:
        mine = [r for r in recs if r["setting"]["corruption"] == c and r["setting"]["severity"] == s]
        clean = next(r["value"] for r in mine if r["attack"] is None)
        assert all(r["value"] <= clean for r in mine)
    second.add(recs)
    second.check(metrics={"accuracy": 5, "robust_accuracy": 60})


def test_robust_accuracy_equals_clean_exactly_when_no_image_is_fooled(cifar10_small, isolated_store):
    """A model the attacks cannot move (constant logits, zero input gradient) keeps every correct image,
    so each attacked share must equal the clean share to the last bit. Both are counts over n in
    float64; a float32 clean mean (the CI failure of 6 December) rounds 7/24 below the exact share."""
    _, test = cifar10_small
    y = test.y
    picked = torch.cat([(y == 0).nonzero().flatten()[:7], (y != 0).nonzero().flatten()[:17]])
    assert torch.tensor([1.0] * 7 + [0.0] * 17).mean().item() < 7 / 24  # the share a float32 mean rounds down
    sets = _sets(test.select(picked), isolated_store)
    frozen = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with torch.no_grad():
        frozen[1].weight.zero_()
        frozen[1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(0), 10).float())
    recs = _evaluate(_run(), frozen, sets)
    assert len(recs) == 5 * 13
    assert {r["value"] for r in recs} == {7 / 24}
