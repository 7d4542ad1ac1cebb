"""Markdown tables rendered from results JSON: `python -m replication.report --profile cpu [--update-readme]`.

--update-readme replaces the text between the RESULTS markers in README.md, so the README's numbers
are never typed by hand.
"""
from __future__ import annotations

import argparse
import re

from .paths import PROJECT_ROOT
from .results import load_results, results_path
from .tables import accuracy_table, paper_a_baseline_comparison

BEGIN, END = "<!-- RESULTS:BEGIN -->", "<!-- RESULTS:END -->"


def _md(df, index=True) -> str:
    df = df.reset_index() if index else df
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
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
                   "L-inf eps on [0,1] pixels:\n")
        out.append(_md(accuracy_table(recs)))
        for ds in ("cifar10", "cifar100"):
            if any(r["model"] == f"resnet18_{ds}" for r in recs):
                t = paper_a_baseline_comparison(recs, f"resnet18_{ds}", ds)
                out.append(f"\nPaper A's baseline ResNet-18 ({'Fig. 3' if ds == 'cifar10' else 'Fig. 4'}, {ds}) "
                           f"beside ours (`{profile}` profile):\n")
                out.append(_md(t, index=False))
        train = [r for r in recs if r["metric"] == "train_time_s"]
        if train:
            out.append("\nTraining time (this profile's device): " + "; ".join(
                f"{r['model']}: {r['value'] / 60:.1f} min for {r['n']} epochs" for r in train) + ".")
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
