"""One-off converter of schema-1 results files to schema 2: `python -m replication.results_v1 results/cpu`.

Schema 1 hid structure in strings: model labels such as "resnet18_cifar10 · control: random mask +
reg + adv · seed 1", metric names such as "seed_mean[pgd-20@0.002507]" or "gain_pp[FGSM@0.01, pixel
reading]", attacks as "pgd-20", eps re-keyed by "%.4g", missing values as -1 / "none" / 0.0 s,
values in fractions, percent and percentage points, and one provenance per file. This module is the
only code that parses those strings; it is kept so that the conversion can be checked (tests compare
the tables rendered from converted files with the ones schema 1 rendered) and rerun on old copies.
Values are carried over unchanged except for unit changes to the metric's documented unit (percent
and percentage points to fractions) and values a v1 record held in `extra`, which become records.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Iterator

from .papers import eps_reading, normalised_eps_scale
from .results import SCHEMA_VERSION, atomic_write_text, attack_spec, canonical_eps, make_record

FULL = "mask+reg+adv"


def _base(ds: str) -> str:
    return ds.split("-")[0]


def _attack(label: str, extra: dict[str, Any], eps: float | None) -> dict[str, Any] | None:
    """"none" / "fgsm" / "pgd-20" / "pgd-20x2" / "apgd-ce-20" -> attack_spec."""
    if label == "none":
        return None
    m = re.fullmatch(r"(fgsm|pgd|apgd-ce)(?:-(\d+))?(?:x(\d+))?", label)
    if not m:
        raise ValueError(f"unknown v1 attack label {label!r}")
    name, steps = m.group(1), int(m.group(2) or 1)
    restarts = int(extra.get("restarts", m.group(3) or 1))
    # v1 stored "alpha" = eps for APGD, which sets its own step: only FGSM and PGD have a step size
    step = extra.get("alpha", eps if name == "fgsm" else 2.5 * eps / steps) if name in ("fgsm", "pgd") else None
    return attack_spec(name, steps=steps, restarts=restarts, step_size=step)


def _column(col: str, dataset: str) -> tuple[dict[str, Any] | None, float | None]:
    """"clean" / "pgd-20@0.002507" (eps printed with %.4g) -> (attack, exact eps of the grid)."""
    if col == "clean":
        return None, None
    label, printed = col.split("@")
    s = normalised_eps_scale(dataset)
    grid = [0.01, 0.02, 0.03, 8 / 255] + [e * s for e in (0.01, 0.02, 0.03)]
    eps = next(e for e in grid if f"{e:.4g}" == printed)
    return _attack(label, {}, eps), eps


def refined_setting(name: str, *, train_seed: int = 0, lam: float = 1.0, **more: Any) -> dict[str, Any]:
    """The setting notebook 04 writes for a refined model (its spec as run for schema 1: EPS_TRAIN
    0.03, ALPHA 1, LAMBDA 1, with lambda changed in the sweep)."""
    from dataclasses import replace

    from .paper_a.refine import ablation_specs

    spec = next(s for s in ablation_specs(0.03, 1.0, 1.0) if s.name == name)
    return {**replace(spec, lam=lam).setting(train_seed=train_seed), **more}


def _setting_04(label: str, dataset: str, metric: str, rounds: int) -> tuple[str, dict[str, Any]]:
    model, *parts = label.split(" · ")
    if not parts or parts == ["shortcut model"]:
        return model, {}
    name, rest = parts[0], parts[1:]
    more: dict[str, Any] = {}
    if name.startswith("Algorithm 1"):
        r = re.search(r"round (\d+)", name) or re.match(r"alg1_round(\d+)_", metric)
        name, more = FULL, {"round": int(r.group(1))}
    elif name == "refined":  # the gains: notebook 04 compares Algorithm 1's final model on cifar10
        name, more = FULL, ({"round": rounds} if dataset == "cifar10" else {})
    elif name.endswith(", class masks"):
        name, more = name[: -len(", class masks")], {"mask_scope": "class"}
    kw: dict[str, Any] = {}
    for p in rest:
        k, v = p.split(" ")
        kw["train_seed" if k == "seed" else "lam"] = int(v) if k == "seed" else float(v)
    return model, refined_setting(name, **kw, **more)


def convert_record(r: dict[str, Any], run_id: str, rounds: int = 0) -> Iterator[dict[str, Any]]:
    """One v1 record -> its v2 record(s)."""
    exp, ds, metric, extra = r["experiment"], r["dataset"], r["metric"], dict(r.get("extra") or {})
    model = None if r["model"] == "none" else r["model"]
    setting: dict[str, Any] = {}
    value = r["value"]
    eps = r["eps"] if r["attack"] != "none" else None
    attack = _attack(r["attack"], extra, eps)
    out_extra: dict[str, Any] = {}
    derived: list[tuple[str, dict[str, Any], float]] = []  # (metric, setting, value) from v1 `extra`
    if exp == "04_refinement_training":
        model, setting = _setting_04(r["model"], ds, metric, rounds)
    m = re.fullmatch(r"(\w+)\[(.*)\]", metric)
    head, arg = (m.group(1), m.group(2)) if m else (metric, None)
    metric = head
    if head in ("n_train_images", "n_test_images"):
        metric, setting = "n_images", {"split": head[2:-7]}
    elif head == "segments_mean":
        setting = {"segmentation": arg}
        derived = [("segments_min", setting, extra["min"]), ("segments_max", setting, extra["max"])]
    elif head.startswith("lime_"):
        setting = {k: extra[k] for k in ("n_samples", "segmentation", "kernel") if k in extra}
        out_extra = {k: v for k, v in extra.items() if k not in setting}
    elif m2 := re.fullmatch(r"flagged_(\w+?)_(segment|pixel|images)_frac", head):
        metric = f"flagged_{m2.group(2).replace('images', 'image')}_frac"
        setting = {"rule": m2.group(1)} if arg is None else {"rule": m2.group(1), "quantile": float(arg[2:])}
        out_extra = {"identify_config": extra} if extra else {}
    elif head.startswith("threshold_"):
        metric, setting = "threshold", {"threshold": head[len("threshold_"):]}
    elif head == "jaccard":
        a, b = (("spurious", "spurious without reference") if arg.startswith("spurious: with vs without")
                else arg.split(" vs "))
        setting = {"rule_a": a, "rule_b": b}
    elif head == "class_mask_iou_vs_own_mask":
        metric = "class_mask_iou"
    elif head in ("planted_precision", "planted_recall", "planted_iou"):
        setting = {"flagged_by": arg}
        derived = [("flagged_pixel_frac", setting, extra["pixels_flagged_pct"] / 100)]
    elif head == "refine_train_time_s":
        metric = "train_time_s"
        out_extra = {k: v for k, v in extra.items() if k != "spec"}  # spec: a hash the setting now spells out
    elif m3 := re.fullmatch(r"alg1_round\d+_(.*)", head):
        kind = m3.group(1)
        if kind == "jaccard" and value < 0:
            return  # round 1 has no previous round: v1 stored -1
        metric, value = {"flagged segments (%)": ("flagged_segment_frac", value / 100),
                         "flagged pixels (%)": ("flagged_pixel_frac", value / 100),
                         "round time (s)": ("round_time_s", value),
                         "jaccard": ("jaccard", value)}[kind]
        if kind == "jaccard":
            setting = {**setting, "compared_to": "previous round"}
    elif head == "seed_mean":
        attack, eps = _column(arg, ds)
        setting = {**{k: v for k, v in setting.items() if k != "train_seed"}, "train_seeds": extra["seeds"]}
        derived = [("accuracy_std_over_seeds", setting, extra["std_pp"] / 100)]
        metric = "accuracy_mean_over_seeds"
    elif head == "gain_pp":
        point, reading = arg.split(", ")
        atk, paper_eps = point.split("@")
        reading = reading.replace(" reading", "")
        eps = float(paper_eps) * (normalised_eps_scale(ds) if reading == "normalised" else 1.0)
        attack = _attack("fgsm" if atk == "FGSM" else "pgd-20", {}, eps)
        metric, value = "accuracy_gain", value / 100  # paper_gain_pp is the paper's: papers.py renders it
    elif head.startswith("time_to_") and head.endswith("pct_s"):
        setting = {"target": int(head[8:10]) / 100}
        metric, value = "time_to_accuracy_s", (value if extra.get("reached", value >= 0) else None)
    elif metric == "train_time_s" or metric.startswith(("accuracy", "md5", "planted_pixel", "train_", "infer_", "pgd_")):
        out_extra = {k: v for k, v in extra.items() if k not in ("alpha", "restarts", "steps")}
    else:
        raise ValueError(f"no v1 conversion rule for metric {metric!r} ({exp})")
    common = dict(experiment=exp, dataset=ds, model=model, attack=attack, eps=eps,
                  eps_reading=eps_reading(eps, _base(ds)), n=r["n"], seed=r["seed"], profile=r["profile"],
                  run_id=run_id, model_hash=None if r["config_hash"] in ("none", "seeds") else r["config_hash"],
                  wall_time_s=r["wall_time_s"] or None)  # v1 wrote 0.0 for "not measured"
    yield make_record(**common, setting=setting, metric=metric, value=value, extra=out_extra)
    for dm, ds_setting, dv in derived:
        yield make_record(**{**common, "wall_time_s": None}, setting=ds_setting, metric=dm, value=dv)


def convert(doc: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 document -> schema 2 (its provenance becomes the one run every record points at)."""
    if doc.get("schema_version") != 1:
        raise ValueError(f"not a schema-1 document (schema_version {doc.get('schema_version')})")
    prov = dict(doc["provenance"])
    run_id = "v1-" + prov.get("created", "unknown").replace("-", "").replace(":", "")[:15]
    # Schema 1's "+dirty" also counted uncommitted results files, so it does not say the code was
    # dirty; the `dirty` flag came later (files that have it keep it), else it is unknown (null).
    run = {"run_id": run_id, **prov, "dirty": prov.get("dirty"), "precision": None, "converted_from_schema": 1}
    rounds = max([int(m.group(1)) for r in doc["records"]
                  if (m := re.search(r"Algorithm 1 round (\d+)", r["model"]))] or [0])
    records: dict[str, dict[str, Any]] = {}
    from .results import record_key
    for r in doc["records"]:
        for new in convert_record(r, run_id, rounds):
            records[record_key(new)] = new
    return {"schema_version": SCHEMA_VERSION, "experiment": doc["experiment"], "profile": doc["profile"],
            "runs": [run], "records": list(records.values())}


def convert_dir(directory: Path) -> list[Path]:
    """Convert every schema-1 *.json under `directory` in place (atomically); others are left alone."""
    done = []
    for path in sorted(Path(directory).glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("schema_version") == 1:
            atomic_write_text(path, json.dumps(convert(doc), indent=1) + "\n")
            done.append(path)
    return done


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path)
    args = ap.parse_args(argv)
    for p in convert_dir(args.directory):
        print(f"converted {p}")


if __name__ == "__main__":
    main()
