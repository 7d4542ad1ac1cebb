"""The papers' reported numbers (data_files/paper_*_reported.yaml) and how ours are set beside them.

Paper A does not say whether its eps is on [0,1] pixels or on normalised inputs, so every eps we
measure carries its `eps_reading`: "pixel" (the paper's eps used as is) or "normalised" (the
paper's eps times the mean channel std, the pixel eps that eps on normalised inputs amounts to).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import pandas as pd
import yaml

from .paths import DATA_FILES_DIR

# Per-channel (mean, std) of the training sets, as used to normalise inputs (torchvision convention).
from .data import MEAN_STD  # noqa: E402  (a constant; papers never loads data)

PAPER_A_EPS = (0.01, 0.02, 0.03)


@lru_cache(maxsize=None)
def reference(paper: str) -> dict[str, Any]:
    """The paper's reported numbers ('a' or 'b'), as transcribed in data_files/."""
    name = {"a": "paper_a_reported.yaml", "b": "paper_b_reported.yaml"}.get(paper.lower())
    if name is None:
        raise ValueError("paper must be 'a' or 'b'")
    with open(DATA_FILES_DIR / name) as f:
        return yaml.safe_load(f)


def paper_a_points(dataset: str) -> list[dict[str, Any]]:
    """Paper A's quoted baseline/refined points for 'cifar10' (Fig. 3) or 'cifar100' (Fig. 4)."""
    return reference("a")["fig3_cifar10" if dataset == "cifar10" else "fig4_cifar100"]


def normalised_eps_scale(dataset: str) -> float:
    """Pixel eps per unit of eps on normalised inputs: the mean channel std (channels differ by <5%)."""
    return sum(MEAN_STD[dataset.split("-")[0]][1]) / 3


def pixel_eps(paper_eps: float, dataset: str, reading: str) -> float:
    """The [0,1]-pixel eps that the paper's eps amounts to under `reading`."""
    if reading not in ("pixel", "normalised"):
        raise ValueError(f"eps reading {reading!r}: choose 'pixel' or 'normalised'")
    return paper_eps * (normalised_eps_scale(dataset) if reading == "normalised" else 1.0)


def eps_reading(eps: float | None, dataset: str) -> str | None:
    """'normalised' for a pixel eps equal to one of Paper A's eps times the mean std, else 'pixel'."""
    if eps is None:
        return None
    s = normalised_eps_scale(dataset)
    return "normalised" if any(abs(eps - e * s) < 1e-9 for e in PAPER_A_EPS) else "pixel"


def paper_eps(eps: float, dataset: str, reading: str) -> float:
    """Inverse of pixel_eps, rounded to the paper's printed precision."""
    return round(eps / (normalised_eps_scale(dataset) if reading == "normalised" else 1.0), 6)


def _ours(df: pd.DataFrame, attack: str, eps: float) -> pd.DataFrame:
    return df[(df["attack"] == attack) & ((df["eps"] - eps).abs() < 1e-9)]


def paper_a_baseline_comparison(acc: pd.DataFrame, dataset: str, reading: str = "pixel",
                                pgd: str = "pgd") -> pd.DataFrame:
    """Paper A's quoted baseline points (Fig. 3/4) | ours | ours - paper.

    acc: `query(...)` rows of one model's accuracy records (columns attack, attack_steps, eps, value, n)."""
    rows = []
    for p in paper_a_points(dataset):
        eps = pixel_eps(p["eps"], dataset, reading)
        hit = _ours(acc, "fgsm" if p["attack"] == "FGSM" else pgd, eps)
        value = 100 * float(hit["value"].iloc[0]) if len(hit) else float("nan")
        label = "missing"
        if len(hit):
            h = hit.iloc[0]
            label = h["attack"] if h["attack"] == "fgsm" else f"{h['attack']}-{h['attack_steps']}"
        rows.append({"attack": p["attack"], "paper eps": p["eps"], "our pixel eps": round(eps, 5),
                     "paper baseline (%)": p["baseline"],
                     "ours (%)": round(value, 2), "ours - paper (pp)": round(value - p["baseline"], 2),
                     "our attack": label, "n": int(hit["n"].iloc[0]) if len(hit) else 0})
    return pd.DataFrame(rows)


def paper_a_refined_comparison(baseline: pd.DataFrame, refined: pd.DataFrame, dataset: str,
                               pgd: str = "pgd") -> pd.DataFrame:
    """Paper A's quoted baseline and refined points beside ours, both eps readings.

    baseline, refined: accuracy rows (query) of the two models on `dataset`."""
    rows = []
    for p in paper_a_points(dataset):
        for reading in ("pixel", "normalised"):
            eps = pixel_eps(p["eps"], dataset, reading)
            attack = "fgsm" if p["attack"] == "FGSM" else pgd
            b, r = (100 * float(h["value"].iloc[0]) if len(h) else float("nan")
                    for h in (_ours(baseline, attack, eps), _ours(refined, attack, eps)))
            rows.append({"attack": p["attack"], "paper eps": p["eps"], "eps reading": reading,
                         "our pixel eps": round(eps, 5), "paper baseline": p["baseline"], "ours baseline": round(b, 2),
                         "paper refined": p["refined"], "ours refined": round(r, 2),
                         "paper gain (pp)": round(p["refined"] - p["baseline"], 2), "our gain (pp)": round(r - b, 2)})
    return pd.DataFrame(rows)


def paper_b_table1_beside(ours: pd.DataFrame) -> pd.DataFrame:
    """Paper B's Table 1 (CIFAR-10 PGD accuracy, its ResNet-50 and WideResNet-28-10 columns) beside
    ours; `ours`: one row per paper method (LIME / SHAP / ALDE) with our columns."""
    paper = pd.DataFrame(reference("b")["table1_pgd_accuracy"])
    wide = paper.pivot(index="method", columns="model", values="cifar10")
    wide.columns = [f"paper {c}" for c in wide.columns]
    return wide.join(ours, how="left")


def _paper_b_columns(table: str) -> pd.DataFrame:
    """Paper B's Table 2 or 3 (one row per model, one column per method) turned to one row per method."""
    paper = pd.DataFrame(reference("b")[table]).set_index("model").T
    paper.columns = [f"paper {c}" for c in paper.columns]
    paper.index.name = "method"
    return paper


def paper_b_table2_beside(ours: pd.DataFrame) -> pd.DataFrame:
    """Paper B's Table 2 (SSIM of clean vs adversarial attributions; its models ResNet-50 and
    WideResNet-28-10) beside ours; `ours`: one row per paper method (SHAP / LIME / ALDE)."""
    return _paper_b_columns("table2_ssim_clean_vs_adversarial_attributions").join(ours, how="left")


def paper_b_table3_beside(ours: pd.DataFrame) -> pd.DataFrame:
    """Paper B's Table 3 (IoU with "ground truth saliency") beside ours, one row per paper method."""
    return _paper_b_columns("table3_iou_with_ground_truth_saliency").join(ours, how="left")
