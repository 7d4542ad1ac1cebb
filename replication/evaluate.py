"""Clean and adversarial accuracy as schema-2 result records, reusing what a results file holds.

`context` is what a record needs besides the measurement: experiment, profile, run_id, model,
model_hash and setting (`Run.context(...)` makes it). Records already in the experiment's file for
the same measurement (results.measurement_key: model hash, data, images, seed, setting, attack,
eps) are reused, keeping the run that measured them, so a rerun (or an interrupted one) only
computes what is missing, and one whose records are all present never builds its model.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import torch

from .attacks import Attack, robust_mask
from .data import Split, iterate_batches, to_float
from .papers import eps_reading
from .results import make_record, stored
from .progress import bar

# The paper's grid (pixel scale, [0,1]) plus the standard 8/255 for comparison with the literature.
EPS_GRID = (0.01, 0.02, 0.03, 8 / 255)


def _record(context: dict[str, Any], split: Split, seed: int, attack: dict | None, eps: float | None,
            value: float, wall_time_s: float | None, run_id: str | None = None) -> dict[str, Any]:
    return make_record(**{**context, "run_id": run_id or context["run_id"]}, dataset=split.name, metric="accuracy",
                       attack=attack, eps=eps, eps_reading=eps_reading(eps, split.name.split("-")[0]),
                       value=value, n=len(split), seed=seed, wall_time_s=wall_time_s)


def _my_batches(split: Split, batch_size: int):
    """This process's share of the evaluation batches: batch i goes to process i mod world. The
    batches (and so every number computed on one) are those of a single process, so sharded
    evaluation equals unsharded exactly once the counts are summed (_total)."""
    import torch.distributed as dist

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    for i, batch in enumerate(iterate_batches(split, batch_size, shuffle=False, train_augment=False)):
        if i % world == rank:
            yield batch


def _total(count: int) -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor([count], dtype=torch.int64)
        dist.all_reduce(t)
        return int(t.item())
    return count


def clean_accuracy(model: torch.nn.Module, split: Split, batch_size: int = 500) -> float:
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in _my_batches(split, batch_size))
    return _total(correct) / len(split)


def correct_mask(model: torch.nn.Module, split: Split, batch_size: int = 500) -> torch.Tensor:
    """Per image (on the CPU): the model's clean prediction is right."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(to_float(split.x[s:s + batch_size]).to(device)).argmax(1).cpu() == split.y[s:s + batch_size].cpu()
                          for s in range(0, len(split), batch_size)])


def robust_accuracy(model: torch.nn.Module, split: Split, attack: Attack, eps: float, *, batch_size: int = 500,
                    seed: int = 0) -> float:
    """Share of images classified correctly under every one of the attack's restarts (sharded over
    processes when torch.distributed is initialised, e.g. under `accelerate launch`)."""
    device = next(model.parameters()).device
    robust = 0
    for x, y in _my_batches(split, batch_size):
        alive = torch.ones(len(y), dtype=torch.bool, device=device)
        for r in range(attack.restarts if attack.random else 1):
            torch.manual_seed(seed * 1000 + r)  # torchattacks draws its random start from the global RNG
            adv = attack(model, x, y, eps, n_classes=split.num_classes, seed=seed + r)
            with torch.no_grad():
                alive &= model(adv).argmax(1) == y
        robust += alive.sum().item()
    return _total(robust) / len(split)


def robust_per_image(model: torch.nn.Module, split: Split, correct: torch.Tensor, *, eps: float, batch_size: int,
                     batch_seed: Callable[[int, int], int], steps: int = 1, alpha: float | None = None,
                     random_start: bool = False, restarts: int = 1, attack: Attack | None = None,
                     seed: int = 0) -> torch.Tensor:
    """Per image (on the CPU): correct clean and under every restart of the attack, early-stopped.

    The one batch loop of every per-image evaluation. FGSM / PGD (attack None, or an Attack named
    fgsm / pgd without EOT) run as attacks.robust_mask: an image is fooled at its first fooling
    iterate and leaves the batch, and a batch stops once no image is left. Other attacks (APGD,
    Square, AutoAttack) run on the images still alive. The global RNG is seeded with
    batch_seed(start, restart) before each batch and restart (the random start), so a measurement
    is fixed by its seeds whatever else ran before it."""
    device = next(model.parameters()).device
    if attack is not None and attack.name in ("fgsm", "pgd") and attack.eot == 1:
        steps, alpha, random_start, attack = attack.steps, attack.step_size(eps), attack.random, None
    out = []
    for start in range(0, len(split), batch_size):
        x, y = to_float(split.x[start:start + batch_size]).to(device), split.y[start:start + batch_size].to(device)
        alive = correct[start:start + batch_size].to(device).clone()
        for r in range(restarts):
            if not bool(alive.any()):
                break
            torch.manual_seed(batch_seed(start, r))
            if attack is None:
                alive &= robust_mask(model, x, y, eps, steps=steps, alpha=alpha, random_start=random_start, correct=alive)
            else:
                idx = alive.nonzero().flatten()
                adv = attack(model, x[idx], y[idx], eps, n_classes=split.num_classes, seed=seed + r)
                with torch.no_grad():
                    ok = model(adv.to(device)).argmax(1) == y[idx]
                alive[idx[~ok]] = False
        out.append(alive.cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def model_of(tr: Any) -> torch.nn.Module:
    """The module of a model handle: a TrainResult, a zoo.Lazy (built now) or a module itself."""
    return tr if isinstance(tr, torch.nn.Module) else tr.model


def evaluate(model: Any, split: Split, grid: dict[Attack, Iterable[float]], *, context: dict[str, Any],
             batch_size: int = 500, seed: int = 0, progress: bool = True) -> list[dict[str, Any]]:
    """One clean record, then one per (attack, eps) of `grid` ({Attack: [eps, ...]}, eps on [0,1]
    pixels). Records already in the results file for the same measurement (results.stored) are
    reused, keeping the run that measured them; `model` (a module, a TrainResult or a lazy zoo
    model) is built only when a measurement is missing."""
    jobs = [(None, None)] + [(a, float(e)) for a, eps in grid.items() for e in eps]
    templates = [_record(context, split, seed, None if a is None else a.spec(e), e, None, None) for a, e in jobs]
    found = [stored(t) for t in templates]
    if all(r is not None for r in found):
        return found
    net = model_of(model).eval()
    split = split.to(next(net.parameters()).device)

    def measure(attack: Attack | None, eps: float | None, old: dict[str, Any] | None) -> dict[str, Any]:
        if old is not None:
            return old
        t0 = time.perf_counter()
        value = (clean_accuracy(net, split, batch_size) if attack is None
                 else robust_accuracy(net, split, attack, eps, batch_size=batch_size, seed=seed))
        return _record(context, split, seed, None if attack is None else attack.spec(eps), eps, value, time.perf_counter() - t0)

    return [measure(a, e, old) for (a, e), old in bar(list(zip(jobs, found)), desc="attacks", enabled=progress)]
