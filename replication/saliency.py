"""Attribution maps as images, and the numbers that compare them (notebook 10, Tables 2 and 3).

Paper B reports SSIM between "clean and adversarial attributions" and IoU with "ground truth
saliency" without saying how either is computed. One definition each, as the attribution
sanity-check literature uses them (Adebayo et al. 2018):

- a **magnitude map**: per image, |attribution| summed over channels, clipped at its 99th
  percentile and divided by it, so it lies in [0, 1] whatever the method's scale;
- a **signed map**: the attribution summed over channels, divided by the 99th percentile of its
  magnitude and clipped to [-1, 1];
- **SSIM**: scikit-image's `structural_similarity` with a 7x7 uniform window, `data_range` 1 for
  magnitude maps (2 for signed), its default sample covariance, the mean over the windows that fit
  (what Quantus' `ssim` calls). torchmetrics' independent implementation agrees once its two
  documented differences are aligned (population covariance, and the mean over the whole padded
  image rather than the interior): `ssim_torchmetrics` and tests/test_saliency.py;
- **Spearman** rank correlation of two maps' pixels;
- **top-k IoU** with a ground-truth mask: the k = |mask| pixels of largest magnitude (ties to the
  lower pixel index) against the mask; the chance level is |mask| / (H W), the expected
  share of a random k-subset inside the mask; and the **pointing game**: whether the largest pixel
  lies in the mask.
"""
from __future__ import annotations

import numpy as np
import torch

CLIP_Q = 0.99
WIN = 7


def _channels(maps: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W) or (B,H,W) -> (B,C,H,W) float."""
    maps = maps.detach().float().cpu()
    return maps[:, None] if maps.dim() == 3 else maps


def _scale(values: torch.Tensor, q: float) -> torch.Tensor:
    """Per image the q-quantile of `values` (B,H,W) >= 0; images whose quantile is 0 use their max (or 1)."""
    flat = values.flatten(1)
    s = torch.quantile(flat, q, dim=1)
    s = torch.where(s > 0, s, flat.max(1).values)
    return torch.where(s > 0, s, torch.ones_like(s))


def magnitude(maps: torch.Tensor, q: float = CLIP_Q) -> torch.Tensor:
    """(B,[C,]H,W) attributions -> (B,H,W) in [0,1]: sum_c |a|, clipped at the q-quantile, / it."""
    a = _channels(maps).abs().sum(1)
    return (a / _scale(a, q)[:, None, None]).clamp(0, 1)


def signed(maps: torch.Tensor, q: float = CLIP_Q) -> torch.Tensor:
    """(B,[C,]H,W) attributions -> (B,H,W) in [-1,1]: sum_c a, / the q-quantile of its magnitude."""
    a = _channels(maps).sum(1)
    return (a / _scale(a.abs(), q)[:, None, None]).clamp(-1, 1)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, win_size: int = WIN,
         sample_covariance: bool = True) -> np.ndarray:
    """(B,) SSIM of maps a[i] and b[i] (B,H,W), scikit-image's definition (module docstring).
    sample_covariance=False gives the population-covariance variant that ssim_torchmetrics computes."""
    from skimage.metrics import structural_similarity

    a, b = a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy()
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim wants two (B,H,W) stacks of the same shape, got {a.shape} and {b.shape}")
    return np.array([structural_similarity(p, t, data_range=data_range, win_size=win_size,
                                           use_sample_covariance=sample_covariance) for p, t in zip(a, b)])


def ssim_torchmetrics(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, win_size: int = WIN) -> np.ndarray:
    """The cross-check: torchmetrics' SSIM (uniform window) per pair, averaged over the interior
    windows as scikit-image does. Equals `ssim(..., sample_covariance=False)`."""
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    p = a.detach().double().cpu()[:, None]
    t = b.detach().double().cpu()[:, None]
    _, full = tm_ssim(p, t, gaussian_kernel=False, kernel_size=win_size, data_range=data_range,
                      reduction="none", return_full_image=True)
    r = (win_size - 1) // 2
    return full[:, 0, r:-r, r:-r].flatten(1).mean(1).numpy()


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share their mean rank) of each row of x (B,N)."""
    from scipy.stats import rankdata

    return torch.from_numpy(rankdata(x.detach().double().cpu().numpy(), axis=1))


def spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(B,) Spearman rank correlation of the pixels of maps a[i] and b[i]; NaN where a map is constant."""
    ra, rb = _ranks(a.flatten(1)), _ranks(b.flatten(1))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = (ra.norm(dim=1) * rb.norm(dim=1))
    r = (ra * rb).sum(1) / den
    return torch.where(den > 0, r, torch.full_like(r, float("nan"))).numpy()


def topk_iou(maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """(B,) IoU of the k = |mask| largest pixels of each magnitude map (B,H,W) with its mask (B,H,W) bool."""
    m = maps.detach().float().cpu().flatten(1)
    truth = masks.cpu().flatten(1).bool()
    out = np.empty(len(m))
    order = torch.sort(m, dim=1, descending=True, stable=True).indices  # stable: ties go to the lower index
    for i in range(len(m)):
        k = int(truth[i].sum())
        if k == 0:
            raise ValueError(f"image {i} has an empty ground-truth mask")
        top = torch.zeros_like(truth[i])
        top[order[i, :k]] = True
        inter = int((top & truth[i]).sum())
        out[i] = inter / (2 * k - inter)
    return out


def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """(B,) bool: the map's largest pixel (the first, on ties) lies inside the mask."""
    m = maps.detach().float().cpu().flatten(1)
    return masks.cpu().flatten(1).bool().gather(1, m.argmax(1, keepdim=True))[:, 0].numpy()


def chance_share(masks: torch.Tensor) -> np.ndarray:
    """(B,) |mask| / (H W): the expected share of a random k-subset of pixels that falls in the mask."""
    return masks.cpu().flatten(1).float().mean(1).numpy()


def interval(values: np.ndarray) -> tuple[float, float, float, int]:
    """Mean of the finite values, its 95% normal interval (1.96 standard errors), and their count."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan"), 0
    m = float(v.mean())
    half = 1.96 * float(v.std(ddof=1)) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return m, m - half, m + half, len(v)
