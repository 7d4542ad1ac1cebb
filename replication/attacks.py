"""L-inf attacks on [0,1] pixels.

Evaluation uses torchattacks (FGSM, PGD, APGD, AutoAttack, Square). The small in-house FGSM/PGD
below is for use inside training loops (no model-mode switching, optional generator); a test
checks it against torchattacks on the same model, inputs and seed.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F


@contextmanager
def eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _input_grad(model, x, y, loss_fn=None):
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    loss = (loss_fn or F.cross_entropy)(logits, y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model, x, y, eps: float, *, random_start: bool = False, alpha: float | None = None,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """x + eps*sign(grad) (Goodfellow et al.), clamped to the eps-ball and [0,1].

    With random_start, the 'fast AT' variant (Wong et al. 2020): uniform start in the ball, one
    step of size `alpha` (default 1.25*eps), projected back.
    """
    x = x.detach()
    start = x
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        start = (x + eps * noise).clamp(0, 1)
    step = eps if alpha is None and not random_start else (alpha or 1.25 * eps)
    adv = start + step * _input_grad(model, start, y).sign()
    return torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1).detach()


def pgd(model, x, y, eps: float, alpha: float, steps: int, *, random_start: bool = True,
        restarts: int = 1) -> torch.Tensor:
    """Madry et al. PGD, L-inf, with the same update as torchattacks.PGD (global RNG for the start).

    With restarts > 1 an example keeps the first restart that fools the model.
    """
    x = x.detach()
    best = x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        adv = x.clone()
        if random_start:
            adv = (adv + torch.empty_like(adv).uniform_(-eps, eps)).clamp(0, 1).detach()
        for _ in range(steps):
            adv = adv + alpha * _input_grad(model, adv, y).sign()
            delta = torch.clamp(adv - x, min=-eps, max=eps)
            adv = torch.clamp(x + delta, 0, 1).detach()
        with torch.no_grad():
            now = model(adv).argmax(1) != y
        take = now & ~fooled
        best[take] = adv[take]
        if restarts == 1:
            best = adv
        fooled |= now
        if bool(fooled.all()):
            break
    return best.detach()


def torchattacks_attack(name: str, model, eps: float, steps: int = 20, alpha: float | None = None,
                        restarts: int = 1, n_classes: int = 10, seed: int = 0):
    """A torchattacks attack by name: fgsm, pgd, apgd-ce, square, autoattack."""
    import torchattacks

    if name == "fgsm":
        return torchattacks.FGSM(model, eps=eps)
    if name == "pgd":
        return torchattacks.PGD(model, eps=eps, alpha=alpha if alpha is not None else 2.5 * eps / steps,
                                steps=steps, random_start=True)
    if name == "apgd-ce":
        return torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=restarts,
                                 loss="ce", seed=seed)
    if name == "square":
        return torchattacks.Square(model, norm="Linf", eps=eps, n_queries=steps, n_restarts=restarts, seed=seed)
    if name == "autoattack":
        return torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard",
                                       n_classes=n_classes, seed=seed)
    raise ValueError(f"Unknown attack {name!r}; choose fgsm, pgd, apgd-ce, square or autoattack.")
