import torch

from replication import paths
from replication.attacks import Attack
from replication.evaluate import evaluate
from replication.train import TrainConfig, train_model


def _run(tmp, monkeypatch, data):
    monkeypatch.setattr(paths, "CHECKPOINTS_DIR", tmp / "ck")
    monkeypatch.setattr(paths, "CACHE_DIR", tmp / "cache")
    cfg = TrainConfig(arch="resnet18", dataset="cifar10", num_classes=10, width=2, epochs=1, batch_size=64,
                      lr=0.1, n_train=256, seed=7)
    res = train_model(cfg, "det", "smoke", data[0], data[1], progress=False)
    ctx = {"experiment": "d", "profile": "smoke", "run_id": "r", "model": "m", "model_hash": None, "setting": {}}
    recs = evaluate(res.model, data[1], {Attack("fgsm"): [0.02], Attack("pgd", steps=3): [0.02]}, context=ctx,
                    seed=7, progress=False)
    return res, [(r["attack"], r["value"]) for r in recs]


def test_same_smoke_run_twice_gives_same_numbers(tmp_path, monkeypatch):
    from replication.data import load_split

    data = load_split("cifar10", True, n=256, seed=0), load_split("cifar10", False, n=64, seed=0)
    a, ra = _run(tmp_path / "a", monkeypatch, data)
    b, rb = _run(tmp_path / "b", monkeypatch, data)
    assert ra == rb
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
