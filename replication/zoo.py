"""The model zoo: every named model the notebooks train or load, in one registry.

A result record's `model` is one of these names; what was done to the model afterwards (a
refinement variant, a fine-tuning seed) is the record's `setting`. `get(name, profile)` trains the
model, or loads it from the checkpoint cache when a run with the same config finished before:
`python -m replication.zoo --profile cpu` trains them all in the background. The zoo is the one
place that reads a whole profile: it picks the model budget, data sizes and checkpoint store.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from .data import load_split
from .profiles import Profile, get_profile
from .shortcuts import Planted, planted_cifar10
from .train import TrainResult, config_for, train_model


@dataclass(frozen=True)
class Entry:
    arch: str
    dataset: str
    role: str  # what the notebooks use it for


ZOO = {
    "resnet18_cifar10": Entry("resnet18", "cifar10", "Paper A's baseline"),
    "resnet18_cifar100": Entry("resnet18", "cifar100", "Paper A's baseline"),
    "resnet50_cifar10": Entry("resnet50", "cifar10", "the reference model of Paper A's eqs 4-5"),
    "resnet18_cifar10_shortcut": Entry("resnet18", "cifar10", "trained on planted-shortcut CIFAR-10 (shortcuts.py)"),
    # Paper B's eq 3 (ALDE's classifier), at the profile's adversarial budget (paper_b/alde.py)
    "resnet18_cifar10_pgdat": Entry("resnet18", "cifar10", "PGD adversarial training (cpu: FGSM-RS fine-tune)"),
    "resnet50_cifar10_pgdat": Entry("resnet50", "cifar10", "PGD adversarial training, Paper B's ResNet-50 rows"),
    "wrn28_10_cifar10_pgdat": Entry("wrn28_10", "cifar10", "PGD adversarial training, Paper B's WideResNet-28-10 rows"),
    # notebook 10's models with a saliency ground truth (grounded.py), and their PGD-AT fine-tunes
    "resnet18_cifar10_pasted": Entry("resnet18", "cifar10", "trained on pasted-object CIFAR-10 (grounded.py)"),
    "resnet18_cifar10_pasted_pgdat": Entry("resnet18", "cifar10", "FGSM-RS fine-tune of the pasted-object model"),
    "resnet18_cifar10_shortcut_pgdat": Entry("resnet18", "cifar10", "FGSM-RS fine-tune of the planted-shortcut model"),
}
PASTE_SIZE = 16  # the pasted object's side in pixels (a quarter of the image's area)
BASELINES = ("resnet18_cifar10", "resnet18_cifar100", "resnet50_cifar10")  # notebook 01, in training order


def entry(name: str) -> Entry:
    if name not in ZOO:
        raise KeyError(f"Unknown model {name!r}; the zoo has {sorted(ZOO)} (replication/zoo.py).")
    return ZOO[name]


def shortcut_data(profile: Profile, seed: int = 0) -> tuple[Planted, Planted, Planted]:
    """The planted CIFAR-10 splits the shortcut model is trained and tested on."""
    return planted_cifar10(profile.shortcut.rate, profile.n_train, profile.n_test, seed)


def pasted_data(profile: Profile, seed: int = 0):
    """The pasted-object CIFAR-10 (training set, test set) the pasted model is trained and tested on."""
    from .grounded import pasted_cifar10

    return pasted_cifar10(profile.stability.pasted_n_train, profile.n_test, PASTE_SIZE, seed)


# the training data (and its cache name) of the zoo models trained on a modified CIFAR-10
VARIANTS = {"resnet18_cifar10_shortcut": lambda p: f"shortcut-correlated-rate{p.shortcut.rate}",
            "resnet18_cifar10_pasted": lambda p: f"pasted{PASTE_SIZE}"}


def variant_data(base: str, profile: Profile, seed: int = 0):
    """(train, test) splits of a VARIANTS model: what it was trained on, and its own test set."""
    if base == "resnet18_cifar10_shortcut":
        planted = shortcut_data(profile, seed)
        return planted[0].split, planted[1].split
    train, test = pasted_data(profile, seed)
    return train.split, test.split


def get(name: str, profile: Profile, seed: int = 0, progress: bool = True,
        planted: tuple[Planted, Planted, Planted] | None = None) -> TrainResult:
    """The trained model `name` at `profile`'s scale (trained now, or loaded from its checkpoint)."""
    e = entry(name)
    if name.endswith("_pgdat"):
        from .paper_b.alde import adversarial_training

        base = name[: -len("_pgdat")]
        if base not in VARIANTS:
            return adversarial_training(e.arch, profile, seed, progress=progress)
        train, test = variant_data(base, profile, seed)
        return adversarial_training(e.arch, profile, seed, progress=progress, base=base, data=(train, test),
                                    n_train=len(train), epochs=profile.stability.at_epochs,
                                    data_variant=VARIANTS[base](profile))
    test = load_split(e.dataset, train=False, n=profile.n_test, seed=seed)
    budget = profile.models[e.arch]
    if name == "resnet18_cifar10_pasted":
        train, test = variant_data(name, profile, seed)
        cfg = config_for(e.arch, e.dataset, budget, n_train=profile.stability.pasted_n_train, seed=seed,
                         epochs=profile.stability.pasted_epochs, data_variant=VARIANTS[name](profile))
        return train_model(cfg, name, profile.name, train, test, manifest=profile.commit_checkpoints, progress=progress)
    if name == "resnet18_cifar10_shortcut":
        # fewer epochs than the baseline: the squares are learnt first
        train = (planted or shortcut_data(profile, seed))[0].split
        cfg = config_for(e.arch, e.dataset, budget, n_train=profile.n_train, seed=seed,
                         epochs=profile.shortcut.epochs, data_variant=VARIANTS[name](profile))
    else:
        train = load_split(e.dataset, train=True, n=profile.n_train, seed=seed)
        cfg = config_for(e.arch, e.dataset, budget, n_train=profile.n_train, seed=seed)
    return train_model(cfg, name, profile.name, train, test, manifest=profile.commit_checkpoints, progress=progress)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Train (or load from cache) the zoo's models.")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None, help="model names, e.g. resnet18_cifar10")
    args = ap.parse_args(argv)
    profile = get_profile(args.profile)
    for name in args.only or BASELINES:
        res = get(name, profile, args.seed)
        last = res.history[-1] if res.history else {}
        print(f"{name}: {'cached' if res.from_cache else 'trained'} -> {res.path}; last epoch {last}", flush=True)


if __name__ == "__main__":
    main()
