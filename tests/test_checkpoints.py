import dataclasses

import pytest
import torch

from replication import checkpoints, paths
from replication.checkpoints import CheckpointMismatchError, checkpoint_path, load_model, save_model
from replication.models import build_model
from replication.train import TrainConfig, train_model


@pytest.fixture
def tiny_cfg():
    return TrainConfig(arch="resnet18", dataset="cifar10", num_classes=10, width=2, epochs=2, batch_size=64,
                       lr=0.1, n_train=256)


@pytest.fixture
def tiny_data():
    from replication.data import load_split

    return load_split("cifar10", True, n=256, seed=0), load_split("cifar10", False, n=64, seed=0)


def _state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cache_hit_loads_instead_of_training(isolated_store, tiny_cfg, tiny_data):
    first = train_model(tiny_cfg, "t", "smoke", *tiny_data, progress=False)
    assert not first.from_cache and first.path.exists()
    assert first.path == checkpoint_path("t", tiny_cfg.to_dict(), "smoke")
    second = train_model(tiny_cfg, "t", "smoke", *tiny_data, progress=False)
    assert second.from_cache and _state_equal(first.model, second.model)
    assert second.history == first.history


def test_killed_run_resumes_from_last_epoch(isolated_store, tiny_cfg, tiny_data):
    full = train_model(tiny_cfg, "full", "smoke", *tiny_data, progress=False)
    full.path.unlink()
    part = train_model(tiny_cfg, "resumed", "smoke", *tiny_data, progress=False, stop_after_epoch=1)
    assert part.path is None and len(part.history) == 1
    assert checkpoints.resume_path(tiny_cfg.to_dict(), "smoke").exists()
    resumed = train_model(tiny_cfg, "resumed", "smoke", *tiny_data, progress=False)
    assert not resumed.from_cache and [h["epoch"] for h in resumed.history] == [1, 2]
    assert not checkpoints.resume_path(tiny_cfg.to_dict(), "smoke").exists()
    assert _state_equal(full.model, resumed.model)  # resuming changes nothing


def test_config_mismatch_is_a_clear_error(isolated_store, tiny_cfg):
    model = build_model("resnet18", 10, 2)
    path = isolated_store / "m.safetensors"
    save_model(model, path, tiny_cfg.to_dict())
    other = dataclasses.replace(tiny_cfg, lr=0.5).to_dict()
    with pytest.raises(CheckpointMismatchError, match="different config.*lr"):
        load_model(build_model("resnet18", 10, 2), path, other)
    with pytest.raises(CheckpointMismatchError, match="does not fit this architecture"):
        load_model(build_model("resnet18", 10, 4), path, tiny_cfg.to_dict())
    assert load_model(build_model("resnet18", 10, 2), path, tiny_cfg.to_dict()) == []


def test_corrupted_checkpoint_is_a_clear_error(isolated_store, tiny_cfg):
    path = isolated_store / "bad.safetensors"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointMismatchError, match="not a readable safetensors"):
        load_model(build_model("resnet18", 10, 2), path, tiny_cfg.to_dict())


def test_hash_is_stable_and_ignores_unset_optionals(tiny_cfg):
    d = tiny_cfg.to_dict()
    assert "extra_loss" not in d and "init_from" not in d
    assert checkpoint_path("a", d, "smoke") == checkpoint_path("a", dict(reversed(list(d.items()))), "smoke")
    assert checkpoint_path("a", d, "smoke") != checkpoint_path("a", {**d, "seed": 1}, "smoke")


def test_committed_checkpoints_match_manifest():
    import json

    if not paths.manifest_path().exists():
        pytest.skip("no committed checkpoints")
    for rel, entry in json.loads(paths.manifest_path().read_text()).items():
        path = paths.CHECKPOINTS_DIR / rel
        assert path.exists(), f"{rel} is listed in the manifest but missing"
        assert entry["bytes"] <= checkpoints.COMMIT_LIMIT_BYTES
        assert checkpoints.sha256(path) == entry["sha256"], f"{rel} does not match its sha256"


def test_a_cpu_profile_training_under_test_writes_only_into_the_temporary_store(isolated_store, tiny_cfg,
                                                                                tiny_data):
    real = paths.PACKAGE_DIR.parent / "checkpoints" / "MANIFEST.json"
    before = real.read_bytes() if real.exists() else None
    cfg = dataclasses.replace(tiny_cfg, epochs=1)
    res = train_model(cfg, "tiny", "cpu", tiny_data[0], manifest=True, progress=False)
    assert paths.manifest_path() == isolated_store / "checkpoints" / "MANIFEST.json"
    assert res.path.relative_to(isolated_store) and res.path.name in paths.manifest_path().read_text()
    assert (real.read_bytes() if real.exists() else None) == before


