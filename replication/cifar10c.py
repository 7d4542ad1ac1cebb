"""CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): the official files when present, else generated.

The official release is `CIFAR-10-C/<corruption>.npy` (50,000 images: severities 1..5, each over the
10,000 test images in order) and `labels.npy`. Put the folder under the data root
($REPLICATION_DATA, default ./data) and it is used. Otherwise the same 19 corruptions x 5 severities
are generated from the CIFAR-10 test images with the CIFAR parameters (`corruptions.py`): one seeded
generator per (seed, corruption, severity, test index), so the images do not depend on how the work
is split over processes. Generation is cached under .cache/cifar10c/<key>/ as one uint8 .npy per
corruption, written atomically as each finishes (an interrupted generation resumes), with a
meta.json of its provenance. A generated set is statistically alike the official one, not byte-equal.
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from .cache import atomic_write, atomic_write_text, stable_hash
from .data import Split, balanced_subset, ensure_dataset, load_split
from .paths import cache_dir, data_root
from .progress import bar

GENERATOR_VERSION = 1  # bump when corruptions.py changes what it draws: the cache key holds it
OFFICIAL_DIR = "CIFAR-10-C"
DATASET = "cifar10-c"  # the records' dataset name; setting.corruption / setting.severity say which set


@dataclass
class CorruptedSets:
    """A class-balanced CIFAR-10 test subset (`clean`) and its corrupted copies (uint8 N,3,32,32)."""
    source: str                                   # "official" | "generated"
    clean: Split
    indices: np.ndarray                           # the subset's rows in the CIFAR-10 test set
    images: dict[tuple[str, int], torch.Tensor]
    generation_s: float | None                    # wall time of generating them (also when cached; None: official)
    from_cache: bool

    def split(self, corruption: str, severity: int) -> Split:
        return Split(DATASET, False, self.images[(corruption, severity)], self.clean.y, self.clean.num_classes)


def _hwc(split: Split) -> np.ndarray:
    """A split's images as uint8 (N,32,32,3), the layout the corruptions work in."""
    return split.x.permute(0, 2, 3, 1).contiguous().numpy()


def official_dir(root: Path | None = None) -> Path:
    return Path(root or data_root()) / OFFICIAL_DIR


def official(folder: Path, names, severities, indices: np.ndarray, labels: np.ndarray, n_test: int = 10000) -> dict:
    """{(name, severity): uint8 (N,32,32,3)}: the subset's rows of the official files in `folder`."""
    got = np.load(folder / "labels.npy", mmap_mode="r")
    if len(got) != 5 * n_test or not np.array_equal(np.asarray(got[:n_test])[indices], labels):
        raise ValueError(f"{folder / 'labels.npy'} does not match the CIFAR-10 test labels: is this the official "
                         "CIFAR-10-C release? Remove the folder to generate the corruptions instead.")
    out = {}
    for name in names:
        arr = np.load(folder / f"{name}.npy", mmap_mode="r")
        if arr.shape != (5 * n_test, 32, 32, 3) or arr.dtype != np.uint8:
            raise ValueError(f"{folder / name}.npy has shape {arr.shape} {arr.dtype}, expected ({5 * n_test}, 32, 32, 3) "
                             "uint8 (the official release); remove it to generate the corruptions instead.")
        for s in severities:
            out[(name, s)] = np.ascontiguousarray(arr[(s - 1) * n_test + indices])
    return out


def _generate_one(args) -> np.ndarray:
    """One (corruption, severity) over the images; runs in a worker process."""
    from . import corruptions

    images, indices, name, severity, seed = args
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core already
    except ImportError:
        pass
    k = corruptions.CORRUPTIONS.index(name)
    return np.stack([corruptions.corrupt(img, name, severity, np.random.default_rng([seed, k, severity, int(i)]))
                     for img, i in zip(images, indices)])


def _save_npy(path: str, arr: np.ndarray) -> None:
    with open(path, "wb") as f:  # a handle: np.save would append ".npy" to the temporary name
        np.save(f, arr)


def cache_key(n: int | None, seed: int) -> dict:
    from .paths import DATA_FILES_DIR

    params = hashlib.sha256((DATA_FILES_DIR / "cifar10c_parameters.yaml").read_bytes()).hexdigest()[:16]
    return {"n": n, "seed": seed, "parameters_sha256": params, "generator_version": GENERATOR_VERSION}


