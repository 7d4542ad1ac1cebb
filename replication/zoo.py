"""The model zoo: every named model the notebooks train or load, in one registry.

A result record's `model` is one of these names; what was done to the model afterwards (a
refinement variant, a fine-tuning seed) is the record's `setting`. `get(name, profile)` trains the
model, or loads it from the checkpoint cache when a run with the same config finished before;
`lazy(name, profile)` is the same model known by its config hash, built only when first used (a
notebook whose records are all present builds nothing). The PGD-AT recipe (`adversarial_training`,
Paper B's eq 3) lives here too: a zoo model is defined in one place.
`python -m replication.zoo --profile cpu` trains them all in the background. The zoo is the one
place that reads a whole profile: it picks the model budget, data sizes and checkpoint store.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Callable

from .cache import key_hash
from .checkpoints import checkpoint_path
from .data import load_split, subset_size
from .profiles import Profile, get_profile
from .shortcuts import Planted, planted_cifar10
from .train import TrainConfig, TrainResult, config_for, train_model


@dataclass(frozen=True)
class Entry:
    arch: str
    dataset: str
    role: str  # what the notebooks use it for
    width_factor: float = 1.0  # a multiple of the profile's width for the arch


ZOO = {
    "resnet18_cifar10": Entry("resnet18", "cifar10", "Paper A's baseline"),
    "resnet18_cifar100": Entry("resnet18", "cifar100", "Paper A's baseline"),
    "resnet50_cifar10": Entry("resnet50", "cifar10", "the reference model of Paper A's eqs 4-5"),
    "resnet18x2_cifar10": Entry("resnet18", "cifar10", "Paper A's baseline at twice the width (notebook 11)", 2.0),
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


class Lazy:
    """A trained model known by its name and config hash before it exists. Result records are keyed
    on the config hash (results.measurement_key), so a notebook asks whether its records are there
    first and builds (trains, or loads from its checkpoint) only when one is missing: on first use of
    .model, .history, .path or .from_cache. Behaves as the TrainResult it builds."""

    def __init__(self, name: str, config_hash: str, build: Callable[[], TrainResult]):
        self.name, self.config_hash, self._build, self._result = name, config_hash, build, None

    def get(self) -> TrainResult:
        if self._result is None:
            self._result = self._build()
            if self._result.config_hash != self.config_hash:
                raise RuntimeError(f"{self.name}: built with config hash {self._result.config_hash}, announced "
                                   f"{self.config_hash} (a recipe's config and its build disagree)")
        return self._result

    @property
    def built(self) -> bool:
        return self._result is not None

    model = property(lambda self: self.get().model)
    history = property(lambda self: self.get().history)
    path = property(lambda self: self.get().path)
    from_cache = property(lambda self: self.get().from_cache)

    def __repr__(self) -> str:
        return f"Lazy({self.name!r}, {self.config_hash}, {'built' if self.built else 'not built'})"


def lazy_model(name: str, cfg: TrainConfig, build: Callable[[], TrainResult]) -> Lazy:
    return Lazy(name, key_hash(cfg.to_dict()), build)


def lazy(name: str, profile: Profile, seed: int = 0, progress: bool = True,
         planted: tuple[Planted, Planted, Planted] | None = None) -> Lazy:
    """The zoo model `name` at `profile`'s scale, built on first use (see Lazy)."""
    e = entry(name)
    if name.endswith("_pgdat"):
        base = name[: -len("_pgdat")]
        if base not in VARIANTS:
            return adversarial_training(e.arch, profile, seed, progress=progress, deferred=True)
        return adversarial_training(e.arch, profile, seed, progress=progress, base=base,
                                    data=lambda: variant_data(base, profile, seed), n_train=_variant_n(base, profile),
                                    epochs=profile.stability.at_epochs, data_variant=VARIANTS[base](profile), deferred=True)
    budget = profile.models[e.arch]
    if e.width_factor != 1:
        budget = replace(budget, width=budget.width * e.width_factor)
    if name == "resnet18_cifar10_pasted":
        cfg = config_for(e.arch, e.dataset, budget, n_train=profile.stability.pasted_n_train, seed=seed,
                         epochs=profile.stability.pasted_epochs, data_variant=VARIANTS[name](profile))
        data = lambda: variant_data(name, profile, seed)  # noqa: E731
    elif name == "resnet18_cifar10_shortcut":
        # fewer epochs than the baseline: the squares are learnt first
        cfg = config_for(e.arch, e.dataset, budget, n_train=profile.n_train, seed=seed,
                         epochs=profile.shortcut.epochs, data_variant=VARIANTS[name](profile))
        data = lambda: ((planted or shortcut_data(profile, seed))[0].split,  # noqa: E731
                        load_split(e.dataset, train=False, n=profile.n_test, seed=seed))
    else:
        cfg = config_for(e.arch, e.dataset, budget, n_train=profile.n_train, seed=seed)
        data = lambda: (load_split(e.dataset, train=True, n=profile.n_train, seed=seed),  # noqa: E731
                        load_split(e.dataset, train=False, n=profile.n_test, seed=seed))

    def build() -> TrainResult:
        if checkpoint_path(name, cfg.to_dict(), profile.name).exists():  # loading needs no data
            return train_model(cfg, name, profile.name, None, None, manifest=profile.commit_checkpoints, progress=progress)
        train, test = data()
        return train_model(cfg, name, profile.name, train, test, manifest=profile.commit_checkpoints, progress=progress)

    return lazy_model(name, cfg, build)


