"""Markdown tables rendered from results JSON: `python -m replication.report --profile cpu [--update-readme]`.

--update-readme replaces the text between the RESULTS markers in README.md, so the README's numbers
are never typed by hand.
"""
from __future__ import annotations

import argparse
import re

import pandas as pd

from . import claims, paths
from .cache import atomic_write_text
from .papers import normalised_eps_scale, paper_a_baseline_comparison, paper_a_points, paper_eps
from .results import query
from .tables import accuracy_table, point_label, with_labels

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


def _runs_line(df: pd.DataFrame) -> str:
    """'git <commit>[ **from uncommitted code**], <device>' of the runs that measured these rows."""
    runs = df[["git_commit", "dirty", "device"]].drop_duplicates()
    return "; ".join(f"git {r.git_commit[:10]}{' **from uncommitted code**' if r.dirty else ''}, {r.device}"
                     for r in runs.itertuples())


def _render_01(profile: str) -> list[str]:
    df = query(profile, "01_baseline_training")
    if not len(df):
        return []
    acc = df[df["metric"] == "accuracy"]
    n = sorted({(r.model, r.n) for r in acc.itertuples()})
    out = [f"**Notebook 01, profile `{profile}`** ({_runs_line(df)}; "
           "test images: " + ", ".join(f"{m} n={k}" for m, k in n) + "). Accuracy (%), "
           "L-inf eps on [0,1] pixels (–: not evaluated):\n"]
    table = accuracy_table(df).T  # rows: clean / attack @ eps; columns: models
    table.columns = [m for _, m in table.columns]
    table.index.name = "accuracy (%)"
    table = table.rename(index={"clean": "clean (eval subset)"})
    out.append(_md(table))
    for ds in ("cifar10", "cifar100"):
        mine = acc[acc["model"] == f"resnet18_{ds}"]
        if len(mine):
            t = paper_a_baseline_comparison(mine, ds)
            out.append(f"\nPaper A's baseline ResNet-18 ({'Fig. 3' if ds == 'cifar10' else 'Fig. 4'}, {ds}) "
                       f"beside ours (`{profile}` profile):\n")
            out.append(_md(t, index=False))
            t2 = paper_a_baseline_comparison(mine, ds, reading="normalised")
            if t2["ours (%)"].notna().all():
                out.append(f"\nThe same points if the paper's eps were on normalised inputs (pixel eps = eps x "
                           f"{normalised_eps_scale(ds):.4f}, the mean channel std):\n")
                out.append(_md(t2, index=False))
    train = df[df["metric"] == "train_time_s"]
    if len(train):
        out.append("\nTraining time (this profile's device): " + "; ".join(
            f"{r.model}: {r.value / 60:.1f} min for {r.n} epochs" for r in train.itertuples()) + ".")
    return out


def _render_02(profile: str) -> list[str]:
    df = query(profile, "02_lime_analysis")
    if not len(df):
        return []
    seg = df[df["metric"].isin(["segments_mean", "segments_min"])]
    v = {(r.metric, r.segmentation): r.value for r in seg.itertuples()}
    out = [f"\n**Notebook 02, profile `{profile}`**: segments per 32x32 image: " + "; ".join(
        f"{s} {v[('segments_mean', s)]:.1f} (min {v[('segments_min', s)]:g})"
        for s in seg[seg["metric"] == "segments_mean"]["segmentation"])]
    m = {r["metric"]: r for _, r in df.iterrows()}
    if "lime_batched_s_per_image" in m:
        b = m["lime_batched_s_per_image"]
        out[-1] += "."
        out.append(
            f"LIME, {b['n_samples']} samples, ResNet-18 on {b['extra']['device']} ({b['n']} images): "
            f"`lime` {m['lime_lime_bs10_s_per_image']['value']:.3f} s/image at its default batch size 10, "
            f"{m['lime_lime_bs1000_s_per_image']['value']:.3f} at 1000; batched {b['value']:.3f} s/image = "
            f"{m['lime_batched_over_inference']['value']:.2f}x pure inference of its perturbed images; largest "
            f"|beta difference| to `lime` {m['lime_max_abs_coef_diff_vs_lime']['value']:.1e}.")
    else:
        out[-1] += "."
    if "lime_resample_corr_mean" in m:
        out.append(f"Attribution stability when only the masks change (seed+1): mean Pearson r "
                   f"{m['lime_resample_corr_mean']['value']:.3f} (min {m['lime_resample_corr_min']['value']:.3f}); "
                   f"top 10% of segments hold {100 * m['lime_top10pct_share_mean']['value']:.1f}% of |beta|.")
    return out


