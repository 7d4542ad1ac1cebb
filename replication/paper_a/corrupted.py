"""Paper A's Table I: FGSM and PGD accuracy on CIFAR-10-C, baseline vs refined, beside the paper's.

Each model is attacked on every (corruption, severity) set and on the uncorrupted subset the sets
were made from (corruption "none", severity 0), at Paper A's eps 0.01 / 0.02 / 0.03 under both
readings (pixel, normalised). An attacked accuracy is a `robust_accuracy` record: correct on the
clean input and at every iterate (attacks.robust_mask; FGSM is its one-step case). Records already
in the results file for the same measurement (results.stored) are reused (the model is built only
for a missing one), and the file is
saved after each corruption, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
import time
import zlib
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..cifar10c import CorruptedSets
from ..data import Split
from ..evaluate import correct_mask, model_of, robust_per_image
from ..papers import PAPER_A_EPS, eps_reading, pixel_eps, reference
from ..progress import bar
from ..results import attack_spec, canonical_eps, make_record, save_records, stored

CLEAN_SET = ("none", 0)
READINGS = ("pixel", "normalised")


def eps_points(dataset: str = "cifar10") -> list[dict[str, Any]]:
    """Paper A's three eps under both readings: [{paper_eps, reading, eps (pixels)}]."""
    return [{"paper_eps": e, "reading": r, "eps": canonical_eps(pixel_eps(e, dataset, r))}
            for r in READINGS for e in PAPER_A_EPS]


def attack_specs(pgd_steps: int, eps: float) -> dict[str, dict[str, Any]]:
    """FGSM (one step of eps, no random start) and PGD (random start, step 2.5 eps / steps)."""
    return {"fgsm": attack_spec("fgsm", steps=1, step_size=eps),
            "pgd": attack_spec("pgd", steps=pgd_steps, step_size=2.5 * eps / pgd_steps)}


def _seed(*parts: Any) -> int:
    return zlib.crc32(json.dumps(parts).encode())


def _measure(model, split: Split, correct: torch.Tensor, spec: dict[str, Any], eps: float, batch_size: int,
             seed: int) -> float:
    mask = robust_per_image(model, split, correct, eps=eps, batch_size=batch_size, steps=spec["steps"],
                            alpha=spec["step_size"], random_start=spec["name"] != "fgsm",
                            batch_seed=lambda start, r: _seed(seed, start, spec, eps))  # the PGD random start
    return int(mask.sum()) / len(split)


def _key(dataset, corruption, severity, attack, eps) -> str:
    return json.dumps([dataset, corruption, severity, attack, canonical_eps(eps)], sort_keys=True)


def evaluate_sets(run, model, *, model_name: str, model_hash: str, setting: dict[str, Any], sets: CorruptedSets,
                  pgd_steps: int, batch_size: int, progress: bool = True) -> list[dict[str, Any]]:
    """Clean accuracy and FGSM / PGD robust accuracy of `model` on every set (see the module docstring)."""
    ctx = run.context(model=model_name, model_hash=model_hash, **setting)
    n, seed = len(sets.clean), run.seed
    names = list(dict.fromkeys(c for c, _ in sets.images))
    groups = [[CLEAN_SET]] + [[(c, s) for (c2, s) in sets.images if c2 == c] for c in names]
    jobs = [(None, None)] + [(spec, p["eps"]) for p in eps_points() for spec in attack_specs(pgd_steps, p["eps"]).values()]

    def template(c, s, dataset, spec, eps):
        is_clean = (c, s) == CLEAN_SET
        return make_record(**{**ctx, "setting": {**ctx["setting"], "corruption": c, "severity": s,
                                                 "source": "clean" if is_clean else sets.source}},
                           dataset=dataset, metric="accuracy" if spec is None else "robust_accuracy", attack=spec,
                           eps=eps, eps_reading=eps_reading(eps, "cifar10"), value=None, n=n, seed=seed)

    out: list[dict[str, Any]] = []
    net = None
    for group in bar(groups, desc=f"{model_name} sets", enabled=progress):
        first = len(out)
        for c, s in group:
            is_clean = (c, s) == CLEAN_SET
            split = sets.clean if is_clean else sets.split(c, s)
            correct = None
            for spec, eps in jobs:
                t = template(c, s, "cifar10" if is_clean else split.name, spec, eps)
                rec = stored(t)
                if rec is None:
                    if net is None:  # built only when a measurement is missing
                        net = model_of(model).eval()
                    t0 = time.perf_counter()
                    if correct is None:  # one clean pass per set, shared by every attack on it
                        correct = correct_mask(net, split, batch_size)
                    # counts / n in float64 for clean and attacked alike: a float32 mean can round
                    # below the same count's exact share, and robust would then exceed clean
                    value = (int(correct.sum()) / len(split) if spec is None
                             else _measure(net, split, correct, spec, eps, batch_size, seed))
                    rec = {**t, "value": value, "wall_time_s": time.perf_counter() - t0}
                out.append(rec)
        # merge this corruption's records into the file (earlier ones are there): resumable from here
        if any(r["run_id"] == run.run_id for r in out[first:]):
            save_records(run.experiment, run.profile.name, out[first:], run.provenance())
    return out


