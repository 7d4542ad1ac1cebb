"""The baseline models of notebook 01: ResNet-18 on CIFAR-10/100 and the ResNet-50 reference.

Shared by the notebook and `python -m replication.baselines --profile cpu` (which trains them in
the background; the notebook then finds them in the checkpoint cache).
"""
from __future__ import annotations

import argparse
from typing import Any

from .data import load_split
from .profiles import get_profile
from .train import TrainResult, config_for, train_model

# (name, arch, dataset): the 01 models, in training order.
BASELINES = (
    ("resnet18_cifar10", "resnet18", "cifar10"),
    ("resnet18_cifar100", "resnet18", "cifar100"),
    ("resnet50_cifar10", "resnet50", "cifar10"),
)


def train_baseline(name: str, profile: dict[str, Any], seed: int = 0, progress: bool = True,
                   device: str = "cpu") -> TrainResult:
    _, arch, dataset = next(b for b in BASELINES if b[0] == name)
    cfg = config_for(arch, dataset, profile, seed=seed)
    train = load_split(dataset, train=True, n=profile["n_train"], seed=seed)
    test = load_split(dataset, train=False, n=profile["n_test"], seed=seed)
    return train_model(cfg, name, profile["name"], train, test, progress=progress)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Train (or load from cache) the baseline models of notebook 01.")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None, help="model names, e.g. resnet18_cifar10")
    args = ap.parse_args(argv)
    profile = get_profile(args.profile)
    for name, _, _ in BASELINES:
        if args.only and name not in args.only:
            continue
        res = train_baseline(name, profile, args.seed)
        last = res.history[-1] if res.history else {}
        print(f"{name}: {'cached' if res.from_cache else 'trained'} -> {res.path}; last epoch {last}", flush=True)


if __name__ == "__main__":
    main()
