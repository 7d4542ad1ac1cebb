"""Result records: schema v2, provenance per run, atomic JSON files, and `query`.

A results file is results/<profile>/<experiment>.json:
    {"schema_version": 2, "experiment": ..., "profile": ...,
     "runs": [{"run_id", "git_commit", "dirty", "packages", "device", "config", "wall_time_s", ...}],
     "records": [...]}
A record says what was measured and by which run (`run_id`), with the structure in fields, never in
strings: `model` is a registry name (or null when no model is involved), `setting` a flat dict of
what varies (refinement variant, fine-tuning seed, lambda, round, training eps and its reading,
rule, segmentation, ...), `attack` a dict (name, steps, restarts, eot, step_size) or null for clean
inputs, `eps` a float on [0,1] pixels with `eps_reading` ("pixel" / "normalised": how the paper's
eps was read to give it). Every metric has one documented unit (data_files/metrics.yaml). Missing
is null. Merging a rerun replaces records with the same key and keeps the run that measured each
record, so a file never claims that one run measured what another did. Tables, figures and the
README block read records through `query`, which returns a DataFrame.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import paths
from .cache import atomic_write, atomic_write_text, stable_hash  # noqa: F401 (re-exported)
from .paths import DATA_FILES_DIR

SCHEMA_VERSION = 2
SCALAR = (str, int, float, bool, type(None))
RECORD_FIELDS = {
    "experiment": str, "dataset": str, "model": (str, type(None)), "setting": dict, "metric": str,
    "attack": (dict, type(None)), "eps": (float, int, type(None)), "eps_reading": (str, type(None)),
    "value": (float, int, type(None)), "n": int, "seed": int, "profile": str, "run_id": str,
    "model_hash": (str, type(None)), "wall_time_s": (float, int, type(None)),
}
OPTIONAL_FIELDS = {"extra": dict}  # payload nothing is keyed on (e.g. a training history)
ATTACK_FIELDS = {"name": str, "steps": int, "restarts": int, "eot": int, "step_size": (float, int, type(None))}
EPS_READINGS = ("pixel", "normalised")
# What identifies a record: a rerun replaces the record with the same key.
KEY_FIELDS = ("experiment", "dataset", "model", "setting", "metric", "attack", "eps", "seed", "profile")
PACKAGES = ("torch", "torchvision", "numpy", "lime", "captum", "diffusers", "torchattacks",
            "accelerate", "safetensors", "papermill")


class SchemaError(ValueError):
    pass


@lru_cache(maxsize=None)
def metric_units() -> dict[str, dict[str, str]]:
    """{metric: {"unit": ..., "description": ...}} from data_files/metrics.yaml."""
    with open(DATA_FILES_DIR / "metrics.yaml") as f:
        return yaml.safe_load(f)


def canonical_eps(eps: float | None) -> float | None:
    """The one place eps is normalised: 12 significant digits, so 0.01 * std computed twice (or read
    back from JSON) is the same key everywhere."""
    return None if eps is None else float(f"{float(eps):.12g}")


def attack_spec(name: str, *, steps: int = 1, restarts: int = 1, eot: int = 1,
                step_size: float | None = None) -> dict[str, Any]:
    """An attack as record fields: {"name", "steps", "restarts", "eot", "step_size"}."""
    return {"name": name, "steps": int(steps), "restarts": int(restarts), "eot": int(eot),
            "step_size": canonical_eps(step_size)}


def make_record(**fields: Any) -> dict[str, Any]:
    unknown = set(fields) - set(RECORD_FIELDS) - set(OPTIONAL_FIELDS)
    if unknown:
        raise SchemaError(f"unknown record fields {sorted(unknown)}; what varies goes in `setting`")
    rec = {k: fields.get(k) for k in RECORD_FIELDS}
    rec["setting"] = dict(fields.get("setting") or {})
    rec["eps"] = canonical_eps(rec["eps"])
    for k in ("value", "wall_time_s"):
        if isinstance(rec[k], (int, float)) and not isinstance(rec[k], bool):
            rec[k] = None if rec[k] != rec[k] else float(rec[k])  # NaN (undefined) is stored as null
    if fields.get("extra"):
        rec["extra"] = fields["extra"]
    validate_record(rec)
    return rec


def validate_record(rec: dict[str, Any]) -> None:
    missing = set(RECORD_FIELDS) - set(rec)
    unknown = set(rec) - set(RECORD_FIELDS) - set(OPTIONAL_FIELDS)
    if missing or unknown:
        raise SchemaError(f"record fields: missing {sorted(missing)}, unknown {sorted(unknown)}")
    for k, typ in {**RECORD_FIELDS, **OPTIONAL_FIELDS}.items():
        if k in rec and (not isinstance(rec[k], typ) or isinstance(rec[k], bool)):
            raise SchemaError(f"record field {k!r}={rec.get(k)!r} should be {typ}")
    if rec["metric"] not in metric_units():
        raise SchemaError(f"metric {rec['metric']!r} is not documented: add it, with its unit, to "
                          "replication/data_files/metrics.yaml")
    for k, v in rec["setting"].items():
        ok = isinstance(v, SCALAR) or (isinstance(v, list) and all(isinstance(i, SCALAR) for i in v))
        if not ok or k in RECORD_FIELDS or k in ATTACK_COLUMNS:
            raise SchemaError(f"setting {k!r}={v!r}: settings are flat (scalars or lists of scalars) and "
                              "may not reuse a record field's name")
    if rec["attack"] is not None:
        a = rec["attack"]
        if set(a) != set(ATTACK_FIELDS) or any(not isinstance(a[k], t) for k, t in ATTACK_FIELDS.items()):
            raise SchemaError(f"attack {a!r} should have exactly {sorted(ATTACK_FIELDS)} (use attack_spec)")
    if rec["eps_reading"] not in (None, *EPS_READINGS):
        raise SchemaError(f"eps_reading {rec['eps_reading']!r} should be one of {EPS_READINGS} or null")


def record_key(rec: dict[str, Any]) -> str:
    return json.dumps([rec[k] for k in KEY_FIELDS], sort_keys=True)


# What describes a measurement: which trained model (its hash), on which data and images (dataset,
# n, seed), in which setting, with which attack at which eps. Two records with the same measurement
# key are the same measurement, so the second is never made: the one record-reuse rule of every
# notebook (`Ledger`).
MEASUREMENT_FIELDS = ("experiment", "profile", "model", "model_hash", "dataset", "setting", "metric", "attack",
                      "eps", "seed", "n")


def measurement_key(rec: dict[str, Any], fields: tuple[str, ...] = MEASUREMENT_FIELDS) -> str:
    return json.dumps([canonical_eps(rec[k]) if k == "eps" else rec[k] for k in fields], sort_keys=True)


_ANY_N = tuple(f for f in MEASUREMENT_FIELDS if f != "n")
_LEDGERS: dict[Path, tuple[tuple[int, int], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]] = {}


def _ledger(experiment: str, profile: str):
    path = results_path(experiment, profile)
    try:
        st = path.stat()
    except FileNotFoundError:
        return (None, {}, {})
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _LEDGERS.get(path)
    if cached is None or cached[0] != stamp:
        records = load_results(experiment, profile)["records"]
        cached = (stamp, {measurement_key(r): r for r in records}, {measurement_key(r, _ANY_N): r for r in records})
        _LEDGERS[path] = cached
    return cached


def ledger(experiment: str, profile: str) -> dict[str, dict[str, Any]]:
    """{measurement_key: record} of the experiment's results file ({} when there is none); read
    again only when the file changed, so a loop may ask per measurement."""
    return _ledger(experiment, profile)[1]


# {(experiment, profile): model hashes this process asked the results file about}: with the hashes
# of the records a run adds, the models today's code still builds (see `prune`).
_ASKED: dict[tuple[str, str], set[str]] = {}


def _asked(experiment: str, profile: str, *hashes: str | None) -> None:
    _ASKED.setdefault((experiment, profile), set()).update(h for h in hashes if h)


def asked_hashes(experiment: str, profile: str) -> set[str]:
    return set(_ASKED.get((experiment, profile), ()))


def stored(template: dict[str, Any], *, match_n: bool = True) -> dict[str, Any] | None:
    """The record already measured as `template` describes (a record, or a dict with the
    MEASUREMENT_FIELDS; its value is ignored), keeping the run that measured it; else None.
    match_n=False: for records whose n is an outcome (the images a score could be computed on),
    not a choice of images; the images are then fixed by the dataset and the setting."""
    _asked(template["experiment"], template["profile"], template.get("model_hash"))
    _, by_key, any_n = _ledger(template["experiment"], template["profile"])
    return by_key.get(measurement_key(template)) if match_n else any_n.get(measurement_key(template, _ANY_N))


def stored_all(templates: Iterable[dict[str, Any]], *, match_n: bool = True) -> list[dict[str, Any]] | None:
    """The stored records of every template, or None when any is missing."""
    out = []
    for t in templates:
        r = stored(t, match_n=match_n)
        if r is None:
            return None
        out.append(r)
    return out


def stored_where(experiment: str, profile: str, **where: Any) -> list[dict[str, Any]]:
    """Stored records whose fields equal `where` (setting keys go in `setting`: a dict that must be
    contained in the record's setting; `metric` may be a list)."""
    setting = where.pop("setting", None) or {}
    metrics = where.pop("metric", None)
    metrics = None if metrics is None else set([metrics] if isinstance(metrics, str) else metrics)
    found = [r for r in ledger(experiment, profile).values()
             if all(r[k] == v for k, v in where.items()) and (metrics is None or r["metric"] in metrics)
             and all(r["setting"].get(k) == v for k, v in setting.items())]
    _asked(experiment, profile, where.get("model_hash"), *(r["model_hash"] for r in found))
    return found


def prune(experiment: str, profile: str, keep_hashes: set[str]) -> list[dict[str, Any]]:
    """Drop from the experiment's file the records of models whose hash is not in `keep_hashes`
    (records without a model hash stay): after a notebook ran to its end, the records of models
    today's code no longer builds, e.g. a refined model whose recipe changed. Returns the dropped
    records (git keeps them); the file is rewritten atomically, and only when something is dropped."""
    path = results_path(experiment, profile)
    if not path.exists():
        return []
    require_clean_tree(profile)
    with _locked(path):
        doc = load_results(experiment, profile)
        dropped = [r for r in doc["records"] if r.get("model_hash") and r["model_hash"] not in keep_hashes]
        if dropped:
            doc["records"] = [r for r in doc["records"] if not (r.get("model_hash") and r["model_hash"] not in keep_hashes)]
            used = {r["run_id"] for r in doc["records"]}
            doc["runs"] = [r for r in doc["runs"] if r["run_id"] in used]
            atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return dropped


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


def new_run_id() -> str:
    """Sortable and unique: UTC time to the second plus 6 random hex digits."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def provenance(config: dict[str, Any] | None = None, wall_time_s: float | None = None, *,
               run_id: str | None = None, precision: str | None = None) -> dict[str, Any]:
    """Who measured: one entry of a results file's `runs`."""
    commit = git_commit()
    return {
        "run_id": run_id or new_run_id(),
        "git_commit": commit,
        "dirty": commit.endswith("+dirty"),
        "packages": package_versions(),
        "device": device_description(),
        "host": platform.node(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config or {},
        "config_hash": stable_hash(config or {}),
        "wall_time_s": wall_time_s,
        "precision": precision,
    }


def results_path(experiment: str, profile: str) -> Path:
    return paths.results_dir(profile) / f"{experiment}.json"


def load_results(experiment: str, profile: str) -> dict[str, Any]:
    path = results_path(experiment, profile)
    if not path.exists():
        raise FileNotFoundError(f"No results at {path}: run the notebook that writes "
                                f"{experiment!r} in profile {profile!r} first.")
    doc = json.loads(path.read_text())
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise SchemaError(f"{path}: schema_version {doc.get('schema_version')} != {SCHEMA_VERSION}; schema-1 files "
                          "convert with the converter in git history (replication/results_v1.py before issue 26)")
    runs = {r["run_id"] for r in doc["runs"]}
    for rec in doc["records"]:
        validate_record(rec)
        if rec["run_id"] not in runs:
            raise SchemaError(f"{path}: a record points at run {rec['run_id']!r}, which the file does not list")
    return doc


def save_records(experiment: str, profile: str, records: Iterable[dict[str, Any]],
                 run: dict[str, Any]) -> Path:
    """Merge `records` into the experiment's file (same key = replaced) and write it atomically.

    `run` is the provenance of the run that writes (with its run_id). Records keep the run that
    measured them (a record reused from an earlier run keeps that run's id, and so does one this run
    made again with the same outcome), and runs no record points at any more are dropped."""
    require_clean_tree(profile)
    records = list(records)
    for rec in records:
        validate_record(rec)
        if rec["profile"] != profile or rec["experiment"] != experiment:
            raise SchemaError(f"record {rec} does not belong to {experiment}/{profile}")
    path = results_path(experiment, profile)
    with _locked(path):  # jobs running in parallel (a SLURM array of seeds) merge, never overwrite
        return _merge_and_write(path, experiment, profile, records, run)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on <path>.lock for the read-merge-write of a results file."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _merge_and_write(path: Path, experiment: str, profile: str, records: list[dict[str, Any]],
                     run: dict[str, Any]) -> Path:
    old = load_results(experiment, profile) if path.exists() else {"runs": [], "records": []}
    merged = {record_key(r): r for r in old["records"]}
    for r in records:
        before = merged.get(record_key(r))
        if before is None or not _same_outcome(before, r):  # a rerun that reproduces a record keeps its run
            merged[record_key(r)] = r
    runs = {r["run_id"]: r for r in old["runs"]}
    runs[run["run_id"]] = run
    used = {r["run_id"] for r in merged.values()}
    missing = used - set(runs)
    if missing:
        raise SchemaError(f"records point at runs {sorted(missing)} that neither the file nor this run is")
    doc = {"schema_version": SCHEMA_VERSION, "experiment": experiment, "profile": profile,
           "runs": [r for r in runs.values() if r["run_id"] in used], "records": list(merged.values())}
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path


def _same_outcome(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same record but for who measured it and how long it took (a summary recomputed from
    stored records, or a measurement reproduced to the bit)."""
    skip = ("run_id", "wall_time_s")
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


ATTACK_COLUMNS = ("attack_steps", "attack_restarts", "attack_eot", "attack_step_size")


def records_frame(records: Iterable[dict[str, Any]], runs: Iterable[dict[str, Any]] = ()):
    """One row per record: the record's fields, its setting's keys as columns, the attack's name in
    `attack` (None: clean) with steps/restarts/eot/step size in attack_*, and the measuring run's
    commit, dirty flag and device."""
    import pandas as pd

    by_id = {r["run_id"]: r for r in runs}
    rows = []
    for r in records:
        a = r["attack"] or {}
        run = by_id.get(r["run_id"], {})
        rows.append({**{k: v for k, v in r.items() if k not in ("setting", "attack", "extra")},
                     "attack": a.get("name"), **{f"attack_{k}": a.get(k) for k in ("steps", "restarts", "eot", "step_size")},
                     **r["setting"], "extra": r.get("extra", {}),
                     "git_commit": run.get("git_commit"), "dirty": run.get("dirty"), "device": run.get("device")})
    # object dtype: ints stay ints and missing stays None (a float column would turn 20 into 20.0)
    return _none_for_missing(pd.DataFrame(rows, dtype=object))


def _none_for_missing(df):
    """Missing is None in every column (a setting key a record lacks, an attack of a clean record)."""
    return df.astype(object).where(df.notna(), None) if len(df) else df


def query(profile: str, experiment: str | Iterable[str] | None = None, **where: Any):
    """Records of `profile` (one experiment, several, or all files) as a DataFrame (see records_frame),
    filtered by column == value for each keyword (a list or tuple: any of; None: missing).
    `eps` is compared after canonical_eps."""
    import pandas as pd

    if experiment is None:
        names = sorted(p.stem for p in paths.results_dir(profile).glob("*.json"))
    else:
        names = [experiment] if isinstance(experiment, str) else list(experiment)
    frames = []
    for name in names:
        if results_path(name, profile).exists():
            doc = load_results(name, profile)
            frames.append(records_frame(doc["records"], doc["runs"]))
    df = _none_for_missing(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame(columns=list(RECORD_FIELDS))
    for col, want in where.items():
        if col not in df.columns:
            df = df.iloc[0:0] if want is not None else df
            continue
        wants = list(want) if isinstance(want, (list, tuple, set)) else [want]
        if col == "eps":
            wants = [canonical_eps(w) for w in wants]
        df = df[df[col].map(lambda v: v in wants or (v is None and None in wants))]
    return df.reset_index(drop=True)
