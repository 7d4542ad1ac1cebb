"""L-inf attacks on [0,1] pixels.

Evaluation uses torchattacks (FGSM, PGD, APGD, AutoAttack, Square). The small in-house FGSM/PGD
below is for use inside training loops (no model-mode switching, optional generator); a test
checks it against torchattacks on the same model, inputs and seed.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

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


@contextmanager
def frozen(model: torch.nn.Module):
    """The model's parameters without requires_grad for the duration: an attack needs input
    gradients only. Besides saving the weight-gradient work, this keeps attacks that call
    .backward() (torchattacks' FAB) out of oneDNN's weight-gradient kernels, which corrupt the heap
    for the width-4/8 smoke ResNets at odd batch sizes (measured on an AMD EPYC with AVX-512,
    2 threads: batch 3, 5, 7, 31 abort, oneDNN off or frozen weights do not; width 16 is fine)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in params:
            p.requires_grad_(True)


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
    if torch.is_tensor(eps):  # one eps per image (a bisection over eps); alpha as a tensor too
        eps = eps.view(-1, *([1] * (x.dim() - 1))).to(x)
        alpha = alpha.view_as(eps).to(x) if torch.is_tensor(alpha) else alpha
    for _ in range(restarts):
        adv = x.clone()
        if random_start:
            noise = (torch.empty_like(adv).uniform_(-1, 1) * eps) if torch.is_tensor(eps) else torch.empty_like(adv).uniform_(-eps, eps)
            adv = (adv + noise).clamp(0, 1).detach()
        for _ in range(steps):
            adv = adv + alpha * _input_grad(model, adv, y).sign()
            delta = torch.max(torch.min(adv - x, eps), -eps) if torch.is_tensor(eps) else torch.clamp(adv - x, min=-eps, max=eps)
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


def robust_mask(model, x, y, eps: float, *, steps: int, alpha: float | None = None,
                random_start: bool = True, correct: torch.Tensor | None = None) -> torch.Tensor:
    """Per image: classified correctly on the clean input AND at every iterate of an L-inf PGD at
    `eps` (steps=1, alpha=eps, random_start=False is FGSM). RobustBench's convention: a wrongly
    classified clean image is never attacked, and an image counts as fooled at the first iterate that
    fools it, so it leaves the batch there. Each image's trajectory is that of a full-batch PGD from
    the same start (eval mode: an image's gradient does not depend on the others), which is why
    dropping images changes no survivor's path, only the cost. At least as strong as the final
    iterate the attack returns. The random start is torchattacks.PGD's (global RNG: seed it first).
    `correct`: the clean predictions' correctness when the caller has it (saves a forward pass)."""
    x = x.detach()
    if correct is None:
        with torch.no_grad():
            correct = model(x).argmax(1) == y
    alive = correct.clone()
    alpha = eps if alpha is None else alpha
    idx = alive.nonzero().flatten()
    if random_start:  # drawn for the whole batch, as torchattacks does, so the same seed gives its start
        adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)[idx]
    else:
        adv = x[idx].clone()
    x0, y0 = x[idx], y[idx]
    for _ in range(steps):
        if not len(idx):
            break
        adv = adv + alpha * _input_grad(model, adv, y0).sign()
        adv = torch.min(torch.max(adv, x0 - eps), x0 + eps).clamp(0, 1).detach()
        with torch.no_grad():
            ok = model(adv).argmax(1) == y0
        alive[idx[~ok]] = False
        idx, adv, x0, y0 = idx[ok], adv[ok], x0[ok], y0[ok]
    return alive


@dataclass(frozen=True)
class Attack:
    """An evaluation attack with one call signature: attack(model, x, y, eps, n_classes=..., seed=...).

    name: fgsm | pgd | apgd-ce | apgd-dlr | square | autoattack (torchattacks; AutoAttack 'standard'
    configured as published) | pyautoattack (the authors' AutoAttack). steps: iterations
    (queries for square). restarts: independent random starts; `evaluate` counts an image as robust
    only if it survives all of them. eot: gradient samples averaged per step (EOT, for randomised
    defences: torchattacks.EOTPGD for PGD, APGD's eot_iter). step_factor: PGD step size = step_factor * eps / steps.
    A purified pipeline slots in as the `model` (an nn.Module that purifies, then classifies)."""
    name: str
    steps: int = 1
    restarts: int = 1
    eot: int = 1
    step_factor: float = 2.5

    def __post_init__(self):
        if self.name not in ATTACKS:
            raise ValueError(f"Unknown attack {self.name!r}; choose one of {ATTACKS}.")
        if self.eot > 1 and self.name not in ("pgd", "apgd-ce", "apgd-dlr"):
            raise ValueError("EOT is implemented for PGD (torchattacks.EOTPGD) and APGD (its eot_iter) only.")

    @property
    def random(self) -> bool:
        return self.name != "fgsm"

    def step_size(self, eps: float) -> float | None:
        return eps if self.name == "fgsm" else self.step_factor * eps / self.steps if self.name == "pgd" else None

    def spec(self, eps: float) -> dict:
        """The record's `attack` field."""
        from .results import attack_spec

        return attack_spec(self.name, steps=self.steps, restarts=self.restarts if self.random else 1,
                           eot=self.eot, step_size=self.step_size(eps))

    def __call__(self, model, x, y, eps: float, *, n_classes: int = 10, seed: int = 0) -> torch.Tensor:
        """One restart's adversarial images (callers seed the global RNG per restart)."""
        return torchattacks_attack(self.name, model, eps, steps=self.steps, alpha=self.step_size(eps),
                                   n_classes=n_classes, seed=seed, eot=self.eot)(x, y)


