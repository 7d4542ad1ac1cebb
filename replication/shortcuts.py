"""A planted-shortcut CIFAR variant: ground truth for "spurious feature" (issue 9, notebook 03).

Each class c gets a small coloured square (its colour and position fixed by a seed). In the
`correlated` split a fraction `rate` of images carries the square of its own class, so a model can
learn the square instead of the object. In the `decorrelated` split every image carries the square
of a random *other* class, so reliance on the shortcut costs accuracy. The returned mask marks the
planted pixels: the ground truth against which flagged features are scored (precision, recall, IoU).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import torch

from .data import Split


@dataclass
class Planted:
    split: Split                # images with squares planted
    mask: torch.Tensor          # (N,H,W) bool: planted pixels
    planted: torch.Tensor       # (N,) bool: whether the image carries a square
    patch_class: torch.Tensor   # (N,) int64: whose square it carries (-1: none)


def patch_layout(num_classes: int, size: int = 32, patch: int = 4, seed: int = 0):
    """Distinct grid-aligned positions (C,2) and distinct saturated colours (C,3) uint8, one per class."""
    g = torch.Generator().manual_seed(seed)
    cells = size // patch
    if num_classes > cells * cells:
        raise ValueError(f"{num_classes} classes do not fit {cells * cells} distinct {patch}x{patch} cells")
    idx = torch.randperm(cells * cells, generator=g)[:num_classes]
    pos = torch.stack([idx // cells * patch, idx % cells * patch], 1)
    hues = torch.randperm(num_classes, generator=g).float() / num_classes
    colours = torch.tensor([[round(255 * v) for v in colorsys.hsv_to_rgb(float(h), 1.0, 1.0)] for h in hues],
                           dtype=torch.uint8)
    return pos, colours


def plant(split: Split, mode: str, rate: float = 0.9, patch: int = 4, seed: int = 0,
          layout_seed: int = 0) -> Planted:
    """Plant class squares into a copy of `split` (mode 'correlated' or 'decorrelated')."""
    n, _, h, w = split.x.shape
    pos, colours = patch_layout(split.num_classes, h, patch, layout_seed)
    g = torch.Generator().manual_seed(seed)
    y = split.y.cpu()
    if mode == "correlated":
        planted = torch.rand(n, generator=g) < rate
        which = torch.where(planted, y, torch.full_like(y, -1))
    elif mode == "decorrelated":
        planted = torch.ones(n, dtype=torch.bool)
        shift = torch.randint(1, split.num_classes, (n,), generator=g)
        which = (y + shift) % split.num_classes  # never the image's own class
    else:
        raise ValueError(f"Unknown mode {mode!r}; use 'correlated' or 'decorrelated'.")
    x = split.x.cpu().clone()
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    for c in range(split.num_classes):
        sel = which == c
        r, q = pos[c].tolist()
        x[sel, :, r:r + patch, q:q + patch] = colours[c].view(1, 3, 1, 1)
        mask[sel, r:r + patch, q:q + patch] = True
    out = Split(f"{split.name}-shortcut-{mode}", split.train, x, y, split.num_classes)
    return Planted(out.to(split.x.device), mask, planted, which)


def mask_scores(flagged: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Pixel precision, recall and IoU of flagged (N,H,W) bool masks against the planted truth."""
    tp = (flagged & truth).sum().item()
    fp = (flagged & ~truth).sum().item()
    fn = (~flagged & truth).sum().item()
    return {"precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn), "iou": tp / max(1, tp + fp + fn)}


def planted_cifar10(rate: float, n_train: int | None, n_test: int | None,
                    seed: int = 0) -> tuple[Planted, Planted, Planted]:
    """(correlated training set, correlated test set, decorrelated test set) of planted CIFAR-10."""
    from .data import load_split

    train = load_split("cifar10", train=True, n=n_train, seed=seed)
    test = load_split("cifar10", train=False, n=n_test, seed=seed)
    return (plant(train, "correlated", rate, seed=seed), plant(test, "correlated", 1.0, seed=seed + 1),
            plant(test, "decorrelated", seed=seed + 2))


def planted_subset(planted: Planted, n: int | None, seed: int = 0) -> Planted:
    """A class-balanced subset of a planted split, masks and flags kept aligned."""
    from .data import balanced_subset

    idx = balanced_subset(planted.split.y.cpu(), n, seed)
    return Planted(planted.split.select(idx.to(planted.split.y.device)), planted.mask[idx], planted.planted[idx],
                   planted.patch_class[idx])
