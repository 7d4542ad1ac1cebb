"""Notebook 03's checks of the identification: what each rule flags, how that depends on the
quantiles, how far the rules agree, and whether they find planted shortcuts (known ground truth).

Each function records its numbers through the Run (schema 2: `setting` says which rule, quantile or
flag source) and returns a DataFrame (percent) to display.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import torch

from ..data import load_split
from ..notebook import Run
from ..shortcuts import Planted, mask_scores
from ..train import TrainResult, accuracy
from . import spurious as sp

ALL = (*sp.RULES, "spurious")


def rule_summary(run: Run, model: TrainResult, name: str, dataset: str, scores: sp.Scores, flags: sp.Flags,
                 cfg: sp.IdentifyConfig) -> pd.DataFrame:
    """Share of segments, pixels and images each rule flags, and the resolved thresholds."""
    s = sp.summary(flags, scores.counts, scores.segments)
    n = len(scores.counts)
    ctx = dict(model=name, model_hash=model.config_hash, data=dataset, n=n)
    for rule in ALL:
        for kind, key in (("segment", "segment"), ("pixel", "pixel"), ("image", "images")):
            run.record(**ctx, metric=f"flagged_{kind}_frac", value=s[f"{rule}_{key}_frac"], rule=rule,
                       extra={"identify_config": cfg.to_dict()})
    for key, v in flags.thresholds.items():
        run.record(**ctx, metric="threshold", value=v, threshold=key)
    rows = [{"rule": r, "segments flagged (%)": 100 * s[f"{r}_segment_frac"], "pixels flagged (%)": 100 * s[f"{r}_pixel_frac"],
             "images with a flag (%)": 100 * s[f"{r}_images_frac"]} for r in ALL]
    return pd.DataFrame(rows).set_index("rule").round(1)


def quantile_sweep(run: Run, model: TrainResult, name: str, dataset: str, scores: sp.Scores, cfg: sp.IdentifyConfig,
                   quantiles=(0.8, 0.9, 0.95)) -> pd.DataFrame:
    """Share of segments each rule flags when tau, eps and delta all sit at quantile q."""
    rows = []
    ok = sp.valid(scores.counts, scores.beta.shape[1])
    for q in quantiles:
        f = sp.identify(scores, replace(cfg, tau_q=q, eps_q=q, delta_q=q))
        rows.append({"quantile": q, **{r: 100 * float(f.rule(r).sum() / ok.sum()) for r in ALL}})
        run.record(model=name, model_hash=model.config_hash, data=dataset, n=len(scores.counts),
                   metric="flagged_segment_frac", value=float(f.spurious.sum() / ok.sum()), rule="spurious", quantile=q)
    return pd.DataFrame(rows).set_index("quantile").round(1)


def rule_agreement(run: Run, model: TrainResult, name: str, dataset: str, scores: sp.Scores, flags: sp.Flags,
                   cfg: sp.IdentifyConfig) -> tuple[pd.Series, sp.Flags]:
    """Jaccard index between the rules' flag sets, and between eq 7 with and without the reference
    check; returns the table and the flags without the reference."""
    pairs = {(a, b): sp.jaccard(flags.rule(a), flags.rule(b)) for i, a in enumerate(sp.RULES) for b in sp.RULES[i + 1:]}
    no_ref = sp.identify(scores.without_reference(), cfg)
    pairs[("spurious", "spurious without reference")] = sp.jaccard(flags.spurious, no_ref.spurious)
    for (a, b), v in pairs.items():
        run.record(model=name, model_hash=model.config_hash, data=dataset, n=len(scores.counts), metric="jaccard",
                   value=v, rule_a=a, rule_b=b)
    return pd.Series({f"{a} vs {b}": v for (a, b), v in pairs.items()}, name="Jaccard").round(3), no_ref


def class_mask_agreement(run: Run, model: TrainResult, name: str, dataset: str, pix: torch.Tensor,
                         y: torch.Tensor, num_classes: int) -> dict[str, float]:
    """How well one mask per class stands in for each image's own mask (precision, recall, IoU)."""
    agree = mask_scores(sp.class_masks(pix, y, num_classes)[y], pix)
    run.record(model=name, model_hash=model.config_hash, data=dataset, n=len(y), metric="class_mask_iou", value=agree["iou"])
    return {k: round(v, 3) for k, v in agree.items()}


def shortcut_reliance(run: Run, shortcut: TrainResult, baseline: TrainResult, planted: tuple[Planted, Planted, Planted],
                      n_test: int | None, seed: int) -> pd.DataFrame:
    """Accuracy of the shortcut model and the clean baseline on clean, correlated and decorrelated tests."""
    rows = []
    clean = load_split("cifar10", train=False, n=n_test, seed=seed)
    for label, name, tr in (("shortcut model", "resnet18_cifar10_shortcut", shortcut), ("clean baseline", "resnet18_cifar10", baseline)):
        for test_name, split, data in (("clean", clean, "cifar10"), ("correlated", planted[1].split, "cifar10-shortcut-correlated"),
                                       ("decorrelated", planted[2].split, "cifar10-shortcut-decorrelated")):
            a = accuracy(tr.model, split)
            rows.append({"model": label, "test set": test_name, "accuracy (%)": 100 * a})
            run.record(model=name, model_hash=tr.config_hash, data=data, metric="accuracy", value=a, n=len(split))
    return pd.DataFrame(rows).pivot(index="model", columns="test set", values="accuracy (%)").round(2)


def planted_scores(run: Run, shortcut: TrainResult, sub: Planted, scores: sp.Scores, flags: sp.Flags,
                   cfg: sp.IdentifyConfig, seed: int) -> pd.DataFrame:
    """Flagged pixels against the planted squares: each rule, eq 7 without the reference, a random
    control with the same number of segments, and the class-aggregated mask."""
    truth, y = sub.mask, sub.split.y.cpu()
    variants: dict[str, torch.Tensor] = {r: sp.pixel_masks(flags.rule(r), scores.segments) for r in ALL}
    variants["spurious, no reference check"] = sp.pixel_masks(sp.identify(scores.without_reference(), cfg).spurious, scores.segments)
    variants["random segments, same count"] = sp.pixel_masks(sp.random_flags(flags.spurious, scores.counts, seed), scores.segments)
    variants["spurious, class-aggregated mask"] = sp.class_masks(variants["spurious"], y, 10)[y]
    rows = []
    ctx: dict[str, Any] = dict(model="resnet18_cifar10_shortcut", model_hash=shortcut.config_hash,
                               data="cifar10-shortcut-correlated-train", n=len(sub.split))
    for by, pix in variants.items():
        s = mask_scores(pix, truth)
        frac = pix.float().mean().item()
        rows.append({"flagged by": by, "pixels flagged (%)": 100 * frac, **s})
        run.record(**ctx, metric="flagged_pixel_frac", value=frac, flagged_by=by)
        for m in ("precision", "recall", "iou"):
            run.record(**ctx, metric=f"planted_{m}", value=s[m], flagged_by=by)
    run.record(**ctx, metric="planted_pixel_frac", value=truth.float().mean().item())
    return (pd.DataFrame(rows).set_index("flagged by") * [1, 100, 100, 100]).round(2)