def generate(images: np.ndarray, indices: np.ndarray, names, severities, seed: int, folder: Path,
             processes: int = 1, progress: bool = True) -> tuple[dict, float, bool]:
    """({(name, severity): uint8 (N,32,32,3)}, seconds the cached generation took, whether all of it
    was cached) for images (N,32,32,3), cached per corruption in `folder`."""
    from . import corruptions

    folder.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not (folder / f"{n}.npy").exists()]
    t0 = time.perf_counter()
    if todo:
        jobs = [(images, indices, n, s, seed) for n in todo for s in corruptions.SEVERITIES]
        pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn")) if processes > 1 else None
        try:
            results = pool.map(_generate_one, jobs) if pool else map(_generate_one, jobs)
            done: dict[str, list] = {}
            for (_, _, n, s, _), arr in bar(zip(jobs, results), total=len(jobs), desc="CIFAR-10-C", enabled=progress):
                done.setdefault(n, []).append(arr)
                if len(done[n]) == len(corruptions.SEVERITIES):  # all five: write this corruption's file
                    stacked = np.stack(done.pop(n))
                    atomic_write(folder / f"{n}.npy", lambda tmp, a=stacked: _save_npy(tmp, a))
        finally:
            if pool:
                pool.shutdown()
        meta = {"generated_s": round(time.perf_counter() - t0, 1), "processes": processes, "corruptions": todo,
                "n": len(indices), "seed": seed, "indices_sha256": stable_hash(indices.tolist())}
        atomic_write_text(folder / f"meta-{int(time.time())}.json", json.dumps(meta, indent=1))
    # the generation time of what is cached, summed over the sessions that generated it (meta files)
    total = sum(json.loads(m.read_text())["generated_s"] for m in folder.glob("meta-*.json"))
    out = {}
    for n in names:
        arr = np.load(folder / f"{n}.npy")
        if arr.shape[:2] != (len(corruptions.SEVERITIES), len(indices)):
            raise ValueError(f"{folder / n}.npy holds {arr.shape[:2]} (severities, images), expected "
                             f"{(len(corruptions.SEVERITIES), len(indices))}: delete {folder} to regenerate.")
        for j, s in enumerate(corruptions.SEVERITIES):
            if s in severities:
                out[(n, s)] = arr[j]
    return out, total, not todo


def load(n: int | None, seed: int, *, store: str, processes: int = 1, names=None, severities=None,
         progress: bool = True) -> CorruptedSets:
    """The corrupted copies of a seeded class-balanced subset of n CIFAR-10 test images (n None: all)."""
    from . import corruptions

    names = tuple(names or corruptions.CORRUPTIONS)
    severities = tuple(severities or corruptions.SEVERITIES)
    unknown = set(names) - set(corruptions.CORRUPTIONS)
    if unknown:
        raise ValueError(f"unknown corruptions {sorted(unknown)}; choose from {corruptions.CORRUPTIONS}")
    full = load_split("cifar10", train=False)
    idx = balanced_subset(full.y, n, seed)  # the subset load_split(n=n, seed=seed) gives
    clean, indices = full.select(idx), idx.numpy()
    root = ensure_dataset("cifar10")
    if all((official_dir(root) / f"{m}.npy").exists() for m in names) and (official_dir(root) / "labels.npy").exists():
        raw = official(official_dir(root), names, severities, indices, clean.y.numpy(), n_test=len(full))
        source, secs, cached = "official", None, True
    else:
        folder = cache_dir() / "cifar10c" / store / stable_hash(cache_key(n, seed))
        raw, secs, cached = generate(_hwc(clean), indices, names, severities, seed, folder, processes, progress)
        source = "generated"
    images = {k: torch.from_numpy(v).permute(0, 3, 1, 2).contiguous() for k, v in raw.items()}
    return CorruptedSets(source, clean, indices, images, secs, cached)


def regenerate(sets: CorruptedSets, corruption: str, severity: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    """The first n images of one set generated again, uncached (a determinism check): uint8 (n,3,32,32)."""
    arr = _generate_one((_hwc(sets.clean)[:n], sets.indices[:n], corruption, severity, seed))
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
