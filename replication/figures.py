"""Figures: one seaborn theme, saved as PNG and PDF under figures/<profile>/."""
from __future__ import annotations

from pathlib import Path
from typing import Any

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
    with the paper's points at both readings of its eps: crosses where its eps is read as pixels,
    circles where it is read as normalised inputs (paper_points: {"<dataset>/<model>": [point, ...]})."""
    from .papers import normalised_eps_scale
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
        scale = normalised_eps_scale(dataset)
        for p in (paper_points or {}).get(f"{dataset}/{model}", []):
            color = "k" if p["attack"] == "FGSM" else "r"
            ax.scatter([p["eps"]], [p["baseline"]], marker="x", s=60, color=color, zorder=5,
                       label=f"paper baseline {p['attack']}, eps read as pixels")
            ax.scatter([p["eps"] * scale], [p["baseline"]], marker="o", s=45, facecolors="none", edgecolors=color,
                       zorder=5, label=f"paper baseline {p['attack']}, eps read as normalised (x {scale:.3f})")
        ax.set(title=f"{model} on {dataset}", xlabel="eps (L-inf, [0,1] pixels)", ylabel="accuracy (%)", ylim=(0, 100))
    uniq: dict = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            uniq.setdefault(lab.split(" (x ")[0], h)  # one legend: the scale differs per dataset (see README)
    fig.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper center", ncol=3, bbox_to_anchor=(0.5, -0.06))
    return fig


def _show(ax, img_chw, title=""):
    ax.imshow(img_chw.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def segmentation_examples(x, segmentations: dict[str, "object"]):
    """One row per image, one column per segmentation (boundaries drawn)."""
    from skimage.segmentation import mark_boundaries

    import textwrap

    cols = list(segmentations)
    fig, axes = plt.subplots(len(x), len(cols), figsize=(2.1 * len(cols), 1.7 * len(x) + 0.5), squeeze=False)
    for i in range(len(x)):
        img = x[i].permute(1, 2, 0).cpu().numpy().astype(float)
        for j, name in enumerate(cols):
            seg = segmentations[name][i].cpu().numpy()
            axes[i, j].imshow(mark_boundaries(img, seg, color=(1, 1, 0), mode="inner"))
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(textwrap.fill(name, 18), fontsize=8)
            axes[i, j].text(1, 31, f"{int(seg.max()) + 1}", color="w", fontsize=7,
                            bbox={"facecolor": "k", "alpha": 0.6, "pad": 1})
    fig.suptitle("Segment boundaries (yellow); the number is the image's segment count", fontsize=9)
    fig.tight_layout()
    return fig


def lime_maps(x, maps, labels, preds, class_names, title: str = ""):
    """Row 1: the image (true class, prediction). Row 2: its signed LIME map over the grey image,
    scaled per image to [-1, 1] (red: the segment raises the predicted probability of the true
    class; blue: lowers it), with one colour bar for the scale."""
    n = len(x)
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n + 1.2, 3.6), squeeze=False)
    im = None
    for i in range(n):
        _show(axes[0, i], x[i], f"{class_names[int(labels[i])]}\n(pred {class_names[int(preds[i])]})")
        m = maps[i].cpu().numpy()
        lim = max(abs(m).max(), 1e-8)
        axes[1, i].imshow(x[i].mean(0).cpu().numpy(), cmap="gray", alpha=0.5)
        im = axes[1, i].imshow(m / lim, cmap="bwr", vmin=-1, vmax=1, alpha=0.6)
        axes[1, i].axis("off")
    for r, name in enumerate(("image\n(true, pred)", "LIME beta\n/ max|beta|")):
        axes[r, 0].text(-4, 16, name, ha="right", va="center", fontsize=7)
    bar = fig.colorbar(im, ax=axes[1, :].tolist(), fraction=0.025, pad=0.02, ticks=[-1, 0, 1])
    bar.ax.set_yticklabels(["-max: lowers p(true)", "0", "+max: raises p(true)"], fontsize=7)
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


def ablation_bars(df, points: dict[str, tuple[dict | None, float | None]], title: str = ""):
    """Horizontal bars (accuracy %) per ablation row at a few (attack, eps) points, drawn from query
    rows of notebook 04's CIFAR-10 records: the baseline and each refinement at its defaults (no
    Algorithm 1 round, per-image masks, the default lambda, seed 0). Where a row was fine-tuned with
    several seeds its bar is their mean with a ±1 std error bar. `points`: {label: (attack spec or
    None for clean, eps)}; labels should say the eps reading."""
    import pandas as pd

    from .tables import LABEL_DEFAULTS, with_labels

    df = with_labels(df)

    def col(name):
        return df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index)

    default_row = (col("round").isna() & col("mask_scope").isna()
                   & col("lambda").isin([None, LABEL_DEFAULTS["lambda"]]) & col("train_seed").isin([None, 0]))
    rows = []
    for label, (attack, eps) in points.items():
        at = (df["attack"].isna() if attack is None else (df["attack"] == attack["name"]) & (df["eps"] == eps))
        acc = df[at & default_row & (df["metric"] == "accuracy") & (df["dataset"] == "cifar10")]
        stats = {m: df[at & (df["metric"] == m)].set_index("label")["value"]
                 for m in ("accuracy_mean_over_seeds", "accuracy_std_over_seeds")}
        for _, r in acc.iterrows():
            seeded = r["label"] in stats["accuracy_mean_over_seeds"].index
            rows.append({"row": r["label"], "point": label,
                         "acc": 100 * float(stats["accuracy_mean_over_seeds"][r["label"]] if seeded else r["value"]),
                         "std": 100 * float(stats["accuracy_std_over_seeds"][r["label"]]) if seeded else float("nan")})
    table = pd.DataFrame(rows)
    order = list(dict.fromkeys(table["row"]))
    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(order) * max(1, len(points) / 2) + 1.2))
    height = 0.8 / len(points)
    for k, (label, g) in enumerate(table.groupby("point", sort=False)):
        g = g.set_index("row").reindex(order)
        y = [i + (k - (len(points) - 1) / 2) * height for i in range(len(order))]
        ax.barh(y, g["acc"], height=height, xerr=g["std"], capsize=2, label=label)
    ax.set_yticks(range(len(order)), [o.split(" · ", 1)[-1] if " · " in o else f"{o} (baseline)" for o in order],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set(title=title, ylabel="", xlabel="accuracy (%); error bars: ±1 std over fine-tuning seeds, where run")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=1)
    return fig


def bound_scatter(per_model: dict, estimates=("masked", "unmasked", "margin", "clever")):
    """Estimate vs measured minimal L-inf distortion, log axes, one panel per estimate, the y = x line:
    points above it are images where the 'lower bound' is wrong."""
    import numpy as np

    fig, axes = plt.subplots(1, len(estimates), figsize=(4 * len(estimates), 3.9), squeeze=False)
    for ax, name in zip(axes[0], estimates):
        lo, hi = np.inf, 0.0
        for (label, df), colour in zip(per_model.items(), ("C0", "C3")):
            d = df[np.isfinite(df["measured"]) & np.isfinite(df[name]) & (df["measured"] > 0) & (df[name] > 0)]
            if len(d):
                ax.scatter(d["measured"], d[name], s=8, alpha=0.5, color=colour,
                           label=f"{label}: {100 * (d[name] > d['measured']).mean():.0f}% above y = x")
                lo, hi = min(lo, d[["measured", name]].min().min()), max(hi, d[["measured", name]].max().max())
        if hi > 0:
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="measured minimal L-inf distortion", ylabel=f"estimate: {name}",
               title={"masked": "(a) eq 22-23 as printed", "unmasked": "(b) without the mask",
                      "margin": "(c) margin / ||grad(f_y - f_j)||_1", "clever": "(d) CLEVER"}.get(name, name))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def alignment_scatter(per_model: dict):
    """Eq 19's alignment against the measured minimal distortion, per image."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(5.5, 3.9))
    for (label, df), colour in zip(per_model.items(), ("C0", "C3")):
        d = df[np.isfinite(df["measured"])]
        ax.scatter(d["alignment"], d["measured"], s=8, alpha=0.5, color=colour, label=label)
    ax.set(yscale="log", xlabel="alignment (eq 19)", ylabel="measured minimal L-inf distortion",
           title="Does alignment predict robustness?")
    ax.legend(fontsize=8)
    return fig


