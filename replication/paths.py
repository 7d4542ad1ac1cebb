"""Filesystem locations, resolved from the package (never from the working directory)."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
CHECKPOINTS_DIR = PROJECT_ROOT / "checkpoints"
CACHE_DIR = PROJECT_ROOT / ".cache"
DATA_FILES_DIR = PACKAGE_DIR / "data_files"


def data_root() -> Path:
    """Where CIFAR lives: $REPLICATION_DATA, else <project>/data."""
    return Path(os.environ.get("REPLICATION_DATA", PROJECT_ROOT / "data")).expanduser().resolve()


def data_mirror() -> Path:
    """A local byte-exact mirror (see ../shared/data); $REPLICATION_DATA_MIRROR overrides."""
    return Path(os.environ.get("REPLICATION_DATA_MIRROR", PROJECT_ROOT.parent / "shared" / "data")).resolve()


def results_dir(profile: str) -> Path:
    return PROJECT_ROOT / "results" / profile


def executed_dir(profile: str) -> Path:
    # smoke outputs live under results/smoke/ (git-ignored); others under results/executed/<profile>/
    if profile == "smoke":
        return PROJECT_ROOT / "results" / "smoke" / "executed"
    return PROJECT_ROOT / "results" / "executed" / profile


def figures_dir(profile: str) -> Path:
    return PROJECT_ROOT / "figures" / profile


def checkpoints_dir(profile: str) -> Path:
    return CHECKPOINTS_DIR / profile


def manifest_path() -> Path:
    """The committed checkpoints' sha256 list. A function, like every path here, so that tests that
    point CHECKPOINTS_DIR / PROJECT_ROOT at a temporary directory move this too."""
    return CHECKPOINTS_DIR / "MANIFEST.json"


def cache_dir() -> Path:
    """Derived, regenerable data (identification scores, resume states); git-ignored."""
    return CACHE_DIR


def resume_dir() -> Path:
    return CACHE_DIR / "resume"
