"""The cache module: keys hold what a result depends on, memo computes once, writes are atomic."""
import dataclasses

import torch

from replication import cache
from replication.checkpoints import checkpoint_path, load_model, save_model
from replication.models import build_model
from replication.train import TrainConfig


def test_precision_is_not_part_of_a_key():
    cfg = TrainConfig(arch="resnet18", dataset="cifar10", num_classes=10, width=2, epochs=1, batch_size=8, lr=0.1,
                      precision="bf16")
    fp32 = dataclasses.replace(cfg, precision="fp32")
    assert cache.key_hash(cfg.to_dict()) == cache.key_hash(fp32.to_dict())
    assert cache.key_hash(cfg.to_dict()) != cache.key_hash(dataclasses.replace(cfg, lr=0.2).to_dict())
    assert checkpoint_path("m", cfg.to_dict(), "cpu") == checkpoint_path("m", fp32.to_dict(), "cpu")


def test_a_bf16_checkpoint_loads_for_an_fp32_request(isolated_store):
    cfg = TrainConfig(arch="resnet18", dataset="cifar10", num_classes=10, width=2, epochs=1, batch_size=8, lr=0.1,
                      precision="bf16")
    model = build_model("resnet18", 10, 2)
    path = checkpoint_path("m", cfg.to_dict(), "cpu")
    save_model(model, path, cfg.to_dict(), [{"epoch": 1, "precision": "bf16"}])
    other = build_model("resnet18", 10, 2)
    history = load_model(other, path, dataclasses.replace(cfg, precision="auto").to_dict())
    assert history == [{"epoch": 1, "precision": "bf16"}]  # the precision it was trained in stays on record
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_memo_computes_once_and_stores(tmp_path):
    calls = []
    path = tmp_path / "t" / "x.pt"

    def compute():
        calls.append(1)
        return {"a": torch.arange(3)}

    first = cache.tensor_file_memo(path, compute)
    second = cache.tensor_file_memo(path, compute)
    assert calls == [1] and torch.equal(first["a"], second["a"]) and path.exists()
    value, found = cache.memo(lambda: None, lambda: 5, calls.append)
    assert (value, found, calls[-1]) == (5, False, 5)
    assert cache.memo(lambda: 7, lambda: 1 / 0) == (7, True)
