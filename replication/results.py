"""Result records: a fixed schema, provenance, atomic JSON files, and the papers' numbers as data.

A results file is results/<profile>/<experiment>.json:
    {"schema_version": 1, "experiment": ..., "profile": ..., "provenance": {...}, "records": [...]}
Each record has exactly RECORD_FIELDS (plus optional `extra`). Tables and plots are rendered from
these files, never typed by hand.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from . import paths
from .paths import DATA_FILES_DIR

SCHEMA_VERSION = 1
RECORD_FIELDS = {
    "experiment": str, "dataset": str, "model": str, "metric": str, "attack": str,
    "eps": (float, int, type(None)), "value": (float, int), "n": int, "seed": int, "profile": str,
    "config_hash": str, "wall_time_s": (float, int),
}
OPTIONAL_FIELDS = {"extra": dict}
# What identifies a record: a rerun replaces the record with the same key.
KEY_FIELDS = ("experiment", "dataset", "model", "metric", "attack", "eps", "seed", "profile")
PACKAGES = ("torch", "torchvision", "numpy", "lime", "captum", "diffusers", "torchattacks",
            "accelerate", "safetensors", "papermill")


class SchemaError(ValueError):
    pass


def make_record(**fields: Any) -> dict[str, Any]:
    rec = {k: fields.get(k) for k in RECORD_FIELDS}
    if "extra" in fields:
        rec["extra"] = fields["extra"]
    validate_record(rec)
    return rec


def validate_record(rec: dict[str, Any]) -> None:
    missing = set(RECORD_FIELDS) - set(rec)
    unknown = set(rec) - set(RECORD_FIELDS) - set(OPTIONAL_FIELDS)
    if missing or unknown:
        raise SchemaError(f"record fields: missing {sorted(missing)}, unknown {sorted(unknown)}")
    for k, typ in {**RECORD_FIELDS, **OPTIONAL_FIELDS}.items():
        if k in rec and not isinstance(rec[k], typ) or isinstance(rec.get(k), bool):
            raise SchemaError(f"record field {k!r}={rec.get(k)!r} should be {typ}")


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of canonical JSON: the same config always gives the same hash."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


# What a reported number depends on: a change here, committed or not, changes the numbers. Outputs
# (results/, figures/, checkpoints/, the README's rendered block) are not in it, so a `cpu` run
# writing notebook 00's results does not make notebook 01's run dirty.
CODE_PATHS = ("replication", "notebooks", "pyproject.toml", "environment.yml", "Makefile")
REPORTED_PROFILES = ("cpu", "full")
ALLOW_DIRTY_ENV = "REPLICATION_ALLOW_DIRTY"


class DirtyTreeError(RuntimeError):
    pass


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise OSError(out.stderr.strip())
    return out.stdout  # unstripped: porcelain status lines start with a space


def code_changes() -> list[str]:
    """Uncommitted changes (tracked or new, not ignored) to the code in CODE_PATHS; [] outside git."""
    try:
        status = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in status.splitlines()]


def git_commit() -> str:
    """HEAD's commit, with '+dirty' when the code that makes the numbers has uncommitted changes."""
    try:
        commit = _git("rev-parse", "HEAD").strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if code_changes() else "")


def require_clean_tree(profile: str) -> None:
    """Reported profiles (cpu, full) only write numbers that committed code made."""
    if profile not in REPORTED_PROFILES or os.environ.get(ALLOW_DIRTY_ENV):
        return
    changes = code_changes()
    if changes:
        shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise DirtyTreeError(
            f"Profile {profile!r} writes reported numbers, and the code has uncommitted changes ({shown}). "
            f"Commit them first, so the results name the code that made them; or set {ALLOW_DIRTY_ENV}=1 "
            "to write results marked dirty (the report flags them).")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_description() -> str:
    import torch
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    from .hardware import cpu_description
    c = cpu_description()
    return (f"cpu: {c['model']} ({c['machine']}, {c['isa']}, oneDNN {c['onednn']}), "
            f"{c['threads']} threads")


def provenance(config: dict[str, Any] | None = None, wall_time_s: float | None = None) -> dict[str, Any]:
    commit = git_commit()
    return {
        "git_commit": commit,
        "dirty": commit.endswith("+dirty"),
        "packages": package_versions(),
        "device": device_description(),
        "host": platform.node(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config or {},
        "config_hash": stable_hash(config or {}),
        "wall_time_s": wall_time_s,
    }


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


def results_path(experiment: str, profile: str) -> Path:
    return paths.results_dir(profile) / f"{experiment}.json"


def load_results(experiment: str, profile: str) -> dict[str, Any]:
    path = results_path(experiment, profile)
    if not path.exists():
        raise FileNotFoundError(f"No results at {path}: run the notebook that writes "
                                f"{experiment!r} in profile {profile!r} first.")
    doc = json.loads(path.read_text())
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise SchemaError(f"{path}: schema_version {doc.get('schema_version')} != {SCHEMA_VERSION}")
    for rec in doc["records"]:
        validate_record(rec)
    return doc


def save_records(experiment: str, profile: str, records: Iterable[dict[str, Any]],
                 prov: dict[str, Any]) -> Path:
    """Merge `records` into the experiment's file (same key = replaced) and write it atomically."""
    require_clean_tree(profile)
    records = list(records)
    for rec in records:
        validate_record(rec)
        if rec["profile"] != profile or rec["experiment"] != experiment:
            raise SchemaError(f"record {rec} does not belong to {experiment}/{profile}")
    path = results_path(experiment, profile)
    old = json.loads(path.read_text())["records"] if path.exists() else []
    key = lambda r: tuple(r[k] for k in KEY_FIELDS)  # noqa: E731
    merged = {key(r): r for r in old}
    merged.update({key(r): r for r in records})
    doc = {"schema_version": SCHEMA_VERSION, "experiment": experiment, "profile": profile,
           "provenance": prov, "records": list(merged.values())}
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path


def records_frame(records: Iterable[dict[str, Any]]):
    import pandas as pd
    return pd.DataFrame(list(records))


def paper_reference(paper: str) -> dict[str, Any]:
    """The paper's reported numbers ('a' or 'b'), as transcribed in data_files/."""
    name = {"a": "paper_a_reported.yaml", "b": "paper_b_reported.yaml"}.get(paper.lower())
    if name is None:
        raise ValueError("paper must be 'a' or 'b'")
    with open(DATA_FILES_DIR / name) as f:
        return yaml.safe_load(f)


def paper_a_baseline_points(dataset: str) -> list[dict[str, Any]]:
    """Paper A's quoted baseline/refined points for 'cifar10' (Fig. 3) or 'cifar100' (Fig. 4)."""
    ref = paper_reference("a")
    return ref["fig3_cifar10" if dataset == "cifar10" else "fig4_cifar100"]
