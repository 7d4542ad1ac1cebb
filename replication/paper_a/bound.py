"""Paper A §IV: the "attribution-aware lower bound" on adversarial distortion (eqs 22-23), the
alignment score (eq 19), and what they are measured against.

For an L-inf attack (p = inf) the dual norm is q = 1. Per correctly classified image x, label y,
runner-up class j (the largest other logit):

- `masked`   (a) eq 22-23 as printed: (f_y - f_j) / ||grad f_y * (1 - m)||_1, m the image's spurious
  pixels (all three channels). Zeroing coordinates can only shrink the denominator: it can only
  *raise* the estimate.
- `unmasked` (b) the same without the mask.
- `margin`   (c) the standard first-order estimate (eq 30): (f_y - f_j) / ||grad (f_y - f_j)||_1.
- `clever`   (d) CLEVER (Weng et al. 2018), untargeted against the runner-up: margin over an
  extreme-value (reverse Weibull) estimate of the largest ||grad (f_y - f_j)||_1 in the L-inf ball of
  radius R, capped at R. Tested against adversarial-robustness-toolbox's `clever_u`.
- `measured` (e) the smallest L-inf distortion found that flips the label: FAB (a minimum-norm
  attack, torchattacks), then a bisection over eps with PGD below FAB's value (the smallest eps at
  which PGD succeeds). (The issue suggested FMN from adv-lib; adv-lib 0.2.8 does not install from
  PyPI today: its dependency visdom 0.2.4 is an sdist whose setup.py imports pkg_resources, which
  current setuptools no longer ships.)

All three estimates are first-order: none is a bound unless f is linear in the ball. On a linear
classifier (c) equals the true minimal distortion (`tests/test_bound.py`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


def _logit_grad(model, x: torch.Tensor, coeff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, d<coeff, logits>/dx) per image: coeff (B,K) picks the combination of logits."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    (g,) = torch.autograd.grad((logits * coeff).sum(), x)
    return logits.detach(), g.detach()


@dataclass
class Estimates:
    margin_value: torch.Tensor   # f_y - f_j (B,)
    runner_up: torch.Tensor      # j (B,)
    masked: torch.Tensor         # (a)
    unmasked: torch.Tensor       # (b)
    margin: torch.Tensor         # (c)
    alignment: torch.Tensor      # eq 19 (B,), nan without attributions


def first_order(model, x: torch.Tensor, y: torch.Tensor, spurious: torch.Tensor | None = None,
                attribution: torch.Tensor | None = None, batch: int = 256) -> Estimates:
    """Estimates (a)-(c) and the alignment of eq 19 for images x (B,3,H,W), labels y.

    spurious: (B,H,W) bool spurious pixels (m of eq 24), or None for (a) = (b).
    attribution: (B,H,W) per-pixel LIME |beta| (each pixel carries its segment's value), for eq 18-19.
    """
    model.eval()
    with torch.no_grad():
        k = model(x[:1]).shape[1]  # number of classes
    out = {k_: [] for k_ in ("margin_value", "runner_up", "masked", "unmasked", "margin", "alignment")}
    for s in range(0, len(x), batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        onehot_y = torch.nn.functional.one_hot(yb, k).float()
        logits, g_y = _logit_grad(model, xb, onehot_y)
        other = logits.masked_fill(onehot_y.bool(), float("-inf"))
        j = other.argmax(1)
        margin = logits.gather(1, yb[:, None])[:, 0] - logits.gather(1, j[:, None])[:, 0]
        _, g_diff = _logit_grad(model, xb, onehot_y - torch.nn.functional.one_hot(j, k).float())
        keep = 1.0 if spurious is None else (~spurious[s:s + batch].to(xb.device))[:, None].float()
        out["margin_value"].append(margin)
        out["runner_up"].append(j)
        out["masked"].append(margin / (g_y * keep).abs().flatten(1).sum(1))
        out["unmasked"].append(margin / g_y.abs().flatten(1).sum(1))
        out["margin"].append(margin / g_diff.abs().flatten(1).sum(1))
        if attribution is None:
            out["alignment"].append(torch.full_like(margin, float("nan")))
        else:
            a = attribution[s:s + batch].to(xb.device).abs()[:, None].expand_as(g_y).flatten(1)
            a = a / a.sum(1, keepdim=True).clamp_min(1e-12)                       # eq 18
            gf = g_y.flatten(1)
            out["alignment"].append((gf * a).sum(1) / (gf.norm(dim=1) * a.norm(dim=1)).clamp_min(1e-12))  # eq 19
    return Estimates(**{k: torch.cat(v).cpu() for k, v in out.items()})


def clever(model, x: torch.Tensor, y: torch.Tensor, runner_up: torch.Tensor, *, radius: float = 0.1,
           n_batches: int = 20, batch_size: int = 32, seed: int = 0) -> torch.Tensor:
    """CLEVER scores (untargeted toward the runner-up, L-inf, so the gradient norm is L1): per image,
    n_batches x batch_size points uniform in the L-inf ball of `radius` (clipped to [0,1]); each
    batch's largest ||grad (f_y - f_j)||_1; a reverse Weibull fitted to those maxima gives the local
    Lipschitz estimate (its location); score = min(margin / estimate, radius)."""
    from scipy.stats import weibull_min

    model.eval()
    g = torch.Generator().manual_seed(seed)
    scores = []
    for i in range(len(x)):
        xi, yi, ji = x[i:i + 1], int(y[i]), int(runner_up[i])
        k = model(xi).shape[1]
        coeff = torch.zeros(batch_size, k)
        coeff[:, yi], coeff[:, ji] = 1.0, -1.0
        maxima = []
        for _ in range(n_batches):
            noise = (torch.rand((batch_size, *xi.shape[1:]), generator=g) * 2 - 1) * radius
            pts = (xi.cpu() + noise).clamp(0, 1).to(xi.device)
            _, grad = _logit_grad(model, pts, coeff.to(xi.device))
            maxima.append(grad.abs().flatten(1).sum(1).max().item())
        with torch.no_grad():
            logits = model(xi)[0]
        margin = float(logits[yi] - logits[ji])
        maxima = np.asarray(maxima)
        try:
            with warnings.catch_warnings():  # identical maxima (a linear region) make the fit degenerate
                warnings.simplefilter("ignore")
                # as CLEVER (and ART's clever_u): a Weibull fitted to the negated maxima; its location
                # is minus the largest gradient norm the samples point to
                _, loc, _ = weibull_min.fit(-maxima, 1.0)
            lipschitz = -loc
        except Exception:  # noqa: BLE001 (a degenerate fit: fall back to the largest sample)
            lipschitz = float(maxima.max())
        lipschitz = max(lipschitz, float(maxima.max()))
        scores.append(min(margin / lipschitz, radius))
    return torch.tensor(scores, dtype=torch.float32)


def _fooled(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) != y


def minimal_linf(model, x: torch.Tensor, y: torch.Tensor, *, fab_steps: int = 100, bisection_steps: int = 8,
                 pgd_steps: int = 20, batch: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
    """Smallest L-inf distortion found that flips the label (inf where nothing did): FAB's
    (torchattacks, a minimum-norm attack), then per image a bisection over eps in [0, FAB's eps]
    with PGD (random start, step 2.5 eps / steps). Returns {"fab": ..., "measured": ...}."""
    import torchattacks

    from ..attacks import frozen, pgd

    model.eval()
    fab_eps, best = [], []
    for s in range(0, len(x), batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        k = model(xb[:1]).shape[1]
        with frozen(model):  # FAB calls .backward(): no weight gradients (see attacks.frozen)
            adv = torchattacks.FAB(model, norm="Linf", eps=1.0, steps=fab_steps, n_restarts=1, n_classes=k,
                                   seed=seed + s)(xb, yb)
        ok = _fooled(model, adv, yb)
        e_fab = torch.where(ok, (adv - xb).abs().flatten(1).amax(1), torch.full((len(xb),), float("inf"), device=xb.device))
        lo, hi = torch.zeros_like(e_fab), e_fab.clone()
        live = torch.isfinite(hi)
        for step in range(bisection_steps):  # invariant: PGD (or FAB) flips the label at hi
            mid = torch.where(live, (lo + hi) / 2, torch.zeros_like(hi))
            torch.manual_seed(seed * 1000 + s + step)
            adv = pgd(model, xb, yb, mid, 2.5 * mid / pgd_steps, pgd_steps)  # one eps per image
            flipped = _fooled(model, adv, yb) & live
            hi = torch.where(flipped, mid, hi)
            lo = torch.where(flipped | ~live, lo, mid)
        fab_eps.append(e_fab.cpu())
        best.append(torch.minimum(hi, e_fab).cpu())
    return {"fab": torch.cat(fab_eps), "measured": torch.cat(best)}


def violation_summary(estimate: torch.Tensor, measured: torch.Tensor) -> dict[str, float]:
    """How the estimate relates to the measured distortion, on images where both are finite."""
    from scipy.stats import spearmanr

    ok = torch.isfinite(estimate) & torch.isfinite(measured) & (measured > 0)
    e, m = estimate[ok].double(), measured[ok].double()
    ratio = (e / m).numpy()
    return {"n": int(ok.sum()), "violation_rate": float((e > m).double().mean()) if len(e) else float("nan"),
            "median_ratio": float(np.median(ratio)) if len(ratio) else float("nan"),
            "spearman": float(spearmanr(e.numpy(), m.numpy()).statistic) if len(e) > 2 else float("nan")}


# ---- notebook 05: one model's check, recorded -----------------------------------------------------
ESTIMATES = ("masked", "unmasked", "margin", "clever")


def measure(tr, test, cfg, reference, budget, store: str, *, chunk: int, seed: int = 0):
    """One model's measurement: on `test`'s correctly classified images, with each image's own
    spurious mask (identification on the test images, reference included), estimates (a)-(d) and the
    measured minimal distortion. (per-image DataFrame, (model, x, y, minimal_linf's result)).
    check_model records it; replication.verify re-measures it."""
    import pandas as pd

    from ..data import to_float
    from ..segments import to_pixels
    from . import spurious as sp

    model = tr.model.eval()
    scores = sp.scores_for(model, tr.config_hash, test, cfg, store, reference=reference, chunk=chunk, progress=False)
    flags = sp.identify(scores, cfg)
    x, y = to_float(test.x.cpu()).contiguous(), test.y.cpu()
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok], y[ok]
    mask = sp.pixel_masks(flags.spurious, scores.segments)[ok]
    attribution = to_pixels(scores.beta.abs(), scores.segments)[ok]
    est = first_order(model, x, y, mask, attribution)
    measured = minimal_linf(model, x, y, fab_steps=budget.fab_steps, bisection_steps=budget.bisection_steps, seed=seed)
    cl = torch.full((len(x),), float("nan"))
    k = min(budget.clever_images, len(x))
    cl[:k] = clever(model, x[:k], y[:k], est.runner_up[:k], radius=0.03, n_batches=budget.clever_batches,
                    batch_size=budget.clever_batch_size, seed=seed)
    df = pd.DataFrame({"masked": est.masked.numpy(), "unmasked": est.unmasked.numpy(), "margin": est.margin.numpy(),
                       "clever": cl.numpy(), "measured": measured["measured"].numpy(), "fab": measured["fab"].numpy(),
                       "alignment": est.alignment.numpy(), "masked_share": mask.float().mean((1, 2)).numpy()})
    return df, (model, x, y, measured)


def summaries(df) -> dict[tuple[str, str | None], tuple[float, int]]:
    """{(metric, estimate or None): (value, n)} of one model's per-image DataFrame: each estimate's
    violation rate, median ratio and Spearman against the measured distortion, and the alignment's
    mean and Spearman with it (eq 19 as a predictor)."""
    from scipy.stats import spearmanr

    out = {}
    for name in ESTIMATES:
        s = violation_summary(torch.tensor(df[name].values), torch.tensor(df["measured"].values))
        for metric, key in (("bound_violation_rate", "violation_rate"), ("bound_median_ratio", "median_ratio"),
                            ("bound_spearman", "spearman")):
            out[(metric, name)] = (s[key], s["n"])
    fin = df[np.isfinite(df["measured"].values)]
    out[("alignment_mean", None)] = (float(df["alignment"].mean()), len(df))
    out[("alignment_spearman", None)] = (float(spearmanr(fin["alignment"], fin["measured"]).statistic), len(fin))
    return out


def check_model(run, model_name: str, tr, setting: dict, test, cfg, reference, budget, *, seed: int = 0):
    """Estimates (a)-(d) and the measured minimal distortion on `test`'s correctly classified images,
    with each image's own spurious mask (identification on the test images, reference included).
    Records the summaries through `run`; returns the per-image DataFrame (also stored in the
    min_linf_distortion_median record's extra, which the figures redraw from). A model whose records
    are all in the results file is not built: its records and per-image values are read back."""
    import pandas as pd

    from ..results import stored_where

    done = stored_where(run.experiment, run.profile.name, model=model_name, model_hash=tr.config_hash, dataset=test.name,
                        seed=run.seed, setting=setting, metric=RECORDED)
    if sorted(r["metric"] for r in done) == sorted(RECORDED_COUNTS):  # measured before: read back, build nothing
        run.add(done)
        per = next(r for r in done if r["metric"] == "min_linf_distortion_median")
        return pd.DataFrame(per["extra"]["per_image"]).astype(float)
    df, (model, x, y, measured) = measure(tr, test, cfg, reference, budget, run.profile.name,
                                          chunk=run.profile.identify.chunk, seed=seed)
    ctx = dict(model=model_name, model_hash=tr.config_hash, data=test.name, **setting)
    run.record(**ctx, metric="min_linf_distortion_median", value=float(df["measured"].median()), n=len(df),
               extra={"per_image": {c: [None if v != v else float(v) for v in df[c]] for c in df.columns},
                      "attack": f"FAB {budget.fab_steps} steps, then a {budget.bisection_steps}-step bisection with PGD-20"})
    for (metric, estimate), (value, n) in summaries(df).items():
        run.record(**ctx, metric=metric, value=value, n=n, **({} if estimate is None else {"estimate": estimate}))
    fin = df[np.isfinite(df["measured"].values)]
    run.record(**ctx, metric="stronger_attack_below_measured", n=min(budget.crosscheck_images, len(fin)),
               value=crosscheck(model, x, y, measured["measured"], budget.crosscheck_images, seed=seed), steps=100, restarts=2)
    return df


# what check_model records per model: the distortion, three summaries per estimate, the alignment pair and
# the stronger-attack cross-check
RECORDED = ("min_linf_distortion_median", "bound_violation_rate", "bound_median_ratio", "bound_spearman",
            "alignment_mean", "alignment_spearman", "stronger_attack_below_measured")


def crosscheck(model, x, y, measured: torch.Tensor, n: int, *, seed: int = 0) -> float:
    """Share of the first n images (finite measurement) that APGD-CE (100 steps, 2 restarts) flips at
    0.95 x the measured distortion: were the measurement minimal, none would be."""
    import torchattacks

    idx = torch.nonzero(torch.isfinite(measured)).flatten()[:n].tolist()
    flips = 0
    for i in idx:
        atk = torchattacks.APGD(model, norm="Linf", eps=0.95 * float(measured[i]), steps=100, n_restarts=2, seed=seed)
        flips += int(_fooled(model, atk(x[i:i + 1], y[i:i + 1]), y[i:i + 1])[0])
    return flips / max(1, len(idx))


RECORDED_COUNTS = ["min_linf_distortion_median", *[m for m in RECORDED[1:4] for _ in ESTIMATES], *RECORDED[4:]]


def summary_table(df):
    """Rows: model x estimate; columns: violation rate (%), median estimate/measured, Spearman rho;
    plus each model's median measured distortion and alignment (from query / records_frame rows)."""
    import pandas as pd


    rows = []
    for (_, r) in df[df["metric"] == "bound_violation_rate"].iterrows():
        same = df[(df["model_hash"] == r["model_hash"]) & (df["estimate"] == r["estimate"])]
        def get(metric):
            v = same[same["metric"] == metric]["value"].iloc[0]
            return float("nan") if v is None else float(v)

        rows.append({"model": "refined" if r.get("refinement") else "baseline", "estimate": r["estimate"],
                     "violation rate (%)": float("nan") if r["value"] is None else 100 * r["value"], "median estimate / measured": get("bound_median_ratio"),
                     "Spearman rho": get("bound_spearman"), "n": r["n"]})
    return pd.DataFrame(rows).set_index(["model", "estimate"]).round(3)


def per_image(df) -> dict:
    """{"baseline" | "refined": per-image DataFrame} from the stored min_linf_distortion_median records."""
    import pandas as pd

    out = {}
    for _, r in df[df["metric"] == "min_linf_distortion_median"].iterrows():
        out["refined" if r.get("refinement") else "baseline"] = pd.DataFrame(r["extra"]["per_image"]).astype(float)
    return out
