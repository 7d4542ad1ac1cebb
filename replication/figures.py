"""Figures: one seaborn theme, saved as PNG and PDF under figures/<profile>/."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import matplotlib.pyplot as plt
import seaborn as sns

from .paths import figures_dir


def set_theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight"})


def save_figure(fig, name: str, profile: str) -> list[Path]:
    out = figures_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    # Fixed metadata so the same figure gives the same bytes (no creation dates in the files).
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None, "Creator": None})
    return paths


def sample_grid(x_uint8, labels, class_names: list[str], per_class: int = 8, title: str = ""):
    """A grid of `per_class` images for each class (rows)."""
    n_classes = min(len(class_names), 10)
    fig, axes = plt.subplots(n_classes, per_class, figsize=(per_class * 0.9, n_classes * 0.95))
    for c in range(n_classes):
        idx = (labels == c).nonzero().flatten()[:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(idx):
                ax.imshow(x_uint8[idx[j]].permute(1, 2, 0).cpu().numpy())
        axes[c, 0].text(-4, 16, class_names[c], ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    return fig


def training_curves(histories: dict[str, list[dict[str, Any]]]):
    """Train loss and test accuracy per epoch, one line per model."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist]
        a1.plot(ep, [h["train_loss"] for h in hist], marker="o", ms=3, label=name)
        if all("test_acc" in h for h in hist):
            a2.plot(ep, [100 * h["test_acc"] for h in hist], marker="o", ms=3, label=name)
    a1.set(xlabel="epoch", ylabel="train loss", title="Training loss")
    a2.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy (eval subset)")
    a2.legend(fontsize=8)
    return fig


def robustness_curves(df, paper_points: dict[str, list[dict]] | None = None):
    """Accuracy vs eps per attack (one panel per dataset/model) from query rows (accuracy records),
    with the paper's points as crosses (paper_points: {"<dataset>/<model>": [point, ...]})."""
    from .tables import attack_label

    df = df[df["metric"] == "accuracy"]
    groups = list(df.groupby(["dataset", "model"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.6), squeeze=False)
    for ax, ((dataset, model), g) in zip(axes[0], groups):
        clean = float(g[g["attack"].isna()]["value"].iloc[0]) * 100
        attacked = g[g["attack"].notna()].copy()
        attacked["label"] = [attack_label(r) for _, r in attacked.iterrows()]
        for label, ga in attacked.groupby("label", sort=False):
            ga = ga.sort_values("eps")
            ax.plot([0] + list(ga["eps"]), [clean] + [100 * float(v) for v in ga["value"]], marker="o", ms=4,
                    label=f"ours: {label}")
        for p in (paper_points or {}).get(f"{dataset}/{model}", []):
            ax.scatter([p["eps"]], [p["baseline"]], marker="x", s=60, color="k" if p["attack"] == "FGSM" else "r",
                       label=f"paper baseline: {p['attack']}", zorder=5)
        ax.set(title=f"{model} on {dataset}", xlabel="eps (L-inf, [0,1] pixels)", ylabel="accuracy (%)", ylim=(0, 100))
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
    return fig


def _show(ax, img_chw, title=""):
    ax.imshow(img_chw.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def segmentation_examples(x, segmentations: dict[str, "object"]):
    """One row per image, one column per segmentation (boundaries drawn)."""
    from skimage.segmentation import mark_boundaries

    cols = list(segmentations)
    fig, axes = plt.subplots(len(x), len(cols), figsize=(1.6 * len(cols), 1.6 * len(x)), squeeze=False)
    for i in range(len(x)):
        img = x[i].permute(1, 2, 0).cpu().numpy().astype(float)
        for j, name in enumerate(cols):
            seg = segmentations[name][i].cpu().numpy()
            axes[i, j].imshow(mark_boundaries(img, seg, color=(1, 1, 0), mode="inner"))
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(name, fontsize=7)
            axes[i, j].text(1, 31, f"{int(seg.max()) + 1}", color="w", fontsize=7,
                            bbox={"facecolor": "k", "alpha": 0.6, "pad": 1})
    return fig


def lime_maps(x, maps, labels, preds, class_names, title: str = ""):
    """Image over signed LIME map (red: supports the class, blue: against), one column per image."""
    n = len(x)
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.3), squeeze=False)
    for i in range(n):
        _show(axes[0, i], x[i], f"{class_names[int(labels[i])]}\n(pred {class_names[int(preds[i])]})")
        m = maps[i].cpu().numpy()
        lim = max(abs(m).max(), 1e-8)
        axes[1, i].imshow(x[i].mean(0).cpu().numpy(), cmap="gray", alpha=0.5)
        axes[1, i].imshow(m, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.6)
        axes[1, i].axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def overlap_bars(counts: dict[str, dict[str, int]]):
    """Upset-style bars: flagged segments per exact combination of rules, one colour per model."""
    import pandas as pd

    df = pd.DataFrame([{"model": m, "rules": k, "segments": v} for m, d in counts.items() for k, v in d.items()])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    sns.barplot(df, y="rules", x="segments", hue="model", ax=ax, orient="h")
    ax.set(title="Flagged segments by exact combination of rules (eq 7 is their union)", ylabel="", xlabel="segments")
    ax.legend(fontsize=7)
    return fig


def flag_examples(x, beta_maps, rule_masks: dict[str, "object"], truth=None, title: str = ""):
    """Rows: image, baseline LIME map, then one row per rule's flagged pixels (and the planted truth)."""
    rows = ["image", "LIME"] + list(rule_masks) + (["planted truth"] if truth is not None else [])
    n = len(x)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.35 * len(rows)), squeeze=False)
    for i in range(n):
        _show(axes[0, i], x[i])
        m = beta_maps[i].cpu().numpy()
        lim = max(abs(m).max(), 1e-8)
        axes[1, i].imshow(m, cmap="bwr", vmin=-lim, vmax=lim)
        extra = [rule_masks[r][i] for r in rule_masks] + ([truth[i]] if truth is not None else [])
        for r, mk in enumerate(extra, start=2):
            axes[r, i].imshow(x[i].mean(0).cpu().numpy(), cmap="gray", alpha=0.6)
            axes[r, i].imshow(mk.cpu().numpy(), cmap="Reds", alpha=0.55, vmin=0, vmax=1)
        for r in range(1, len(rows)):
            axes[r, i].axis("off")
    for r, name in enumerate(rows):
        axes[r, 0].text(-3, 16, name, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def ablation_bars(table, columns: list[str], title: str = ""):
    """Horizontal bars per model row for a few accuracy columns (%), e.g. the ablation table."""
    import pandas as pd

    df = table[columns].reset_index().melt(id_vars=table.index.name or "index", var_name="metric", value_name="accuracy (%)")
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) * max(1, len(columns) / 2) + 1))
    sns.barplot(df, y=table.index.name or "index", x="accuracy (%)", hue="metric", ax=ax, orient="h")
    ax.set(title=title, ylabel="")
    ax.legend(fontsize=7, loc="lower right")
    return fig
