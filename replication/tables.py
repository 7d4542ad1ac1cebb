"""Tables rendered from result records, beside the papers' numbers (never typed by hand)."""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from .data import MEAN_STD
from .results import paper_a_baseline_points


def normalised_eps_scale(dataset: str) -> float:
    """Pixel eps per unit of eps on normalised inputs: the mean channel std (channels differ by <5%)."""
    return sum(MEAN_STD[dataset][1]) / 3


def accuracy_table(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows: dataset/model; columns: clean and attack@eps accuracies (%)."""
    records = list(records)
    df = pd.DataFrame([r for r in records if r["metric"] == "accuracy"])
    df["column"] = df.apply(lambda r: "clean" if r["attack"] == "none" else f"{r['attack']} @ {r['eps']:.4g}", axis=1)
    table = df.pivot_table(index=["dataset", "model"], columns="column", values="value", sort=False) * 100
    cols = ["clean"] + sorted([c for c in table.columns if c != "clean"], key=lambda c: (c.split(" @ ")[0], float(c.split(" @ ")[1])))
    table = table[cols]
    full = {(r["dataset"], r["model"]): 100 * r["value"] for r in records if r["metric"] == "accuracy_full_test_set"}
    if full:
        table.insert(0, "clean (all 10k test)", [full.get(i, float("nan")) for i in table.index])
    return table.round(2)


def paper_a_baseline_comparison(records: Iterable[dict[str, Any]], model: str, dataset: str,
                                eps_scale: float = 1.0) -> pd.DataFrame:
    """Paper A's quoted baseline points (Fig. 3/4) | ours | ours - paper, for one of our models.

    eps_scale maps the paper's eps to our [0,1]-pixel eps (1.0: the paper's eps is on pixels;
    mean channel std: the paper's eps is on normalised inputs)."""
    recs = [r for r in records if r["model"] == model and r["dataset"] == dataset and r["metric"] == "accuracy"]
    rows = []
    for p in paper_a_baseline_points(dataset):
        attack = p["attack"].lower()
        eps = p["eps"] * eps_scale
        ours = [r for r in recs if r["attack"].split("-")[0] == attack and abs(r["eps"] - eps) < 1e-9]
        value = 100 * ours[0]["value"] if ours else float("nan")
        rows.append({"attack": p["attack"], "paper eps": p["eps"], "our pixel eps": round(eps, 5),
                     "paper baseline (%)": p["baseline"],
                     "ours (%)": round(value, 2), "ours - paper (pp)": round(value - p["baseline"], 2),
                     "our attack": ours[0]["attack"] if ours else "missing", "n": ours[0]["n"] if ours else 0})
    return pd.DataFrame(rows)


def paper_a_refined_comparison(ours: dict[str, dict[str, float]], dataset: str, pgd_label: str) -> pd.DataFrame:
    """Paper A's quoted baseline and refined points beside ours, both eps readings.

    ours: {'baseline': metric_dict, 'refined': metric_dict} (fractions, keys like 'fgsm@0.01');
    pgd_label: our PGD record name (e.g. 'pgd-20')."""
    rows = []
    for p in paper_a_baseline_points(dataset):
        for reading, scale in (("pixel", 1.0), ("normalised", normalised_eps_scale(dataset))):
            eps = p["eps"] * scale
            attack = "fgsm" if p["attack"] == "FGSM" else pgd_label
            key = f"{attack}@{eps:.4g}"
            b, r = (100 * ours[k].get(key, float("nan")) for k in ("baseline", "refined"))
            rows.append({"attack": p["attack"], "paper eps": p["eps"], "eps reading": reading,
                         "our pixel eps": round(eps, 5), "paper baseline": p["baseline"], "ours baseline": round(b, 2),
                         "paper refined": p["refined"], "ours refined": round(r, 2),
                         "paper gain (pp)": round(p["refined"] - p["baseline"], 2), "our gain (pp)": round(r - b, 2)})
    return pd.DataFrame(rows)
