"""What every notebook does first and last: resolve the profile, seed, set the theme, record time."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .figures import set_theme
from .profiles import get_profile
from .results import provenance, require_clean_tree


@dataclass
class Run:
    experiment: str
    profile: dict[str, Any]
    seed: int
    params: dict[str, Any]
    device: torch.device
    started: float = field(default_factory=time.perf_counter)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.profile["name"]

    def provenance(self) -> dict[str, Any]:
        return provenance({"experiment": self.experiment, "profile": self.profile, "params": self.params},
                          wall_time_s=round(time.perf_counter() - self.started, 2))

    def record_fields(self, model: str, config_hash: str) -> dict[str, Any]:
        return {"experiment": self.experiment, "profile": self.name, "model": model, "config_hash": config_hash}

    def record(self, model: str, config_hash: str, dataset: str, metric: str, value: float, n: int, *,
               attack: str = "none", eps: float | None = None, wall_time_s: float = 0.0, **extra: Any) -> None:
        """Append one result record (the notebook saves them all with `save`)."""
        from .results import make_record

        self.records.append(make_record(**self.record_fields(model, config_hash), dataset=dataset, metric=metric,
                                        attack=attack, eps=eps, value=float(value), n=int(n), seed=self.seed,
                                        wall_time_s=float(wall_time_s), extra=extra))

    def save(self, records: list[dict[str, Any]] | None = None):
        """Merge this run's records (and `records`) into results/<profile>/<experiment>.json."""
        from .results import save_records

        path = save_records(self.experiment, self.name, self.records + list(records or []), self.provenance())
        print(f"{len(self.records) + len(records or [])} records -> results/{self.name}/{path.name}")
        return path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def start(experiment: str, PROFILE: str | None, SEED: int = 0, **params: Any) -> Run:
    """Resolve PROFILE (None: $REPLICATION_PROFILE, else smoke), seed everything, print a summary."""
    profile = get_profile(PROFILE)
    require_clean_tree(profile["name"])  # fail before the work, not when saving its results
    seed_everything(SEED)
    set_theme()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if profile["name"] == "full" and device.type != "cuda":
        print("warning: the 'full' profile on a CPU will take days; 'cpu' is the reduced-scale replication.")
    run = Run(experiment, profile, SEED, params, device)
    print(f"experiment={experiment} profile={profile['name']} seed={SEED} device={device.type}")
    print(f"  {profile['description']}")
    return run