def corruption_examples(sets, image: int = 0):
    """One test image under every corruption (rows) and severity (columns 1-5), the clean image first."""
    names = list(dict.fromkeys(c for c, _ in sets.images))
    fig, axes = plt.subplots(len(names), 6, figsize=(6 * 0.95, len(names) * 0.95))
    for i, c in enumerate(names):
        for j in range(6):
            ax = axes[i, j]
            ax.axis("off")
            x = sets.clean.x[image] if j == 0 else sets.images[(c, j)][image]
            ax.imshow(x.permute(1, 2, 0).cpu().numpy())
            if i == 0:
                ax.set_title("clean" if j == 0 else f"severity {j}", fontsize=7)
        axes[i, 0].text(-4, 16, c.replace("_", " "), ha="right", va="center", fontsize=7)
    fig.suptitle(f"CIFAR-10-C ({sets.source}): one test image", fontsize=9)
    return fig


def corruption_heatmap(long, reading: str, paper_eps: float = 0.01):
    """Accuracy (%) per corruption (rows) and severity (columns), clean / FGSM / PGD at `paper_eps`
    under `reading`, baseline (top) and refined (bottom)."""
    points = [("clean", None), ("FGSM", paper_eps), ("PGD", paper_eps)]
    roles = [r for r in ("baseline", "refined") if r in set(long["role"])]
    fig, axes = plt.subplots(len(roles), 3, figsize=(11, 5.2 * len(roles)), squeeze=False)
    order = list(dict.fromkeys(long["corruption"][long["severity"] > 0]))
    for i, role in enumerate(roles):
        for j, (attack, e) in enumerate(points):
            d = long[(long["role"] == role) & (long["attack"] == attack) & (long["severity"] > 0)]
            if e is not None:
                d = d[(d["reading"] == reading) & (d["paper_eps"] == e)]
            t = d.pivot_table(index="corruption", columns="severity", values="accuracy").reindex(order)
            sns.heatmap(t, ax=axes[i, j], vmin=0, vmax=100, cmap="viridis", annot=True, fmt=".0f",
                        annot_kws={"fontsize": 6}, cbar=j == 2, cbar_kws={"label": "accuracy (%)"})
            title = "clean" if e is None else f"{attack} @ {e:g} ({reading} reading)"
            axes[i, j].set_title(f"{role}: {title}", fontsize=9)
            axes[i, j].set_xlabel("severity")
            axes[i, j].set_ylabel("" if j else "corruption")
            axes[i, j].tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def table1_scatter(beside):
    """Paper A's Table I cells (x) against ours (y) under each eps reading; y = x dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    cells = beside[~beside["corruption"].isin(["mean", "std"])]
    for ax, reading in zip(axes, ("pixel", "normalised")):
        sns.scatterplot(data=cells, x="paper", y=f"ours, {reading}", hue="role", style="attack", ax=ax, s=30)
        ax.plot([0, 100], [0, 100], "--", color="0.5", lw=1)
        ax.set(xlim=(-2, 102), ylim=(-2, 102), xlabel="Paper A, Table I (%)", ylabel="ours (%)",
               title=f"eps read as {'[0,1] pixels' if reading == 'pixel' else 'normalised inputs'}")
    fig.tight_layout()
    return fig


def curves_vs_paper(df, curve_labels: dict[str, str], paper: dict[str, list[dict]], pgd_point: str):
    """Fig. 3 / Fig. 4 redrawn from stored records: accuracy vs eps (pixels; top axis: the same eps
    on normalised inputs) for FGSM (dashed) and PGD (solid) per model, the strongest attack on the
    'strong' subset as filled squares, and the paper's quoted points (baseline and refined) where its
    eps is read as pixels (crosses) and as normalised inputs (circles). curve_labels: {label: legend
    name} of the models drawn; df: curves.frame rows."""
    from .papers import normalised_eps_scale

    datasets = [d for d in ("cifar10", "cifar100") if d in set(df["dataset"])]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.2 * len(datasets), 4.4), squeeze=False)
    names = list(dict.fromkeys(curve_labels.values()))  # one colour per model kind, the same in every panel
    colors = {label: sns.color_palette("colorblind", len(names))[names.index(name)] for label, name in curve_labels.items()}
    for ax, ds in zip(axes[0], datasets):
        d = df[df["dataset"] == ds]
        for label, name in curve_labels.items():
            g = d[(d["label"] == label) & (d["subset"] == "all")]
            if not len(g):
                continue
            clean = g[g["point"] == "clean"]["accuracy"]
            for point, style in (("fgsm", "--"), (pgd_point, "-")):
                ga = g[g["point"] == point].sort_values("eps")
                ax.plot([0] + ga["eps"].astype(float).tolist(), list(clean) + ga["accuracy"].tolist(), style, marker="o", ms=3,
                        color=colors[label], label=f"{name}, {point.upper()}")
            s = d[(d["label"] == label) & (d["subset"] == "strong") & (d["point"] != "clean") & (d["eps"] < 0.1)]
            s = s[s["eps"].isin(s[~s["point"].isin(["fgsm", pgd_point])]["eps"])]  # where the stronger attacks ran
            if len(s):
                best = s.groupby("eps")["accuracy"].min()
                ax.scatter(best.index.astype(float), best.values, marker="s", s=30, color=colors[label], zorder=4,
                           label=f"{name}, strongest attack (subset)")
        scale = normalised_eps_scale(ds)
        for p in paper.get(ds, []):
            for role, c in (("baseline", "0.3"), ("refined", "k")):
                ax.scatter([p["eps"]], [p[role]], marker="x", s=55, color=c, zorder=5, label=f"paper {role}, eps read as pixels")
                ax.scatter([p["eps"] * scale], [p[role]], marker="o", s=45, facecolors="none", edgecolors=c, zorder=5,
                           label=f"paper {role}, eps read as normalised")
                ax.annotate(p["attack"], (p["eps"], p[role]), textcoords="offset points", xytext=(4, 3), fontsize=6)
        ax.set(title=ds.upper(), xlabel="eps (L-inf, [0,1] pixels)", ylabel="accuracy (%)", ylim=(0, 100), xlim=(0, 0.034))
        top = ax.secondary_xaxis("top", functions=(lambda e, s=scale: e / s, lambda e, s=scale: e * s))
        top.set_xlabel(f"the same eps on normalised inputs (/ {scale:.4f})", fontsize=8)
    uniq: dict = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            uniq.setdefault(lab, h)
    fig.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper center", ncol=3, bbox_to_anchor=(0.5, -0.01))
    return fig


def seed_intervals(paired_rows):
    """LIME mask minus random mask per paper point and eps_train reading: mean over seeds with its
    95% interval (bars), beside zero."""
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    pr = paired_rows.reset_index(drop=True)
    labels = [f"{r['point']}\n(eps_train {r['eps_train reading']})" for _, r in pr.iterrows()]
    ax.errorbar(range(len(pr)), pr["LIME - random (pp)"], yerr=pr["ci95 (pp)"].fillna(0), fmt="o", capsize=4)
    ax.axhline(0, color="0.4", lw=1)
    ax.set_xticks(range(len(pr)), labels, fontsize=6, rotation=30, ha="right")
    ax.set(ylabel="LIME mask - random mask (pp)", title=f"Paired over {int(pr['seeds'].max())} training seeds, same test images (95% t interval)")
    return fig


def psnr_vs_t(rows):
    """x0-prediction PSNR (dB) against the diffusion timestep, one line per model; rows: dicts with
    model, t, psnr (mean) and ci (half width)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, g in df.groupby("model", sort=False):
        g = g.sort_values("t")
        ax.errorbar(g["t"], g["psnr"], yerr=g["ci"], marker="o", ms=3, capsize=3, label=name)
    ax.set(xscale="log", xlabel="timestep t (of 1000)", ylabel="PSNR of the x0 prediction (dB)",
           title="One-shot denoising quality on held-out test images")
    ax.legend(fontsize=8)
    return fig


