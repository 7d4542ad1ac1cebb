"""Run profiles (smoke / cpu / full), read from data_files/profiles.yaml into frozen dataclasses.

A profile is validated when it is read: a missing or unknown key is an error that names the file and
the key. Library functions take the part of a profile they need (`budget=run.profile.refine`),
never the whole profile.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from .paths import DATA_FILES_DIR

ENV_VAR = "REPLICATION_PROFILE"
DEFAULT_PROFILE = "smoke"
PROFILES_FILE = DATA_FILES_DIR / "profiles.yaml"


class UnknownProfileError(ValueError):
    pass


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class ModelBudget:
    width: float
    epochs: int
    batch_size: int
    lr: float
    precision: str = "auto"  # auto: bf16 on GPU, fp32 on CPU; "bf16" / "fp32" force it


@dataclass(frozen=True)
class AttackBudget:
    steps: int
    restarts: int


@dataclass(frozen=True)
class LimeBudget:
    n_images: int       # test images explained in notebook 02
    n_samples: int      # perturbations per image
    bench_images: int   # images of the lime-vs-batched benchmark
    chunk: int          # images per batched-LIME call


@dataclass(frozen=True)
class IdentifyBudget:
    n_images: int | None  # training images the spurious-feature rules run on
    n_samples: int
    n_perturb: int
    chunk: int


@dataclass(frozen=True)
class ShortcutBudget:
    rate: float
    epochs: int


@dataclass(frozen=True)
class RefineBudget:
    epochs: int
    batch_size: int
    lr: float
    n_eval: int | None       # test images each refined model is attacked on
    rounds: int              # most rounds of Algorithm 1
    class_scope_n: int | None  # training images of the class-mask variant


@dataclass(frozen=True)
class BoundBudget:
    n_images: int           # test images of notebook 05 (class-balanced)
    clever_images: int      # the subset CLEVER runs on (its sampling is the expensive part)
    clever_batches: int
    clever_batch_size: int
    fab_steps: int
    bisection_steps: int
    crosscheck_images: int  # the subset a stronger attack re-checks at 0.95 x the measured distortion


@dataclass(frozen=True)
class CorruptionBudget:
    n_images: int | None    # class-balanced CIFAR-10 test images each corruption x severity holds (null: all)
    pgd_steps: int          # PGD iterations of notebook 07 (early-stopped: an image is fooled at its first fooling iterate)
    processes: int          # worker processes generating the corruptions
    batch_size: int


@dataclass(frozen=True)
class CurveBudget:
    n_images: int | None        # class-balanced test images of notebook 06's curves, seeds and paired tests (null: all)
    strong_images: int | None   # the subset of those the stronger attacks run on (PGD with restarts, APGD, Square, eps 0.25)
    autoattack_images: int | None  # the subset of that AutoAttack (and the authors' package, to check it) runs on
    pgd_steps: int              # PGD of the curves (early-stopped)
    strong_steps: int           # PGD of the strong subset ...
    strong_restarts: int        # ... with this many random restarts
    apgd_steps: int             # APGD-CE / APGD-DLR iterations
    square_queries: int         # black-box Square queries
    seeds: int                  # training seeds of the headline rows (full method, random-mask control)
    batch_size: int


@dataclass(frozen=True)
class ScalingBudget:
    n_images: list[int]         # identification sizes N, smallest first; the first is identify.n_images (notebook 03's)
    width_factors: list[float]  # ResNet-18 widths as multiples of models.resnet18.width (1: the baseline of notebook 01)
    seeds: int                  # training seeds of every row
    chunk: int                  # training images per identification chunk beyond the smallest N (kept, resumable)
    test_images: int | None     # class-balanced test images of the paired tests (null: all)
    strong_images: int | None   # the nested subset APGD-CE runs on
    pgd_steps: int
    apgd_steps: int
    batch_size: int


@dataclass(frozen=True)
class DiffusionBudget:
    channels: list[int]         # UNet2DModel block_out_channels
    layers_per_block: int
    attention: bool             # self-attention at the second level (the 35.7M DDPM of Ho et al. has it)
    epochs: int
    batch_size: int
    lr: float                   # Adam
    ema_decay: float
    n_eval: int | None          # held-out test images of the quality checks
    ablation_epochs: int        # the short runs comparing the timestep focus with the uniform objective
    reconstruction_steps: int   # DDPM steps of the reconstruction figure (capped at t*)


@dataclass(frozen=True)
class AdversarialBudget:
    archs: list[str]            # classifiers adversarially trained (notebook 09; zoo names <arch>_cifar10_pgdat)
    init: str                   # baseline (fine-tune the zoo's clean model) | scratch
    epochs: int
    lr: float                   # peak learning rate (cosine from a baseline, one-cycle from scratch)
    eps: float                  # L-inf training radius, pixels
    steps: int                  # PGD steps per example; 1 = FGSM with a random start (step 1.25 eps)
    step_size: float            # PGD step size when steps > 1
    compare_n_train: int | None # the FGSM-RS vs PGD comparison: training images ...
    compare_epochs: int         # ... epochs ...
    compare_steps: int          # ... and the PGD steps it is compared with


@dataclass(frozen=True)
class PurificationBudget:
    n_images: int | None        # class-balanced test images every Table 1 attack runs on (null: all)
    grid_images: int            # the subset the t* x steps grid is attacked on
    grid_pgd_steps: int         # the grid's attack: PGD with exact gradients, one EOT sample
    pgd_steps: int              # the headline attacks: PGD ...
    eot: int                    # ... with this many EOT samples (at 8/255)
    light_eot: int              # EOT samples at the other eps and of the EOT sweep's middle point
    apgd_steps: int             # APGD-CE / APGD-DLR iterations ...
    apgd_eot: int               # ... and EOT samples
    draws: int                  # purifier draws each adversarial image is scored under (mean, worst case)
    batch_size: int             # images per attack batch (x EOT copies per forward)
    max_batch: int              # most images in one forward (EOT copies are chunked to it)


@dataclass(frozen=True)
class StabilityBudget:
    # Table 2 runs on notebook 09's images (purification.n_images): its attacks are re-crafted there
    ig_steps: int               # Integrated Gradients: path steps (captum n_steps)
    shap_samples: int           # GradientShap: noisy baseline samples per image
    lime_samples: int           # LIME: perturbations per image (grid superpixels)
    lime_cell: int              # LIME's grid superpixel: cell x cell pixels
    batch_size: int             # images per attribution call
    iou_images: int             # Table 3: test images per ground-truth construction (before filtering)
    pasted_n_train: int | None  # the pasted-object training set (null: every training image)
    pasted_epochs: int          # the pasted-object classifier's epochs (from scratch)
    at_epochs: int              # FGSM-RS fine-tune of each ground-truth model (its PGD-AT version)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    n_train: int | None
    n_test: int | None
    n_test_reference: int | None
    eval_batch_size: int
    models: Mapping[str, ModelBudget]
    pgd: AttackBudget
    lime: LimeBudget
    identify: IdentifyBudget
    shortcut: ShortcutBudget
    refine: RefineBudget
    bound: BoundBudget
    corruptions: CorruptionBudget
    curves: CurveBudget
    scaling: ScalingBudget
    diffusion: DiffusionBudget
    adversarial: AdversarialBudget
    purification: PurificationBudget
    stability: StabilityBudget
    datasets: tuple[str, ...]
    commit_checkpoints: bool  # list the zoo's finished checkpoints in checkpoints/MANIFEST.json

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["models"] = {k: dataclasses.asdict(v) for k, v in self.models.items()}
        for k in SECTIONS:
            d[k] = dataclasses.asdict(d[k])
        d["datasets"] = list(self.datasets)
        return d

    def with_refine(self, **changes: Any) -> "Profile":
        """The same profile with some refinement budget changed (frozen: a new object)."""
        return dataclasses.replace(self, refine=dataclasses.replace(self.refine, **changes))


SECTIONS = {"pgd": AttackBudget, "lime": LimeBudget, "identify": IdentifyBudget, "shortcut": ShortcutBudget,
            "refine": RefineBudget, "bound": BoundBudget, "corruptions": CorruptionBudget,
            "curves": CurveBudget, "scaling": ScalingBudget, "diffusion": DiffusionBudget,
            "adversarial": AdversarialBudget, "purification": PurificationBudget,
            "stability": StabilityBudget}


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ProfileError(f"{PROFILES_FILE}: {where} should be a mapping, got {raw!r}")
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is dataclasses.MISSING}
    unknown, missing = set(raw) - names, required - set(raw)
    if unknown or missing:
        raise ProfileError(f"{PROFILES_FILE}: {where}: " + "; ".join(
            ([f"unknown key(s) {sorted(unknown)}"] if unknown else [])
            + ([f"missing key(s) {sorted(missing)}"] if missing else []))
            + f" (a {cls.__name__} has {sorted(names)})")
    return cls(**raw)


def parse_profile(name: str, raw: dict[str, Any]) -> Profile:
    if not isinstance(raw, dict):
        raise ProfileError(f"{PROFILES_FILE}: profile {name!r} should be a mapping")
    top = {f.name for f in fields(Profile)} - {"name"}
    data = dict(raw)
    for section, cls in SECTIONS.items():
        if section in data:
            data[section] = _build(cls, data[section], f"{name}.{section}")
    if isinstance(data.get("models"), dict):
        data["models"] = MappingProxyType({arch: _build(ModelBudget, m, f"{name}.models.{arch}")
                                           for arch, m in data["models"].items()})
    if isinstance(data.get("datasets"), list):
        data["datasets"] = tuple(data["datasets"])
    return _build(Profile, {"name": name, **data}, name) if set(data) <= top else _build(Profile, data, name)


@lru_cache(maxsize=None)
def _all_profiles() -> dict[str, Profile]:
    with open(PROFILES_FILE) as f:
        raw = yaml.safe_load(f)
    return {name: parse_profile(name, p) for name, p in raw.items()}


def profile_names() -> list[str]:
    return list(_all_profiles())


def resolve_profile(name: str | None = None) -> str:
    """`name` if given, else $REPLICATION_PROFILE, else 'smoke'; unknown names are an error."""
    chosen = name or os.environ.get(ENV_VAR) or DEFAULT_PROFILE
    if chosen not in _all_profiles():
        raise UnknownProfileError(
            f"Unknown profile {chosen!r}. Choose one of {profile_names()} "
            f"(set PROFILE in the notebook's parameters cell or ${ENV_VAR}); "
            "profiles are defined in replication/data_files/profiles.yaml."
        )
    return chosen


def get_profile(name: str | None = None) -> Profile:
    """The validated profile (see resolve_profile for how the name is chosen)."""
    return _all_profiles()[resolve_profile(name)]