# ---- tables -------------------------------------------------------------------------------------
def _frame(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["metric"].isin(["accuracy", "robust_accuracy"])].copy()
    df["value"] = df["value"].astype(float) * 100
    return df


def per_set(df: pd.DataFrame, role: dict[str, str]) -> pd.DataFrame:
    """Long table: role (baseline / refined), corruption, severity, point (clean, FGSM/PGD @ paper eps,
    reading), accuracy (%). role: {model_hash: role name}."""
    df = _frame(df[df["model_hash"].isin(list(role))])
    scale = {p["eps"]: p for p in eps_points()}
    rows = []
    for _, r in df.iterrows():
        p = scale.get(r["eps"]) if r["eps"] is not None else None
        rows.append({"role": role[r["model_hash"]], "corruption": r["corruption"], "severity": int(r["severity"]),
                     "attack": r["attack"].upper() if r["attack"] else "clean",
                     "paper_eps": p["paper_eps"] if p else None, "reading": p["reading"] if p else None,
                     "accuracy": r["value"]})
    return pd.DataFrame(rows)


def table1(long: pd.DataFrame, reading: str, corruptions: list[str] | None = None) -> pd.DataFrame:
    """Paper A's Table I layout: one row per corruption (mean over severities 1-5), columns
    attack x eps x role, then the mean and std over the rows (%)."""
    d = long[(long["reading"] == reading) & (long["severity"] > 0)]
    if corruptions is not None:
        d = d[d["corruption"].isin(corruptions)]
    t = d.pivot_table(index="corruption", columns=["attack", "paper_eps", "role"], values="accuracy", aggfunc="mean")
    order = list(dict.fromkeys(long["corruption"][long["severity"] > 0]))
    t = t.reindex([c for c in order if c in t.index])
    t.loc["mean"], t.loc["std"] = t.mean(), t.std(ddof=0)
    t = t.sort_index(axis=1, level=[1, 0, 2], sort_remaining=False)
    return t.round(2)


def paper_columns() -> list[tuple[str, float, str]]:
    """Table I's column order as (attack, eps, role)."""
    out = []
    for c in reference("a")["table1_cifar10c"]["columns"]:
        attack, eps, role = c.split("_")
        out.append((attack.upper(), float(f"0.{eps[1:]}"), {"base": "baseline", "ref": "refined"}[role]))
    return out


