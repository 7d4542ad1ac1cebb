"""Checkpoints: safetensors files on a path derived from a stable hash of the config's cache key
(cache.cache_key: the config without runtime fields such as the precision, which the metadata keeps).

Final weights: checkpoints/<profile>/<name>-<hash>.safetensors (metadata: the config, its hash,
the training history). A committed profile's model whose fp32 weights exceed COMMIT_LIMIT_BYTES
(the width-32 ResNet-18 of notebook 11, 10.7 MiB) is stored with its weight tensors in fp16 and
reloaded from the file before anything measures it (train.fit), so what is measured is what is
committed; loading casts back to the model's dtype. Epoch states for resuming: .cache/resume/<profile>/<hash>.pt, loaded with
weights_only=True. The cpu profile's small checkpoints are committed and listed with their sha256
in checkpoints/MANIFEST.json.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from . import paths
from .paths import checkpoints_dir, manifest_path, resume_dir
from .cache import atomic_write, atomic_write_text, cache_key, key_hash

COMMIT_LIMIT_BYTES = 8 * 1024 * 1024
HALF_MIN_NUMEL = 1024  # convolution and linear weights; the bytes are there


class CheckpointMismatchError(RuntimeError):
    pass


def checkpoint_path(name: str, config: dict[str, Any], profile: str) -> Path:
    return checkpoints_dir(profile) / f"{name}-{key_hash(config)}.safetensors"


def resume_path(config: dict[str, Any], store: str) -> Path:
    """Epoch states of an unfinished run, per profile (so cleaning one profile cleans its states)."""
    return resume_dir() / store / f"{key_hash(config)}.pt"


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order: what a checkpoint holds."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def state_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def save_model(model: torch.nn.Module, path: Path, config: dict[str, Any],
               history: list[dict[str, Any]] | None = None, *, half: bool = False) -> None:
    """half: the weight tensors (floating, over HALF_MIN_NUMEL values) stored in fp16, a committed
    model over the size limit; normalisation constants and batch-norm statistics stay as trained."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() and v.numel() > HALF_MIN_NUMEL else v for k, v in tensors.items()}
    meta = {"config": json.dumps(config, sort_keys=True), "config_hash": key_hash(config),
            "history": json.dumps(history or []), "tensors_sha256": tensors_sha256(tensors),
            "stored_dtype": "float16" if half else "as trained"}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_metadata(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointMismatchError(f"{path} is not a readable safetensors checkpoint ({exc}); "
                                      "delete it and rerun to retrain.") from exc
    return {"config": json.loads(meta.get("config", "{}")), "config_hash": meta.get("config_hash"),
            "history": json.loads(meta.get("history", "[]")), "tensors_sha256": meta.get("tensors_sha256")}


def _manifest_entry(path: Path) -> dict[str, Any] | None:
    try:
        rel = str(Path(path).resolve().relative_to(Path(paths.CHECKPOINTS_DIR).resolve()))
    except ValueError:
        return None
    manifest_file = manifest_path()
    return json.loads(manifest_file.read_text()).get(rel) if manifest_file.exists() else None


def verify_integrity(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """The tensors are the ones written: their sha256 against the metadata's (files written since
    it was added), and the file's sha256 against checkpoints/MANIFEST.json for committed files."""
    problems = []
    if meta.get("tensors_sha256") and tensors_sha256(tensors) != meta["tensors_sha256"]:
        problems.append("its tensors do not match the sha256 stored in its metadata")
    entry = _manifest_entry(path)
    if entry is not None and sha256(path) != entry["sha256"]:
        problems.append("the file does not match its sha256 in checkpoints/MANIFEST.json")
    if problems:
        raise CheckpointMismatchError(f"{path} is corrupted: {'; '.join(problems)}. Delete it and rerun to "
                                      "retrain (or restore it: `git checkout -- <file>` for a committed one).")


def load_model(model: torch.nn.Module, path: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Load weights into `model`, checking that the file was written for `config`; returns history."""
    meta = read_metadata(path)
    if cache_key(meta["config"]) != cache_key(config):
        diff = {k: (meta["config"].get(k), v) for k, v in cache_key(config).items() if meta["config"].get(k) != v}
        raise CheckpointMismatchError(
            f"{path} was trained with a different config (differences, file vs requested: {diff}). "
            "Delete the file to retrain, or request the config it was trained with.")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointMismatchError(f"{path} is not a readable safetensors checkpoint ({exc}); "
                                      "delete it and rerun to retrain.") from exc
    verify_integrity(path, tensors, meta)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointMismatchError(f"{path} does not fit this architecture: {exc}") from exc
    return meta["history"]


def save_resume_state(config: dict[str, Any], store: str, state: dict[str, Any]) -> None:
    atomic_write(resume_path(config, store), lambda tmp: torch.save(state, tmp))


def load_resume_state(config: dict[str, Any], store: str) -> dict[str, Any] | None:
    path = resume_path(config, store)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupted or truncated file
        raise CheckpointMismatchError(f"Resume state {path} is unreadable ({exc}); delete it to "
                                      "restart training from epoch 0.") from exc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def update_manifest(path: Path) -> None:
    """List a committed (cpu-profile) checkpoint with its sha256 and size."""
    path = Path(path)
    size = path.stat().st_size
    if size > COMMIT_LIMIT_BYTES:
        return  # too large to commit: never listed
    manifest_file = manifest_path()
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    manifest[str(path.relative_to(paths.CHECKPOINTS_DIR))] = {
        "sha256": sha256(path), "bytes": size, "config_hash": key_hash(read_metadata(path)["config"])}
    atomic_write_text(manifest_file, json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
