"""Images whose saliency ground truth is known by construction (notebook 10, Table 3).

CIFAR-10 has no ground-truth saliency, and Paper B does not say where its "ground truth saliency
maps" come from. Two constructions make one exist:

- **planted square** (shortcuts.py, notebook 03): on the decorrelated test set every image carries
  the square of another class; where the shortcut model predicts the square's class, the square is
  what decided the prediction, so its 16 pixels are the ground truth;
- **pasted object**: a CIFAR-10 image shrunk to `size` x `size` and pasted at a random position onto
  the full image of another class (the background). The label is the object's; the background
  never shows the label's class (at most it rules one class of ten out), so a model that reads it
  is wrong, and the object is the only positive evidence. The pasted square is the ground truth.

These are our constructions, not the paper's data.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import Split, load_split
from .shortcuts import Planted


@dataclass
class Grounded:
    split: Split          # the images and their labels
    mask: torch.Tensor    # (N,H,W) bool: the ground-truth salient pixels
    target: torch.Tensor  # (N,) the class the masked pixels are evidence for
    construction: str     # "planted square" | "pasted object"

    def __len__(self) -> int:
        return len(self.split)

    def select(self, idx: torch.Tensor) -> "Grounded":
        idx = idx.cpu()
        return Grounded(self.split.select(idx.to(self.split.y.device)), self.mask[idx], self.target[idx], self.construction)


def paste(objects: Split, backgrounds: Split, size: int = 16, seed: int = 0) -> Grounded:
    """Each object image shrunk to size x size (antialiased bilinear) and pasted at a uniform random
    position onto a background image of a different class, drawn at random from `backgrounds`."""
    n, _, h, w = objects.x.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"paste size {size} must be in 1..{min(h, w)}")
    g = torch.Generator().manual_seed(seed)
    y, by = objects.y.cpu(), backgrounds.y.cpu()
    # a background of another class: draw, then redraw the clashes until none is left
    pick = torch.randint(len(by), (n,), generator=g)
    for _ in range(100):
        clash = by[pick] == y
        if not clash.any():
            break
        pick[clash] = torch.randint(len(by), (int(clash.sum()),), generator=g)
    else:
        raise ValueError("could not find a background of another class for every object (one class only?)")
    small = F.interpolate(objects.x.cpu().float(), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False).round().clamp(0, 255).to(torch.uint8)
    rows = torch.randint(h - size + 1, (n,), generator=g)
    cols = torch.randint(w - size + 1, (n,), generator=g)
    x = backgrounds.x.cpu()[pick].clone()
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        r, c = int(rows[i]), int(cols[i])
        x[i, :, r:r + size, c:c + size] = small[i]
        mask[i, r:r + size, c:c + size] = True
    name = f"{objects.name}-pasted{size}"
    return Grounded(Split(name, objects.train, x.to(objects.x.device), objects.y.clone(), objects.num_classes), mask,
                    y.clone(), "pasted object")


def pasted_cifar10(n_train: int | None, n_test: int | None, size: int = 16, seed: int = 0) -> tuple[Grounded, Grounded]:
    """(training set, test set) of pasted-object CIFAR-10: objects and backgrounds both from the same
    split (the test set never sees a training image)."""
    out = []
    for train, offset in ((True, 0), (False, 1)):
        split = load_split("cifar10", train=train, n=n_train if train else n_test, seed=seed)
        out.append(paste(split, split, size, seed=seed + 10 * offset + 3))
    return out[0], out[1]


def planted_square(planted: Planted) -> Grounded:
    """Planted images (the decorrelated test set: every square of another class) with the square as
    the ground truth for its own class. Scored only where a model predicts the square's class:
    there the square decided the prediction (`Grounded.target` is that class)."""
    idx = torch.nonzero(planted.planted).flatten()
    return Grounded(planted.split.select(idx.to(planted.split.y.device)), planted.mask[idx], planted.patch_class[idx],
                    "planted square")