def beside_paper(long: pd.DataFrame) -> pd.DataFrame:
    """Every Table I cell of the paper beside ours under each reading (corruption rows the paper lists,
    plus its mean and std rows over those rows)."""
    ref = reference("a")["table1_cifar10c"]
    listed = list(ref["rows"])
    cols = paper_columns()
    rows = []
    ours = {r: table1(long, r, listed) for r in READINGS}
    for name in listed + ["mean", "std"]:
        paper_vals = ref["rows"][name] if name in ref["rows"] else ref[name]
        for (attack, eps, role), pv in zip(cols, paper_vals):
            row = {"corruption": name, "attack": attack, "paper eps": eps, "role": role, "paper": pv}
            for r in READINGS:
                t = ours[r]
                row[f"ours, {r}"] = t.loc[name, (attack, eps, role)] if (attack, eps, role) in t.columns and name in t.index else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def corrupted_vs_clean(long: pd.DataFrame) -> pd.DataFrame:
    """Per role and point: accuracy on the uncorrupted subset vs the mean over all corrupted sets
    (Paper A's refined model scores higher on corrupted data under attack than on clean data)."""
    d = long.copy()
    unc, cor = "uncorrupted", f"corrupted (mean of {d[d['severity'] > 0].groupby(['corruption', 'severity']).ngroups} sets)"
    d["data"] = np.where(d["severity"] == 0, unc, cor)
    d["point"] = d.apply(lambda r: "clean" if r["attack"] == "clean" else f"{r['attack']} @ {r['paper_eps']:g} ({r['reading']})", axis=1)
    t = d.pivot_table(index=["role", "point"], columns="data", values="accuracy", aggfunc="mean", sort=False)[[unc, cor]]
    t["corrupted - uncorrupted (pp)"] = t[cor] - t[unc]
    return t.round(2)


def roles(df: pd.DataFrame) -> dict[str, str]:
    """{model_hash: "baseline" | "refined"} of notebook 07's records (refined ones carry a refinement)."""
    col = df["refinement"] if "refinement" in df.columns else pd.Series([None] * len(df), index=df.index)
    return {h: ("refined" if r else "baseline") for h, r in zip(df["model_hash"], col) if h is not None}


def summary(long: pd.DataFrame) -> pd.DataFrame:
    """Table I's mean row (over the paper's 12 listed types) beside ours under each reading, and our
    mean over all 19 types and on the uncorrupted subset, per (attack, eps, role) (%)."""
    b = beside_paper(long)
    b = b[b["corruption"] == "mean"].drop(columns="corruption").rename(
        columns={"paper": "paper (mean of its 12 types)", "ours, pixel": "ours, pixel (same 12)",
                 "ours, normalised": "ours, normalised (same 12)"})
    for r in READINGS:
        t = table1(long, r)
        b[f"ours, {r} (all 19)"] = [t.loc["mean", (a, e, role)] for a, e, role in zip(b["attack"], b["paper eps"], b["role"])]
        clean = long[(long["severity"] == 0) & (long["reading"] == r)]
        b[f"ours, {r}, uncorrupted"] = [
            clean[(clean["attack"] == a) & (clean["paper_eps"] == e) & (clean["role"] == role)]["accuracy"].mean()
            for a, e, role in zip(b["attack"], b["paper eps"], b["role"])]
    lead = ["attack", "paper eps", "role", "paper (mean of its 12 types)"]
    rest = [f"ours, {r}{tail}" for r in READINGS for tail in (" (same 12)", " (all 19)", ", uncorrupted")]
    return b[lead + rest].reset_index(drop=True)


def fgsm_rises(long: pd.DataFrame, slack: float = 0.4) -> pd.DataFrame:
    """Sets where FGSM accuracy rises with eps by more than `slack` pp (2 images of 500) between
    consecutive eps of one reading, per role: FGSM's single step overshoots on some data."""
    d = long[(long["attack"] == "FGSM")].sort_values("paper_eps")
    rows = []
    for (role, reading, c, s), g in d.groupby(["role", "reading", "corruption", "severity"]):
        v = g["accuracy"].tolist()
        rise = max((b - a for a, b in zip(v, v[1:])), default=0.0)
        rows.append({"role": role, "reading": reading, "set": c, "rises": rise > slack, "largest rise (pp)": rise})
    t = pd.DataFrame(rows)
    return (t.groupby(["role", "reading"]).agg(sets=("rises", "size"), sets_where_fgsm_rises=("rises", "sum"),
                                               largest_rise_pp=("largest rise (pp)", "max"))
            .round(2))
