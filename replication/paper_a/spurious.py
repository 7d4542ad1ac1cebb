"""Spurious-feature identification (Paper A §III-B, eqs 4-7), per image, over LIME segments.

For every image and segment j the three criteria are computed as scores and thresholded:

- irrelevance (eq 4): the segment's share of the image's total |beta| (baseline LIME) is above the
  global quantile `tau_q` of all shares, and the segment is *not supported* by the reference model:
  the reference's LIME share of the same segment is below the reference's global quantile
  `support_q`;
- sensitivity (eq 5): the segment's share of the input-gradient magnitude (mean over its pixels of
  sum_c |d f_y / d x|, f_y the logit of the explained class, as in §IV) is above quantile `eps_q`,
  and not supported by the reference's gradient share (same rule as above);
- instability (eq 6): the variance of beta_j over the original image and `n_perturb` copies with
  Gaussian pixel noise (sigma `perturb_sigma`, same segments), divided by the image's squared mean
  |beta|, is above quantile `delta_q`.

Shares and relative variances make images comparable: a confident prediction has small LIME
coefficients everywhere. With no reference model (`reference=None`) the rules are eq 7 as printed:
thresholds alone. A segment is spurious if any rule flags it (eq 7); the pixel mask follows from the
segments (eq 8 uses m = 0 on spurious pixels; `pixel_masks` returns the spurious pixels themselves).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from ..data import Split, load_split, to_float
from ..explain import Explainer, LimeExplainer
from ..hardware import native_bf16
from ..profiles import IdentifyBudget
from ..segments import kwargs_for, segment_batch, to_pixels

RULES = ("irrelevant", "sensitive", "unstable")


@dataclass(frozen=True)
class IdentifyConfig:
    n_samples: int = 200          # LIME samples per image
    segmentation: str = "slic"
    n_segments: int = 50
    tau_q: float = 0.9            # eq 4: attribution share above this global quantile ...
    support_q: float = 0.5        # ... and the reference's share below this quantile = not supported
    eps_q: float = 0.9            # eq 5: gradient share above this quantile (reference check as above)
    delta_q: float = 0.9          # eq 6: relative LIME variance above this quantile
    n_perturb: int = 2            # noisy copies for eq 6 (plus the original image)
    perturb_sigma: float = 0.03   # their Gaussian pixel noise, [0,1] scale
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def identify_config(budget: IdentifyBudget, seed: int = 0, **overrides: Any) -> IdentifyConfig:
    """The rules' settings at a profile's identification budget (sample counts), with overrides."""
    return replace(IdentifyConfig(seed=seed, n_samples=budget.n_samples, n_perturb=budget.n_perturb), **overrides)


class _Autocast(torch.nn.Module):
    """Runs a model under bf16 autocast and returns fp32 logits."""

    def __init__(self, model: torch.nn.Module, enabled: bool):
        super().__init__()
        self.model, self.enabled = model, enabled

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.enabled):
            return self.model(x).float()


def segment_sensitivity(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, segments: torch.Tensor,
                        n_features: int, batch: int = 256) -> torch.Tensor:
    """(B,F): mean over each segment's pixels of sum_c |d logit_y / d x| (eq 5), fp32."""
    out = torch.zeros(len(x), n_features)
    for s in range(0, len(x), batch):
        xb = x[s:s + batch].detach().clone().requires_grad_(True)
        logits = model(xb)
        (g,) = torch.autograd.grad(logits.gather(1, y[s:s + batch, None]).sum(), xb)
        pix = g.abs().sum(1).flatten(1).detach().cpu()                       # (b, H*W)
        seg = segments[s:s + batch].flatten(1)
        tot = torch.zeros(len(pix), n_features).scatter_add_(1, seg, pix)
        cnt = torch.zeros(len(pix), n_features).scatter_add_(1, seg, torch.ones_like(pix))
        out[s:s + batch] = tot / cnt.clamp_min(1)
    return out


