"""Attributions: batched LIME (Paper A §III-A, eqs 1-3) and captum's methods behind one `Explainer`.

LIME for images (Paper A §III-A, eqs 1-3), batched: all perturbations of a batch of images go
through the model in large batches and the weighted regressions are solved together in torch.

For each image x with segments 1..F, a binary mask row m in {0,1}^F switches segments on (1) or
off (0, replaced by `hide_color`); the perturbed input is z = x*m_pix + hide*(1-m_pix). The surrogate
is a weighted ridge regression of the model's class probability on the mask rows, with intercept:
    beta = argmin sum_i w_i (f(z_i) - b0 - m_i.beta)^2 + alpha ||beta||^2.
`alpha=1` and kernel='lime' (cosine distance of mask rows, w = sqrt(exp(-d^2/width^2)), width 0.25)
are the `lime` package's defaults and reproduce its coefficients (tests/test_lime_batched.py);
`alpha=0` and kernel='paper' (w = exp(-||x - z||^2 / sigma^2) on pixels) are Paper A's eqs 1-2.
Importance is |beta| (eq 3).
"""
from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from .progress import bar
from .segments import pool, to_pixels


def lime_masks(n_samples: int, n_features: int, seed: int) -> np.ndarray:
    """The mask rows `lime` draws for LimeImageExplainer(random_state=seed): first row all ones."""
    data = np.random.RandomState(seed).randint(0, 2, n_samples * n_features).reshape(n_samples, n_features)
    data[0, :] = 1
    return data


def pad_masks(masks: np.ndarray, n_max: int) -> np.ndarray:
    """Append constant-one columns up to n_max features (see lime_batched)."""
    return np.concatenate([masks, np.ones((masks.shape[0], n_max - masks.shape[1]), masks.dtype)], 1)


@dataclass
class LimeResult:
    beta: torch.Tensor        # (B, F) coefficients
    intercept: torch.Tensor   # (B,)
    weights: torch.Tensor     # (B, S) kernel weights
    targets: torch.Tensor     # (B, S) model probability of the explained class


def lime_kernel(k: torch.Tensor, n_features: torch.Tensor | float, width: float = 0.25) -> torch.Tensor:
    """lime's weight of a mask row with k of n_features segments on: sqrt(exp(-d^2 / width^2)), d =
    1 - sqrt(k/F) the cosine distance between the row and the all-ones row."""
    d = 1 - torch.sqrt(k / n_features)
    return torch.sqrt(torch.exp(-(d ** 2) / width ** 2))


def _kernel_weights(masks: torch.Tensor, n_features: torch.Tensor, perturbed_sq_dist: torch.Tensor | None,
                    kernel: str, width: float) -> torch.Tensor:
    if kernel == "lime":
        # k counted over the image's real features (padding columns are constant ones)
        pads = (masks.shape[-1] - n_features).to(masks.dtype)[:, None]
        return lime_kernel(masks.sum(-1) - pads, n_features.to(masks.dtype)[:, None], width)
    if kernel == "paper":
        return torch.exp(-perturbed_sq_dist / width ** 2)
    raise ValueError(f"Unknown kernel {kernel!r}; use 'lime' or 'paper'.")


def weighted_ridge(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float):
    """Batched weighted ridge with an unpenalised intercept (sklearn Ridge with sample_weight).

    X (B,S,F), y (B,S), w (B,S) -> beta (B,F), intercept (B,).
    """
    X, y, w = X.double(), y.double(), w.double()
    sw = w.sum(-1, keepdim=True)
    x_mean = (w[..., None] * X).sum(1) / sw
    y_mean = (w * y).sum(1, keepdim=True) / sw
    Xc, yc = X - x_mean[:, None, :], y - y_mean
    A = Xc.transpose(1, 2) @ (w[..., None] * Xc)
    A = A + alpha * torch.eye(X.shape[-1], dtype=A.dtype, device=A.device)
    b = Xc.transpose(1, 2) @ (w * yc)[..., None]
    beta = torch.linalg.lstsq(A, b).solution[..., 0] if alpha == 0 else torch.linalg.solve(A, b)[..., 0]
    return beta, y_mean[:, 0] - (x_mean * beta).sum(-1)


