"""Superpixels: the features LIME, KernelSHAP and the spurious-feature rules work on.

At 32x32, lime's default quickshift (kernel_size 4) gives 1-2 segments per image; SLIC and a grid
give a controllable count.
"""
from __future__ import annotations

import numpy as np
import torch

# lime_image's default segmentation (quickshift, kernel_size 4, max_dist 200, ratio 0.2)
LIME_DEFAULT_QUICKSHIFT = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2}


def segment(image: np.ndarray, method: str = "slic", **kw) -> np.ndarray:
    """Segments (H,W) int labels 0..F-1 of one HxWx3 float image in [0,1].

    At 32x32, lime's default quickshift (kernel_size 4) gives 1-2 segments; SLIC and a grid give a
    controllable count.
    """
    h, w = image.shape[:2]
    if method == "grid":
        cell = kw.get("cell", 4)
        rows, cols = np.arange(h) // cell, np.arange(w) // cell
        return (rows[:, None] * ((w + cell - 1) // cell) + cols[None, :]).astype(np.int64)
    if method == "slic":
        from skimage.segmentation import slic

        seg = slic(image, n_segments=kw.get("n_segments", 50), compactness=kw.get("compactness", 10),
                   start_label=0, channel_axis=-1)
    elif method == "quickshift":
        from skimage.segmentation import quickshift

        seg = quickshift(image, kernel_size=kw.get("kernel_size", 1), max_dist=kw.get("max_dist", 5),
                         ratio=kw.get("ratio", 0.2), channel_axis=-1)
    else:
        raise ValueError(f"Unknown segmentation {method!r}; use grid, slic or quickshift.")
    _, seg = np.unique(seg, return_inverse=True)  # relabel 0..F-1
    return seg.reshape(h, w).astype(np.int64)


def segment_batch(x: torch.Tensor, method: str, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments (B,H,W) int64 and per-image counts (B,) for images (B,3,H,W) in [0,1]."""
    segs = [segment(img.permute(1, 2, 0).cpu().numpy().astype(np.float64), method, **kw) for img in x]
    return torch.from_numpy(np.stack(segs)), torch.tensor([int(s.max()) + 1 for s in segs])


def to_pixels(values: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """(B,F) per-segment values -> (B,H,W) map: each pixel gets its segment's value."""
    return torch.gather(values, 1, segments.flatten(1)).view(segments.shape)


def pool(pixel_map: torch.Tensor, segments: torch.Tensor, n_features: int) -> torch.Tensor:
    """(B,H,W) pixel values -> (B,F) sums over each segment's pixels (the inverse view of to_pixels)."""
    flat = pixel_map.flatten(1).float()
    return torch.zeros(len(flat), n_features).scatter_add_(1, segments.flatten(1), flat.cpu())


def kwargs_for(method: str, n_segments: int = 50) -> dict:
    """The segmenter's keyword arguments as notebooks 02-05 use them: SLIC aiming at `n_segments`,
    a grid of 4x4-pixel cells, quickshift with its own arguments (none: lime's defaults)."""
    return {"slic": {"n_segments": n_segments}, "grid": {"cell": 4}}.get(method, {})


def comparison_settings(n_segments: int = 50) -> dict[str, tuple[str, dict]]:
    """Notebook 02's segmentations side by side, by display label: lime's default quickshift, a finer
    quickshift, SLIC at `n_segments` and a grid of 4x4-pixel cells."""
    return {"quickshift (lime default)": ("quickshift", LIME_DEFAULT_QUICKSHIFT),
            "quickshift k=1, max_dist=5": ("quickshift", {"kernel_size": 1, "max_dist": 5}),
            f"SLIC n={n_segments}": ("slic", kwargs_for("slic", n_segments)),
            "grid 4x4 px": ("grid", kwargs_for("grid"))}


def count_table(x: torch.Tensor, settings: dict[str, tuple[str, dict]]):
    """Segments per image for each named (method, kwargs) setting, as a DataFrame."""
    import pandas as pd

    rows = []
    for label, (method, kw) in settings.items():
        _, counts = segment_batch(x, method, **kw)
        rows.append({"segmentation": label, "mean segments": counts.float().mean().item(),
                     "min": int(counts.min()), "max": int(counts.max()),
                     "images with <= 2 segments (%)": 100 * (counts <= 2).float().mean().item()})
    return pd.DataFrame(rows)
