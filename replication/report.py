"""Markdown tables rendered from results JSON: `python -m replication.report --profile cpu [--update-readme]`.

--update-readme replaces the text between the RESULTS markers in README.md, so the README's numbers
are never typed by hand.
"""
from __future__ import annotations

import argparse
import re

import pandas as pd

from . import paths
from .results import load_results, results_path
from .tables import accuracy_table, normalised_eps_scale, paper_a_baseline_comparison

BEGIN, END = "<!-- RESULTS:BEGIN -->", "<!-- RESULTS:END -->"


def _cell(col: str, v) -> str:
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.4g}" if "eps" in col else f"{v:.2f}"
    return str(v)


def _md(df, index=True) -> str:
    df = df.reset_index() if index else df
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(c, v) for c, v in zip(cols, row)) + " |")
    return "\n".join(lines)


def render(profile: str) -> str:
    out = []
    if results_path("01_baseline_training", profile).exists():
        doc = load_results("01_baseline_training", profile)
        recs = doc["records"]
        prov = doc["provenance"]
        acc = [r for r in recs if r["metric"] == "accuracy"]
        n = sorted({(r["model"], r["n"]) for r in acc})
        dirty = " **from uncommitted code**" if prov.get("dirty") else ""  # older "+dirty" counted outputs too
        out.append(f"**Notebook 01, profile `{profile}`** (git {prov['git_commit'][:10]}{dirty}, {prov['device']}; "
                   "test images: " + ", ".join(f"{m} n={k}" for m, k in n) + "). Accuracy (%), "
                   "L-inf eps on [0,1] pixels (–: not evaluated):\n")
        table = accuracy_table(recs).T  # rows: clean / attack @ eps; columns: models
        table.columns = [m for _, m in table.columns]
        table.index.name = "accuracy (%)"
        table = table.rename(index={"clean": "clean (eval subset)"})
        out.append(_md(table))
        for ds in ("cifar10", "cifar100"):
            if any(r["model"] == f"resnet18_{ds}" for r in recs):
                t = paper_a_baseline_comparison(recs, f"resnet18_{ds}", ds)
                out.append(f"\nPaper A's baseline ResNet-18 ({'Fig. 3' if ds == 'cifar10' else 'Fig. 4'}, {ds}) "
                           f"beside ours (`{profile}` profile):\n")
                out.append(_md(t, index=False))
                scale = normalised_eps_scale(ds)
                t2 = paper_a_baseline_comparison(recs, f"resnet18_{ds}", ds, eps_scale=scale)
                if t2["ours (%)"].notna().all():
                    out.append(f"\nThe same points if the paper's eps were on normalised inputs (pixel eps = eps x "
                               f"{scale:.4f}, the mean channel std):\n")
                    out.append(_md(t2, index=False))
        train = [r for r in recs if r["metric"] == "train_time_s"]
        if train:
            out.append("\nTraining time (this profile's device): " + "; ".join(
                f"{r['model']}: {r['value'] / 60:.1f} min for {r['n']} epochs" for r in train) + ".")
    if results_path("02_lime_analysis", profile).exists():
        recs = load_results("02_lime_analysis", profile)["records"]
        segs = [r for r in recs if r["metric"].startswith("segments_mean")]
        out.append(f"\n**Notebook 02, profile `{profile}`**: segments per 32x32 image: " + "; ".join(
            f"{r['extra']['segmentation']} {r['value']:.1f} (min {r['extra']['min']})" for r in segs) + ".")
        v = {r["metric"]: r for r in recs}
        if "lime_batched_s_per_image" in v:
            n_s = v["lime_batched_s_per_image"]["extra"]["n_samples"]
            out.append(
                f"LIME, {n_s} samples, ResNet-18 on {v['lime_batched_s_per_image']['extra']['device']} "
                f"({v['lime_batched_s_per_image']['n']} images): `lime` {v['lime_lime_bs10_s_per_image']['value']:.3f} s/image "
                f"at its default batch size 10, {v['lime_lime_bs1000_s_per_image']['value']:.3f} at 1000; batched "
                f"{v['lime_batched_s_per_image']['value']:.3f} s/image = {v['lime_batched_over_inference']['value']:.2f}x "
                f"pure inference of its perturbed images; largest |beta difference| to `lime` "
                f"{v['lime_max_abs_coef_diff_vs_lime']['value']:.1e}.")
        if "lime_resample_corr_mean" in v:
            out.append(f"Attribution stability when only the masks change (seed+1): mean Pearson r "
                       f"{v['lime_resample_corr_mean']['value']:.3f} (min {v['lime_resample_corr_min']['value']:.3f}); "
                       f"top 10% of segments hold {100 * v['lime_top10pct_share_mean']['value']:.1f}% of |beta|.")
    out += _render_03(profile) + _render_04(profile)
    if results_path("bench", profile).exists():
        recs = load_results("bench", profile)["records"]
        figs = {r["metric"]: r["value"] for r in recs}
        parts = [f"{k.replace('_', ' ')} {v:,.0f}" for k, v in figs.items() if k.endswith("per_s")]
        tta = [f"{k[8:10]}%: {v / 60:.1f} min" if v >= 0 else f"{k[8:10]}%: not reached"
               for k, v in figs.items() if k.startswith("time_to")]
        out.append(f"\nBenchmark (`python -m replication.bench train --profile {profile}`): " + ", ".join(parts)
                   + (". Time to test accuracy: " + ", ".join(tta) if tta else "") + ".")
    return "\n".join(out) if out else f"(no results for profile {profile} yet)"


