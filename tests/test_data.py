import torch

from replication import data


def test_md5_of_materialised_files():
    for name in ("cifar10", "cifar100"):
        root = data.ensure_dataset(name)
        report = data.md5_report(name, root)
        assert len(report) == (6 if name == "cifar10" else 2)
        assert all(report.values()), report


def test_split_shapes_and_counts():
    test = data.load_split("cifar10", train=False)
    assert test.x.shape == (10000, 3, 32, 32) and test.x.dtype == torch.uint8
    assert test.y.bincount().tolist() == [1000] * 10
    assert data.class_names("cifar10")[:3] == ["airplane", "automobile", "bird"]
    assert data.load_split("cifar100", train=False).num_classes == 100


def test_balanced_subset_is_balanced_and_seeded():
    y = data.load_split("cifar10", train=True).y
    a = data.balanced_subset(y, 1003, seed=1)
    assert len(a) == 1003 and len(set(a.tolist())) == 1003
    counts = y[a].bincount(minlength=10)
    assert counts.max() - counts.min() <= 1
    assert torch.equal(a, data.balanced_subset(y, 1003, seed=1))
    assert not torch.equal(a, data.balanced_subset(y, 1003, seed=2))
    assert torch.equal(data.balanced_subset(y, None, seed=0), torch.arange(len(y)))


def test_augment_is_a_crop_of_the_padded_image_maybe_flipped():
    x = data.load_split("cifar10", train=False, n=20, seed=0).x
    g = torch.Generator().manual_seed(0)
    out = data.augment(x, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x.float(), (4, 4, 4, 4), mode="reflect").to(torch.uint8)
    for i in range(len(x)):
        candidates = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        candidates += [c.flip(2) for c in candidates]
        assert any(torch.equal(out[i], c) for c in candidates)
    # Same generator seed, same augmentation; and it does change images.
    assert torch.equal(out, data.augment(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, x)


def test_batches_are_float_in_unit_box_and_cover_the_split():
    s = data.load_split("cifar10", train=False, n=250, seed=0)
    seen = 0
    for xb, yb in data.iterate_batches(s, 100, shuffle=True, train_augment=True,
                                       generator=torch.Generator().manual_seed(0)):
        assert xb.dtype == torch.float32 and 0 <= xb.min() and xb.max() <= 1
        assert xb.is_contiguous(memory_format=torch.channels_last)
        seen += len(yb)
    assert seen == 250


def test_missing_data_error_says_what_to_do(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setenv("REPLICATION_DATA_MIRROR", str(tmp_path / "no-mirror"))

    def offline(*a, **k):
        raise RuntimeError("no internet")

    monkeypatch.setattr(data.torchvision.datasets.CIFAR10, "__init__", offline)
    with pytest.raises(data.DataNotFoundError, match="REPLICATION_DATA"):
        data.ensure_dataset("cifar10", tmp_path / "empty")


def _corrupted_copy(tmp_path):
    """A copy of CIFAR-10 under tmp_path with one batch file truncated to half its size."""
    import shutil

    src = data.ensure_dataset("cifar10") / "cifar-10-batches-py"
    dst = tmp_path / "data" / "cifar-10-batches-py"
    shutil.copytree(src, dst)
    bad = dst / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return tmp_path / "data"


def test_a_corrupted_file_is_named_and_rematerialised_from_the_mirror(tmp_path, capsys):
    root = _corrupted_copy(tmp_path)
    assert data.ensure_dataset("cifar10", root) == root
    err = capsys.readouterr().err
    assert "data_batch_3" in err and "failing their md5" in err and "Re-materialising" in err
    assert all(data.md5_report("cifar10", root).values())


def test_without_a_mirror_the_error_names_the_corrupted_file(tmp_path, monkeypatch):
    import pytest

    root = _corrupted_copy(tmp_path)
    monkeypatch.setenv("REPLICATION_DATA_MIRROR", str(tmp_path / "no-mirror"))
    monkeypatch.setattr(data.DATASETS["cifar10"][0], "download", lambda self: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(data.DataNotFoundError, match=r"failing their md5 \(corrupted or truncated\): data_batch_3"):
        data.ensure_dataset("cifar10", root)