def _render_03(profile: str) -> list[str]:
    df = query(profile, "03_spurious_features")
    if not len(df):
        return []

    def one(**where):
        hit = df
        for k, want in where.items():
            hit = hit[hit[k] == want] if k in hit.columns else hit.iloc[0:0]
        return hit.iloc[0] if len(hit) else None

    flagged = df[(df["metric"] == "flagged_segment_frac") & (df["rule"] == "spurious")]
    out = [f"\n**Notebook 03, profile `{profile}`**: share of segments (pixels) each rule flags on "
           f"{flagged['n'].iloc[0]} training images:\n"]
    rows = []
    for model, ds, label in (("resnet18_cifar10", "cifar10", "CIFAR-10, with ResNet-50 reference"),
                             ("resnet18_cifar100", "cifar100", "CIFAR-100, thresholds only")):
        def frac(kind, rule):
            sel = df[(df["model"] == model) & (df["dataset"] == ds) & (df["metric"] == f"flagged_{kind}_frac")
                     & (df["rule"] == rule)]
            if "quantile" in sel.columns:  # the default quantiles, not the sweep's
                sel = sel[sel["quantile"].isna()]
            return float(sel["value"].iloc[0]) if len(sel) else None
        if frac("segment", "spurious") is not None:
            rows.append({"identification": label, **{
                rule: f"{100 * frac('segment', rule):.1f}% ({100 * frac('pixel', rule):.1f}%)"
                for rule in ("irrelevant", "sensitive", "unstable", "spurious")}})
    out.append(_md(pd.DataFrame(rows), index=False))
    planted = df[df["metric"] == "planted_iou"]
    if len(planted):
        first = planted.iloc[0]
        sel = df[(df["model"] == first["model"]) & (df["dataset"] == first["dataset"])]
        val = {(r.metric, r.flagged_by): r.value for r in sel[sel["flagged_by"].notna()].itertuples()}
        rows = [{"flagged by": by, "pixels flagged (%)": 100 * val[("flagged_pixel_frac", by)],
                 **{k: 100 * val[(f"planted_{k}", by)] for k in ("precision", "recall", "iou")}}
                for by in planted["flagged_by"]]
        frac = one(metric="planted_pixel_frac", model=first["model"])["value"]
        out.append(f"\nPlanted shortcut (squares cover {100 * frac:.2f}% of pixels): flagged pixels against the "
                   f"planted ones, {first['n']} planted training images (%):\n")
        out.append(_md(pd.DataFrame(rows), index=False))
    acc = df[df["metric"] == "accuracy"]
    if len(acc):
        out.append("\nAccuracy (%) of the shortcut model and the clean baseline on clean, correlated and "
                   "decorrelated test images: " + "; ".join(f"{r.model} on {r.dataset}: {100 * r.value:.2f}"
                                                            for r in acc.itertuples()) + ".")
    return out