def image_rows(rows: dict[str, "object"], k: int = 8):
    """One row of k images per entry ({label: (N,3,H,W) in [0,1]})."""
    fig, axes = plt.subplots(len(rows), k, figsize=(k * 0.95, len(rows) * 1.05), squeeze=False)
    for i, (label, x) in enumerate(rows.items()):
        for j in range(k):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(x):
                ax.imshow(x[j].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        axes[i, 0].text(-3, 16, label, ha="right", va="center", fontsize=7)
    return fig


def loss_curve(histories: dict[str, list[dict[str, Any]]], ylabel: str = "train loss"):
    """Training loss per epoch, one line per run."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, hist in histories.items():
        ax.plot([h["epoch"] for h in hist], [h["train_loss"] for h in hist], marker="o", ms=3, label=name)
    ax.set(xlabel="epoch", ylabel=ylabel, title="Training loss")
    ax.legend(fontsize=8)
    return fig


def purifier_grid(table):
    """Clean and robust accuracy (%) of the purified classifier against network evaluations per
    image, one line per t* and sampler; `table`: defences.grid_table (index t_star, sampler, nfe)."""
    df = table.reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for (t, sampler), g in df.groupby(["t_star", "sampler"]):
        g = g.sort_values("nfe")
        style = dict(marker="o", ms=3, label=f"t* = {t:g}, {sampler.upper()}", ls="-" if sampler == "ddpm" else "--")
        axes[0].plot(g["nfe"], g["clean"], **style)
        axes[1].errorbar(g["nfe"], g["robust"], yerr=[g["robust"] - g["robust CI low"], g["robust CI high"] - g["robust"]],
                         capsize=3, **style)
    axes[0].set(xscale="log", xlabel="network evaluations per image", ylabel="accuracy (%)", title="Clean, purified")
    axes[1].set(xscale="log", xlabel="network evaluations per image", ylabel="accuracy (%)",
                title="PGD with exact gradients through the sampler (Wilson 95%)")
    axes[1].legend(fontsize=8)
    return fig


def attack_bars(df, eps255: float, defences: list[str]):
    """Accuracy (%, mean over purifier draws, Wilson 95% bars) under each attack at one eps, one
    panel per defence; `df`: defences.frame."""
    fig, axes = plt.subplots(1, len(defences), figsize=(5.2 * len(defences), 3.8), squeeze=False)
    for ax, name in zip(axes[0], defences):
        g = df[(df.defence == name) & (df.subset == "all") & (df["eps (/255)"] == round(eps255, 2))
               & (df.score == "mean over draws")]
        labels = [f"{a}\n{t}" for a, t in zip(g.attack, g.threat)]
        y = g.accuracy.to_numpy()
        ax.barh(range(len(g)), y, xerr=[y - g.ci_low.to_numpy(), g.ci_high.to_numpy() - y], capsize=3, color="#4c72b0")
        ax.set_yticks(range(len(g)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set(xlabel="accuracy (%)", title=f"{name} @ {eps255:g}/255", xlim=(0, 100))
    fig.tight_layout()
    return fig


def map_examples(clean, adv, maps: dict[str, tuple["object", "object"]], masks=None, title: str = ""):
    """Columns: images. Rows: the clean image, the adversarial one, then for each label its clean and
    adversarial magnitude maps (saliency.magnitude); `masks` (optional, (k,H,W)) outline the ground truth."""
    rows = ["clean", "adversarial"] + [f"{m}\n{w}" for m in maps for w in ("clean", "adv.")]
    n = len(clean)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.25 * n, 1.3 * len(rows)), squeeze=False)
    for i in range(n):
        _show(axes[0, i], clean[i])
        _show(axes[1, i], adv[i])
        r = 2
        for a, b in maps.values():
            for m in (a, b):
                axes[r, i].imshow(m[i].cpu().numpy(), cmap="magma", vmin=0, vmax=1)
                if masks is not None:
                    axes[r, i].contour(masks[i].cpu().numpy().astype(float), levels=[0.5], colors="cyan", linewidths=0.6)
                axes[r, i].axis("off")
                r += 1
    for r, name in enumerate(rows):
        axes[r, 0].text(-3, 16, name, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def stability_bars(table, metric_label: str = "SSIM of magnitude maps"):
    """Per (defence, method): clean-vs-adversarial SSIM with its 95% interval, and the two floors as
    markers (same image with another seed: the method's noise; unrelated images: chance);
    `table`: stability.table2."""
    t = table.reset_index()
    labels = [f"{d} · {m}" for d, m in zip(t.defence, t.method)]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(t) + 1.2))
    y = range(len(t))
    v = t["clean vs adversarial"].to_numpy()
    ax.barh(y, v, xerr=[v - t["CI low"].to_numpy(), t["CI high"].to_numpy() - v], capsize=2, color="#4c72b0",
            label="clean vs adversarial (95%)")
    ax.scatter(t["same clean image, two seeds"], y, marker="|", s=120, color="#dd8452", zorder=3, label="same image, two seeds")
    ax.scatter(t["unrelated clean images"], y, marker="x", s=25, color="0.3", zorder=3, label="unrelated images")
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=metric_label, xlim=(min(0, float(t["unrelated clean images"].min()) - 0.05), 1.02))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def grounding_bars(table):
    """Top-|mask| IoU per (construction, defence, method) with a random map's IoU as a marker;
    `table`: stability.table3."""
    t = table.reset_index()
    fig, axes = plt.subplots(1, t.construction.nunique(), figsize=(5.2 * t.construction.nunique(), 0.3 * len(t) + 1.6),
                             squeeze=False)
    for ax, (c, g) in zip(axes[0], t.groupby("construction", sort=False)):
        y = range(len(g))
        ax.barh(y, g.saliency_iou, color="#55a868", label="IoU, top-|mask| pixels")
        ax.scatter(g.saliency_iou_random_map, y, marker="x", color="0.3", zorder=3, label="random map")
        ax.set_yticks(list(y), [f"{d} · {m}" for d, m in zip(g.defence, g.method)], fontsize=7)
        ax.invert_yaxis()
        ax.set(xlabel="IoU with the ground truth", title=c, xlim=(0, 1))
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def scaling_difference(pairs, points: list[str]):
    """Notebook 11: LIME minus random (pp, mean over seeds with its 95% interval) against the
    identification size N, one panel per width, one line per training reading x point; zero marked."""
    import numpy as np

    widths = sorted(pairs["width"].unique())
    fig, axes = plt.subplots(1, len(widths), figsize=(5.5 * len(widths), 4), sharey=True, squeeze=False)
    for ax, w in zip(axes[0], widths):
        d = pairs[(pairs["width"] == w) & pairs["point"].isin(points)]
        for (reading, point), g in d.groupby(["eps_train reading", "point"], sort=False):
            g = g.sort_values("N")
            err = np.nan_to_num(g["ci95 (pp)"].astype(float).values)
            ax.errorbar(g["N"], g["LIME - random (pp)"], yerr=err, marker="o", capsize=3,
                        ls="-" if reading == "normalised" else "--", label=f"{point}, trained {reading}")
        ax.axhline(0, color="k", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(sorted(d["N"].unique()), [f"{int(n):,}" for n in sorted(d["N"].unique())])
        ax.set_xlabel("training images identified (N)")
        ax.set_title(f"ResNet-18, width x{w:g}")
    axes[0][0].set_ylabel("LIME mask - random mask (pp)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def planted_vs_n(table):
    """Notebook 11: precision and recall of the flagged pixels on the planted squares against N."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for ax, m in zip(axes, ("precision", "recall")):
        for by, g in table.groupby("flagged by", sort=False):
            g = g.sort_values("N")
            ax.plot(g["N"], 100 * g[m], marker="o", label=by)
        ax.set_xscale("log")
        ax.set_xticks(sorted(table["N"].unique()), [f"{int(n):,}" for n in sorted(table["N"].unique())])
        ax.set_xlabel("planted training images identified (N)")
        ax.set_ylabel(f"{m} (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