@dataclass
class Scores:
    segments: torch.Tensor         # (B,H,W) int64
    counts: torch.Tensor           # (B,) segments per image
    beta: torch.Tensor             # (B,F) baseline LIME coefficients
    sens: torch.Tensor             # (B,F) baseline gradient sensitivity
    beta_var: torch.Tensor         # (B,F) variance of beta over the original and noisy copies
    beta_ref: torch.Tensor | None  # (B,F) reference LIME, same segments
    sens_ref: torch.Tensor | None

    def without_reference(self) -> "Scores":
        """The same scores with the reference check switched off (eq 7 as printed)."""
        return replace(self, beta_ref=None, sens_ref=None)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def concat(parts: list[Scores]) -> Scores:
    """Scores of several image batches as one (segment columns zero-padded to the widest batch;
    `valid` keeps padding out of every rule)."""
    f_max = max(p.beta.shape[1] for p in parts)

    def cat(name: str) -> torch.Tensor | None:
        got = [getattr(p, name) for p in parts]
        if any(g is None for g in got):
            return None
        if got[0].dim() == 2:
            got = [torch.nn.functional.pad(g, (0, f_max - g.shape[1])) for g in got]
        return torch.cat(got)
    return Scores(**{f.name: cat(f.name) for f in fields(Scores)})


def valid(counts: torch.Tensor, n_features: int) -> torch.Tensor:
    """(B,F) bool: real (non-padding) segments."""
    return torch.arange(n_features)[None, :] < counts[:, None]


def attribution_scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: IdentifyConfig, *,
                       segments: tuple[torch.Tensor, torch.Tensor] | None = None,
                       reference: "Scores | None" = None, instability: bool = True, chunk: int = 50,
                       progress: bool = True, explainer: Explainer | None = None) -> Scores:
    """Attributions (LIME unless `explainer` says otherwise), gradient sensitivity and attribution
    variance for images x (B,3,H,W) in [0,1], labels y.

    `reference` is the reference model's Scores on the same images and segments (computed once
    with instability=False and reused: the reference does not change between refinement rounds).
    Forward passes run under bf16 autocast only where the hardware has native bf16 units.
    """
    explainer = explainer or LimeExplainer(n_samples=cfg.n_samples, chunk=chunk, progress=progress)
    model = model.eval()
    if segments is None:
        segments = segment_batch(x, cfg.segmentation, **kwargs_for(cfg.segmentation, cfg.n_segments))
    seg, counts = segments
    f_max = int(counts.max())
    fast = _Autocast(model, native_bf16(x.device))
    beta = explainer.segment_attributions(fast, x, y, seg, counts, cfg.seed)
    sens = segment_sensitivity(model, x, y, seg, f_max)
    betas = [beta]
    g = torch.Generator().manual_seed(cfg.seed + 7919)
    for i in range(cfg.n_perturb if instability else 0):
        noisy = (x + cfg.perturb_sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)
        betas.append(explainer.segment_attributions(fast, noisy.contiguous(memory_format=torch.channels_last), y,
                                                    seg, counts, cfg.seed + 1 + i))
    beta_var = torch.stack(betas).var(0, unbiased=False)
    return Scores(seg, counts, beta, sens, beta_var, None if reference is None else reference.beta,
                  None if reference is None else reference.sens)


