"""ALDE's defended classifier and the attacks a diffusion-purification skeptic asks for (Paper B,
"Framework Implementation"; issue 17's evaluation).

The pipeline is classifier(purifier(x)) (ddpm.Defended). What an attack may differentiate:

- `Defended` with exact gradients through every reverse step (ddpm.Purifier with checkpoint=True
  keeps the memory flat), with the purifier's noise fresh per call (PGD-EOT averages the gradient
  over draws) or fixed (a deterministic function: plain PGD suffices);
- `BPDA`: the purifier in the forward pass, the identity in the backward pass (Athalye et al. 2018),
  the classic adaptive attack when the purifier's gradient is thought useless or too costly;
- the classifier alone (the naive number: the attack never sees the purifier).

A randomised defence is scored two ways on the final adversarial images: the mean accuracy over
`k` purifier draws, and the worst case (an image counts as robust only if all k draws classify it
correctly), since one draw overstates robustness (DiffHammer, NeurIPS 2024).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .ddpm import Purifier


class _Identity(torch.autograd.Function):
    """Forward: the purified images; backward: the incoming gradient unchanged."""

    @staticmethod
    def forward(ctx, x, purified):
        return purified

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class BPDA(torch.nn.Module):
    """classifier(purifier(x)) whose gradient treats the purifier as the identity."""

    def __init__(self, purifier: Purifier, classifier: torch.nn.Module):
        super().__init__()
        self.purifier, self.classifier = purifier, classifier

    def forward(self, x):
        with torch.no_grad():
            purified = self.purifier(x)
        return self.classifier(_Identity.apply(x, purified))


@torch.no_grad()
def draws_correct(defended: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """(k, N) bool: correct under each of k purifier draws (seeded: the same draws for every model)."""
    out = []
    for i in range(k):
        torch.manual_seed(seed * 10_007 + i)
        out.append(defended(x).argmax(1) == y)
    return torch.stack(out)


def pgd_at_loss(eps: float, alpha: float, steps: int):
    """Eq 3 as a train.BatchLoss: cross-entropy on L-inf PGD examples (random start) made against
    the model being trained (Madry et al. 2018)."""
    from ..attacks import pgd

    def loss(model, x, y, aux):
        adv = pgd(model, x, y, eps, alpha, steps)
        logits = model(adv)
        return F.cross_entropy(logits.float(), y), logits
    return loss


# ---- the PGD-AT classifier (eq 3) -----------------------------------------------------------------
def adversarial_training(arch: str, profile, seed: int = 0, *, steps: int | None = None, n_train: int | None = None,
                         epochs: int | None = None, progress: bool = True, base: str | None = None,
                         data: tuple | None = None, data_variant: str | None = None):
    """Eq 3: `arch` trained on CIFAR-10 with cross-entropy on L-inf PGD examples at the profile's
    adversarial budget (`steps` 1 with a random start and step 1.25 eps is FGSM-RS, the fast AT of
    Wong et al. 2020); from the zoo's clean baseline (budget.init 'baseline', a fine-tune) or from
    scratch. `steps` / `n_train` / `epochs` override the budget (the FGSM-RS vs PGD comparison).
    `base` (a zoo name) with its (train, test) splits `data` and their `data_variant`: the PGD-AT
    version of another zoo model, fine-tuned from it (notebook 10's ground-truth models)."""
    from .. import zoo
    from ..data import load_split
    from ..train import config_for, train_model

    A = profile.adversarial
    steps = A.steps if steps is None else steps
    alpha = A.step_size if steps > 1 else 1.25 * A.eps
    n = profile.n_train if n_train is None else n_train
    if data is None:
        train = load_split("cifar10", train=True, n=n, seed=seed)
        test = load_split("cifar10", train=False, n=profile.n_test, seed=seed)
    else:
        train, test = data
    from_base = base is not None or A.init == "baseline"
    init = zoo.get(base or f"{arch}_cifar10", profile, seed) if from_base else None
    cfg = config_for(arch, "cifar10", profile.models[arch], n_train=n, seed=seed, epochs=epochs or A.epochs, lr=A.lr,
                     schedule="cosine" if init is not None else "onecycle",
                     extra_loss=f"pgd-at-eps{A.eps:.6g}-steps{steps}-alpha{alpha:.6g}",
                     init_from=None if init is None else init.config_hash, data_variant=data_variant)
    if base is not None:
        name = f"{base}_pgdat"
    else:
        name = f"{arch}_cifar10_pgdat" + ("" if (n_train, epochs, steps) == (None, None, A.steps) else f"-steps{steps}-n{n}")
    return train_model(cfg, name, profile.name, train, test, batch_loss=pgd_at_loss(A.eps, alpha, steps),
                       init_model=None if init is None else init.model,
                       manifest=profile.commit_checkpoints, progress=progress)


# ---- ALDE's explanation ---------------------------------------------------------------------------
class PurifiedExplainer:
    """An attribution method applied to the classifier at the purified input: ALDE explains
    classifier(purifier(x)) by Integrated Gradients on purifier(x) (Paper B, "Framework
    Implementation"). The purifier draws fresh noise, seeded by the explanation's seed."""

    def __init__(self, inner, purifier: torch.nn.Module):
        self.inner, self.purifier = inner, purifier
        self.name = f"{inner.name} on purified inputs"

    def purify(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return self.purifier(x).detach()

    def pixel_attributions(self, model, x, y, seed):
        return self.inner.pixel_attributions(model, self.purify(x, seed), y, seed)

    def key(self):
        return {"inner": self.inner.key(), "purifier": self.purifier.config.setting()}
