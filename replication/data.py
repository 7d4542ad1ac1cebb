"""CIFAR-10/100 held as uint8 tensors on the device, with on-device augmentation.

Loading goes through torchvision.datasets (the real code path users run). When the files are
missing we materialise them from a local byte-exact mirror if there is one, else let torchvision
download them, else stop with an error that says what to do.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.datasets.utils import check_integrity

from .paths import data_mirror, data_root

DATASETS = {
    "cifar10": (torchvision.datasets.CIFAR10, 10),
    "cifar100": (torchvision.datasets.CIFAR100, 100),
}


class DataNotFoundError(FileNotFoundError):
    pass


# (dataset, root) pairs whose md5 this process has checked: the check reads ~180 MB, once is enough.
_VERIFIED: set[tuple[str, Path]] = set()


def _dataset_cls(name: str):
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    return DATASETS[name][0]


def num_classes(name: str) -> int:
    _dataset_cls(name)
    return DATASETS[name][1]


TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000}  # torchvision's training splits


def subset_size(name: str, n: int | None) -> int:
    """How many images load_split(name, train=True, n=n) holds, without loading it."""
    _dataset_cls(name)
    return TRAIN_IMAGES[name] if n is None else min(int(n), TRAIN_IMAGES[name])


def md5_report(name: str, root: Path | None = None) -> dict[str, bool]:
    """File -> whether it matches torchvision's official md5."""
    cls = _dataset_cls(name)
    folder = Path(root or data_root()) / cls.base_folder
    return {fn: check_integrity(str(folder / fn), md5) for fn, md5 in cls.train_list + cls.test_list}


def ensure_dataset(name: str, root: Path | None = None) -> Path:
    """Make sure `name` is on disk under `root` (default $REPLICATION_DATA or ./data) with every file
    passing torchvision's md5; return root. Missing or corrupted files come from the local mirror
    (saying which and what was done), else from torchvision's download; else a clear error names them."""
    cls = _dataset_cls(name)
    root = Path(root or data_root())
    if (name, root) in _VERIFIED:
        return root
    report = md5_report(name, root)
    if all(report.values()):
        _VERIFIED.add((name, root))
        return root
    folder = root / cls.base_folder
    missing = [f for f in report if not (folder / f).exists()]
    corrupted = [f for f, ok in report.items() if not ok and f not in missing]
    what = "; ".join(x for x in (f"missing: {', '.join(missing)}" if missing else "",
                                 f"failing their md5 (corrupted or truncated): {', '.join(corrupted)}" if corrupted else "") if x)
    root.mkdir(parents=True, exist_ok=True)
    mirror = data_mirror() / "materialize.py"
    if mirror.exists():
        print(f"data: {name} under {folder}: {what}. Re-materialising {cls.base_folder} from the mirror "
              f"{mirror.parent}.", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, str(mirror), str(root), "--only", cls.base_folder],
                       check=True, stdout=subprocess.DEVNULL)
    else:
        try:
            cls(str(root), train=True, download=True)
        except Exception as exc:  # no internet, proxy, ...
            raise DataNotFoundError(
                f"{name} under {folder}: {what}; and it could not be downloaded ({exc}). Either put "
                f"torchvision's '{cls.base_folder}' folder under {root} (or point $REPLICATION_DATA "
                "at a folder holding it), or set $REPLICATION_DATA_MIRROR to a folder with "
                "materialize.py (see ../shared/data), or run once with internet access."
            ) from exc
    bad = [f for f, ok in md5_report(name, root).items() if not ok]
    if bad:
        raise DataNotFoundError(f"{name} under {root}: md5 mismatch for {bad} even after re-materialising; "
                                f"delete {folder} and run again.")
    _VERIFIED.add((name, root))
    return root


@lru_cache(maxsize=4)
def _load_numpy(name: str, train: bool, root: str) -> tuple[np.ndarray, np.ndarray]:
    ds = _dataset_cls(name)(root, train=train, download=False)
    return ds.data, np.asarray(ds.targets, dtype=np.int64)


