import os

import pytest

os.environ.setdefault("REPLICATION_PROFILE", "smoke")


@pytest.fixture
def isolated_store(tmp_path, monkeypatch):
    """Checkpoints, resume states and results under tmp_path instead of the project tree."""
    from replication import paths

    # keep reading the real data while project paths point at tmp_path
    monkeypatch.setenv("REPLICATION_DATA", str(paths.data_root()))
    monkeypatch.setenv("REPLICATION_DATA_MIRROR", str(paths.data_mirror()))
    monkeypatch.setattr(paths, "CHECKPOINTS_DIR", tmp_path / "checkpoints")
    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def cifar10_small():
    from replication.data import load_split

    return load_split("cifar10", train=True, n=2000, seed=0), load_split("cifar10", train=False, n=200, seed=0)


@pytest.fixture(scope="session")
def trained_tiny(cifar10_small, tmp_path_factory):
    """A width-4 ResNet-18 trained for a few epochs on 2,000 images: clearly above chance."""
    from replication import paths
    from replication.train import TrainConfig, train_model

    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("tiny")
    mp.setattr(paths, "CHECKPOINTS_DIR", tmp / "ck")
    mp.setattr(paths, "CACHE_DIR", tmp / "cache")
    train, test = cifar10_small
    cfg = TrainConfig(arch="resnet18", dataset="cifar10", num_classes=10, width=4, epochs=4, batch_size=100,
                      lr=0.2, n_train=2000)
    res = train_model(cfg, "tiny", "smoke", train, test, progress=False)
    mp.undo()
    return res.model.eval(), test
