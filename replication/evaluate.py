"""Clean and adversarial accuracy as schema-2 result records, reusing what a results file holds.

`context` is what a record needs besides the measurement: experiment, profile, run_id, model,
model_hash and setting (`Run.context(...)` makes it). Records already in the experiment's file for
the same trained model (model_hash), test subset, seed, attack and eps are reused, keeping the run
that measured them, so a rerun (or an interrupted one) only computes what is missing.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

import torch

from .attacks import Attack
from .cache import memo
from .data import Split, iterate_batches, to_float
from .papers import eps_reading
from .results import canonical_eps, load_results, make_record, results_path
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


def _cached(context: dict[str, Any], split: Split, seed: int) -> dict[tuple, dict[str, Any]]:
    """{(attack spec JSON, eps): record} of this trained model on this subset, from the results file."""
    import json

    have: dict[tuple, dict[str, Any]] = {}
    if context.get("model_hash") and results_path(context["experiment"], context["profile"]).exists():
        for r in load_results(context["experiment"], context["profile"])["records"]:
            if (r["metric"] == "accuracy" and r["model_hash"] == context["model_hash"] and r["seed"] == seed
                    and r["n"] == len(split) and r["dataset"] == split.name):
                have[(json.dumps(r["attack"], sort_keys=True), r["eps"])] = r
    return have


def evaluate(model: torch.nn.Module, split: Split, grid: dict[Attack, Iterable[float]], *, context: dict[str, Any],
             batch_size: int = 500, seed: int = 0, progress: bool = True) -> list[dict[str, Any]]:
    """One clean record, then one per (attack, eps) of `grid` ({Attack: [eps, ...]}, eps on [0,1]
    pixels); values already measured for this model are reused (see the module docstring)."""
    import json

    model.eval()
    split = split.to(next(model.parameters()).device)
    have = _cached(context, split, seed)

    def reuse_or(attack_spec: dict | None, eps: float | None, measure) -> dict[str, Any]:
        def lookup():
            old = have.get((json.dumps(attack_spec, sort_keys=True), canonical_eps(eps)))
            return old and _record(context, split, seed, attack_spec, eps, old["value"], old["wall_time_s"], old["run_id"])

        def compute():
            t0 = time.perf_counter()
            value = measure()
            return _record(context, split, seed, attack_spec, eps, value, time.perf_counter() - t0)

        return memo(lookup, compute)[0]  # the results file is the store: Run.save writes it

    records = [reuse_or(None, None, lambda: clean_accuracy(model, split, batch_size))]
    jobs = [(a, float(e)) for a, eps in grid.items() for e in eps]
    for attack, eps in bar(jobs, desc="attacks", enabled=progress):
        records.append(reuse_or(attack.spec(eps), eps, lambda: robust_accuracy(
            model, split, attack, eps, batch_size=batch_size, seed=seed)))
    return records