def balanced_subset(labels: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    """Indices of a seeded, class-balanced subset of size n (all indices when n is None)."""
    if n is None or n >= len(labels):
        return torch.arange(len(labels))
    classes = torch.unique(labels)
    g = torch.Generator().manual_seed(seed)
    per_class = [n // len(classes) + (1 if i < n % len(classes) else 0) for i in range(len(classes))]
    picked = []
    for c, k in zip(classes.tolist(), per_class):
        idx = torch.nonzero(labels == c).flatten()
        if k > len(idx):
            raise ValueError(f"class {c} has only {len(idx)} examples, {k} requested")
        picked.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.sort(torch.cat(picked)).values


@dataclass
class Split:
    """A data split as tensors on one device: x uint8 (N,3,32,32), y int64 (N,).

    `aux` (optional, uint8 (N,k,32,32)) rides along with x through batching and augmentation, so a
    per-pixel mask stays aligned with its cropped and flipped image (refinement, notebook 04).
    """
    name: str
    train: bool
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    aux: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> "Split":
        return Split(self.name, self.train, self.x.to(device), self.y.to(device), self.num_classes,
                     None if self.aux is None else self.aux.to(device))

    def subset(self, n: int | None, seed: int = 0) -> "Split":
        idx = balanced_subset(self.y.cpu(), n, seed).to(self.y.device)
        return self.select(idx)

    def select(self, idx: torch.Tensor) -> "Split":
        return Split(self.name, self.train, self.x[idx], self.y[idx], self.num_classes,
                     None if self.aux is None else self.aux[idx])

    def float_batch(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_float(self.x[start:stop]), self.y[start:stop]


def load_split(name: str, train: bool, n: int | None = None, seed: int = 0,
               device: str | torch.device = "cpu") -> Split:
    """CIFAR split as uint8 tensors on `device`; n selects a seeded class-balanced subset."""
    root = ensure_dataset(name)
    data, targets = _load_numpy(name, train, str(root))
    x = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    split = Split(name, train, x, torch.from_numpy(targets), num_classes(name)).subset(n, seed)
    return split.to(device)


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float in [0,1], channels_last (faster convolutions on CPU and GPU)."""
    return (x_uint8.float() / 255.0).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with `pad` pixels of reflect padding and a horizontal flip, per image, on x's device."""
    n, c, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    out = padded[torch.arange(n, device=dev)[:, None, None, None],
                 torch.arange(c, device=dev)[None, :, None, None], rows, cols]
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def iterate_batches(split: Split, batch_size: int, *, shuffle: bool, train_augment: bool,
                    generator: torch.Generator | None = None, drop_last: bool = False,
                    shard: tuple[int, int] = (0, 1)):
    """Yield (x float [0,1] channels_last, y) batches of `batch_size` images.

    `shard`=(rank, world): every process draws the same global batch (and the same augmentation)
    and keeps its slice rank::world, so N processes together see exactly what one process sees
    (batch_size must divide by world). A split with `aux` yields (x, y, aux) with aux augmented
    exactly as x (as float, 0-255 scale).
    """
    rank, world = shard
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not divide into {world} processes")
    n = len(split)
    order = (torch.randperm(n, generator=generator, device=split.x.device) if shuffle
             else torch.arange(n, device=split.x.device))
    stop = n - (n % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        xb = split.x[idx]
        if split.aux is not None:
            xb = torch.cat([xb, split.aux[idx]], 1)
        if train_augment:
            xb = augment(xb, generator)
        xb, yb = xb[rank::world], split.y[idx][rank::world]
        if split.aux is None:
            yield to_float(xb), yb
        else:
            yield to_float(xb[:, :3]), yb, xb[:, 3:].float()


# Channel statistics of the CIFAR training sets, used by the in-model normalisation layer.
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@lru_cache(maxsize=4)
def class_names(name: str) -> list[str]:
    root = ensure_dataset(name)
    return list(_dataset_cls(name)(str(root), train=False, download=False).classes)
