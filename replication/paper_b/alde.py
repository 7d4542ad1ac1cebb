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
