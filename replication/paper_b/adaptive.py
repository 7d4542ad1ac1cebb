"""Attacks on a purified classifier that a diffusion-purification skeptic accepts, and their scores
(issue 17's evaluation of ALDE).

What the attack differentiates is the `Threat`:

- `classifier`: the classifier alone; the adversarial images are then fed to the purifier (the
  naive number: the attack never sees the defence);
- `bpda`: the purifier forward, the identity backward (alde.BPDA; Athalye et al. 2018);
- `exact`: the whole pipeline, with exact gradients through every reverse step of the sampler
  (torch.utils.checkpoint keeps the memory at one step's activations), the purifier's noise either
  fresh on every call (so the gradient is an expectation: EOT) or held fixed (a deterministic
  function, the attack of arXiv 2505.22839).

EOT for PGD is batched here (`eot_pgd`): the k copies of a batch go through the pipeline as one
batch of k x B images, each copy with its own purifier noise, and the step follows the sign of the
summed gradient, as torchattacks.EOTPGD does with k sequential passes (a test checks the two agree).
APGD's EOT is torchattacks' own (`eot_iter`, sequential).

Whatever crafted them, the adversarial images are scored on the defence as deployed (fresh noise)
under k purifier draws: the mean accuracy over draws, and the worst case (correct under every draw:
one draw overstates a randomised defence, DiffHammer, NeurIPS 2024). Each record keeps, per image,
how many of the k draws classified it correctly, so either score is recomputable from the file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..attacks import Attack, eval_mode, frozen
from ..data import Split, to_float
from ..progress import bar
from .alde import BPDA, draws_correct
from .ddpm import Defended, Purifier, PurifierConfig

GRADIENTS = ("classifier", "bpda", "exact")


@dataclass(frozen=True)
class Threat:
    """What an attack may differentiate (see the module docstring)."""
    gradient: str = "exact"   # classifier | bpda | exact
    noise: str = "fresh"      # the purifier's randomness during the attack: fresh | fixed

    def __post_init__(self):
        if self.gradient not in GRADIENTS:
            raise ValueError(f"Unknown threat gradient {self.gradient!r}; choose one of {GRADIENTS}.")
        if self.noise not in ("fresh", "fixed"):
            raise ValueError(f"Threat noise is 'fresh' or 'fixed', got {self.noise!r}.")

    def setting(self) -> dict[str, Any]:
        return {"threat": self.gradient, "attack_noise": self.noise}

    @property
    def label(self) -> str:
        return {"classifier": "PGD on the classifier alone", "bpda": "BPDA",
                "exact": "exact gradients" + (", fixed noise" if self.noise == "fixed" else " + EOT")}[self.gradient]


def attacked_model(threat: Threat, denoiser: torch.nn.Module | None, config: PurifierConfig | None,
                   classifier: torch.nn.Module, *, fixed_seed: int = 0) -> torch.nn.Module:
    """The module the attack differentiates for `threat` (no purifier: the classifier itself)."""
    if denoiser is None or threat.gradient == "classifier":
        return classifier
    cfg = replace(config, seed=fixed_seed if threat.noise == "fixed" else None, checkpoint=threat.gradient == "exact")
    purifier = Purifier(denoiser, cfg)
    return BPDA(purifier, classifier) if threat.gradient == "bpda" else Defended(purifier, classifier)


def deployed(denoiser: torch.nn.Module | None, config: PurifierConfig | None, classifier: torch.nn.Module) -> torch.nn.Module:
    """The defence as deployed: fresh purifier noise on every call (no purifier: the classifier)."""
    if denoiser is None:
        return classifier
    return Defended(Purifier(denoiser, replace(config, seed=None, checkpoint=False)), classifier)


def eot_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eot: int, *, max_batch: int = 1024) -> torch.Tensor:
    """Gradient w.r.t. x of the cross-entropy summed over `eot` copies of the batch, each copy a
    fresh call of a randomised model; the copies are batched (at most `max_batch` images a pass)."""
    x = x.detach().clone().requires_grad_(True)
    xs, ys = x.repeat(eot, 1, 1, 1), y.repeat(eot)
    grad = torch.zeros_like(x)
    for s in range(0, len(xs), max_batch):
        out = model(xs[s:s + max_batch])
        loss = F.cross_entropy(out.to(torch.promote_types(out.dtype, torch.float32)), ys[s:s + max_batch], reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
        grad += g
    return grad


def eot_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, eot: int,
            *, max_batch: int = 1024) -> torch.Tensor:
    """L-inf PGD following sign(sum of the EOT copies' gradients), from a uniform random start (global
    RNG, as torchattacks), returning the last iterate (a randomised defence has no reliable early stop)."""
    x = x.detach()
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1).detach()
    for _ in range(steps):
        adv = adv + alpha * eot_gradient(model, adv, y, eot, max_batch=max_batch).sign()
        adv = torch.clamp(x + torch.clamp(adv - x, -eps, eps), 0, 1).detach()
    return adv


def craft(attack: Attack, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, seed: int,
          max_batch: int = 1024) -> torch.Tensor:
    """Adversarial images from `attack` against `model`: PGD through `eot_pgd` (batched EOT), the
    others through torchattacks (APGD's EOT is its eot_iter)."""
    torch.manual_seed(seed)
    if attack.name == "pgd":
        with frozen(model):
            return eot_pgd(model, x, y, eps, attack.step_size(eps), attack.steps, attack.eot, max_batch=max_batch)
    return attack(model, x, y, eps, seed=seed).detach()


def correct_draws(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """(N,) uint8: how many of k seeded calls of `model` (alde.draws_correct: the same draws for
    every defence and attack) classify each image correctly."""
    return draws_correct(model, x, y, k, seed).sum(0).cpu().to(torch.uint8)


def scores(counts: torch.Tensor | np.ndarray, k: int) -> dict[str, float]:
    """Mean accuracy over the k draws, and the share of images correct under all k of them."""
    c = torch.as_tensor(np.asarray(counts)).float()
    return {"mean over draws": float((c / k).mean()), f"worst of {k} draws": float((c == k).float().mean())}


def to_hex(counts: torch.Tensor) -> str:
    return counts.cpu().numpy().astype(np.uint8).tobytes().hex()


def from_hex(s: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(s), dtype=np.uint8)


def wilson(p: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion p measured on n images."""
    from scipy.stats import binomtest

    ci = binomtest(round(p * n), n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def run_attack(attack: Attack | None, threat: Threat, eps: float | None, split: Split, *, denoiser, config,
               classifier, k: int, seed: int, batch_size: int, fixed_seed: int = 0, progress: bool = True,
               max_batch: int = 1024, keep: bool = False) -> dict[str, Any]:
    """Craft adversarial images batch by batch (attack None: the clean images) and score them on
    the deployed defence with k draws. Returns per-image counts of correct draws, and the wall time
    split into crafting and scoring; `keep`: the adversarial images too ("adv", float in [0, 1])."""
    target = attacked_model(threat, denoiser, config, classifier, fixed_seed=fixed_seed)
    defence = deployed(denoiser, config, classifier)
    counts, fixed_counts, kept, t_craft, t_score = [], [], [], 0.0, 0.0
    fixed = Defended(Purifier(denoiser, replace(config, seed=fixed_seed, checkpoint=False)), classifier) \
        if denoiser is not None and threat.noise == "fixed" else None
    with eval_mode(classifier), eval_mode(target), eval_mode(defence):
        for s in bar(range(0, len(split), batch_size), desc="attack" if attack else "clean", enabled=progress, leave=False):
            x, y = to_float(split.x[s:s + batch_size]).contiguous(), split.y[s:s + batch_size]
            t0 = time.perf_counter()
            adv = x if attack is None else craft(attack, target, x, y, eps, seed=seed + s, max_batch=max_batch)
            t1 = time.perf_counter()
            if keep:
                kept.append(adv.detach().cpu())
            counts.append(correct_draws(defence, adv, y, k, seed + 1))
            if fixed is not None:  # the deterministic defence the attack was made against, scored as such
                fixed_counts.append(correct_draws(fixed, adv, y, 1, 0))
            t_craft, t_score = t_craft + t1 - t0, t_score + time.perf_counter() - t1
    out = {"counts": torch.cat(counts), "craft_s": t_craft, "score_s": t_score}
    if fixed_counts:
        out["fixed_counts"] = torch.cat(fixed_counts)
    if keep:
        out["adv"] = torch.cat(kept)
    return out