def _flip_tensor_bytes(path, n=4096):
    """Same size, 4 KiB of tensor data inverted (the header and metadata untouched)."""
    import struct

    raw = bytearray(path.read_bytes())
    header = 8 + struct.unpack("<Q", raw[:8])[0]
    start = header + (len(raw) - header) // 2
    raw[start:start + n] = bytes(b ^ 0xFF for b in raw[start:start + n])
    path.write_bytes(bytes(raw))


def test_a_flipped_checkpoint_raises_instead_of_loading(isolated_store, tiny_cfg):
    model = build_model("resnet18", 10, 2)
    path = isolated_store / "checkpoints" / "cpu" / "m.safetensors"
    save_model(model, path, tiny_cfg.to_dict())
    checkpoints.update_manifest(path)
    size = path.stat().st_size
    _flip_tensor_bytes(path)
    assert path.stat().st_size == size
    with pytest.raises(CheckpointMismatchError, match="corrupted.*metadata.*MANIFEST"):
        load_model(build_model("resnet18", 10, 2), path, tiny_cfg.to_dict())


def test_committed_checkpoints_load_and_verify():
    """Every committed checkpoint passes the integrity check its loader now runs."""
    import json

    if not paths.manifest_path().exists():
        pytest.skip("no committed checkpoints")
    for rel in json.loads(paths.manifest_path().read_text()):
        path = paths.CHECKPOINTS_DIR / rel
        meta = checkpoints.read_metadata(path)
        from safetensors.torch import load_file

        checkpoints.verify_integrity(path, load_file(str(path)), meta)


def test_clean_smoke_removes_every_smoke_state_and_nothing_else(tmp_path):
    import shutil
    import subprocess

    shutil.copy(paths.PROJECT_ROOT / "Makefile", tmp_path / "Makefile")
    smoke = ["results/smoke/x.json", "figures/smoke/f.png", "checkpoints/smoke/m.safetensors",
             ".cache/resume/smoke/r.pt", ".cache/identification/smoke/s.pt"]
    kept = [".cache/resume/cpu/r.pt", "results/cpu/x.json", "checkpoints/cpu/m.safetensors"]
    for rel in smoke + kept:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    subprocess.run(["make", "-s", "clean-smoke"], cwd=tmp_path, check=True, capture_output=True)
    assert [rel for rel in smoke if (tmp_path / rel).exists()] == []
    assert all((tmp_path / rel).exists() for rel in kept)


def test_a_committed_model_over_the_limit_is_stored_in_fp16_and_measured_as_stored(isolated_store, tiny_cfg,
                                                                                   tiny_data, monkeypatch):
    from replication import train

    cfg = dataclasses.replace(tiny_cfg, epochs=1)
    limit = checkpoints.state_bytes(build_model("resnet18", 10, cfg.width)) - 1  # this model is just over it
    monkeypatch.setattr(train, "COMMIT_LIMIT_BYTES", limit)
    res = train_model(cfg, "big", "cpu", tiny_data[0], manifest=True, progress=False)
    stored = checkpoints.load_file(str(res.path))
    big = max(stored, key=lambda k: stored[k].numel())
    assert stored[big].dtype == torch.float16 and stored["net.bn1.weight"].dtype == torch.float32
    assert stored["normalize.mean"].dtype == torch.float32 and stored["net.bn1.num_batches_tracked"].dtype == torch.int64
    assert checkpoints.read_metadata(res.path)["config_hash"] and res.path.name in paths.manifest_path().read_text()
    # the returned model is the stored one (fp32 again), equal to a fresh load from the file
    again = build_model("resnet18", 10, cfg.width)
    load_model(again, res.path, cfg.to_dict())
    assert next(res.model.parameters()).dtype == torch.float32 and _state_equal(res.model, again)
    assert torch.equal(res.model.state_dict()[big], stored[big].float())
    # under the limit nothing changes: fp32 on disk
    small = train_model(dataclasses.replace(cfg, lr=0.05), "small", "cpu", tiny_data[0], progress=False)
    assert checkpoints.load_file(str(small.path))[big].dtype == torch.float32
