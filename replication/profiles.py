"""Run profiles (smoke / cpu / full), read from data_files/profiles.yaml."""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import yaml

from .paths import DATA_FILES_DIR

ENV_VAR = "REPLICATION_PROFILE"
DEFAULT_PROFILE = "smoke"


class UnknownProfileError(ValueError):
    pass


@lru_cache(maxsize=None)
def _all_profiles() -> dict[str, dict[str, Any]]:
    with open(DATA_FILES_DIR / "profiles.yaml") as f:
        return yaml.safe_load(f)


def profile_names() -> list[str]:
    return list(_all_profiles())


def resolve_profile(name: str | None = None) -> str:
    """`name` if given, else $REPLICATION_PROFILE, else 'smoke'; unknown names are an error."""
    chosen = name or os.environ.get(ENV_VAR) or DEFAULT_PROFILE
    if chosen not in _all_profiles():
        raise UnknownProfileError(
            f"Unknown profile {chosen!r}. Choose one of {profile_names()} "
            f"(set PROFILE in the notebook's parameters cell or ${ENV_VAR}); "
            "profiles are defined in replication/data_files/profiles.yaml."
        )
    return chosen


def get_profile(name: str | None = None) -> dict[str, Any]:
    """The profile's settings, with its name under 'name'."""
    chosen = resolve_profile(name)
    return {"name": chosen, **_all_profiles()[chosen]}
