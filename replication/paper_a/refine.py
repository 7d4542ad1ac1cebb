"""Attribution-guided refinement (Paper A §III-C/D, eqs 8-15, Algorithm 1), its ablations and controls.

One loss covers every row of the ablation table (`RefineSpec` switches its parts):

- feature masking (eqs 8-9): the model sees x * m, m = 0 on the image's spurious pixels;
- sensitivity regulariser (eq 12): mean over the spurious pixels j of ||d L_i / d x_j||^2, where
  L_i is the example's cross-entropy (the paper writes d f(x) / d x_j and leaves f's output open) and
  the squared norm runs over the pixel's three channels; double backprop. An image with no flagged
  pixel contributes 0, so L_reg is exactly 0 when nothing is flagged;
- FGSM adversarial loss (eqs 13-14): x_adv = clip(x + eps*sign(grad_x L_task)), eps on [0,1] pixels;
- total (eq 15): L_task + alpha*L_adv + lambda*L_reg.

Controls with the same compute: FGSM with random start (fast AT, Wong et al. 2020: eps 8/255, step
10/255, trained on the adversarial loss only), the gradient penalty over all pixels (no LIME), and
the full method with a random mask of the same number of segments per image.

The per-image spurious mask travels with its image as the split's `aux` channel, so random crops
and flips move mask and image together.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..attacks import fgsm
from ..data import Split
from ..profiles import ModelBudget, RefineBudget
from ..cache import stable_hash
from ..train import TrainConfig, TrainResult, config_for, train_model
from .spurious import images_key, jaccard


@dataclass(frozen=True)
class RefineSpec:
    name: str
    mask: bool = False
    reg: bool = False
    adv: bool = False
    eps: float = 0.03             # FGSM training eps (eq 13), [0,1] pixel scale
    alpha: float = 1.0            # weight of L_adv (eq 15)
    lam: float = 1.0              # weight of L_reg (eq 15)
    reg_region: str = "spurious"  # "all": the input-gradient penalty over every pixel (control)
    mask_source: str = "lime"     # "random": same number of segments per image, chosen at random (control)
    fast_at: bool = False         # control: FGSM with random start, adversarial loss only
    fast_at_step: float = 10 / 255
    clean_loss: bool = True       # False: adversarial loss only (fast AT as published)

    def key(self) -> str:
        d = {k: v for k, v in asdict(self).items() if k != "name"}
        return stable_hash(d, 12)

    def setting(self, *, train_seed: int = 0, eps_reading: str = "pixel") -> dict[str, Any]:
        """A result record's setting for a model refined with this spec."""
        from ..results import canonical_eps

        return {"refinement": self.name, "eps_train": canonical_eps(self.eps), "eps_train_reading": eps_reading,
                "alpha": self.alpha, "lambda": self.lam, "train_seed": train_seed}


def ablation_specs(eps: float, alpha: float, lam: float) -> list[RefineSpec]:
    """Every combination of the three parts, plain fine-tuning, and the three controls."""
    base = dict(eps=eps, alpha=alpha, lam=lam)
    specs = [RefineSpec("fine-tune only (CE)", **base)]
    for m, r, a in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)):
        name = "+".join(p for p, on in (("mask", m), ("reg", r), ("adv", a)) if on)
        specs.append(RefineSpec(name, mask=bool(m), reg=bool(r), adv=bool(a), **base))
    specs += [
        RefineSpec("control: fast AT (eps 8/255, step 10/255)", fast_at=True, clean_loss=False,
                   **{**base, "eps": 8 / 255}),
        RefineSpec("control: gradient penalty on all pixels + adv", reg=True, adv=True, reg_region="all", **base),
        RefineSpec("control: random mask + reg + adv", mask=True, reg=True, adv=True, mask_source="random", **base),
    ]
    return specs


FULL = "mask+reg+adv"


class RefinementLoss:
    """BatchLoss for train_model: (model, x, y, aux) -> (loss, clean-input logits)."""

    def __init__(self, spec: RefineSpec):
        self.spec = spec

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, aux: torch.Tensor | None):
        s = self.spec
        spur = (aux[:, :1] > 127.5).to(x.dtype) if aux is not None else torch.zeros_like(x[:, :1])
        xin = x * (1 - spur) if s.mask else x
        if s.reg:
            xin = xin.detach().requires_grad_(True)
        logits = model(xin)
        loss = F.cross_entropy(logits.float(), y) if s.clean_loss else torch.zeros((), device=x.device)
        if s.reg:
            loss = loss + s.lam * sensitivity_penalty(logits, y, xin, torch.ones_like(spur) if s.reg_region == "all" else spur)
        if s.adv or s.fast_at:
            x_adv = fgsm(model, xin.detach(), y, s.eps, random_start=s.fast_at,
                         alpha=s.fast_at_step if s.fast_at else None)
            loss = loss + (1.0 if s.fast_at else s.alpha) * F.cross_entropy(model(x_adv).float(), y)
        return loss, logits


