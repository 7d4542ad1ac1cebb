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
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from .figures import save_figure, set_theme
from .profiles import Profile, get_profile
from .results import (asked_hashes, make_record, metric_units, new_run_id, provenance, record_key,
                      require_clean_tree, save_records, stored, validate_record)
from .results import REPORTED_PROFILES
from .results import prune as drop_records_of_other_models

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

    def record_once(self, compute: Callable[[], float | None | dict[str, Any]], *, model: str | None, data: str,
                    metric: str, n: int, match_n: bool = True, **fields: Any) -> dict[str, Any]:
        """run.record(...) of a measurement made only when the results file does not hold it yet
        (results.stored: the stored record is appended, keeping the run that measured it).
        compute() gives the value, or a dict of record fields (value, n, wall_time_s, extra)."""
        own = {k: fields.pop(k) for k in ("model_hash", "attack", "eps", "eps_reading") if k in fields}
        old = stored(self._template(model, data, metric, n, own, fields), match_n=match_n)
        if old is not None:
            self.records.append(old)
            return old
        t0 = time.perf_counter()
        got = compute()
        got = dict(got) if isinstance(got, dict) else {"value": got}
        got.setdefault("wall_time_s", time.perf_counter() - t0)
        return self.record(model=model, data=data, metric=metric, n=got.pop("n", n), **own, **got, **fields)

    def _template(self, model, data, metric, n, own: dict[str, Any], setting: dict[str, Any]) -> dict[str, Any]:
        """The record a measurement would make, without its value: what results.stored looks up."""
        return make_record(**self.context(model=model, model_hash=own.get("model_hash"), **setting), dataset=data,
                           metric=metric, attack=own.get("attack"), eps=own.get("eps"),
                           eps_reading=own.get("eps_reading"), value=None, n=int(n), seed=self.seed)

    def records_once(self, compute: Callable[[], Mapping[str, float | None]], metrics: Iterable[str], *,
                     model: str | None, data: str, n: int, extra: dict[str, Any] | None = None,
                     **fields: Any) -> dict[str, dict[str, Any]]:
        """record_once for several metrics that one computation measures together (a benchmark's
        timings, a pair of LIME runs): compute() -> {metric: value} runs only when the results file
        lacks any of them, and then records them all. Returns {metric: record}."""
        metrics = list(metrics)
        own = {k: fields.pop(k) for k in ("model_hash", "attack", "eps", "eps_reading") if k in fields}
        old = {m: stored(self._template(model, data, m, n, own, fields)) for m in metrics}
        if all(r is not None for r in old.values()):
            self.records += old.values()
            return old
        t0 = time.perf_counter()
        got = dict(compute())
        if set(got) != set(metrics):
            raise ValueError(f"records_once: compute() measured {sorted(got)}, expected {sorted(metrics)}")
        secs = time.perf_counter() - t0
        return {m: self.record(model=model, data=data, metric=m, value=got[m], n=n, wall_time_s=secs,
                               extra=extra, **own, **fields) for m in metrics}

    def train_time(self, tr: Any, *, model: str, data: str, extra: dict[str, Any] | None = None,
                   with_history: bool = False, **setting: Any) -> dict[str, Any]:
        """The train_time_s record of a trained model `tr` (its history is read, so a lazy model
        built, only when the record is missing): the sum of its epochs' seconds, n = its epochs;
        with_history: the per-epoch history in its extra."""
        def compute():
            secs = sum(h.get("epoch_time_s", 0) for h in tr.history)
            more = {"history": tr.history} if with_history else {}
            return {"value": secs, "n": len(tr.history), "wall_time_s": secs, "extra": {**(extra or {}), **more}}
        return self.record_once(compute, model=model, model_hash=tr.config_hash, data=data, metric="train_time_s",
                                n=0, match_n=False, **setting)

    def figure_data(self, name: str, key: Any, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The tensors a figure draws, stored beside the results (results/<profile>/figure_data/
        <name>-<hash of key>.safetensors, committed with them), so a rerun redraws the figure without
        building a model or crafting an attack. `key`: what the tensors depend on (model hashes,
        images, seeds)."""
        from safetensors.torch import load_file, save_file

        from .cache import atomic_write, stable_hash
        from .paths import results_dir

        path = results_dir(self.profile.name) / "figure_data" / f"{name}-{stable_hash(key)}.safetensors"
        if path.exists():
            return load_file(str(path))
        tensors = {k: v.detach().cpu().contiguous() for k, v in compute().items()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"key": json.dumps(key, sort_keys=True, default=str)}))
        return tensors

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

    def save(self, quiet: bool = False) -> Path:
        """Merge this run's records into results/<profile>/<experiment>.json (atomically)."""
        path = save_records(self.experiment, self.profile.name, self.records, self.provenance())
        if not quiet:
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
        self.prune()
        return None

    def prune(self) -> list[dict[str, Any]]:
        """The notebook ran to its end (check is its last call): drop from its results file the
        records of models this run neither recorded nor looked up, i.e. models today's code no
        longer builds (results.prune). In a reported profile it says what it dropped."""
        keep = asked_hashes(self.experiment, self.profile.name) | {r["model_hash"] for r in self.records if r["model_hash"]}
        dropped = drop_records_of_other_models(self.experiment, self.profile.name, keep)
        if dropped and self.profile.name in REPORTED_PROFILES:  # smoke prunes quietly: its check cell's output is compared
            models = sorted({f"{r['model']} {r['model_hash']}" for r in dropped})
            print(f"dropped {len(dropped)} records of {len(models)} models today's code no longer builds: " + "; ".join(models))
        return dropped


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


def start(experiment: str, params: Mapping[str, Any] | None = None, *, writes: bool = True) -> Run:
    """Resolve PROFILE (None: $REPLICATION_PROFILE, else smoke), seed everything with SEED, print a
    summary. Parameters are the caller's UPPER_CASE literals (its parameters cell) unless given.
    writes=False: a caller that only reads may start in a dirty tree (saving still refuses one)."""
    if params is None:
        caller = inspect.currentframe().f_back
        params = parameters_from(caller.f_globals)
    params = dict(params)
    profile = get_profile(params.get("PROFILE"))
    seed = int(params.get("SEED", 0))
    if writes:
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
