"""What notebooks 03 and 04 share: the identification set, cached scores per model, and the
planted-shortcut model.

Identification runs on a class-balanced subset of the *training* split (Algorithm 1 explains the
training data D, and refinement needs masks for the images it trains on). Scores are cached under
.cache/identification/<profile>/, keyed by the models' config hashes, the images and the settings,
so notebook 04 reuses what 03 computed and later refinement rounds only recompute the baseline side.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import torch

from .data import Split, load_split, to_float
from .shortcuts import Planted, plant
from .spurious import IdentifyConfig, Scores, attribution_scores, scores_cached
from .train import TrainResult, config_for, train_model


def identify_config(profile: dict[str, Any], seed: int = 0, **overrides: Any) -> IdentifyConfig:
    p = profile["identify"]
    fields = {k: p[k] for k in ("n_samples", "n_perturb") if k in p}
    return replace(IdentifyConfig(seed=seed, **fields), **overrides)


def images_key(split: Split) -> str:
    return hashlib.sha1(split.x.cpu().numpy().tobytes() + split.y.cpu().numpy().tobytes()).hexdigest()[:16]


def scores_for(model: torch.nn.Module, model_hash: str, split: Split, cfg: IdentifyConfig, profile: str, *,
               reference: tuple[torch.nn.Module, str] | None = None, chunk: int = 50,
               progress: bool = True) -> Scores:
    """Cached Scores of `model` on `split` (with the reference model's LIME and gradients, if given)."""
    x, y = to_float(split.x.cpu()), split.y.cpu()
    img = images_key(split)
    segs = None
    ref_scores = None
    if reference is not None:
        ref_model, ref_hash = reference
        ref_key = {"model": ref_hash, "images": img, "cfg": cfg.to_dict(), "instability": False}
        ref_scores = scores_cached(ref_key, profile, lambda: attribution_scores(
            ref_model, x, y, cfg, instability=False, chunk=chunk, progress=progress))
        segs = (ref_scores.segments, ref_scores.counts)
    key = {"model": model_hash, "reference": reference[1] if reference else None, "images": img,
           "cfg": cfg.to_dict()}
    return scores_cached(key, profile, lambda: attribution_scores(
        model, x, y, cfg, segments=segs, reference=ref_scores, chunk=chunk, progress=progress))


def identification_split(dataset: str, profile: dict[str, Any], seed: int = 0) -> Split:
    return load_split(dataset, train=True, n=profile["identify"]["n_images"], seed=seed)


# ---- the planted-shortcut model ------------------------------------------------------------------

def shortcut_data(profile: dict[str, Any], seed: int = 0) -> tuple[Planted, Planted, Planted]:
    """(correlated training set, correlated test set, decorrelated test set) of planted CIFAR-10."""
    rate = profile["shortcut"]["rate"]
    train = load_split("cifar10", train=True, n=profile["n_train"], seed=seed)
    test = load_split("cifar10", train=False, n=profile["n_test"], seed=seed)
    return (plant(train, "correlated", rate, seed=seed), plant(test, "correlated", 1.0, seed=seed + 1),
            plant(test, "decorrelated", seed=seed + 2))


def train_shortcut_model(profile: dict[str, Any], seed: int = 0, progress: bool = True,
                         data: tuple[Planted, Planted, Planted] | None = None) -> TrainResult:
    """ResNet-18 trained on the correlated planted training set (fewer epochs than the baseline:
    the squares are learnt first)."""
    sc = profile["shortcut"]
    train, _, _ = data or shortcut_data(profile, seed)
    cfg = config_for("resnet18", "cifar10", profile, seed=seed, epochs=sc["epochs"],
                     data_variant=f"shortcut-correlated-rate{sc['rate']}")
    test = load_split("cifar10", train=False, n=profile["n_test"], seed=seed)
    return train_model(cfg, "resnet18_cifar10_shortcut", profile["name"], train.split, test, progress=progress)


def planted_subset(planted: Planted, n: int | None, seed: int = 0) -> Planted:
    """A class-balanced subset of a planted split, masks and flags kept aligned."""
    from .data import balanced_subset

    idx = balanced_subset(planted.split.y.cpu(), n, seed)
    return Planted(planted.split.select(idx.to(planted.split.y.device)), planted.mask[idx], planted.planted[idx],
                   planted.patch_class[idx])