def _render_04(profile: str) -> list[str]:
    df = with_labels(query(profile, "04_refinement_training"))
    if not len(df):
        return []
    out = [f"\n**Notebook 04, profile `{profile}`**: accuracy (%) after refinement (eps on [0,1] pixels; "
           f"0.002507/0.007521 and 0.002666/0.007999 are the paper's 0.01/0.03 read as normalised inputs). "
           f"Each row fine-tunes the baseline on the same identified training images for the same steps:\n"]
    for ds in ("cifar10", "cifar100"):
        sub = df[(df["dataset"] == ds) & (df["metric"] == "accuracy")]
        if len(sub):
            t = accuracy_table(sub)
            t.index = [m for _, m in t.index]
            t.index.name = ds
            out.append(_md(t) + "\n")
    means = df[df["metric"] == "accuracy_mean_over_seeds"]
    if len(means):
        std = {(r.label, r.column): r.value for r in df[df["metric"] == "accuracy_std_over_seeds"].itertuples()}
        rows: dict[str, dict[str, str]] = {}
        for r in means.itertuples():
            rows.setdefault(r.label, {})[point_label(r._asdict())] = \
                f"{100 * r.value:.1f} ± {100 * std[(r.label, r.column)]:.1f}"
        out.append(f"Mean ± std over fine-tuning seeds {list(means['train_seeds'].iloc[0])} (cifar10, %):\n")
        out.append(_md(pd.DataFrame.from_dict(rows, orient="index").rename_axis("row")) + "\n")
    gains = df[df["metric"] == "accuracy_gain"]
    if len(gains):
        rows = []
        for _, r in gains.iterrows():
            pe = paper_eps(r["eps"], r["dataset"], r["eps_reading"])
            p = next(p for p in paper_a_points(r["dataset"])
                     if p["attack"].lower() == ("fgsm" if r["attack"] == "fgsm" else "pgd") and p["eps"] == pe)
            rows.append({"dataset": r["dataset"], "point": f"{p['attack']}@{pe:g}, {r['eps_reading']} reading",
                         "paper gain": round(p["refined"] - p["baseline"], 2), "our gain": round(100 * r["value"], 2)})
        out.append("Gain of refined over baseline (pp), ours vs the paper's (Fig. 3/4):\n")
        out.append(_md(pd.DataFrame(rows), index=False))
    sc = df[df["dataset"].str.startswith("cifar10-shortcut") & (df["metric"] == "accuracy")].copy()
    if len(sc):
        sc["value"] = sc["value"].astype(float)
        t = sc.pivot_table(index="label", columns="dataset", values="value", sort=False) * 100
        t.index.name = "model"
        t["reliance (pp)"] = t["cifar10-shortcut-correlated"] - t["cifar10-shortcut-decorrelated"]
        out.append("\nPlanted shortcut, accuracy (%) after refinement of the shortcut model:\n")
        out.append(_md(t.round(2)))
    return out


def _render_05(profile: str) -> list[str]:
    from .paper_a.bound import summary_table

    df = query(profile, "05_lipschitz_bound")
    if not len(df):
        return []
    med = {("refined" if r.get("refinement") else "baseline"): r for _, r in
           df[df["metric"] == "min_linf_distortion_median"].iterrows()}
    al = {("refined" if r.get("refinement") else "baseline", r["metric"]): r["value"] for _, r in
          df[df["metric"].isin(["alignment_mean", "alignment_spearman", "stronger_attack_below_measured"])].iterrows()}
    out = [f"\n**Notebook 05, profile `{profile}`** (Paper A §IV): estimates of the minimal L-inf distortion "
           "against the measured one (FAB, then a PGD-20 bisection), correctly classified test images. "
           "(a) = eq 22-23 as printed (with the image's spurious mask), (b) = without the mask, "
           "(c) = margin / ||grad(f_y - f_j)||_1, (d) = CLEVER (first images only):\n"]
    t = summary_table(df).reset_index()
    t["estimate"] = t["estimate"].map({"masked": "(a) masked", "unmasked": "(b) unmasked", "margin": "(c) margin",
                                       "clever": "(d) CLEVER"})
    out.append(_md(t, index=False))
    out.append("\nMedian measured distortion: " + "; ".join(
        f"{k} {v['value']:.5f} px (n={v['n']})" for k, v in med.items()) + ". Alignment (eq 19), mean: " + "; ".join(
        f"{k} {al[(k, 'alignment_mean')]:.3f} (Spearman with the measured distortion "
        f"{al[(k, 'alignment_spearman')]:.2f})" for k in med) + ". APGD-CE flips at 0.95 x the measured value: "
        + "; ".join(f"{k} {100 * al[(k, 'stronger_attack_below_measured')]:.0f}%" for k in med) + ".")
    return out