@torch.no_grad()
def lime_batched(model: torch.nn.Module, images: torch.Tensor, segments: torch.Tensor, masks: torch.Tensor,
                 labels: torch.Tensor, *, n_features: torch.Tensor | None = None, hide_color: float = 0.0, kernel: str = "lime", width: float = 0.25,
                 alpha: float = 1.0, forward_batch: int = 2048, weights: torch.Tensor | None = None) -> LimeResult:
    """LIME coefficients for a batch of images.

    images (B,3,H,W) in [0,1]; segments (B,H,W) int64 with labels 0..F_b-1; masks (S,F) or (B,S,F)
    in {0,1}; labels (B,) the class explained. Images with fewer segments than F give their count in
    n_features (B,) and set the padding columns to 1 (see pad_masks): those columns are constant,
    so their coefficient is exactly 0 and the regression on the real columns is unchanged.
    `weights` (S,) or (B,S), if given, are the regression weights instead of the kernel's (designs
    that draw rows from the kernel itself, lime_sampling.kernel_masks, fit them with equal weights).
    """
    B, _, H, W = images.shape
    dev = images.device
    masks = masks.to(dev).float()
    if masks.dim() == 2:
        masks = masks.expand(B, *masks.shape)
    S, F = masks.shape[1:]
    probs = torch.empty(B, S, device=dev)
    sq_dist = torch.empty(B, S, device=dev) if kernel == "paper" else None
    flat = [(b, s) for b in range(B) for s in range(0, S, forward_batch)]
    for b, s in flat:
        m = masks[b, s:s + forward_batch]                       # (s', F)
        pix = torch.gather(m, 1, segments[b].reshape(1, -1).expand(len(m), -1)).view(len(m), 1, H, W)
        z = images[b:b + 1] * pix + hide_color * (1 - pix)
        out = torch.softmax(model(z.contiguous(memory_format=torch.channels_last)).float(), -1)
        probs[b, s:s + len(m)] = out[:, labels[b]]
        if sq_dist is not None:
            sq_dist[b, s:s + len(m)] = ((z - images[b:b + 1]) ** 2).flatten(1).sum(1)
    if n_features is None:
        n_features = torch.full((B,), F, device=dev)
    if weights is None:
        w = _kernel_weights(masks, n_features.to(dev), sq_dist, kernel, width)
    else:
        w = weights.to(dev, masks.dtype).expand(B, S)
    beta, intercept = weighted_ridge(masks, probs, w, alpha)
    return LimeResult(beta.float(), intercept.float(), w, probs)


def lime_reference(model: torch.nn.Module, image: torch.Tensor, segments: np.ndarray, label: int,
                   n_samples: int, seed: int, hide_color: float = 0.0, batch_size: int = 10):
    """The same explanation from the `lime` package (lime_image), for tests and benchmarks.

    Returns (beta (F,), intercept) with beta indexed by segment id.
    """
    from lime import lime_image

    dev = next(model.parameters()).device

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).float().permute(0, 3, 1, 2).to(dev)
        with torch.no_grad():
            return torch.softmax(model(x.contiguous(memory_format=torch.channels_last)), -1).cpu().double().numpy()

    explainer = lime_image.LimeImageExplainer(random_state=seed)
    exp = explainer.explain_instance(image.permute(1, 2, 0).cpu().double().numpy(), classifier_fn,
                                     labels=(label,), top_labels=None, hide_color=hide_color,
                                     num_samples=n_samples, batch_size=batch_size,
                                     segmentation_fn=lambda _img: segments, random_seed=seed)
    beta = np.zeros(int(segments.max()) + 1)
    for f, c in exp.local_exp[label]:
        beta[f] = c
    return beta, float(exp.intercept[label])


# ---- many images, and the lime package as the yardstick -------------------------------------------

