import os
import sys
import threading

import pytest

os.environ.setdefault("REPLICATION_PROFILE", "smoke")


# pytest-timeout (pyproject.toml: timeout, method "thread") ends a hung run with a stack dump, since
# a hang inside native code (e.g. an OpenMP barrier) never returns to Python; it does not say which
# test hung, so this names it first.
@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    if settings.timeout and settings.timeout > 1:
        def name_it():
            sys.__stderr__.write(f"\n+++ TIMEOUT: {item.nodeid} ran past {settings.timeout:.0f} s "
                                 f"(pytest-timeout ends the run; stacks follow) +++\n")
            sys.__stderr__.flush()
        item._name_timer = threading.Timer(settings.timeout - 1, name_it)
        item._name_timer.daemon = True
        item._name_timer.start()


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item):
    timer = getattr(item, "_name_timer", None)
    if timer is not None:
        timer.cancel()


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
    """A width-4 ResNet-18 trained for a few epochs on 2,000 images: clearly above chance.
    (Width 4 is the shape oneDNN issue 6035 breaks on AVX2 CPUs: see test_onednn_fault.py.)"""
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
