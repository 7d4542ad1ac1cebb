"""Tables rendered from `results.query` frames (never typed by hand, never parsed from labels)."""
from __future__ import annotations

from typing import Any

import pandas as pd

# A refined model's label shows these settings only where they differ from notebook 04's defaults.
LABEL_DEFAULTS = {"lambda": 1.0, "train_seed": 0}


def attack_label(row: Any) -> str:
    """'fgsm', 'pgd-20', 'pgd-50x2', 'apgd-ce-20' from a query row's attack columns."""
    name = row["attack"]
    if name == "fgsm":
        return name
    restarts = row.get("attack_restarts") or 1
    return f"{name}-{int(row['attack_steps'])}" + (f"x{int(restarts)}" if name == "pgd" and restarts > 1 else "")


def column_label(row: Any) -> str:
    """'clean' or '<attack> @ <eps>' for a table column."""
    return "clean" if row["attack"] is None else f"{attack_label(row)} @ {row['eps']:.4g}"


def point_label(row: Any) -> str:
    """'clean' or '<attack>@<eps>': a column of the notebooks' compact tables."""
    return "clean" if row["attack"] is None else f"{attack_label(row)}@{row['eps']:.4g}"


def model_label(row: Any) -> str:
    """A readable row name from the model and its setting (display only: nothing parses it back)."""
    label = row["model"] or "none"
    ref = row.get("refinement")
    if isinstance(ref, str):
        if row.get("round") is not None and row.get("round") == row.get("round"):
            label += f" · Algorithm 1 round {int(row['round'])}"
        else:
            label += f" · {ref}" + (", class masks" if row.get("mask_scope") == "class" else "")
        if row.get("train_seed") not in (None, LABEL_DEFAULTS["train_seed"]):
            label += f" · seed {int(row['train_seed'])}"
        if row.get("lambda") not in (None, LABEL_DEFAULTS["lambda"]):
            label += f" · lambda {row['lambda']:g}"
    return label


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if len(df):
        df["label"] = [model_label(r) for _, r in df.iterrows()]
        df["column"] = [column_label(r) for _, r in df.iterrows()]
    return df


def _column_order(c: str):
    if c == "clean":
        return ("", 0.0)
    name, eps = c.split(" @ ")
    return (name, float(eps))


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows: dataset/model label; columns: clean and attack @ eps accuracies (%), from query rows
    (accuracy records; accuracy_full_test_set rows add a 'clean (all 10k test)' column)."""
    df = with_labels(df)
    acc = df[df["metric"] == "accuracy"].copy()
    acc["value"] = acc["value"].astype(float)
    table = acc.pivot_table(index=["dataset", "label"], columns="column", values="value", sort=False) * 100
    table = table[sorted(table.columns, key=_column_order)]
    full = {(r["dataset"], r["label"]): 100 * r["value"] for _, r in df[df["metric"] == "accuracy_full_test_set"].iterrows()}
    if full:
        table.insert(0, "clean (all 10k test)", [full.get(i, float("nan")) for i in table.index])
    table.index.names = ["dataset", "model"]
    return table.round(2)


def metrics_by_point(df: pd.DataFrame) -> dict[str, float]:
    """{'clean': acc, 'fgsm@0.01': acc, 'pgd-20@0.002507': acc} from accuracy rows of one model."""
    return {point_label(r): float(r["value"]) for _, r in df[df["metric"] == "accuracy"].iterrows()}