def lime(model, x, y, segments, counts, n_samples: int, seed: int | Sequence[int], chunk: int = 64,
         progress: bool = True, design: Callable[[int, int, int], np.ndarray] = lime_masks,
         row_weights: Callable[[np.ndarray, int], np.ndarray | None] | None = None, desc: str = "LIME",
         **kw) -> LimeResult:
    """Batched LIME over many images, `chunk` images at a time.

    design(n_samples, n_features, seed) draws one image's mask rows (default: as `lime` draws them);
    row_weights(rows, n_features), if given, returns their regression weights (None: lime's kernel).
    `seed` is one seed for every image (lime's convention) or one per image."""
    f_max = int(counts.max())
    seeds = [int(seed)] * len(x) if np.isscalar(seed) else [int(s) for s in seed]
    if len(seeds) != len(x):
        raise ValueError(f"{len(seeds)} seeds for {len(x)} images")
    parts = []
    for s in bar(range(0, len(x), chunk), desc=desc, enabled=progress):
        c = counts[s:s + chunk]
        rows = [design(n_samples, int(k), seeds[s + i]) for i, k in enumerate(c.tolist())]
        if len({len(m) for m in rows}) != 1:
            raise ValueError(f"designs of different lengths in one chunk ({sorted({len(m) for m in rows})})")
        w = None if row_weights is None else [row_weights(m, int(k)) for m, k in zip(rows, c.tolist())]
        weights = None if w is None or w[0] is None else torch.from_numpy(np.stack(w))
        masks = torch.from_numpy(np.stack([pad_masks(m, f_max) for m in rows]))
        parts.append(lime_batched(model, x[s:s + chunk], segments[s:s + chunk], masks, y[s:s + chunk],
                                  n_features=c, weights=weights, **kw))
    return LimeResult(*(torch.cat([getattr(p, f) for p in parts]) for f in ("beta", "intercept", "weights", "targets")))


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


LIME_BATCH_SIZES = (10, 1000)


def benchmark_metrics(lime_batch_sizes=LIME_BATCH_SIZES) -> list[str]:
    """The measurements benchmark() returns (beyond its n_images and n_samples), known before it runs."""
    return ([f"lime_bs{bs}_s_per_image" for bs in lime_batch_sizes] + ["batched_s_per_image", "max_abs_coef_diff_vs_lime",
            "inference_s_per_image", "batched_over_inference"] + [f"speedup_vs_lime_bs{bs}" for bs in lime_batch_sizes])