ATTACKS = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "square", "autoattack", "pyautoattack")

# AutoAttack 'standard' as published (Croce & Hein, ICML 2020; the authors' code): APGD-CE and
# APGD-T (9 target classes) at 100 iterations, FAB-T (9 targets) at 100, Square at 5,000 queries.
# torchattacks 3.3.0's AutoAttack('standard') builds the same parts at their default 10 iterations,
# so "autoattack" here configures the parts itself; "pyautoattack" is the authors' implementation
# (the PyPI package of their repository), the reference it is checked against.
AUTOATTACK_STANDARD = {"apgd-ce": {"iterations": 100, "restarts": 1}, "apgd-t": {"iterations": 100, "target_classes": 9},
                       "fab-t": {"iterations": 100, "target_classes": 9}, "square": {"queries": 5000}}


def autoattack_standard(model, eps: float, n_classes: int = 10, seed: int = 0):
    """torchattacks' parts of AutoAttack 'standard', configured as published (AUTOATTACK_STANDARD)."""
    import torchattacks

    c = AUTOATTACK_STANDARD
    targets = min(c["apgd-t"]["target_classes"], n_classes - 1)
    model = ChannelsLast(model)
    return torchattacks.MultiAttack([
        torchattacks.APGD(model, norm="Linf", eps=eps, steps=c["apgd-ce"]["iterations"], n_restarts=1, loss="ce", seed=seed),
        # APGDT attacks the top n_classes-1 other classes: with n_classes = targets + 1 that is `targets`
        torchattacks.APGDT(model, norm="Linf", eps=eps, steps=c["apgd-t"]["iterations"], n_restarts=1, n_classes=targets + 1, seed=seed),
        torchattacks.FAB(model, norm="Linf", eps=eps, steps=c["fab-t"]["iterations"], n_restarts=1, multi_targeted=True,
                         n_classes=targets + 1, seed=seed),
        torchattacks.Square(model, norm="Linf", eps=eps, n_queries=c["square"]["queries"], n_restarts=1, seed=seed),
    ])


class ChannelsLast(torch.nn.Module):
    """`model` fed channels_last inputs whatever the caller's layout (the layout it was trained in)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        # a new Module starts in training mode: without this, torchattacks, which restores the mode it
        # found, would leave the wrapped model in training mode (batch-norm statistics updating)
        self.train(model.training)

    def forward(self, x):
        return self.model(x.contiguous(memory_format=torch.channels_last))


class _Frozen:
    """An attack run with the model's weights frozen (see `frozen`); `contiguous`: fed NCHW inputs
    (torchattacks' FAB views its tensors in a way channels_last breaks)."""

    def __init__(self, attack, model, contiguous: bool = False):
        self.attack, self.model, self.contiguous = attack, model, contiguous

    def __call__(self, x, y):
        with frozen(self.model):
            return self.attack(x.contiguous() if self.contiguous else x, y)


class _PyAutoAttack:
    """The authors' AutoAttack (package pyautoattack), version 'standard', as a callable (x, y) -> x_adv."""

    def __init__(self, model, eps: float, seed: int = 0):
        from pyautoattack import AutoAttack

        self.aa = AutoAttack(ChannelsLast(model), eps=eps, norm="Linf", version="standard", seed=seed, device=next(model.parameters()).device)
        self.aa.verbose = False

    def __call__(self, x, y):
        return self.aa.run_standard_evaluation(x, y, batch_size=len(x))[0]


def torchattacks_attack(name: str, model, eps: float, steps: int = 20, alpha: float | None = None,
                        restarts: int = 1, n_classes: int = 10, seed: int = 0, eot: int = 1) -> _Frozen:
    """An evaluation attack by name (see ATTACKS), a callable (x, y) -> x_adv that runs with the
    model's weights frozen; the AutoAttacks are fed NCHW inputs (their FAB needs them)."""
    attack = _build(name, model, eps, steps, alpha, restarts, n_classes, seed, eot)
    return _Frozen(attack, model, contiguous=name in ("autoattack", "pyautoattack"))


def _build(name, model, eps, steps, alpha, restarts, n_classes, seed, eot):
    import torchattacks

    if name == "fgsm":
        return torchattacks.FGSM(model, eps=eps)
    if name == "pgd":
        alpha = alpha if alpha is not None else 2.5 * eps / steps
        if eot > 1:
            return torchattacks.EOTPGD(model, eps=eps, alpha=alpha, steps=steps, eot_iter=eot, random_start=True)
        return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    if name in ("apgd-ce", "apgd-dlr"):
        return torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=restarts,
                                 loss=name.split("-")[1], seed=seed, eot_iter=eot)
    if name == "square":
        return torchattacks.Square(model, norm="Linf", eps=eps, n_queries=steps, n_restarts=restarts, seed=seed)
    if name == "autoattack":
        return autoattack_standard(model, eps, n_classes, seed)
    if name == "pyautoattack":
        return _PyAutoAttack(model, eps, seed)
    raise ValueError(f"Unknown attack {name!r}; choose one of {ATTACKS}.")