def _render_06(profile: str) -> list[str]:
    from .paper_a import curves
    from .results import load_results, results_path

    if not results_path("06_robustness_curves", profile).exists():
        return []
    records = load_results("06_robustness_curves", profile)["records"]
    df = curves.frame(records, curves.labels_of(records))
    if not len(df):
        return []
    n = {s: int(df[df["subset"] == s]["n"].max()) for s in curves.SUBSET_ORDER if (df["subset"] == s).any()}
    out = [f"\n**Notebook 06, profile `{profile}`** (Paper A Fig. 3/4; {_runs_line(query(profile, '06_robustness_curves'))}): "
           f"robust accuracy (%) on {n['all']} class-balanced test images (stronger attacks on {n.get('strong')}, "
           f"AutoAttack on {n.get('autoattack')}). The paper's quoted points under each eps reading, beside our "
           "baseline and the full method refined with FGSM at the paper's 0.03 under the same reading (mean over "
           "seeds) and under the other reading (first seed):\n"]
    fair = curves.fair_test(df)
    out.append(_md(fair[["dataset", "point", "reading", "eps (px)", "paper baseline", "paper refined", "ours baseline",
                         "ours refined, trained same reading", "ours refined, trained other reading"]], index=False))
    pairs = curves.paired(df)
    if len(pairs):
        out.append("\nLIME mask minus random mask (full method vs its random-mask control), same training seeds and "
                   "test images: mean difference (pp) ± 95% t interval over seeds, exact McNemar p on the per-image "
                   "outcomes pooled over seeds:\n")
        out.append(_md(pairs[["eps_train reading", "point", "seeds", "LIME - random (pp)", "ci95 (pp)", "paired t p",
                              "McNemar p"]].round(4), index=False))
    strong = curves.strongest(df).reset_index()
    strong = strong[strong["label"].str.contains("baseline") | strong["label"].str.endswith("seed 0")]
    attacks = [c for c in strong.columns if c not in ("label", "eps", "strongest")]
    strong = strong[(strong["eps"] < 0.1) & (strong[attacks].notna().sum(axis=1) > 2)]  # the eps the stronger attacks ran at
    cols = ["label", "eps", *attacks, "strongest"]
    out.append("\nEach attack on the 'strong' subset (same images), the headline models:\n")
    out.append(_md(strong[cols], index=False))
    aa = curves.autoattack_agreement(df)
    if len(aa):
        out.append("\nAutoAttack 'standard' as published, our configuration of torchattacks' parts vs the authors' "
                   "package, same images: " + "; ".join(
                       f"{r['model']} @ {r['eps']:.4g}: {r['torchattacks parts (%)']:.2f}% vs {r['pyautoattack (%)']:.2f}%, "
                       f"agree on {r['agree (%)']:.1f}% of {r['n']} images" for _, r in aa.iterrows()) + ".")
    checks = [r for r in records if r["metric"] == "masking_check"]
    fails = [f"{r['setting']['model_label']}: {r['setting']['check']}" for r in checks if r["value"] == 0.0]
    out.append(f"\nGradient-masking checklist: {len(checks)} checks over {len({r['model_hash'] for r in checks})} models, "
               f"{sum(r['value'] == 1.0 for r in checks)} pass, {len(fails)} fail, "
               f"{sum(r['value'] is None for r in checks)} not evaluated" + (". Failures: " + "; ".join(fails) if fails else "") + ".")
    return out


