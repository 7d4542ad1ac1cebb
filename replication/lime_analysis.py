"""Notebook 02's pieces: segment a batch, explain it with batched LIME, time it against `lime`."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .lime_batched import LimeResult, lime_batched, lime_masks, lime_reference, pad_masks, segment

# lime_image's default segmentation (quickshift, kernel_size 4, max_dist 200, ratio 0.2)
LIME_DEFAULT_QUICKSHIFT = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2}


def segment_batch(x: torch.Tensor, method: str, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments (B,H,W) int64 and per-image counts (B,) for images (B,3,H,W) in [0,1]."""
    segs = [segment(img.permute(1, 2, 0).cpu().numpy().astype(np.float64), method, **kw) for img in x]
    return torch.from_numpy(np.stack(segs)), torch.tensor([int(s.max()) + 1 for s in segs])


def explain(model, x, y, segments, counts, n_samples: int, seed: int, chunk: int = 64, progress: bool = True,
            **kw) -> LimeResult:
    """Batched LIME over many images, `chunk` images at a time; masks as `lime` would draw them."""
    f_max = int(counts.max())
    parts = []
    for s in tqdm(range(0, len(x), chunk), desc="LIME", disable=not progress):
        c = counts[s:s + chunk]
        masks = torch.from_numpy(np.stack([pad_masks(lime_masks(n_samples, int(k), seed), f_max) for k in c]))
        parts.append(lime_batched(model, x[s:s + chunk], segments[s:s + chunk], masks, y[s:s + chunk],
                                  n_features=c, **kw))
    return LimeResult(*(torch.cat([getattr(p, f) for p in parts]) for f in ("beta", "intercept", "weights", "targets")))


def beta_to_pixels(beta: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """(B,F) coefficients -> (B,H,W) map: each pixel gets its segment's coefficient."""
    return torch.gather(beta, 1, segments.flatten(1)).view(segments.shape)


def segment_count_table(x: torch.Tensor, settings: dict[str, tuple[str, dict]]):
    import pandas as pd

    rows = []
    for label, (method, kw) in settings.items():
        _, counts = segment_batch(x, method, **kw)
        rows.append({"segmentation": label, "mean segments": counts.float().mean().item(),
                     "min": int(counts.min()), "max": int(counts.max()),
                     "images with <= 2 segments (%)": 100 * (counts <= 2).float().mean().item()})
    return pd.DataFrame(rows)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def benchmark(model, x, y, segments, counts, n_samples: int, seed: int, lime_batch_sizes=(10, 1000),
              forward_batch: int = 2048) -> dict[str, Any]:
    """Seconds per image: `lime` at each batch size, batched LIME, and pure inference of the same
    number of perturbed images (LIME's floor). Also the largest coefficient difference to `lime`."""
    out: dict[str, Any] = {"n_images": len(x), "n_samples": n_samples}
    max_diff = 0.0
    for bs in lime_batch_sizes:
        t0 = time.perf_counter()
        refs = [lime_reference(model, x[i], segments[i].numpy(), int(y[i]), n_samples, seed, batch_size=bs)
                for i in range(len(x))]
        out[f"lime_bs{bs}_s_per_image"] = (time.perf_counter() - t0) / len(x)
    _sync()
    t0 = time.perf_counter()
    ours = explain(model, x, y, segments, counts, n_samples, seed, chunk=len(x), progress=False,
                   forward_batch=forward_batch)
    _sync()
    out["batched_s_per_image"] = (time.perf_counter() - t0) / len(x)
    for i, (beta, _) in enumerate(refs):
        max_diff = max(max_diff, float(np.abs(ours.beta[i, :counts[i]].numpy() - beta).max()))
    out["max_abs_coef_diff_vs_lime"] = max_diff
    # Pure inference of the same number of (already built) images at the same batch size.
    z = x.repeat_interleave(max(1, forward_batch // len(x)), 0)[:forward_batch].contiguous(memory_format=torch.channels_last)
    n_batches = int(np.ceil(len(x) * n_samples / forward_batch))
    with torch.no_grad():
        model(z)
        _sync()
        t0 = time.perf_counter()
        for _ in range(n_batches):
            model(z)
        _sync()
    out["inference_s_per_image"] = (time.perf_counter() - t0) * (len(x) * n_samples / (n_batches * forward_batch)) / len(x)
    out["batched_over_inference"] = out["batched_s_per_image"] / out["inference_s_per_image"]
    for bs in lime_batch_sizes:
        out[f"speedup_vs_lime_bs{bs}"] = out[f"lime_bs{bs}_s_per_image"] / out["batched_s_per_image"]
    return out


def attribution_stats(beta: torch.Tensor, beta_resampled: torch.Tensor, counts: torch.Tensor) -> dict[str, float]:
    """Concentration (share of |beta| in the top 10% of segments) and seed-to-seed correlation of beta."""
    shares, corrs = [], []
    for i, k in enumerate(counts.tolist()):
        a, b = beta[i, :k].double(), beta_resampled[i, :k].double()
        top = max(1, int(np.ceil(0.1 * k)))
        mags = a.abs().sort(descending=True).values
        shares.append(float(mags[:top].sum() / mags.sum().clamp_min(1e-12)))
        if k > 2 and a.std() > 0 and b.std() > 0:
            corrs.append(float(torch.corrcoef(torch.stack([a, b]))[0, 1]))
    return {"top10pct_share_mean": float(np.mean(shares)), "resample_corr_mean": float(np.mean(corrs)),
            "resample_corr_min": float(np.min(corrs)), "resample_corr_median": float(np.median(corrs))}
