"""Clean and adversarial accuracy as result records."""
from __future__ import annotations

import time
from typing import Any, Iterable

import torch
from tqdm.auto import tqdm

from .attacks import torchattacks_attack
from .data import Split, iterate_batches
from .results import make_record

# The paper's grid (pixel scale, [0,1]) plus the standard 8/255 for comparison with the literature.
EPS_GRID = (0.01, 0.02, 0.03, 8 / 255)


def attack_label(name: str, steps: int, restarts: int) -> str:
    """The record's attack name; restarts count only for PGD, the one attack evaluate restarts."""
    if name in ("pgd", "apgd-ce"):
        return f"{name}-{steps}" + (f"x{restarts}" if name == "pgd" and restarts > 1 else "")
    return name


def evaluate(model: torch.nn.Module, split: Split, attacks: Iterable[str] = ("fgsm", "pgd"),
             eps_grid: Iterable[float] = EPS_GRID, *, steps: int = 20, restarts: int = 1,
             batch_size: int = 500, seed: int = 0, progress: bool = True,
             record: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy clean and under each attack at each eps (L-inf, [0,1] pixels), via torchattacks.

    record: experiment, model, profile, config_hash (the rest is filled in here).
    PGD step size is 2.5*eps/steps; with restarts an example counts as robust only if it
    survives every restart.
    """
    model.eval()
    device = next(model.parameters()).device
    split = split.to(device)
    base = dict(dataset=split.name, n=len(split), seed=seed, metric="accuracy", **record)
    records = []
    t0 = time.perf_counter()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item()
                      for x, y in iterate_batches(split, batch_size, shuffle=False, train_augment=False))
    records.append(make_record(**base, attack="none", eps=0.0, value=correct / len(split),
                               wall_time_s=time.perf_counter() - t0))
    jobs = [(a, float(e)) for a in attacks for e in eps_grid]
    for name, eps in tqdm(jobs, desc="attacks", disable=not progress):
        t0 = time.perf_counter()
        robust = 0
        n_restarts = restarts if name in ("pgd",) else 1
        for x, y in iterate_batches(split, batch_size, shuffle=False, train_augment=False):
            alive = torch.ones(len(y), dtype=torch.bool, device=device)
            for r in range(n_restarts):
                torch.manual_seed(seed * 1000 + r)  # torchattacks draws its random start from the global RNG
                atk = torchattacks_attack(name, model, eps, steps=steps, n_classes=split.num_classes, seed=seed)
                adv = atk(x, y)
                with torch.no_grad():
                    alive &= model(adv).argmax(1) == y
            robust += alive.sum().item()
        records.append(make_record(
            **base, attack=attack_label(name, steps, restarts), eps=eps, value=robust / len(split),
            wall_time_s=time.perf_counter() - t0,
            extra={"steps": steps if name != "fgsm" else 1, "restarts": n_restarts,
                   "alpha": 2.5 * eps / steps if name == "pgd" else eps}))
    return records


def evaluate_cached(model: torch.nn.Module, split: Split, attacks: Iterable[str], eps_grid: Iterable[float], *,
                    steps: int = 20, restarts: int = 1, seed: int = 0, record: dict[str, Any],
                    **kw: Any) -> list[dict[str, Any]]:
    """`evaluate`, reusing records already in the experiment's results file for the same model config,
    test subset size, seed and attack settings, so a rerun (or an interrupted one) only computes
    what is missing."""
    from .results import load_results, results_path

    have: dict[tuple[str, float], dict[str, Any]] = {}
    if results_path(record["experiment"], record["profile"]).exists():
        for r in load_results(record["experiment"], record["profile"])["records"]:
            if (r["metric"] == "accuracy" and r["model"] == record["model"] and r["seed"] == seed
                    and r["config_hash"] == record["config_hash"] and r["n"] == len(split)
                    and r["dataset"] == split.name):
                have[(r["attack"], round(r["eps"], 10))] = r
    def key(attack: str, eps: float) -> tuple[str, float]:
        return attack_label(attack, steps, restarts), round(float(eps), 10)

    out, clean = [], have.get(("none", 0.0))
    for eps in eps_grid:
        missing = [a for a in attacks if key(a, eps) not in have]
        new = evaluate(model, split, missing, [eps], steps=steps, restarts=restarts, seed=seed, record=record,
                       **kw) if missing or clean is None else []
        clean = clean or next((r for r in new if r["attack"] == "none"), None)
        out += [r for r in new if r["attack"] != "none"]
        out += [have[key(a, eps)] for a in attacks if a not in missing]
    return [clean] + out


def evaluate_grid(model: torch.nn.Module, split: Split, grid: dict[str, Iterable[float]], *,
                  record: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    """`evaluate_cached` with a different eps list per attack, e.g. {"fgsm": [...], "pgd": [...]};
    one clean record first."""
    out: list[dict[str, Any]] = []
    for attack, eps in grid.items():
        recs = evaluate_cached(model, split, [attack], list(eps), record=record, **kw)
        out += recs if not out else recs[1:]
    return out


def metric_dict(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """{'clean': acc, 'fgsm@0.01': acc, 'pgd-20@0.0025': acc, ...} from accuracy records (fractions)."""
    return {("clean" if r["attack"] == "none" else f"{r['attack']}@{r['eps']:.4g}"): r["value"]
            for r in records if r["metric"] == "accuracy"}