def _render_07(profile: str) -> list[str]:
    from .paper_a import corrupted

    df = query(profile, "07_cifar10c_table")
    acc = df[df["metric"].isin(["accuracy", "robust_accuracy"])] if len(df) else df
    if not len(acc):
        return []
    long = corrupted.per_set(acc, corrupted.roles(acc))
    src = sorted({s for s in acc["source"] if s != "clean"})
    pgd = acc[acc["attack"] == "pgd"]["attack_steps"].iloc[0]
    out = [f"\n**Notebook 07, profile `{profile}`** (Paper A Table I; {_runs_line(acc)}): {'/'.join(src)} CIFAR-10-C, "
           f"{acc['n'].iloc[0]} class-balanced test images x 19 corruptions x 5 severities; FGSM and PGD-{pgd} "
           "(early-stopped, on clean-correct images), accuracy (%) averaged over severities. The paper's mean row "
           "(over its 12 listed types) beside ours under each eps reading, our mean over all 19 types, and the "
           "same attack on the uncorrupted images:\n"]
    out.append(_md(corrupted.summary(long), index=False))
    clean = long[long["attack"] == "clean"].pivot_table(index="role", columns=long["severity"] > 0, values="accuracy")
    out.append("\nClean accuracy (%): " + "; ".join(
        f"{role} {clean.loc[role, False]:.2f} uncorrupted, {clean.loc[role, True]:.2f} mean over the 95 corrupted sets"
        for role in clean.index) + ".")
    return out


def _render_08(profile: str) -> list[str]:
    df = query(profile, "08_ddpm_training")
    if not len(df):
        return []
    psnr = df[df["metric"] == "x0_psnr_db"]
    wide = psnr.pivot_table(index=["focus", "epochs"], columns="t", values="value").round(2)
    wide.index = [f"focus {f:g}, {e} epoch(s)" for f, e in wide.index]
    wide.columns = [f"t={t}" for t in wide.columns]
    params = int(df[df["metric"] == "model_parameters"]["value"].iloc[0])
    mins = float(df[df["metric"] == "train_time_s"]["value"].iloc[0]) / 60
    acc = df[df["metric"] == "accuracy"].copy()
    acc["accuracy (%)"] = 100 * acc["value"]
    acc_w = acc.pivot_table(index="t_star", columns="purifier_steps", values="accuracy (%)").round(2)
    acc_w.columns = [f"{'x0 (1 NFE)' if c == 1 else f'DDIM {c} NFE'}" for c in acc_w.columns]
    return [f"\n**Notebook 08, profile `{profile}`** (Paper B eqs 1-2; {_runs_line(df)}): a {params / 1e6:.2f}M-parameter "
            f"diffusers UNet trained {mins:.0f} min. PSNR (dB) of the one-shot x0 prediction from x_t on "
            f"{psnr['n'].iloc[0]} held-out test images, the main run beside two short runs that differ only in the "
            "timestep focus:\n", _md(wide),
            "\nThe baseline ResNet-18's clean accuracy (%) on purified clean test images, by t* and sampler:\n", _md(acc_w)]


def _render_09(profile: str) -> list[str]:
    from .paper_b import defences
    from .papers import paper_b_table1_beside
    from .results import load_results, results_path

    if not results_path("09_purification_and_adversarial_training", profile).exists():
        return []
    recs = load_results("09_purification_and_adversarial_training", profile)["records"]
    df = defences.frame(recs)
    main = df[df.subset == "all"]
    rows = [r for r in main.defence.unique() if not r.startswith("AT comparison")]
    if "ALDE" not in rows:
        return []
    summ = defences.summary(main[main.defence.isin(rows)], 8)
    runs = query(profile, "09_purification_and_adversarial_training")
    out = [f"\n**Notebook 09, profile `{profile}`** (Paper B Table 1; {_runs_line(runs)}): CIFAR-10 accuracy (%) at "
           f"8/255 on {int(main.n.max())} class-balanced test images, every defence on the same images; purified "
           "defences scored on fresh purifier draws (mean over draws; 'worst of the draws': correct under every draw). "
           "Paper B's numbers are its own, on its own models:\n",
           _md(paper_b_table1_beside(defences.table1_ours(summ)).round(2)),
           "\nEvery defence under every attack at 8/255 (mean over draws):\n", _md(summ.round(2))]
    checks = [r for r in recs if r["metric"] == "masking_check"]
    if checks:
        out.append("\nGradient-masking checklist: " + "; ".join(
            f"{r['setting']['defence']}: {r['setting']['check']} "
            f"{'pass' if r['value'] == 1 else 'FAIL' if r['value'] == 0 else 'not run'}" for r in checks) + ".")
    return out


