"""`Run`: what every notebook does first and last, and the only way a notebook writes results.

    run = notebook.start("01_baseline_training")   # parameters: the UPPER_CASE names defined so far
    run.record(model=..., data=..., metric=..., value=..., n=..., **setting)
    run.add(evaluate.evaluate(..., context=run.context(model=..., model_hash=...)))
    run.figure(fig, "01_training_curves")
    run.save(); run.check(...)

`run.profile` is the validated, frozen Profile; library functions get the part they need.
"""
from __future__ import annotations

import inspect
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from .figures import save_figure, set_theme
from .profiles import Profile, get_profile
from .results import (make_record, metric_units, new_run_id, provenance, record_key, require_clean_tree,
                      save_records, validate_record)

FRACTION = "fraction"


class CheckFailed(AssertionError):
    pass


def _is_literal(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def parameters_from(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's parameters: its UPPER_CASE names holding literals (the tagged parameters cell,
    after papermill's injected values). Notebooks import modules, never UPPER_CASE names."""
    return {k: v for k, v in namespace.items()
            if k.isupper() and not k.startswith("_") and _is_literal(v)}


@dataclass
class Run:
    experiment: str
    profile: Profile
    seed: int
    params: dict[str, Any]
    device: torch.device
    run_id: str = field(default_factory=new_run_id)
    started: float = field(default_factory=time.perf_counter)
    records: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def context(self, *, model: str | None, model_hash: str | None = None, **setting: Any) -> dict[str, Any]:
        """What a library function needs to make this run's records for `model` in `setting`."""
        return {"experiment": self.experiment, "profile": self.profile.name, "run_id": self.run_id,
                "model": model, "model_hash": model_hash, "setting": setting}

    def record(self, *, model: str | None, data: str, metric: str, value: float | None, n: int,
               model_hash: str | None = None, attack: dict | None = None, eps: float | None = None,
               eps_reading: str | None = None, wall_time_s: float | None = None,
               extra: dict[str, Any] | None = None, **setting: Any) -> dict[str, Any]:
        """Append one measurement; keyword arguments beyond the record's own fields are its setting."""
        rec = make_record(**self.context(model=model, model_hash=model_hash, **setting), dataset=data,
                          metric=metric, attack=attack, eps=eps, eps_reading=eps_reading, value=value, n=int(n),
                          seed=self.seed, wall_time_s=wall_time_s, extra=extra or {})
        self.records.append(rec)
        return rec

    def add(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append records a library function made from `run.context(...)`."""
        records = list(records)
        for r in records:
            validate_record(r)
            if (r["experiment"], r["profile"]) != (self.experiment, self.profile.name):
                raise ValueError(f"record for {r['experiment']}/{r['profile']} added to {self.experiment}/{self.profile.name}")
        self.records += records
        return records

    def figure(self, fig, name: str) -> list[Path]:
        """Save `fig` as figures/<profile>/<name>.png and .pdf, marked with the profile that made it."""
        fig.text(0.995, 0.003, f"profile {self.profile.name}", ha="right", va="bottom", fontsize=7, color="0.4")
        saved = save_figure(fig, name, self.profile.name)
        self.figures += saved
        return saved

    def provenance(self) -> dict[str, Any]:
        from .hardware import resolve_precision

        return provenance({"experiment": self.experiment, "profile": self.profile.to_dict(), "params": self.params},
                          wall_time_s=round(time.perf_counter() - self.started, 2), run_id=self.run_id,
                          precision=resolve_precision("auto", self.device))

    def save(self) -> Path:
        """Merge this run's records into results/<profile>/<experiment>.json (atomically)."""
        path = save_records(self.experiment, self.profile.name, self.records, self.provenance())
        print(f"{len(self.records)} records -> results/{self.profile.name}/{path.name}")
        return path

    def check(self, *, metrics: Mapping[str, int] | None = None, slack_images: int = 2,
              monotone: Iterable[str] | None = None, **invariants: bool) -> None:
        """Fail loudly if this run's numbers are impossible. Always: at least one record, each valid,
        no two with the same key, fractions in [0,1], clean accuracy >= attacked accuracy, and attacked
        accuracy non-increasing in eps for each attack (both within `slack_images` images: one
        adversarial step can turn a wrong prediction right). `monotone`: the attack names held to
        that (None: all; FGSM's single step is known not to be monotone on some data, e.g. blurred
        images, which a notebook then reports rather than asserts). `metrics`: {metric: exact count}.
        Keyword invariants: {description: bool} of the notebook's own."""
        problems = []
        recs = self.records
        if not recs:
            problems.append("no records")
        keys = [record_key(r) for r in recs]
        if len(set(keys)) != len(keys):
            problems.append(f"{len(keys) - len(set(keys))} records share a key with another")
        units = metric_units()
        for r in recs:
            validate_record(r)
            v = r["value"]
            if units[r["metric"]]["unit"] == FRACTION and v is not None and not 0.0 <= v <= 1.0:
                problems.append(f"{r['metric']} = {v} outside [0, 1] ({r['model']}, {r['setting']})")
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in recs:
            if r["metric"] in ("accuracy", "robust_accuracy"):  # clean and attacked records of one model on one set
                g = json.dumps([r["dataset"], r["model"], r["model_hash"], r["setting"], r["n"]], sort_keys=True)
                groups.setdefault(g, []).append(r)
        for g, rs in groups.items():
            slack = slack_images / rs[0]["n"] + 1e-12
            clean = [r["value"] for r in rs if r["attack"] is None]
            by_attack: dict[str, list[tuple[float, float]]] = {}
            for r in rs:
                if r["attack"] is not None:
                    if monotone is None or r["attack"]["name"] in monotone:
                        by_attack.setdefault(json.dumps({k: v for k, v in r["attack"].items() if k != "step_size"},
                                                        sort_keys=True), []).append((r["eps"], r["value"]))
                    if clean and r["value"] > clean[0] + slack:
                        problems.append(f"{r['attack']['name']} @ {r['eps']:.4g} ({r['value']:.4f}) above clean "
                                        f"({clean[0]:.4f}) for {r['model']} {r['setting']}")
            for a, pts in by_attack.items():
                pts.sort()
                for (e0, v0), (e1, v1) in zip(pts, pts[1:]):
                    if v1 > v0 + slack:
                        problems.append(f"{a} accuracy rises from {v0:.4f} @ {e0:.4g} to {v1:.4f} @ {e1:.4g} "
                                        f"for {rs[0]['model']} {rs[0]['setting']}")
        for metric, count in (metrics or {}).items():
            got = sum(r["metric"] == metric for r in recs)
            if got != count:
                problems.append(f"{got} {metric} records, expected {count}")
        problems += [f"invariant failed: {name}" for name, ok in invariants.items() if not ok]
        if problems:
            raise CheckFailed(f"{self.experiment} ({self.profile.name}): " + "; ".join(problems))
        summary = (f"checks passed: {len(recs)} records, {len(groups)} accuracy groups, "
                   f"{len(invariants)} notebook invariants")
        print(summary)
        return None


def frame_html(df) -> str:
    """A DataFrame as the notebook shows it, with an en dash where a column does not apply (NaN/None)."""
    import pandas as pd

    return df.to_html(na_rep="–", notebook=True, max_rows=pd.get_option("display.max_rows"),
                      max_cols=pd.get_option("display.max_columns"), show_dimensions=False)


def frame_text(df) -> str:
    import pandas as pd

    return df.to_string(na_rep="–", max_rows=pd.get_option("display.max_rows"),
                        max_cols=pd.get_option("display.max_columns"))


def _display_missing_as_dash() -> None:
    """In IPython, tables show an en dash instead of NaN (both the HTML and the text form)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    import pandas as pd

    ip.display_formatter.formatters["text/html"].for_type(pd.DataFrame, frame_html)
    ip.display_formatter.formatters["text/plain"].for_type(pd.DataFrame, lambda df, p, cycle: p.text(frame_text(df)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def start(experiment: str, params: Mapping[str, Any] | None = None) -> Run:
    """Resolve PROFILE (None: $REPLICATION_PROFILE, else smoke), seed everything with SEED, print a
    summary. Parameters are the caller's UPPER_CASE literals (its parameters cell) unless given."""
    if params is None:
        caller = inspect.currentframe().f_back
        params = parameters_from(caller.f_globals)
    params = dict(params)
    profile = get_profile(params.get("PROFILE"))
    seed = int(params.get("SEED", 0))
    require_clean_tree(profile.name)  # fail before the work, not when saving its results
    seed_everything(seed)
    set_theme()
    _display_missing_as_dash()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if profile.name == "full" and device.type != "cuda":
        print("warning: the 'full' profile on a CPU will take days; 'cpu' is the reduced-scale replication.")
    run = Run(experiment, profile, seed, params, device)
    print(f"experiment={experiment} profile={profile.name} seed={seed} device={device.type}")
    print(f"  {profile.description}")
    return run