def sensitivity_penalty(logits: torch.Tensor, y: torch.Tensor, xin: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Eq 12: per image, mean over pixels in `region` (B,1,H,W) of the squared input gradient of the
    example's loss (summed over channels); averaged over the batch. Differentiable (double backprop)."""
    (g,) = torch.autograd.grad(F.cross_entropy(logits.float(), y, reduction="sum"), xin, create_graph=True)
    sq = g.float().pow(2).sum(1, keepdim=True) * region
    return (sq.flatten(1).sum(1) / region.flatten(1).sum(1).clamp_min(1)).mean()


def with_masks(split: Split, spurious_pixels: torch.Tensor) -> Split:
    """The split with its (N,H,W) bool spurious-pixel masks as the aux channel (0/255 uint8)."""
    aux = spurious_pixels.to(torch.uint8)[:, None].mul(255).to(split.x.device)
    return Split(split.name, split.train, split.x, split.y, split.num_classes, aux)


def masks_id(split: Split, recipe: dict[str, Any]) -> str:
    """Names a (training images, spurious masks) pair by how the masks are made (`recipe`: the
    identified model's hash, the identification config, the reference, the explainer, the mask
    source and its seed), not by their bytes, so a refined model's cache key is known before any
    identification runs. Part of the refined model's config (data_variant)."""
    return f"masks-{images_key(split)}-{stable_hash(recipe, 12)}"


def refine_config(init_hash: str, spec: RefineSpec, train: Split, *, budget: RefineBudget, model: ModelBudget,
                  masks_id: str, seed: int = 0) -> TrainConfig:
    """The fine-tune's config: what its checkpoint and its records are keyed on."""
    return config_for("resnet18", train.name.split("-")[0], model, seed=seed, epochs=budget.epochs,
                      batch_size=budget.batch_size, lr=budget.lr, schedule="cosine", n_train=len(train),
                      extra_loss=f"refine:{spec.key()}", init_from=init_hash, data_variant=masks_id)


def refine(init: TrainResult, spec: RefineSpec, train: Split, *, budget: RefineBudget, model: ModelBudget,
           store: str, name: str, masks_id: str, seed: int = 0, manifest: bool = False,
           progress: bool = True) -> TrainResult:
    """Fine-tune `init` on `train` (with its masks as aux) with the spec's loss for `budget`'s epochs;
    `model` is the architecture's budget (width, precision). Cached like any model under
    checkpoints/<store>/<name>-<hash> (store: the profile's name); manifest=True lists it in
    checkpoints/MANIFEST.json for committing (git-ignored otherwise: `git add -f` it)."""
    cfg = refine_config(init.config_hash, spec, train, budget=budget, model=model, masks_id=masks_id, seed=seed)
    return train_model(cfg, name, store, train, None, batch_loss=RefinementLoss(spec),
                       init_model=init.model, manifest=manifest, progress=progress)


@dataclass
class Round:
    round: int
    flagged_segment_frac: float
    flagged_pixel_frac: float
    jaccard_to_previous: float | None
    metrics: dict[str, float]
    wall_time_s: float
    converged: bool
    stored: dict[str, dict[str, Any]] | None = None  # the round's identification records, when read back


def algorithm1(base: TrainResult, spec: RefineSpec, identify_round: Callable[[Any, int], tuple[Any, Any]],
               refine_round: Callable[[Any, Any, int], Any],
               evaluate_round: Callable[[Any, int], dict[str, float]], *, rounds: int,
               robust_key: str, tol_acc: float = 0.01, tol_jaccard: float = 0.8) -> tuple[Any, list[Round]]:
    """Algorithm 1: attribution -> identification -> refinement, repeated until the robust accuracy
    `robust_key` changes by less than `tol_acc` AND the flagged set's Jaccard index to the previous
    round is at least `tol_jaccard`, or `rounds` rounds have run.

    identify_round(model, r) -> (masks, flagged share of real segments, or the round's stored
    records {metric: record} when a run made them: then nothing is identified); masks is a
    study.Masks (lazy: .flags and .lime computed on first use); refine_round(model, masks, r) ->
    refined model; evaluate_round(model, r) -> metrics.
    """
    current, prev_masks, prev_rob, history = base, None, None, []
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        masks, found = identify_round(current, r)
        current = refine_round(current, masks, r)
        metrics = evaluate_round(current, r)
        rob = metrics[robust_key]
        if isinstance(found, dict):
            jac = found["jaccard"]["value"] if "jaccard" in found else None
            seg_frac, pix_frac = found["flagged_segment_frac"]["value"], found["flagged_pixel_frac"]["value"]
            wall, known = found["round_time_s"]["value"], found
        else:
            jac = None if prev_masks is None else jaccard(masks.flags.spurious, prev_masks.flags.spurious)
            seg_frac, pix_frac = float(found), float(masks.lime.float().mean())
            wall, known = time.perf_counter() - t0, None
        converged = prev_rob is not None and abs(rob - prev_rob) < tol_acc and jac is not None and jac >= tol_jaccard
        history.append(Round(r, seg_frac, pix_frac, jac, metrics, wall, converged, known))
        prev_masks, prev_rob = masks, rob
        if converged:
            break
    return current, history