def _render_10(profile: str) -> list[str]:
    from .paper_b import stability
    from .papers import paper_b_table2_beside, paper_b_table3_beside
    from .results import load_results, results_path

    if not results_path("10_attribution_stability", profile).exists():
        return []
    df = stability.frame(load_results("10_attribution_stability", profile)["records"])
    if not len(df):
        return []
    runs = query(profile, "10_attribution_stability")
    out = [f"\n**Notebook 10, profile `{profile}`** (Paper B Tables 2-3; {_runs_line(runs)}). SSIM of magnitude maps, "
           "clean vs adversarial (each defence's strongest notebook-09 attack at 8/255), beside the method's own noise "
           "(same image, another seed) and chance (unrelated images). Paper B's numbers are its own:\n"]
    t2 = stability.table2(df)
    out += [_md(paper_b_table2_beside(stability.table2_ours(t2)).round(3)), "\nEvery defence and method:\n", _md(t2.round(3))]
    if df.construction.notna().any():
        t3 = stability.table3(df)
        out += ["\nIoU of the top-|mask| pixels with a ground truth of our construction (not the paper's data), "
                "beside a random map's:\n", _md(paper_b_table3_beside(stability.table3_ours(t3)).round(3)),
                "\n", _md(t3.round(3))]
    return out


def _render_bench(profile: str) -> list[str]:
    df = query(profile, "bench")
    if not len(df):
        return []
    parts = [f"{r.metric.replace('_', ' ')} {r.value:,.0f}" for r in df.itertuples() if r.metric.endswith("per_s")]
    tta = [f"{int(round(100 * r.target))}%: " + (f"{r.value / 60:.1f} min" if r.value is not None else "not reached")
           for r in df[df["metric"] == "time_to_accuracy_s"].itertuples()]
    out = [f"\nBenchmark (`python -m replication.bench train --profile {profile}`): " + ", ".join(parts)
           + (". Time to test accuracy: " + ", ".join(tta) if tta else "") + "."] if parts or tta else []
    return out + _render_lime_estimators(df, profile)


def _render_lime_estimators(df, profile: str) -> list[str]:
    """`bench lime-estimators`: top-5 agreement of each LIME estimator with the lime reference."""
    import pandas as pd

    agree = df[df["metric"] == "lime_estimator_top5_agreement"]
    if not len(agree):
        return []
    # one row per estimator: its metrics side by side, keyed by what the benchmark varied
    key = ["estimator", "n_samples", "reference_samples"]
    wide = df[df["metric"].str.startswith("lime_estimator_")].pivot_table(index=key, columns="metric", values="value",
                                                                         aggfunc="first")
    rows = []
    for r in agree.itertuples():
        w = wide.loc[(r.estimator, r.n_samples, r.reference_samples)]
        ev, vs, sp = (w.get(m) for m in ("lime_estimator_evaluations_per_image", "lime_estimator_top5_agreement_vs_bar",
                                         "lime_estimator_spearman"))
        lo, hi = (r.extra or {}).get("ci95", [None, None])
        rows.append({"estimator": f"{r.estimator}-{r.n_samples}", "evaluations": None if pd.isna(ev) else int(ev),
                     "top-5 agreement": f"{r.value:.3f}", "95% CI": f"[{lo:.3f}, {hi:.3f}]" if lo is not None else "",
                     "minus the bar": "" if pd.isna(vs) else f"{vs:+.3f}",
                     "Spearman |beta|": "" if pd.isna(sp) else f"{sp:.3f}"})
    first = agree.iloc[0]
    return [f"\nLIME estimators (`python -m replication.bench lime-estimators --profile {profile}`; {first['n']} "
            f"{first['split']} images, reference lime at {first['reference_samples']:,} samples, {first['seeds']} seeds):\n",
            _md(pd.DataFrame(rows), index=False)]