def _share(v: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    a = v.abs() * ok
    return a / a.sum(1, keepdim=True).clamp_min(1e-12)


def _above(v: torch.Tensor, ok: torch.Tensor, q: float) -> tuple[torch.Tensor, float]:
    t = float(torch.quantile(v[ok].double(), q))
    return (v > t) & ok, t


@dataclass
class Flags:
    irrelevant: torch.Tensor   # (B,F) bool
    sensitive: torch.Tensor
    unstable: torch.Tensor
    thresholds: dict[str, float]

    @property
    def spurious(self) -> torch.Tensor:
        return self.irrelevant | self.sensitive | self.unstable

    def rule(self, name: str) -> torch.Tensor:
        return self.spurious if name == "spurious" else getattr(self, name)


def identify(s: Scores, cfg: IdentifyConfig) -> Flags:
    """Eq 7 over segments: spurious = irrelevant OR sensitive OR unstable (see the module docstring)."""
    ok = valid(s.counts, s.beta.shape[1])
    th: dict[str, float] = {}
    irr, th["tau_share"] = _above(_share(s.beta, ok), ok, cfg.tau_q)
    sen, th["eps_share"] = _above(_share(s.sens, ok), ok, cfg.eps_q)
    if s.beta_ref is not None:
        sup_b, th["support_lime_share"] = _above(_share(s.beta_ref, ok), ok, cfg.support_q)
        sup_s, th["support_grad_share"] = _above(_share(s.sens_ref, ok), ok, cfg.support_q)
        irr, sen = irr & ~sup_b, sen & ~sup_s
    mean_abs = (s.beta.abs() * ok).sum(1, keepdim=True) / s.counts[:, None].clamp_min(1)
    rel_var = s.beta_var / mean_abs.clamp_min(1e-12) ** 2
    uns, th["delta_rel_var"] = _above(rel_var, ok, cfg.delta_q)
    return Flags(irr, sen, uns, th)


def pixel_masks(flags: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """(B,F) bool segment flags -> (B,H,W) bool spurious pixels (1 - m in eq 8)."""
    return to_pixels(flags.float(), segments) > 0.5


def random_flags(flags: torch.Tensor, counts: torch.Tensor, seed: int) -> torch.Tensor:
    """Control: per image, as many random segments as `flags` marks, drawn among its real segments."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros_like(flags)
    for i, k in enumerate(flags.sum(1).tolist()):
        out[i, torch.randperm(int(counts[i]), generator=g)[:k]] = True
    return out


def class_masks(pix: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Aggregated option: per class, the pixels most often flagged, as many as the class's mean
    per-image flagged count. (C,H,W) bool; for images without their own LIME run."""
    out = torch.zeros(num_classes, *pix.shape[1:], dtype=torch.bool)
    for c in range(num_classes):
        sel = pix[y == c]
        if len(sel) == 0:
            continue
        freq = sel.float().mean(0).flatten()
        k = int(round(sel.flatten(1).sum(1).float().mean().item()))
        if k:
            out[c].view(-1)[freq.topk(k).indices] = True
    return out


def overlap_counts(flags: Flags) -> dict[str, int]:
    """Flagged-segment counts for each exact combination of rules (the upset plot's bars)."""
    a, b, c = (flags.rule(r) for r in RULES)
    out = {}
    for bits in range(1, 8):
        sel = [bool(bits & 1), bool(bits & 2), bool(bits & 4)]
        m = torch.ones_like(a)
        for on, t in zip(sel, (a, b, c)):
            m &= t if on else ~t
        out[" & ".join(r for r, on in zip(RULES, sel) if on)] = int(m.sum())
    return out


def summary(flags: Flags, counts: torch.Tensor, segments: torch.Tensor) -> dict[str, float]:
    """Per rule: share of segments flagged, share of pixels flagged, share of images with any flag."""
    ok = valid(counts, flags.irrelevant.shape[1])
    out: dict[str, float] = {}
    for r in (*RULES, "spurious"):
        f = flags.rule(r) & ok
        out[f"{r}_segment_frac"] = float(f.sum() / ok.sum())
        out[f"{r}_pixel_frac"] = float(pixel_masks(f, segments).float().mean())
        out[f"{r}_images_frac"] = float(f.any(1).float().mean())
    return out


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """Jaccard index of two flag sets (B,F) bool (1.0 when both are empty)."""
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def _store_paths(key: dict[str, Any], profile: str):
    """(committed store file, local cache file) of the scores under `key`."""
    from ..cache import stable_hash
    from ..paths import cache_dir, results_dir

    name = stable_hash(key)
    return (results_dir(profile) / "identification" / f"{name}.safetensors",
            cache_dir() / "identification" / profile / f"{name}.pt")


def _scores_of(d: dict[str, torch.Tensor]) -> Scores:
    return Scores(**{f.name: d.get(f.name) for f in fields(Scores)})


def scores_cached(key: dict[str, Any], profile: str, compute, keep: bool = False) -> Scores:
    """Scores for `key` (models' config hashes, images, IdentifyConfig): from the committed store
    results/<profile>/identification/ (written when `keep`: the scores a reported notebook's records
    and figures come from, so a rerun or a later notebook re-identifies nothing), else from
    .cache/identification, else compute() them and store them in one of the two."""
    from ..cache import tensor_file_memo

    kept, cached = _store_paths(key, profile)
    if kept.exists():
        return _load_kept(kept, key)
    if keep:
        d = torch.load(cached, weights_only=True) if cached.exists() else compute().tensors()
        _save_kept(kept, key, d)
    else:
        d = tensor_file_memo(cached, lambda: compute().tensors())
    return _scores_of(d)


def _save_kept(path, key: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Compactly: segment ids as uint8 (at most 255 segments per image), scores as float32."""
    from safetensors.torch import save_file

    from ..cache import atomic_write

    out = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    if int(out["segments"].max()) > 255 or int(out["segments"].min()) < 0:
        raise ValueError("segment ids outside 0-255 cannot be stored as uint8")
    out["segments"] = out["segments"].to(torch.uint8)
    out["counts"] = out["counts"].to(torch.int32)
    atomic_write(path, lambda tmp: save_file(out, tmp, metadata={"key": json.dumps(key, sort_keys=True, default=str)}))


def _load_kept(path, key: dict[str, Any]) -> Scores:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        stored_key = json.loads((f.metadata() or {}).get("key", "null"))
        if stored_key != json.loads(json.dumps(key, sort_keys=True, default=str)):
            raise ValueError(f"{path} holds the scores of another identification ({stored_key}), not of {key}: "
                             "delete it and rerun the notebook that wrote it")
        d = {k: f.get_tensor(k) for k in f.keys()}
    d["segments"], d["counts"] = d["segments"].long(), d["counts"].long()
    return _scores_of(d)


# ---- the identification set and cached scores per model (notebooks 03 and 04) --------------------
# Identification runs on a class-balanced subset of the *training* split (Algorithm 1 explains the
# training data D, and refinement needs masks for the images it trains on). Scores are cached under
# .cache/identification/<profile>/, keyed by the models' config hashes, the images and the settings
# (not the precision: bf16 and fp32 scores differ only in rounding), so notebook 04 reuses what 03
# computed and later refinement rounds only recompute the refined model's side.

def images_key(split: Split) -> str:
    return hashlib.sha1(split.x.cpu().numpy().tobytes() + split.y.cpu().numpy().tobytes()).hexdigest()[:16]


def identification_split(dataset: str, budget: IdentifyBudget, seed: int = 0) -> Split:
    return load_split(dataset, train=True, n=budget.n_images, seed=seed)


def score_keys(model_hash: str, split: Split, cfg: IdentifyConfig, reference_hash: str | None = None,
               explainer: Explainer | None = None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The store keys of the reference's scores (None without a reference) and the model's."""
    img = images_key(split)
    how = {} if explainer is None else {"explainer": explainer.key()}  # LIME's keys stay as they were
    ref_key = None if reference_hash is None else {"model": reference_hash, "images": img, "cfg": cfg.to_dict(),
                                                   "instability": False, **how}
    return ref_key, {"model": model_hash, "reference": reference_hash, "images": img, "cfg": cfg.to_dict(), **how}


def has_scores(key: dict[str, Any], profile: str) -> bool:
    """Whether scores under `key` are stored (committed or cached), without reading them."""
    return any(p.exists() for p in _store_paths(key, profile))


def scores_stored(model_hash: str, split: Split, cfg: IdentifyConfig, profile: str, *,
                  reference: tuple[torch.nn.Module, str] | None = None, explainer: Explainer | None = None) -> bool:
    """Whether scores_for with these arguments would read the model's scores from a store (computes nothing)."""
    return has_scores(score_keys(model_hash, split, cfg, reference[1] if reference else None, explainer)[1], profile)


def stored_scores(key: dict[str, Any], profile: str) -> Scores | None:
    """The scores under `key` from the committed store, else the local cache, else None (nothing computed)."""
    kept, cached = _store_paths(key, profile)
    if kept.exists():
        return _load_kept(kept, key)
    return _scores_of(torch.load(cached, weights_only=True)) if cached.exists() else None


def scores_for(model: torch.nn.Module, model_hash: str, split: Split, cfg: IdentifyConfig, profile: str, *,
               reference: tuple[torch.nn.Module, str] | None = None, chunk: int = 50,
               progress: bool = True, explainer: Explainer | None = None, keep: bool = False,
               fresh: bool = False) -> Scores:
    """Cached Scores of `model` on `split` (with the reference model's attributions and gradients, if
    given); attributions from `explainer` (None: LIME at cfg's sample count), on both models. The
    models may be lazy handles (zoo.Lazy): they are built only when the cache misses. keep: store
    them (and the reference's) in the committed store (scores_cached). fresh: compute both sides,
    reading and writing no store (what replication.verify re-measures)."""
    from ..evaluate import model_of

    x, y = to_float(split.x.cpu()), split.y.cpu()
    ref_key, key = score_keys(model_hash, split, cfg, reference[1] if reference else None, explainer)

    def scores(k, compute):
        return compute() if fresh else scores_cached(k, profile, compute, keep)

    segs = ref_scores = None
    if reference is not None:
        ref_scores = scores(ref_key, lambda: attribution_scores(
            model_of(reference[0]), x, y, cfg, instability=False, chunk=chunk, progress=progress, explainer=explainer))
        segs = (ref_scores.segments, ref_scores.counts)
    return scores(key, lambda: attribution_scores(
        model_of(model), x, y, cfg, segments=segs, reference=ref_scores, chunk=chunk, progress=progress,
        explainer=explainer))