def _render_03(profile: str) -> list[str]:
    if not results_path("03_spurious_features", profile).exists():
        return []
    recs = load_results("03_spurious_features", profile)["records"]
    v = {(r["model"], r["dataset"], r["metric"]): r for r in recs}
    out = [f"\n**Notebook 03, profile `{profile}`**: share of segments (pixels) each rule flags on "
           f"{next(r['n'] for r in recs if r['metric'] == 'flagged_spurious_segment_frac')} training images:\n"]
    rows = []
    for model, ds, label in (("resnet18_cifar10", "cifar10", "CIFAR-10, with ResNet-50 reference"),
                             ("resnet18_cifar100", "cifar100", "CIFAR-100, thresholds only")):
        if (model, ds, "flagged_spurious_segment_frac") in v:
            rows.append({"identification": label, **{
                rule: f"{100 * v[(model, ds, f'flagged_{rule}_segment_frac')]['value']:.1f}% "
                      f"({100 * v[(model, ds, f'flagged_{rule}_pixel_frac')]['value']:.1f}%)"
                for rule in ("irrelevant", "sensitive", "unstable", "spurious")}})
    out.append(_md(pd.DataFrame(rows), index=False))
    planted = [r for r in recs if r["metric"].startswith("planted_iou[")]
    if planted:
        ds = planted[0]["dataset"]
        m = planted[0]["model"]
        rows = [{"flagged by": r["metric"][12:-1],
                 "pixels flagged (%)": r["extra"]["pixels_flagged_pct"],
                 **{k: 100 * v[(m, ds, f"planted_{k}[{r['metric'][12:-1]}]")]["value"] for k in ("precision", "recall", "iou")}}
                for r in planted]
        frac = v[(m, ds, "planted_pixel_frac")]["value"]
        out.append(f"\nPlanted shortcut (squares cover {100 * frac:.2f}% of pixels): flagged pixels against the "
                   f"planted ones, {planted[0]['n']} planted training images (%):\n")
        out.append(_md(pd.DataFrame(rows), index=False))
    acc = [r for r in recs if r["metric"] == "accuracy"]
    if acc:
        out.append("\nAccuracy (%) of the shortcut model and the clean baseline on clean, correlated and "
                   "decorrelated test images: " + "; ".join(f"{r['model']} on {r['dataset']}: {100 * r['value']:.2f}"
                                                            for r in acc) + ".")
    return out


def _render_04(profile: str) -> list[str]:
    if not results_path("04_refinement_training", profile).exists():
        return []
    recs = load_results("04_refinement_training", profile)["records"]
    out = [f"\n**Notebook 04, profile `{profile}`**: accuracy (%) after refinement (eps on [0,1] pixels; "
           f"0.002507/0.007521 and 0.002666/0.007999 are the paper's 0.01/0.03 read as normalised inputs). "
           f"Each row fine-tunes the baseline on the same identified training images for the same steps:\n"]
    for ds in ("cifar10", "cifar100"):
        sub = [r for r in recs if r["dataset"] == ds and r["metric"] == "accuracy"]
        if sub:
            t = accuracy_table(sub)
            t.index = [m for _, m in t.index]
            t.index.name = ds
            out.append(_md(t) + "\n")
    seeds = [r for r in recs if r["metric"].startswith("seed_mean[")]
    if seeds:
        rows: dict[str, dict[str, str]] = {}
        for r in seeds:
            rows.setdefault(r["model"], {})[r["metric"][10:-1]] = f"{100 * r['value']:.1f} ± {r['extra']['std_pp']:.1f}"
        out.append(f"Mean ± std over fine-tuning seeds {seeds[0]['extra']['seeds']} (cifar10, %):\n")
        out.append(_md(pd.DataFrame.from_dict(rows, orient="index").rename_axis("row")) + "\n")
    gains = [r for r in recs if r["metric"].startswith("gain_pp[")]
    if gains:
        out.append("Gain of refined over baseline (pp), ours vs the paper's (Fig. 3/4):\n")
        out.append(_md(pd.DataFrame([{"dataset": r["dataset"], "point": r["metric"][8:-1], "paper gain": r["extra"]["paper_gain_pp"],
                                      "our gain": r["value"]} for r in gains]), index=False))
    sc = [r for r in recs if r["dataset"].startswith("cifar10-shortcut") and r["metric"] == "accuracy"]
    if sc:
        t = pd.DataFrame(sc).pivot_table(index="model", columns="dataset", values="value", sort=False) * 100
        t["reliance (pp)"] = t["cifar10-shortcut-correlated"] - t["cifar10-shortcut-decorrelated"]
        out.append("\nPlanted shortcut, accuracy (%) after refinement of the shortcut model:\n")
        out.append(_md(t.round(2)))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args(argv)
    text = render(args.profile)
    print(text)
    if args.update_readme:
        readme = paths.PROJECT_ROOT / "README.md"
        body = readme.read_text()
        if BEGIN not in body:
            raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", body, flags=re.S)
        readme.write_text(new)


if __name__ == "__main__":
    main()