def sections(profile: str, *notebooks: str) -> str:
    """The per-notebook blocks (tables beside the papers' numbers) of the notebooks named by number
    ("01", ...; none: all of them and the benchmark), as Markdown."""
    renders = {"01": _render_01, "02": _render_02, "03": _render_03, "04": _render_04, "05": _render_05, "06": _render_06,
               "07": _render_07, "08": _render_08, "09": _render_09, "10": _render_10, "bench": _render_bench}
    out = [line for nb in (notebooks or renders) for line in renders[nb](profile)]
    return "\n".join(out) if out else f"(no results for profile {profile} yet)"


def render(profile: str) -> str:
    return sections(profile)


SCALE = {"smoke": "SMOKE PROFILE: a few images and epochs to test the code; these numbers mean nothing.",
         "cpu": ("cpu profile: the reduced-scale replication a 2-core CPU finishes (width-16 ResNet-18, 15 epochs; "
                 "500-2,000 test images; the papers' models are larger and trained longer). Read each verdict at that scale."),
         "full": "full profile: paper scale on one GPU."}


def verdict_counts(vs) -> str:
    from collections import Counter

    n = Counter(v.verdict for v in vs)
    return ", ".join(f"{n[k]} {k}" for k in (*claims.VERDICTS, "no record") if n[k])


def report(profile: str) -> str:
    """results/<profile>/REPORT.md: the verdict of every claim (claims.yaml) first, then each
    notebook's numbers beside the papers'. A smoke report says so at the top of every section."""
    vs = claims.verdicts(claims.profile_records(profile), strict=profile != "smoke")
    banner = f"> {SCALE.get(profile, profile)}"
    out = [f"# Replication report ({profile})", "", banner, "",
           f"## Verdicts: {len(vs)} claims of the two papers", "",
           f"{verdict_counts(vs)}. Rules and intervals: `replication/claims.py`; claims: "
           "`replication/data_files/claims.yaml`. Paper values are the papers' own; ours are what the code measured.", "",
           claims.markdown(vs, profile), "", "## Per notebook", "", banner, "", render(profile)]
    return "\n".join(out) + "\n"


def readme_block(profile: str) -> str:
    """The README's generated block: the verdict counts and table, and where the rest is."""
    vs = claims.verdicts(claims.profile_records(profile), strict=profile != "smoke")
    return "\n".join([f"*Generated by `python -m replication.report --profile {profile} --update-readme` from the "
                      f"`{profile}` records; {SCALE.get(profile, profile)}*", "",
                      f"**{len(vs)} claims: {verdict_counts(vs)}.** Shares in %; Δ = ours − paper; the interval is ours "
                      "(95%). Every table beside the papers' numbers: "
                      f"[results/{profile}/REPORT.md](results/{profile}/REPORT.md); the same as a browsable HTML "
                      "edition with every notebook: `make html`.", "", claims.markdown(vs, profile)])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args(argv)
    path = paths.results_dir(args.profile) / "REPORT.md"
    atomic_write_text(path, report(args.profile))
    print(f"wrote {path.relative_to(paths.PROJECT_ROOT)}")
    if args.update_readme:  # the README keeps the verdict table only; the tables are in REPORT.md
        text = readme_block(args.profile)
        readme = paths.PROJECT_ROOT / "README.md"
        body = readme.read_text()
        if BEGIN not in body:
            raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", body, flags=re.S)
        readme.write_text(new)


if __name__ == "__main__":
    main()
