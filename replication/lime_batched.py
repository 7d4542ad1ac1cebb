"""LIME for images (Paper A §III-A, eqs 1-3), batched: all perturbations of a batch of images go
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

from dataclasses import dataclass

import numpy as np
import torch


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


def _kernel_weights(masks: torch.Tensor, n_features: torch.Tensor, perturbed_sq_dist: torch.Tensor | None,
                    kernel: str, width: float) -> torch.Tensor:
    if kernel == "lime":
        # cosine distance between each mask row and the all-ones row: 1 - sqrt(k/F), counted over
        # the image's real features (padding columns are constant ones)
        pads = (masks.shape[-1] - n_features).to(masks.dtype)[:, None]
        k = masks.sum(-1) - pads
        d = 1 - torch.sqrt(k / n_features.to(masks.dtype)[:, None])
        return torch.sqrt(torch.exp(-(d ** 2) / width ** 2))
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
                 alpha: float = 1.0, forward_batch: int = 2048) -> LimeResult:
    """LIME coefficients for a batch of images.

    images (B,3,H,W) in [0,1]; segments (B,H,W) int64 with labels 0..F_b-1; masks (S,F) or (B,S,F)
    in {0,1}; labels (B,) the class explained. Images with fewer segments than F give their count in
    n_features (B,) and set the padding columns to 1 (see pad_masks): those columns are constant,
    so their coefficient is exactly 0 and the regression on the real columns is unchanged.
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
    w = _kernel_weights(masks, n_features.to(dev), sq_dist, kernel, width)
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