def get(name: str, profile: Profile, seed: int = 0, progress: bool = True,
        planted: tuple[Planted, Planted, Planted] | None = None) -> TrainResult:
    """The trained model `name` at `profile`'s scale (trained now, or loaded from its checkpoint)."""
    return lazy(name, profile, seed, progress, planted).get()


def _variant_n(base: str, profile: Profile) -> int:
    """The training images of a VARIANTS model (what its PGD-AT fine-tune's config names)."""
    return subset_size("cifar10", profile.n_train if base == "resnet18_cifar10_shortcut" else profile.stability.pasted_n_train)


# ---- the PGD-AT classifier (Paper B's eq 3) ------------------------------------------------------------
def pgd_at_loss(eps: float, alpha: float, steps: int):
    """Eq 3 as a train.BatchLoss: cross-entropy on L-inf PGD examples (random start) made against
    the model being trained (Madry et al. 2018)."""
    import torch.nn.functional as F

    from .attacks import pgd

    def loss(model, x, y, aux):
        adv = pgd(model, x, y, eps, alpha, steps)
        logits = model(adv)
        return F.cross_entropy(logits.float(), y), logits
    return loss


def adversarial_training(arch: str, profile: Profile, seed: int = 0, *, steps: int | None = None,
                         n_train: int | None = None, epochs: int | None = None, progress: bool = True,
                         base: str | None = None, data=None, data_variant: str | None = None,
                         deferred: bool = False) -> TrainResult | Lazy:
    """Paper B's eq 3: `arch` trained on CIFAR-10 with cross-entropy on L-inf PGD examples at the
    profile's adversarial budget (`steps` 1 with a random start and step 1.25 eps is FGSM-RS, the
    fast AT of Wong et al. 2020); from the zoo's clean baseline (budget.init 'baseline', a
    fine-tune) or from scratch. `steps` / `n_train` / `epochs` override the budget (the FGSM-RS vs
    PGD comparison). `base` (a zoo name) with its (train, test) splits `data` (or a function giving
    them) and their `data_variant`: the PGD-AT version of another zoo model, fine-tuned from it
    (notebook 10's ground-truth models). deferred=True: a Lazy handle (nothing trained or loaded yet)."""
    A = profile.adversarial
    steps = A.steps if steps is None else steps
    alpha = A.step_size if steps > 1 else 1.25 * A.eps
    n = profile.n_train if n_train is None else n_train
    from_base = base is not None or A.init == "baseline"
    init = lazy(base or f"{arch}_cifar10", profile, seed, progress) if from_base else None
    cfg = config_for(arch, "cifar10", profile.models[arch], n_train=n, seed=seed, epochs=epochs or A.epochs, lr=A.lr,
                     schedule="cosine" if init is not None else "onecycle",
                     extra_loss=f"pgd-at-eps{A.eps:.6g}-steps{steps}-alpha{alpha:.6g}",
                     init_from=None if init is None else init.config_hash, data_variant=data_variant)
    if base is not None:
        name = f"{base}_pgdat"
    else:
        name = f"{arch}_cifar10_pgdat" + ("" if (n_train, epochs, steps) == (None, None, A.steps) else f"-steps{steps}-n{n}")

    def build() -> TrainResult:
        loss = pgd_at_loss(A.eps, alpha, steps)
        if checkpoint_path(name, cfg.to_dict(), profile.name).exists():  # loading needs neither data nor the base
            return train_model(cfg, name, profile.name, None, None, batch_loss=loss,
                               manifest=profile.commit_checkpoints, progress=progress)
        if data is None:
            train = load_split("cifar10", train=True, n=n, seed=seed)
            test = load_split("cifar10", train=False, n=profile.n_test, seed=seed)
        else:
            train, test = data() if callable(data) else data
        return train_model(cfg, name, profile.name, train, test, batch_loss=loss,
                           init_model=None if init is None else init.model,
                           manifest=profile.commit_checkpoints, progress=progress)

    handle = lazy_model(name, cfg, build)
    return handle if deferred else handle.get()


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