def benchmark(model, x, y, segments, counts, n_samples: int, seed: int, lime_batch_sizes=LIME_BATCH_SIZES,
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
    ours = lime(model, x, y, segments, counts, n_samples, seed, chunk=len(x), progress=False,
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


ATTRIBUTION_STATS = ("top10pct_share_mean", "resample_corr_mean", "resample_corr_min", "resample_corr_median")


def lime_by_seed(model, x, y, segments, counts, n_samples: int, **kw) -> Callable[[int], LimeResult]:
    """seed -> lime(model, x, ..., seed, **kw), each seed run at most once and only when first asked
    (a notebook whose records and figure data are stored never runs it)."""
    return functools.cache(lambda seed: lime(model, x, y, segments, counts, n_samples, seed, **kw))


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


# ---- one interface for every attribution method ---------------------------------------------------

class Explainer(Protocol):
    """Attributions per segment: (B,F) values for images x (B,3,H,W) in [0,1], labels y, segments
    (B,H,W) with `counts` (B,) real segments each (padding columns are 0). `key()` is what the
    attributions depend on (for caches); `name` labels records."""
    name: str

    def segment_attributions(self, model, x: torch.Tensor, y: torch.Tensor, segments: torch.Tensor,
                             counts: torch.Tensor, seed: int) -> torch.Tensor: ...

    def key(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LimeExplainer:
    """Batched LIME (this module): beta per segment."""
    n_samples: int = 1000
    hide_color: float = 0.0
    kernel: str = "lime"
    width: float = 0.25
    alpha: float = 1.0
    chunk: int = 64
    progress: bool = False
    name: str = "lime"
    grid_cell: int = 4        # pixel maps: LIME on grid superpixels of grid_cell x grid_cell pixels

    def segment_attributions(self, model, x, y, segments, counts, seed):
        return lime(model, x, y, segments, counts, self.n_samples, seed, chunk=self.chunk, progress=self.progress,
                    hide_color=self.hide_color, kernel=self.kernel, width=self.width, alpha=self.alpha).beta

    def pixel_attributions(self, model, x, y, seed):
        """(B,1,H,W): each pixel carries its grid cell's beta."""
        segments, counts = grid_segments(x, self.grid_cell)
        return to_pixels(self.segment_attributions(model, x, y, segments, counts, seed).to(segments.device),
                         segments)[:, None]

    def key(self) -> dict[str, Any]:
        # grid_cell shapes only pixel maps, which are never cached: keys stay those of earlier runs
        return {k: v for k, v in asdict(self).items() if k not in ("chunk", "progress", "grid_cell")}


def grid_segments(x: torch.Tensor, cell: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same grid of cell x cell superpixels for every image of x (B,3,H,W): (B,H,W), counts (B,)."""
    h, w = x.shape[-2:]
    rows, cols = torch.arange(h) // cell, torch.arange(w) // cell
    seg = rows[:, None] * ((w + cell - 1) // cell) + cols[None, :]
    return seg.expand(len(x), h, w).contiguous(), torch.full((len(x),), int(seg.max()) + 1)


@dataclass(frozen=True)
class CaptumExplainer:
    """captum's IntegratedGradients / GradientShap on pixels, summed over channels and each segment's
    pixels; or KernelShap with the segments as its feature mask (one value per segment).
    Baseline: black image (IG, KernelShap); GradientShap draws baselines from black and white."""
    method: str = "integrated_gradients"  # | gradient_shap | kernel_shap
    n_steps: int = 32                      # IG steps / GradientShap samples / KernelShap samples
    internal_batch_size: int = 256
    name: str = "integrated_gradients"
    grid_cell: int = 4                     # KernelShap's pixel maps: grid superpixels of this size
    # GradientShap has no internal batching: captum runs images x samples at once (1,600 ResNet-50
    # passes for 50 images x 32 samples exhausted 24 GB). It gets images in calls of at most this many
    # passes; the draws depend on the split, so it is part of the key.
    shap_batch: int = 256

    def _pixels(self, model, x, y, seed):
        import captum.attr as ca

        torch.manual_seed(seed)
        x = x.detach()
        if self.method == "integrated_gradients":
            return ca.IntegratedGradients(model).attribute(x, target=y, baselines=torch.zeros_like(x), n_steps=self.n_steps,
                                                           internal_batch_size=self.internal_batch_size).detach()
        base = torch.stack([torch.zeros_like(x[0]), torch.ones_like(x[0])])
        per_call = max(1, self.shap_batch // self.n_steps)
        gs, y = ca.GradientShap(model), torch.as_tensor(y)
        state = np.random.get_state()  # captum draws GradientShap's baselines and alphas from numpy's global RNG
        np.random.seed(seed % 2**32)
        try:
            return torch.cat([gs.attribute(x[i:i + per_call], baselines=base, target=y[i:i + per_call],
                                           n_samples=self.n_steps).detach() for i in range(0, len(x), per_call)])
        finally:
            np.random.set_state(state)

    def pixel_attributions(self, model, x, y, seed):
        """(B,C,H,W) for IG and GradientShap; (B,1,H,W) grid-cell values for KernelShap."""
        if self.method == "kernel_shap":
            segments, counts = grid_segments(x, self.grid_cell)
            return to_pixels(self.segment_attributions(model, x, y, segments, counts, seed), segments)[:, None]
        if self.method not in ("integrated_gradients", "gradient_shap"):
            raise ValueError(f"Unknown captum method {self.method!r}: integrated_gradients, gradient_shap or kernel_shap")
        return self._pixels(model, x, y, seed)

    def segment_attributions(self, model, x, y, segments, counts, seed):
        import captum.attr as ca

        f_max = int(counts.max())
        torch.manual_seed(seed)
        x = x.detach()
        if self.method in ("integrated_gradients", "gradient_shap"):
            attr = self._pixels(model, x, y, seed)
        elif self.method == "kernel_shap":
            ks = ca.KernelShap(model)
            out = torch.zeros(len(x), f_max)
            for i in range(len(x)):
                a = ks.attribute(x[i:i + 1], target=int(y[i]), baselines=0.0, n_samples=self.n_steps,
                                 feature_mask=segments[i:i + 1, None].expand(1, 3, -1, -1).to(x.device))
                # every pixel (and channel) of a segment carries the segment's value: take their mean
                seg = segments[i:i + 1]
                out[i] = pool(a[:, 0].detach(), seg, f_max)[0] / pool(torch.ones_like(a[:, 0]), seg, f_max)[0].clamp_min(1)
            return out
        else:
            raise ValueError(f"Unknown captum method {self.method!r}: integrated_gradients, gradient_shap or kernel_shap")
        return pool(attr.detach().sum(1), segments, f_max)

    def key(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("internal_batch_size", "grid_cell")}
