"""Markdown tables rendered from results JSON: `python -m replication.report --profile cpu [--update-readme]`.

--update-readme replaces the text between the RESULTS markers in README.md, so the README's numbers
are never typed by hand.
"""
from __future__ import annotations

import argparse
import re

from .paths import PROJECT_ROOT
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
        out.append(f"**Notebook 01, profile `{profile}`** (git {prov['git_commit'][:10]}, {prov['device']}; "
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
    if results_path("bench", profile).exists():
        recs = load_results("bench", profile)["records"]
        figs = {r["metric"]: r["value"] for r in recs}
        parts = [f"{k.replace('_', ' ')} {v:,.0f}" for k, v in figs.items() if k.endswith("per_s")]
        tta = [f"{k[8:10]}%: {v / 60:.1f} min" if v >= 0 else f"{k[8:10]}%: not reached"
               for k, v in figs.items() if k.startswith("time_to")]
        out.append(f"\nBenchmark (`python -m replication.bench train --profile {profile}`): " + ", ".join(parts)
                   + (". Time to test accuracy: " + ", ".join(tta) if tta else "") + ".")
    return "\n".join(out) if out else f"(no results for profile {profile} yet)"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args(argv)
    text = render(args.profile)
    print(text)
    if args.update_readme:
        readme = PROJECT_ROOT / "README.md"
        body = readme.read_text()
        if BEGIN not in body:
            raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", body, flags=re.S)
        readme.write_text(new)


if __name__ == "__main__":
    main()
