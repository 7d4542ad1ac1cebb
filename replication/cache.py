"""Caching: stable hashes of configs, atomic writes, and one memoising helper.

Everything expensive (trained checkpoints, identification scores, evaluation records) is looked up
by a key before it is computed, and written atomically after. A key holds what the result depends
on and nothing else: RUNTIME_FIELDS (how a result was computed, e.g. bf16 or fp32 autocast) are
dropped from keys and recorded beside the result instead, so a CPU without native bf16 finds the
checkpoints a bf16 machine trained.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")
RUNTIME_FIELDS = ("precision",)


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of canonical JSON: the same config always gives the same hash."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def cache_key(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config a result depends on (RUNTIME_FIELDS removed)."""
    return {k: v for k, v in config.items() if k not in RUNTIME_FIELDS}


def key_hash(config: dict[str, Any]) -> str:
    return stable_hash(cache_key(config))


def atomic_write(path: Path, writer: Callable[[str], None]) -> None:
    """writer(tmp_path) fills a temporary file beside `path`, which is then renamed over `path`:
    readers see the old file or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def memo(lookup: Callable[[], T | None], compute: Callable[[], T], store: Callable[[T], None] | None = None) -> tuple[T, bool]:
    """(value, found): lookup()'s value if it has one, else compute() it and store() it."""
    found = lookup()
    if found is not None:
        return found, True
    value = compute()
    if store is not None:
        store(value)
    return value, False


def tensor_file_memo(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A dict of tensors cached in a torch file at `path` (loaded with weights_only=True)."""
    import torch

    def lookup():
        return torch.load(path, weights_only=True) if Path(path).exists() else None

    value, _ = memo(lookup, compute, lambda v: atomic_write(Path(path), lambda tmp: torch.save(v, tmp)))
    return value
