"""CIFAR-10-C as a data set: the official files' layout, and generation that is deterministic,
independent of the number of processes, cached per corruption and resumable."""
import json

import numpy as np
import pytest

from replication import cifar10c


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, 32 * 32 * 3).reshape(32, 32, 3)
    return np.stack([np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8) for _ in range(n)])


def test_official_files_are_read_by_severity_block(tmp_path):
    n_test, idx = 4, np.array([1, 3])
    labels = np.array([0, 1, 2, 3])
    np.save(tmp_path / "labels.npy", np.tile(labels, 5))
    arr = np.zeros((5 * n_test, 32, 32, 3), np.uint8)
    for s in range(5):
        arr[s * n_test:(s + 1) * n_test] = (10 * (s + 1) + np.arange(n_test))[:, None, None, None]
    np.save(tmp_path / "fog.npy", arr)
    got = cifar10c.official(tmp_path, ["fog"], [2, 5], idx, labels[idx], n_test=n_test)
    assert got[("fog", 2)][:, 0, 0, 0].tolist() == [21, 23] and got[("fog", 5)][:, 0, 0, 0].tolist() == [51, 53]
    np.save(tmp_path / "labels.npy", np.tile(labels[::-1], 5))
    with pytest.raises(ValueError, match="does not match the CIFAR-10 test labels"):
        cifar10c.official(tmp_path, ["fog"], [2], idx, labels[idx], n_test=n_test)


def test_generation_is_deterministic_cached_and_independent_of_processes(tmp_path):
    x, idx = _images(), np.array([5, 7, 9])
    one, secs, cached = cifar10c.generate(x, idx, ["shot_noise", "pixelate"], [1, 2, 3, 4, 5], 0, tmp_path / "a",
                                          processes=1, progress=False)
    assert not cached and secs is not None and set(one) == {(c, s) for c in ("shot_noise", "pixelate") for s in range(1, 6)}
    two, _, _ = cifar10c.generate(x, idx, ["shot_noise", "pixelate"], [1, 2, 3, 4, 5], 0, tmp_path / "b",
                                  processes=2, progress=False)
    assert all(np.array_equal(one[k], two[k]) for k in one)
    # an image's corruption depends on its own test index, not on the others in the batch
    alone, _, _ = cifar10c.generate(x[1:2], idx[1:2], ["shot_noise"], [3], 0, tmp_path / "c", progress=False)
    assert np.array_equal(alone[("shot_noise", 3)][0], one[("shot_noise", 3)][1])
    other, _, _ = cifar10c.generate(x, idx, ["shot_noise"], [3], 1, tmp_path / "d", progress=False)
    assert not np.array_equal(other[("shot_noise", 3)], one[("shot_noise", 3)])
    # cached: a second call reads the files (nothing regenerated)
    mtime = (tmp_path / "a" / "shot_noise.npy").stat().st_mtime_ns
    again, secs, cached = cifar10c.generate(x, idx, ["shot_noise"], [3], 0, tmp_path / "a", progress=False)
    assert cached and (tmp_path / "a" / "shot_noise.npy").stat().st_mtime_ns == mtime
    assert secs == pytest.approx(json.loads(next((tmp_path / "a").glob("meta-*.json")).read_text())["generated_s"])
    assert np.array_equal(again[("shot_noise", 3)], one[("shot_noise", 3)])


def test_a_cached_file_of_the_wrong_size_is_a_clear_error(tmp_path):
    x, idx = _images(), np.array([0, 1, 2])
    cifar10c.generate(x, idx, ["contrast"], [1], 0, tmp_path, progress=False)
    with pytest.raises(ValueError, match="delete .* to regenerate"):
        cifar10c.generate(x[:2], idx[:2], ["contrast"], [1], 0, tmp_path, progress=False)
