"""Re-measure committed result records from the committed checkpoints, without running the notebooks.

    python -m replication.verify --profile cpu [--only 00 01 ...] [--metrics M ...] [--attacks A ...] [--datasets D ...]
                                 [--sample K] [--seed S] [--max-seconds T] [--json PATH [--resume]] [--results-dir DIR]
    python -m replication.verify --profile cpu --summary   # the stored pass, results/cpu/verify/*.json, as Markdown

Reads results/<profile>/<experiment>.json, picks the records whose measurement is deterministic
given their seed, re-runs each on the same images with the model(s) it names, loaded only from a
checkpoint that checkpoints/MANIFEST.json lists (never trained: a load that would start training is
refused), and prints one row per record: the committed and the re-measured value, their difference
in images, the per-image agreement where the record keeps per-image outcomes (notebook 09's
`extra.correct_draws`, notebook 06's `extra.robust`), the tolerance and pass / fail. Records that
cannot be re-measured are "not reachable", with the reason (grouped in the summary); records whose
stored wall time exceeds --max-seconds are "skipped" (too slow for this run), never failed. The exit
status is 1 when any record fails (or its verifier raises), else 0. With --json the rows are written
at most every SAVE_EVERY_S seconds while records are re-measured (those still to come marked
pending) and whenever the run stops (an error, Ctrl-C, SIGTERM), so a run of hours that is stopped
loses nothing (30 s at most if killed with SIGKILL), and --resume re-measures only what that file
does not hold.

Tolerance (TOLERANCE, also printed in the header). A measurement is deterministic given its seed on
one machine, but fp32 convolutions differ in their last bits between CPUs (the committed `cpu`
numbers came from an Intel Xeon with AMX; oneDNN picks other kernels on an AVX2 / AVX-512 AMD EPYC),
which can flip an image whose margin is that small, and an attack's path can carry the flip on. So:

- a fraction of n images (accuracy, accuracy_full_test_set, a defence's score over k purifier draws):
  |committed - measured| <= max(3, 0.25% of n) images, i.e. max(3, 0.0025 n) / n;
- counts and data checks (n_images, md5_ok_fraction, model_parameters, notebook 09's masking checks
  recomputed from the file's records): exact;
- a mean PSNR in dB: |committed - measured| <= 0.01 dB;
- notebook 05's median ratio, Spearman correlations and mean alignment, notebook 02's LIME statistics
  (means of per-image shares and correlations): 0.02; its median measured
  distortion: 5% of it (FAB and the bisection land on slightly other eps when a logit moves);
- a mean over n images of a per-image score (notebook 10's SSIM, Spearman, IoU, pointing game):
  the fraction rule, i.e. as much as 3 images (0.25% of n) moving from one end of the scale to the other.
- notebook 03: shares of flagged segments / pixels / images and accuracies by the fraction rule, its
  quantile thresholds within 5%, Jaccard and planted-square agreement within 0.02, the planted share
  exact; notebook 10's SSIM cross-check against torchmetrics: 1e-6.

What is re-measured, by notebook: 00's data checks; 01's clean / FGSM / PGD accuracies (subset and
full test set); 02's segment counts, LIME concentration and seed-to-seed correlation; 03's
identification (re-run in full from the committed checkpoints, then its audit: flag shares,
thresholds, rule agreement, planted-square scores, the shortcut model's accuracies; each row notes
how the re-measured flags agree with the committed scores'); 04's accuracies of the baselines and
refined models; 05's bound estimates, measured distortions, alignment and APGD cross-check (the whole
measurement, per model); 06's curve points with their per-image bits and its masking checklist
(recomputed from its records); 07's CIFAR-10-C accuracies; 08's PSNR, parameter count and
purified accuracy (fixed noise); 09's defence accuracies (per-image draw counts) and masking
checklist; 10's Table 2 (the adversarial pair re-crafts 09's strongest attack, as notebook 10 does),
the share of images on which that re-crafting reproduces 09's outcome, the SSIM cross-check and Table 3. Statistics
computed from other records (means over seeds, gains, paired tests) are named as such, not re-run.

Per-image agreement (images whose stored outcome equals the re-measured one exactly; for notebook 09
the count of correct purifier draws, shared by a job's mean / worst-of-k / fixed-noise records) is
reported beside the value, not gated on: an undefended classifier's adversarial images sit on its
decision boundary, where the last bits of a convolution decide a draw.

Adding a verifier is one function `f(ctx, record) -> Measured` plus one line in VERIFIERS, keyed by
(experiment, metric); its `check` (optional, cheap, no model loading) says whether a record is
reachable before anything runs, so --sample draws among reachable records only.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from . import paths
from .explain import ATTRIBUTION_STATS
from .progress import bar

# ---- tolerances -----------------------------------------------------------------------------------
MIN_IMAGES, SHARE_OF_N, DB_TOLERANCE, CLOSE, RELATIVE, NUMERICAL = 3, 0.0025, 0.01, 0.02, 0.05, 1e-6
SAVE_EVERY_S = 30.0  # --json: the longest a run killed with SIGKILL (or a lost machine) loses
TOLERANCE = (f"fractions of n images: |committed - measured| <= max({MIN_IMAGES}, {100 * SHARE_OF_N:g}% of n) images "
             f"(fp32 convolutions differ slightly between CPUs); counts and data checks: exact; "
             f"mean PSNR: {DB_TOLERANCE:g} dB; a ratio, correlation or mean alignment: {CLOSE:g}; "
             f"a median distortion or an identification threshold: {100 * RELATIVE:g}% of it; "
             f"a numerical cross-check (SSIM against torchmetrics): {NUMERICAL:g}")


def tolerance(kind: str, n: int) -> float:
    """The largest |committed - measured| that passes, in the record's unit."""
    if kind == "fraction":
        return max(MIN_IMAGES, SHARE_OF_N * n) / n
    if kind == "db":
        return DB_TOLERANCE
    if kind == "close":
        return CLOSE
    if kind == "numerical":
        return NUMERICAL
    return 0.0  # exact ("relative" is scaled by the committed value in verify_record)


# ---- outcomes -------------------------------------------------------------------------------------
class Unreachable(Exception):
    """The record cannot be re-measured here; the message is the reason (the summary groups them)."""


class _WouldTrain(Unreachable):
    pass


@dataclass
class Measured:
    value: float | None
    n: int | None = None                  # images (or files) it was measured on, checked against the record's n
    per_image: np.ndarray | None = None   # per-image outcomes, compared with the record's stored ones
    note: str = ""


@dataclass
class Verifier:
    measure: Callable[[Context, dict], Measured]
    kind: str = "fraction"                # fraction | exact | db (see `tolerance`)
    check: Callable[[Context, dict], None] | None = None  # raises Unreachable; cheap


MEASURED = ("pass", "fail", "error")  # a Row's statuses once its record was re-measured
PENDING = "not yet re-measured: the run was stopped before it (--resume goes on)"


@dataclass
class Row:
    experiment: str
    dataset: str
    model: str | None
    metric: str
    attack: str
    eps: str
    setting: str
    committed: float | None
    measured: float | None = None
    n: int | None = None
    diff_images: float | None = None
    agreement: str | None = None
    tolerance: float | None = None
    status: str = "pending"               # pass | fail | error | unreachable | skipped (pending: not yet run)
    reason: str = ""
    seconds: float | None = None
    estimated_s: float | None = None      # the record's stored wall time (the machine that measured it)
    run_id: str = ""
    key: str = ""


# ---- the context: profile at the time of each run, committed checkpoints, loaded models -----------
@dataclass
class Context:
    profile: str
    docs: dict[str, dict]                 # experiment -> results file (runs + records)
    models: dict[Any, Any] = field(default_factory=dict)
    splits: dict[Any, Any] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)
    results_dir: Path | None = None       # where the results files are (another experiment's, when needed)
    _manifest: dict[str, Path] | None = None
    _profiles: dict[Any, Any] = field(default_factory=dict)
    _others: dict[str, list[dict]] = field(default_factory=dict)

    def records_of(self, experiment: str) -> list[dict]:
        """Another experiment's committed records (notebook 10 needs 09's), read once."""
        if experiment in self.docs:
            return self.docs[experiment]["records"]
        if experiment not in self._others:
            path = Path(self.results_dir or paths.results_dir(self.profile)) / f"{experiment}.json"
            if not path.exists():
                raise Unreachable(f"{path.name} is not there")
            self._others[experiment] = json.loads(path.read_text())["records"]
        return self._others[experiment]

    def run(self, rec: dict) -> dict:
        return next((r for r in self.docs[rec["experiment"]]["runs"] if r["run_id"] == rec["run_id"]), {})

    def params(self, rec: dict) -> dict:
        return (self.run(rec).get("config") or {}).get("params") or {}

    def run_profile(self, rec: dict):
        """The profile as the measuring run stored it (its config), over today's for keys it lacks;
        today's profile where the stored one no longer parses."""
        from .profiles import ProfileError, get_profile, parse_profile

        key = (rec["experiment"], rec["run_id"])
        if key not in self._profiles:
            current = get_profile(self.profile)
            stored = (self.run(rec).get("config") or {}).get("profile") or {}
            merged = current.to_dict()
            for k, v in stored.items():
                if k in merged and k != "name":
                    merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged[k], dict) and k != "models" else v
            try:
                self._profiles[key] = parse_profile(self.profile, merged)
            except (ProfileError, TypeError):
                self._profiles[key] = current
        return self._profiles[key]

    def planted(self, profile, seed: int):
        """Notebook 03's planted-shortcut data (training, correlated and decorrelated test sets), built once."""
        from . import zoo

        key = ("planted", profile.name, seed)
        if key not in self.splits:
            with never_train():
                self.splits[key] = zoo.shortcut_data(profile, seed)
        return self.splits[key]

    def split(self, dataset: str, train: bool, n: int | None, seed: int):
        from .data import load_split

        key = (dataset, train, n, seed)
        if key not in self.splits:
            self.splits[key] = load_split(dataset, train=train, n=n, seed=seed)
        return self.splits[key]

    # -- committed checkpoints
    def committed(self) -> dict[str, Path]:
        """{config_hash: path} of this profile's checkpoints listed in checkpoints/MANIFEST.json."""
        if self._manifest is None:
            mf = paths.manifest_path()
            entries = json.loads(mf.read_text()) if mf.exists() else {}
            self._manifest = {e["config_hash"]: Path(paths.CHECKPOINTS_DIR) / rel for rel, e in entries.items()
                              if rel.split("/")[0] == self.profile}
        return self._manifest

    def checkpoint(self, model_hash: str | None, what: str) -> Path:
        """The committed checkpoint with this config hash, or Unreachable."""
        if not model_hash:
            raise Unreachable(f"no model hash recorded ({what})")
        path = self.committed().get(model_hash)
        if path is None:
            raise Unreachable(f"checkpoint not committed: {what}")
        if not path.exists():
            raise Unreachable(f"checkpoint listed in checkpoints/MANIFEST.json but missing on disk: {path.name}")
        return path


@contextlib.contextmanager
def never_train():
    """Inside: a load that would train (no checkpoint for the config asked) raises Unreachable."""
    from . import train

    real = train._train

    def refuse(cfg, name, *args, **kwargs):
        from .cache import key_hash

        raise _WouldTrain(f"checkpoint differs from the one measured (today's config for {name} hashes to "
                          f"{key_hash(cfg.to_dict())}, which has no checkpoint)")

    train._train = refuse
    try:
        yield
    finally:
        train._train = real


def _checked(res, want: str, name: str):
    if res.config_hash != want:
        raise Unreachable(f"checkpoint differs from the one measured ({name}: loaded {res.config_hash}, record {want})")
    return res.model.eval()


def classifier(ctx: Context, rec: dict, model: str | None = None, model_hash: str | None = None):
    """The record's classifier from its committed checkpoint: the zoo's recipe for a zoo model, the
    FGSM-RS vs PGD comparison's for notebook 09's "AT comparison" rows, else the checkpoint's own
    config (e.g. a refined model); its config hash must be the record's."""
    from . import zoo

    model = model or rec["model"]
    model_hash = model_hash or rec["model_hash"]
    path = ctx.checkpoint(model_hash, _uncommitted_label(rec))
    key = ("classifier", model_hash)
    if key in ctx.models:
        return ctx.models[key]
    P, seed, s = ctx.run_profile(rec), rec["seed"], rec["setting"]
    with never_train():
        if "at_steps" in s and str(s.get("defence", "")).startswith("AT comparison"):
            A = P.adversarial
            res = zoo.adversarial_training(zoo.entry(model).arch, P, seed, steps=s["at_steps"], n_train=A.compare_n_train,
                                       epochs=A.compare_epochs, progress=False)
            net = _checked(res, model_hash, model)
        elif path.name.rsplit("-", 1)[0] == model and model in zoo.ZOO:
            net = _checked(zoo.get(model, P, seed, progress=False), model_hash, model)
        else:
            net = _load_by_metadata(path)
    ctx.models[key] = net
    return net


def _load_by_metadata(path: Path):
    """A classifier built from the config its checkpoint stores (load_model checks its integrity)."""
    from .checkpoints import load_model, read_metadata
    from .models import build_model

    cfg = read_metadata(path)["config"]
    net = build_model(cfg["arch"], cfg["num_classes"], cfg["width"], cfg["dataset"])
    load_model(net, path, cfg)
    return net.eval()


def denoiser(ctx: Context, rec: dict, ddpm_hash: str):
    """Notebook 08's DDPM through ddpm.train (which loads its cached checkpoint), from the committed
    checkpoint with this hash; t_max, focus and epochs are read from the checkpoint's config."""
    from .checkpoints import read_metadata
    from .paper_b import ddpm

    path = ctx.checkpoint(ddpm_hash, f"DDPM {ddpm_hash}")
    key = ("ddpm", ddpm_hash)
    if key not in ctx.models:
        cfg = read_metadata(path)["config"]
        m = re.fullmatch(r"ddpm-eps-tmax([0-9.e-]+)-focus([0-9.e-]+)", cfg.get("extra_loss", ""))
        if m is None:
            raise Unreachable(f"DDPM checkpoint {path.name} has no t_max / focus in its config")
        P = ctx.run_profile(rec)
        train = ctx.split("cifar10", True, cfg.get("n_train"), cfg.get("seed", 0))
        with never_train():
            res = ddpm.train(P.diffusion, train, ctx.profile, seed=cfg.get("seed", 0), t_max=float(m[1]),
                             focus=float(m[2]), epochs=cfg["epochs"], progress=False)
        ctx.models[key] = _checked(res, ddpm_hash, "ddpm_cifar10")
    return ctx.models[key]


def _uncommitted_label(rec: dict) -> str:
    exp, s = rec["experiment"][:2], rec["setting"]
    if exp in ("04", "05", "06", "07"):
        return "refined models of notebooks 04-07"
    if "explainer" in s or "refinement" in s:
        return f"Paper A refinements of notebook {exp}'s rows (LIME / SHAP)"
    return f"{rec['model']} {rec['model_hash']}"


# ---- rebuilding what a record names ---------------------------------------------------------------
def attack_from(spec: dict, eps: float):
    """attacks.Attack from a record's `attack` dict (PGD's step factor from its step size)."""
    from .attacks import Attack

    factor = 2.5
    if spec["name"] == "pgd" and spec.get("step_size"):  # eps and step size are stored to 12 digits
        factor = float(f"{spec['step_size'] * spec['steps'] / eps:.6g}")
    attack = Attack(spec["name"], steps=spec["steps"], restarts=spec["restarts"], eot=spec["eot"], step_factor=factor)
    got, want = attack.spec(eps), spec.get("step_size")
    if spec["name"].startswith("apgd"):  # APGD sets its own step size; records before 5 December stored eps there
        want = got["step_size"]
    same_step = (got["step_size"] is None) == (want is None) and (want is None or math.isclose(got["step_size"], want, rel_tol=1e-9))
    if not same_step or {k: v for k, v in got.items() if k != "step_size"} != {k: v for k, v in spec.items() if k != "step_size"}:
        raise Unreachable(f"attack {spec} cannot be rebuilt (got {got})")
    return attack


def stored_per_image(rec: dict) -> np.ndarray | None:
    """A record's per-image outcomes: 09's correct-draw counts, 06's robust bits; None if it has none."""
    extra = rec.get("extra") or {}
    if "correct_draws" in extra:
        from .paper_b.adaptive import from_hex

        return from_hex(extra["correct_draws"]).astype(np.int64)
    if "robust" in extra:
        from .paper_a.curves import from_hex

        return from_hex(extra["robust"], rec["n"]).astype(np.int64)
    return None


# ---- verifiers ------------------------------------------------------------------------------------
def n_images(ctx: Context, rec: dict) -> Measured:
    from .data import load_split

    split = load_split(rec["dataset"], train=rec["setting"]["split"] == "train")
    return Measured(float(len(split)), n=len(split))


def md5_ok_fraction(ctx: Context, rec: dict) -> Measured:
    from .data import ensure_dataset, md5_report

    report = md5_report(rec["dataset"], ensure_dataset(rec["dataset"]))  # as notebook 00 makes it
    return Measured(sum(report.values()) / len(report), n=len(report))


def baseline_accuracy(ctx: Context, rec: dict) -> Measured:
    """Notebook 01: evaluate.clean_accuracy / robust_accuracy at the profile's eval batch size."""
    return _accuracy(ctx, rec, ctx.run_profile(rec).eval_batch_size)


def study_accuracy(ctx: Context, rec: dict) -> Measured:
    """Notebook 04: the Study's evaluate() calls, at evaluate's default batch size, on the study's
    seeded test subset (baselines and refined models alike)."""
    from . import evaluate

    if rec["dataset"].startswith("cifar10-shortcut-"):
        return _planted_accuracy(ctx, rec)
    return _accuracy(ctx, rec, inspect.signature(evaluate.evaluate).parameters["batch_size"].default)


def _planted_accuracy(ctx: Context, rec: dict) -> Measured:
    """Notebook 04's shortcut section: train.accuracy on the clean test images or on the planted
    (correlated / decorrelated) test set of notebook 03's construction."""
    from .train import accuracy

    P, seed, which = ctx.run_profile(rec), rec["seed"], rec["dataset"].removeprefix("cifar10-shortcut-")
    if rec["attack"] is not None or which not in ("clean", "correlated", "decorrelated"):
        raise Unreachable(f"not one of notebook 04's shortcut accuracies ({rec['dataset']})")
    split = (ctx.split("cifar10", False, P.n_test, seed) if which == "clean"
             else ctx.planted(P, seed)[1 if which == "correlated" else 2].split)
    return Measured(accuracy(classifier(ctx, rec), split), n=len(split))


def _accuracy(ctx: Context, rec: dict, bs: int) -> Measured:
    from . import evaluate

    model = classifier(ctx, rec)
    split = ctx.split(rec["dataset"], False, rec["n"], rec["seed"])
    if rec["attack"] is None:
        return Measured(evaluate.clean_accuracy(model, split, bs), n=len(split))
    attack = attack_from(rec["attack"], rec["eps"])
    return Measured(evaluate.robust_accuracy(model, split, attack, rec["eps"], batch_size=bs, seed=rec["seed"]), n=len(split))


def full_test_accuracy(ctx: Context, rec: dict) -> Measured:
    from .train import accuracy

    split = ctx.split(rec["dataset"], False, None, 0)
    return Measured(accuracy(classifier(ctx, rec), split), n=len(split))


def curve_point(ctx: Context, rec: dict) -> Measured:
    """Notebook 06: curves.measure's per-image outcome. Clean records slice one clean pass over the
    test split; an attack runs on the subset it was measured on (`extra.sliced_from` for a record
    cut from a larger subset's run, then sliced the same way), with curves.robust's batch seeds."""
    import torch

    from .evaluate import correct_mask
    from .paper_a import curves

    B, seed = ctx.run_profile(rec).curves, rec["seed"]
    split = ctx.split(rec["dataset"], False, B.n_images, seed)
    index = curves.subsets(split, B, seed)
    subset = rec["setting"].get("subset")
    if subset not in index:
        raise Unreachable(f"subset {subset!r} is not one of today's {sorted(index)}")
    net = classifier(ctx, rec)
    key = json.dumps(["06 correct", rec["model_hash"], rec["dataset"], len(split), seed])
    if key not in ctx.jobs:
        ctx.jobs[key] = correct_mask(net, split, B.batch_size)
    correct = ctx.jobs[key]
    if rec["attack"] is None:
        mask = correct[index[subset]]
    else:
        source = (rec.get("extra") or {}).get("sliced_from", subset)
        attack = attack_from(rec["attack"], rec["eps"])
        job = json.dumps(["06", rec["model_hash"], rec["dataset"], source, rec["attack"], rec["eps"], seed])
        if job not in ctx.jobs:
            idx = index[source]
            ctx.jobs[job] = curves.robust(net, split.select(idx), correct[idx], attack, rec["eps"],
                                          batch_size=B.batch_size, seed=seed)
        mask = ctx.jobs[job][torch.searchsorted(index[source], index[subset])]
    return Measured(float(mask.float().mean()), n=len(mask), per_image=mask.numpy().astype(np.int64))


def corrupted_accuracy(ctx: Context, rec: dict) -> Measured:
    """Notebook 07: corrupted.evaluate_sets on one set (the generated CIFAR-10-C, cached per n and
    seed; generated again where the cache is gone), with its per-set seeds."""
    from . import cifar10c
    from .evaluate import correct_mask
    from .paper_a import corrupted

    C, s = ctx.run_profile(rec).corruptions, rec["setting"]
    if (s["corruption"], s["severity"]) == corrupted.CLEAN_SET:
        split = ctx.split("cifar10", False, rec["n"], rec["seed"])  # the subset cifar10c.load corrupts
    else:
        key = json.dumps(["07 sets", rec["n"], rec["seed"], s["corruption"]])
        if key not in ctx.jobs:  # only this corruption's five severities (generated if not cached)
            ctx.jobs[key] = cifar10c.load(rec["n"], rec["seed"], store=ctx.profile, names=[s["corruption"]],
                                          processes=C.processes, progress=False)
        sets = ctx.jobs[key]
        if s.get("source", sets.source) != sets.source:
            raise Unreachable(f"record made on {s['source']} CIFAR-10-C, this machine has {sets.source}")
        split = sets.split(s["corruption"], s["severity"])
    net = classifier(ctx, rec)
    ckey = json.dumps(["07 correct", rec["model_hash"], s["corruption"], s["severity"], rec["n"], rec["seed"]])
    if ckey not in ctx.jobs:
        ctx.jobs[ckey] = correct_mask(net, split, C.batch_size)
    correct = ctx.jobs[ckey]
    if rec["attack"] is None:
        return Measured(float(correct.float().mean()), n=len(split))
    attack_from(rec["attack"], rec["eps"])  # an attack today's code cannot rebuild is unreachable
    value = corrupted._measure(net, split, correct, rec["attack"], rec["eps"], C.batch_size, rec["seed"])
    return Measured(value, n=len(split))


def _defence(ctx: Context, rec: dict):
    """The record's notebook 09 / 10 defence: its classifier, and where it has one its purifier."""
    from types import SimpleNamespace

    from .paper_b import ddpm
    from .paper_b.defences import Defence

    s = rec["setting"]
    den = config = None
    if s.get("ddpm_hash"):
        den = SimpleNamespace(model=denoiser(ctx, rec, s["ddpm_hash"]), config_hash=s["ddpm_hash"])
        config = ddpm.PurifierConfig(s["t_star"], s["purifier_steps"], s["sampler"])
    net = SimpleNamespace(model=classifier(ctx, rec), config_hash=rec["model_hash"])
    extra = {k: s[k] for k in ("explainer",) if k in s}
    return Defence(s["defence"], rec["model"], net, den, config, setting_=extra or None)


def _crafted(ctx: Context, rec: dict, d, split):
    """Notebook 09's strongest attack on the defence at the record's eps, re-crafted as notebook 10
    does (stability.Crafted, cached under .cache/adversarial/): the lowest mean-over-draws record of
    09 for this defence, which must be the attack the record names."""
    from .paper_b import adaptive as ad
    from .paper_b import stability
    from .paper_b.defences import MEAN, Job
    from .results import canonical_eps

    want = {**d.setting(), "subset": "all", "score": MEAN}
    mine = [r for r in ctx.records_of("09_purification_and_adversarial_training")
            if r["metric"] == "accuracy" and r["attack"] and r["model_hash"] == rec["model_hash"]
            and canonical_eps(r["eps"]) == canonical_eps(rec["eps"]) and all(r["setting"].get(k) == v for k, v in want.items())]
    if not mine:
        raise Unreachable("notebook 09 has no record of an attack on this defence at this eps")
    r09 = min(mine, key=lambda r: r["value"])
    job = Job(attack_from(r09["attack"], r09["eps"]), ad.Threat(r09["setting"]["threat"], r09["setting"]["attack_noise"]), r09["eps"])
    if r09["attack"] != rec["attack"] or job.threat.label != rec["setting"].get("threat"):
        raise Unreachable(f"notebook 09's strongest attack today ({job.threat.label}) is not the one the record names")
    return stability.Crafted(d, job, r09, split, ctx.run_profile(rec).purification, rec["seed"], ctx.profile, progress=True)


def table2_score(ctx: Context, rec: dict) -> Measured:
    """Notebook 10, Table 2: stability.stability_scores for the record's defence and method on
    notebook 09's test images. The clean-vs-adversarial pair and the flip rate re-craft notebook
    09's strongest attack on the defence first (about 45 min for ALDE on 2 cores, unless cached);
    the clean-only pairs (the method's floor, chance) do not."""
    from .paper_b import stability
    from .saliency import interval

    P, s, seed = ctx.run_profile(rec), rec["setting"], rec["seed"]
    pair, adversarial = s.get("pair"), rec["metric"] == "prediction_flip_rate" or s.get("pair") == stability.PAIRS[0]
    split = ctx.split("cifar10", False, P.purification.n_images, seed)
    job = json.dumps(["10 table2", rec["model_hash"], {k: v for k, v in s.items() if k != "pair"}, seed], sort_keys=True)
    if job not in ctx.jobs or (adversarial and ctx.jobs[job][1] is None):
        methods = stability.methods(P.stability)
        if s["method"] not in methods:
            raise Unreachable(f"method {s['method']!r} is not one of today's {sorted(methods)}")
        d = _defence(ctx, rec)
        adv = _crafted(ctx, rec, d, split).adv if adversarial else None
        ctx.jobs[job] = stability.stability_scores(d, methods[s["method"]], split, adv, seed, P.stability.batch_size,
                                                   progress=False)
    per_pair, flipped, _ = ctx.jobs[job]
    if rec["metric"] == "prediction_flip_rate":
        return Measured(float(flipped.mean()), n=len(flipped))
    mean = interval(per_pair[pair][rec["metric"]])[0]
    return Measured(None if math.isnan(mean) else float(mean), n=len(split))


def attack_reproduced(ctx: Context, rec: dict) -> Measured:
    """Notebook 10: notebook 09's strongest attack on the defence re-crafted (as table2_score does,
    sharing its cached images) and the share of images whose correct-draw count equals 09's. The
    record names the defence by its row; its purifier comes from a Table 2 record of the same defence."""
    full = {**rec, "setting": {**_table2_twin(ctx, rec)["setting"], **rec["setting"]}}
    split = ctx.split("cifar10", False, ctx.run_profile(rec).purification.n_images, rec["seed"])
    return Measured(_crafted(ctx, full, _defence(ctx, full), split).reproduced["same counts"], n=len(split))


def _table2_twin(ctx: Context, rec: dict) -> dict:
    """A Table 2 record of the same defence and threat (its setting names the purifier), or Unreachable."""
    twin = next((r for r in ctx.records_of(rec["experiment"]) if r["metric"] == "attribution_ssim"
                 and r["model_hash"] == rec["model_hash"] and r["setting"].get("defence") == rec["setting"]["defence"]
                 and r["setting"].get("threat") == rec["setting"]["threat"]), None)
    if twin is None:
        raise Unreachable("no Table 2 record of this defence names its purifier")
    return twin


def ssim_crosscheck(ctx: Context, rec: dict) -> Measured:
    """Notebook 10: Integrated Gradients maps of the baseline on its first CROSSCHECK_MAPS images,
    then our SSIM against torchmetrics' on the same pairs (stability.ssim_crosscheck)."""
    from types import SimpleNamespace

    from .data import to_float
    from .paper_b import stability
    from .paper_b.defences import Defence

    p, P = ctx.params(rec), ctx.run_profile(rec)
    if not {"SEED", "CROSSCHECK_MAPS"} <= set(p):
        raise Unreachable("the run stores no CROSSCHECK_MAPS")
    base = SimpleNamespace(model=classifier(ctx, rec), config_hash=rec["model_hash"])
    x = to_float(ctx.split("cifar10", False, P.purification.n_images, p["SEED"]).x[:p["CROSSCHECK_MAPS"]])
    ig = stability.explain(Defence("undefended", rec["model"], base), stability.methods(P.stability)["Integrated Gradients"],
                           x, p["SEED"], P.stability.batch_size, progress=False)
    ours, theirs = stability.ssim_crosscheck(ig.magnitude, p["SEED"])
    return Measured(float(abs(ours - theirs).max()), n=len(ours))


def grounding_score(ctx: Context, rec: dict) -> Measured:
    """Notebook 10, Table 3: stability.ground_scores for the record's defence and method on the
    construction's first images (the records of one (defence, method, construction) share it)."""
    from .paper_b import stability
    from .saliency import interval

    P, s, seed = ctx.run_profile(rec), rec["setting"], rec["seed"]
    S = P.stability
    job = json.dumps(["10 grounding", rec["model_hash"], s, seed], sort_keys=True)
    if job not in ctx.jobs:
        key = json.dumps(["10 grounded sets", seed])
        if key not in ctx.jobs:
            ctx.jobs[key] = stability.grounded_sets(P, seed, S.iou_images)
        data = ctx.jobs[key][s["construction"]]
        d = _defence(ctx, rec)
        methods = stability.methods(S)
        if s["method"] not in methods:
            raise Unreachable(f"method {s['method']!r} is not one of today's {sorted(methods)}")
        ctx.jobs[job] = (stability.ground_scores(d, methods[s["method"]], data, seed, S.batch_size, progress=False), len(data))
    (values, n_kept, _), n_data = ctx.jobs[job]
    if rec["metric"] == "followed_share":
        return Measured(values["followed_share"], n=n_data)
    if rec["metric"] not in values:
        return Measured(None, n=n_kept, note="no image followed")
    return Measured(float(interval(values[rec["metric"]])[0]), n=n_kept)


def lime_statistic(ctx: Context, rec: dict) -> Measured:
    """Notebook 02: explain.lime twice (seeds SEED and SEED + 1) on its test images with the run's
    segmentation and kernel parameters, then explain.attribution_stats (about 2 x 3 min on 2 cores)."""
    from . import explain, segments
    from .data import load_split

    p, s = ctx.params(rec), rec["setting"]
    if not {"SEED", "SEGMENTATION", "N_SEGMENTS", "HIDE_COLOR", "KERNEL", "KERNEL_WIDTH", "RIDGE_ALPHA"} <= set(p):
        raise Unreachable("the run stores no LIME parameters")
    job = json.dumps(["02 lime", rec["model_hash"], s, rec["n"], p], sort_keys=True)
    if job not in ctx.jobs:
        cfg, seed = ctx.run_profile(rec).lime, p["SEED"]
        if cfg.n_samples != s["n_samples"] or cfg.n_images != rec["n"]:
            raise Unreachable(f"the profile's LIME budget ({cfg.n_images} images x {cfg.n_samples}) is not the record's")
        model = classifier(ctx, rec)
        x, y = load_split("cifar10", train=False, n=cfg.n_images, seed=seed).float_batch(0, cfg.n_images)
        x = x.contiguous()
        segs, counts = segments.segment_batch(x, p["SEGMENTATION"], **segments.kwargs_for(p["SEGMENTATION"], p["N_SEGMENTS"]))
        lime_at = explain.lime_by_seed(model, x, y, segs, counts, cfg.n_samples, chunk=cfg.chunk, hide_color=p["HIDE_COLOR"],
                                       kernel=p["KERNEL"], width=p["KERNEL_WIDTH"], alpha=p["RIDGE_ALPHA"])  # notebook 02's calls
        ctx.jobs[job] = explain.attribution_stats(lime_at(seed).beta, lime_at(seed + 1).beta, counts)
    return Measured(ctx.jobs[job][rec["metric"].removeprefix("lime_")], n=rec["n"])


def segment_count(ctx: Context, rec: dict) -> Measured:
    """Notebook 02: segments per image of its test images under the record's segmentation (seconds)."""
    from . import segments
    from .data import load_split

    p, label = ctx.params(rec), rec["setting"]["segmentation"]
    settings = segments.comparison_settings(p.get("N_SEGMENTS", 50))
    if label not in settings:
        raise Unreachable(f"segmentation {label!r} is not one of notebook 02's today")
    job = json.dumps(["02 segments", label, rec["n"], p.get("SEED", 0)])
    if job not in ctx.jobs:
        x, _ = load_split("cifar10", train=False, n=rec["n"], seed=p.get("SEED", 0)).float_batch(0, rec["n"])
        row = segments.count_table(x, {label: settings[label]}).iloc[0]  # the notebook's own table
        ctx.jobs[job] = {"segments_mean": float(row["mean segments"]), "segments_min": int(row["min"]), "segments_max": int(row["max"])}
    return Measured(ctx.jobs[job][rec["metric"]], n=rec["n"])


def _identification_group(rec: dict) -> str:
    """Which of notebook 03's audits made the record."""
    if rec["metric"] == "accuracy":
        return "reliance"
    if rec["model"] == "resnet18_cifar10_shortcut":
        return "planted"
    return "cifar100" if rec["dataset"] == "cifar100" else "cifar10"


def _identify_fresh(ctx: Context, rec: dict, name: str, split, cfg, reference: bool, model_hash: str | None = None):
    """An identification (notebooks 03 and 04) of model `name` on `split` re-run from the committed
    checkpoints, reference included (once per model, images and settings in a verify run), and how
    its flags agree with the committed scores' flags."""
    from types import SimpleNamespace

    import torch

    from .paper_a import spurious as sp

    P = ctx.run_profile(rec)
    h = model_hash or _zoo_hash(ctx, name)
    job = json.dumps(["identify", h, sp.images_key(split), cfg.to_dict(), reference], sort_keys=True)
    if job in ctx.jobs:
        return ctx.jobs[job]
    tr = SimpleNamespace(model=classifier(ctx, rec, model=name, model_hash=h), config_hash=h)
    ref = None
    if reference:
        ref_hash = _zoo_hash(ctx, "resnet50_cifar10")
        ref = (classifier(ctx, rec, model="resnet50_cifar10", model_hash=ref_hash), ref_hash)
    scores = sp.scores_for(tr.model, h, split, cfg, P.name, reference=ref, chunk=P.identify.chunk, fresh=True)
    flags = sp.identify(scores, cfg)
    kept = sp.stored_scores(sp.score_keys(h, split, cfg, ref and ref[1])[1], ctx.profile)
    if kept is None:
        note = "no committed scores to compare with"
    else:
        old, ok = sp.identify(kept, cfg).spurious, sp.valid(kept.counts, kept.beta.shape[1])
        same_seg = bool(torch.equal(kept.segments, scores.segments))
        agree = ((old == flags.spurious) | ~ok).all(1).float().mean().item() if same_seg else float("nan")
        note = (f"segments {'equal' if same_seg else 'DIFFER'}; flags equal to the committed scores' on "
                f"{100 * agree:.1f}% of images; max |beta - committed| {float((scores.beta - kept.beta).abs().max()):.2g}")
    ctx.jobs[job] = (tr, scores, flags, note)
    return ctx.jobs[job]


def algorithm1_round(ctx: Context, rec: dict) -> Measured:
    """Notebook 04, Algorithm 1: round r's identification re-run from the committed checkpoint of the
    model entering it (round 1: the baseline; round r: round r-1's refined model), with notebook 04's
    rules (the profile's defaults, the ResNet-50 reference); its flagged shares, and the Jaccard index
    of its flags with round r-1's (each identification about 15-25 min on 2 cores)."""
    from .paper_a import spurious as sp

    s, P, seed = rec["setting"], ctx.run_profile(rec), rec["seed"]
    cfg = sp.identify_config(P.identify, seed)
    split = sp.identification_split("cifar10", P.identify, seed)

    def flags(r: int):
        name = _round_model(ctx, s, r)
        _, scores, f, note = _identify_fresh(ctx, rec, name, split, cfg, reference=True,
                                             model_hash=_zoo_hash(ctx, name))
        return scores, f, note

    scores, f, note = flags(s["round"])
    ok = sp.valid(scores.counts, f.spurious.shape[1])
    if rec["metric"] == "flagged_segment_frac":
        return Measured(float(f.spurious.sum() / ok.sum()), n=len(split), note=note)
    if rec["metric"] == "flagged_pixel_frac":
        return Measured(float(sp.pixel_masks(f.spurious, scores.segments).float().mean()), n=len(split), note=note)
    return Measured(sp.jaccard(flags(s["round"] - 1)[1].spurious, f.spurious), n=len(split), note=note)


def _round_model(ctx: Context, s: dict, r: int) -> str:
    """The model Algorithm 1's round r identifies (notebook 04's names)."""
    from .paper_a import refine as rf

    if r == 1:
        return "resnet18_cifar10"
    full = next(x for x in rf.ablation_specs(s["eps_train"], s["alpha"], s["lambda"]) if x.name == rf.FULL)
    return f"resnet18_cifar10_refine-{full.key()}" if r == 2 else f"resnet18_cifar10_alg1-round{r - 1}"


def identification_statistic(ctx: Context, rec: dict) -> Measured:
    """Notebook 03: its identification re-run from the committed checkpoints (LIME with its fixed
    seeds, input gradients, LIME on the noisy copies, the reference's side; nothing read from the
    committed scores), then its audit (paper_a.audit) into a scratch Run; the record's twin is read
    from that. The records of one audit share it (about 15-25 min per identified model on 2 cores)."""
    import torch

    from . import shortcuts
    from .notebook import Run
    from .paper_a import audit
    from .paper_a import spurious as sp
    from .results import measurement_key

    p, group = ctx.params(rec), _identification_group(rec)
    rules = ("TAU_Q", "SUPPORT_Q", "EPS_Q", "DELTA_Q", "PERTURB_SIGMA")
    if not set(rules) <= set(p):
        raise Unreachable("the run stores no identification parameters")
    seed = p.get("SEED", rec["seed"])  # runs converted from schema 1 stored no SEED: the record's seed is the notebook's
    job = json.dumps(["03", group, ctx.run_profile(rec).to_dict(), seed, {k: p[k] for k in rules}], sort_keys=True, default=str)
    if job not in ctx.jobs:  # one audit per group and parameters, shared by the runs that measured with them
        P = ctx.run_profile(rec)
        cfg = sp.identify_config(P.identify, seed, tau_q=p["TAU_Q"], support_q=p["SUPPORT_Q"], eps_q=p["EPS_Q"],
                                 delta_q=p["DELTA_Q"], perturb_sigma=p["PERTURB_SIGMA"])
        run = Run(rec["experiment"], P, seed, p, torch.device("cpu"))
        note = ""
        if group in ("cifar10", "cifar100"):
            name = f"resnet18_{group}"
            split = sp.identification_split(group, P.identify, seed)
            tr, scores, flags, note = _identify_fresh(ctx, rec, name, split, cfg, reference=group == "cifar10")
            audit.rule_summary(run, tr, name, group, scores, flags, cfg)
            if group == "cifar10":
                audit.quantile_sweep(run, tr, name, group, scores, cfg)
                audit.rule_agreement(run, tr, name, group, scores, flags, cfg)
                audit.class_mask_agreement(run, tr, name, group, sp.pixel_masks(flags.spurious, scores.segments),
                                           split.y.cpu(), 10)
        else:
            planted = ctx.planted(P, seed)
            if group == "planted":
                sub = shortcuts.planted_subset(planted[0], P.identify.n_images, seed)
                tr, scores, flags, note = _identify_fresh(ctx, rec, "resnet18_cifar10_shortcut", sub.split, cfg, reference=True)
                audit.planted_scores(run, tr, sub, scores, flags, cfg, seed)
            else:
                from types import SimpleNamespace

                nets = {n: SimpleNamespace(model=classifier(ctx, rec, model=n, model_hash=_zoo_hash(ctx, n)),
                                           config_hash=_zoo_hash(ctx, n)) for n in ("resnet18_cifar10_shortcut", "resnet18_cifar10")}
                audit.shortcut_reliance(run, nets["resnet18_cifar10_shortcut"], nets["resnet18_cifar10"], planted, P.n_test, seed)
        ctx.jobs[job] = ({measurement_key(r): r for r in run.records}, note)
    twins, note = ctx.jobs[job]
    twin = twins.get(measurement_key(rec))
    if twin is None:
        raise Unreachable("today's notebook 03 audit makes no record with this record's key")
    return Measured(twin["value"], n=twin["n"], note=note)


def bound_point(ctx: Context, rec: dict) -> Measured:
    """Notebook 05: bound.measure on the record's model (identification on the test images with the
    committed ResNet-50 as reference, FAB and a bisection, CLEVER), then bound.summaries; the records
    of one model share it (about 25-45 min per model on 2 cores, less with the identification cached)."""
    from types import SimpleNamespace

    from .paper_a import bound
    from .paper_a import spurious as sp

    P, s, seed = ctx.run_profile(rec), rec["setting"], rec["seed"]
    own = ("estimate", "steps", "restarts")  # what tells one model's records apart, not its measurement
    job = json.dumps(["05", rec["model_hash"], {k: v for k, v in s.items() if k not in own}, seed], sort_keys=True)
    if job not in ctx.jobs:
        ref_hash = _zoo_hash(ctx, "resnet50_cifar10")
        ref = SimpleNamespace(model=classifier(ctx, rec, model="resnet50_cifar10", model_hash=ref_hash), config_hash=ref_hash)
        tr = SimpleNamespace(model=classifier(ctx, rec), config_hash=rec["model_hash"])
        test = ctx.split("cifar10", False, P.bound.n_images, seed)
        df, found = bound.measure(tr, test, sp.identify_config(P.identify, seed), (ref, ref_hash), P.bound, ctx.profile,
                                  chunk=P.identify.chunk, seed=seed)
        ctx.jobs[job] = (df, bound.summaries(df), found)
    df, summary, (model, x, y, measured) = ctx.jobs[job]
    if rec["metric"] == "stronger_attack_below_measured":  # the notebook's APGD cross-check, on the re-measured distortions
        if (s.get("steps"), s.get("restarts")) != (100, 2):
            raise Unreachable(f"a cross-check at {s.get('steps')} steps x {s.get('restarts')} restarts: today's is 100 x 2")
        n = min(P.bound.crosscheck_images, int(np.isfinite(df["measured"].values).sum()))
        return Measured(bound.crosscheck(model, x, y, measured["measured"], P.bound.crosscheck_images, seed=seed), n=n)
    if rec["metric"] == "min_linf_distortion_median":
        return Measured(float(df["measured"].median()), n=len(df))
    value, n = summary[(rec["metric"], s.get("estimate"))]
    return Measured(value, n=n)


def x0_psnr_db(ctx: Context, rec: dict) -> Measured:
    """Notebook 08: mean PSNR of the one-shot x0 prediction at t (noise seeded per t)."""
    from .paper_b import ddpm

    D = ctx.run_profile(rec).diffusion
    split = ctx.split("cifar10", False, rec["n"], rec["seed"])
    t = rec["setting"]["t"]
    per = ddpm.x0_psnr(denoiser(ctx, rec, rec["model_hash"]), split, [t], batch_size=D.batch_size, seed=rec["seed"])[t]
    return Measured(float(per.mean()), n=len(per))


def model_parameters(ctx: Context, rec: dict) -> Measured:
    from .paper_b import ddpm

    return Measured(float(ddpm.n_parameters(denoiser(ctx, rec, rec["model_hash"]))), n=1)


def _purifier_config(s: dict, seed: int | None):
    from .paper_b import ddpm

    c = ddpm.PurifierConfig(s["t_star"], s["purifier_steps"], s["sampler"], seed=seed)
    if c.nfe != s["purifier_steps"]:
        raise Unreachable(f"purifier steps {s['purifier_steps']} at t* {s['t_star']} cannot be rebuilt")
    return c


def purified_accuracy(ctx: Context, rec: dict) -> Measured:
    """Notebook 08: the zoo's resnet18_cifar10 on purified clean images (fixed purifier noise)."""
    from .paper_b import ddpm

    s = rec["setting"]
    net = classifier(ctx, rec, model_hash=rec["model_hash"] or _zoo_hash(ctx, rec["model"]))
    config = _purifier_config(s, rec["seed"])
    D = ctx.run_profile(rec).diffusion
    split = ctx.split("cifar10", False, rec["n"], rec["seed"])
    row = ddpm.purified_accuracy(net, denoiser(ctx, rec, s["ddpm_hash"]), split, [config], batch_size=D.batch_size)[0]
    return Measured(row["accuracy"], n=row["n"], note="" if rec["model_hash"] else "classifier hash not recorded: the committed " + rec["model"])


def _zoo_hash(ctx: Context, name: str) -> str:
    """The hash of the one committed checkpoint of zoo model `name` (records that name no hash)."""
    found = [h for h, p in ctx.committed().items() if p.name.rsplit("-", 1)[0] == name]
    if len(found) != 1:
        raise Unreachable(f"checkpoint not committed: no single committed checkpoint of {name}")
    return found[0]


def defence_accuracy(ctx: Context, rec: dict) -> Measured:
    """Notebook 09: one defences.measure job through adaptive.run_attack (same seed, batch size,
    max_batch and draws); the score records of one job share one measurement."""
    from .paper_b import adaptive as ad

    s, B = rec["setting"], ctx.run_profile(rec).purification
    job = json.dumps([rec["model_hash"], {k: v for k, v in s.items() if k != "score"}, rec["attack"], rec["eps"],
                      rec["n"], rec["seed"]], sort_keys=True)
    if job not in ctx.jobs:
        net = classifier(ctx, rec)
        den = denoiser(ctx, rec, s["ddpm_hash"]) if s.get("ddpm_hash") else None
        config = _purifier_config(s, None) if den is not None else None
        split = ctx.split("cifar10", False, B.n_images, rec["seed"])
        if s["subset"] == "grid":
            split = split.subset(B.grid_images, rec["seed"] + 1)
        elif s["subset"] != "all":
            raise Unreachable(f"unknown subset {s['subset']!r}")
        attack = None if rec["attack"] is None else attack_from(rec["attack"], rec["eps"])
        threat = ad.Threat(s.get("threat", "classifier"), s.get("attack_noise", "fresh"))
        res = ad.run_attack(attack, threat, rec["eps"], split, denoiser=den, config=config, classifier=net, k=s["draws"],
                            seed=rec["seed"], batch_size=B.batch_size, max_batch=B.max_batch, progress=True)
        ctx.jobs[job] = res
    res, k = ctx.jobs[job], s["draws"]
    values = ad.scores(res["counts"], k)
    if "fixed_counts" in res:
        values["fixed noise, as attacked"] = float(res["fixed_counts"].float().mean())
    if s["score"] not in values:
        raise Unreachable(f"unknown score {s['score']!r}")
    return Measured(values[s["score"]], n=len(res["counts"]), per_image=res["counts"].numpy().astype(np.int64))


def masking_check(ctx: Context, rec: dict) -> Measured:
    """Notebook 09: the gradient-masking checklist recomputed from the file's committed records."""
    from .paper_b import defences

    params = ctx.params(rec)
    if "EPS" not in params or "LARGE_EPS" not in params:
        raise Unreachable("the run stores no EPS / LARGE_EPS")
    df = defences.frame(ctx.docs[rec["experiment"]]["records"])
    s = rec["setting"]
    got = [c for c in defences.checklist(df, s["defence"], params["EPS"], params["LARGE_EPS"]) if c["check"] == s["check"]]
    if not got:
        raise Unreachable(f"check {s['check']!r} is not in today's checklist")
    return Measured(None if got[0]["pass"] is None else float(got[0]["pass"]), n=rec["n"], note="recomputed from the file")


def curve_masking_check(ctx: Context, rec: dict) -> Measured:
    """Notebook 06: the gradient-masking checklist of its models recomputed from the committed records,
    as the notebook computes it (curves.checklist over each subset's records)."""
    from .paper_a import curves

    s = rec["setting"]
    if s.get("evaluated_in") != "06":
        raise Unreachable(f"a checklist evaluated in notebook {s.get('evaluated_in')!r}, not 06")
    job = json.dumps(["06 checklist", rec["experiment"]])
    if job not in ctx.jobs:
        records = ctx.records_of(rec["experiment"])
        ctx.jobs[job] = curves.checklist(curves.frame(records, curves.labels_of(records)))
    checks = ctx.jobs[job]
    got = checks[(checks["model"] == s["model_label"]) & (checks["check"] == s["check"])] if len(checks) else checks
    if not len(got):
        raise Unreachable(f"check {s['check']!r} of {s['model_label']!r} is not in today's checklist")
    p = curves.passed(got.iloc[0]["pass"])
    return Measured(None if p is None else float(p), n=int(got.iloc[0]["n"]), note="recomputed from the committed records")


def _needs_classifier(ctx: Context, rec: dict) -> None:
    ctx.checkpoint(rec["model_hash"], _uncommitted_label(rec))


def _needs_identification(ctx: Context, rec: dict) -> None:
    names = {"cifar10": ("resnet18_cifar10", "resnet50_cifar10"), "cifar100": ("resnet18_cifar100",),
             "planted": ("resnet18_cifar10_shortcut", "resnet50_cifar10"),
             "reliance": ("resnet18_cifar10_shortcut", "resnet18_cifar10")}[_identification_group(rec)]
    for n in names:
        ctx.checkpoint(_zoo_hash(ctx, n), n)


def _needs_round_models(ctx: Context, rec: dict) -> None:
    if "round" not in rec["setting"]:
        raise Unreachable("not an Algorithm 1 round")
    r = rec["setting"]["round"]
    for k in ((r - 1, r) if rec["metric"] == "jaccard" else (r,)):
        name = _round_model(ctx, rec["setting"], k)
        ctx.checkpoint(_zoo_hash(ctx, name), name)
    ctx.checkpoint(_zoo_hash(ctx, "resnet50_cifar10"), "resnet50_cifar10 (the identification's reference)")


def _needs_bound(ctx: Context, rec: dict) -> None:
    _needs_classifier(ctx, rec)
    ctx.checkpoint(_zoo_hash(ctx, "resnet50_cifar10"), "resnet50_cifar10 (the identification's reference)")


def _needs_ddpm(ctx: Context, rec: dict) -> None:
    ctx.checkpoint(rec["model_hash"], f"DDPM {rec['model_hash']}")


def _needs_purified(ctx: Context, rec: dict) -> None:
    s = rec["setting"]
    if s.get("purifier_noise") != "fixed":
        raise Unreachable("fresh purifier noise from an unseeded global RNG (not deterministic)")
    ctx.checkpoint(s["ddpm_hash"], f"DDPM {s['ddpm_hash']}")
    ctx.checkpoint(rec["model_hash"] or _zoo_hash(ctx, rec["model"]), rec["model"])


def _needs_defence_maps(ctx: Context, rec: dict) -> None:
    if "defence" not in rec["setting"] or "method" not in rec["setting"] or "construction" in rec["setting"]:
        raise Unreachable("not a Table 2 measurement")
    if rec["dataset"] != "cifar10":
        raise Unreachable("ImageNet rows: no ImageNet here")
    _needs_grounding(ctx, rec, table=2)


def _needs_defence_maps_of_row(ctx: Context, rec: dict) -> None:
    _needs_classifier(ctx, rec)
    ddpm = _table2_twin(ctx, rec)["setting"].get("ddpm_hash")
    if ddpm:
        ctx.checkpoint(ddpm, f"DDPM {ddpm}")


def _needs_grounding(ctx: Context, rec: dict, table: int = 3) -> None:
    if table == 3 and "construction" not in rec["setting"]:
        raise Unreachable("not a Table 3 measurement")
    _needs_classifier(ctx, rec)
    if rec["setting"].get("ddpm_hash"):
        ctx.checkpoint(rec["setting"]["ddpm_hash"], f"DDPM {rec['setting']['ddpm_hash']}")


def _needs_defence(ctx: Context, rec: dict) -> None:
    s = rec["setting"]
    if "defence" not in s or "score" not in s:
        raise Unreachable("not a defence measurement of notebook 09")
    _needs_classifier(ctx, rec)
    if s.get("ddpm_hash"):
        ctx.checkpoint(s["ddpm_hash"], f"DDPM {s['ddpm_hash']}")


# notebook 03's metrics by tolerance: shares of images / segments / pixels, quantile thresholds (a
# relative 5%), agreement indices between flag sets or with the planted squares, the planted share (data)
IDENTIFICATION_KINDS = {"fraction": ("flagged_segment_frac", "flagged_pixel_frac", "flagged_image_frac", "accuracy"),
                        "relative": ("threshold",),
                        "close": ("jaccard", "class_mask_iou", "planted_precision", "planted_recall", "planted_iou"),
                        "exact": ("planted_pixel_frac",)}
VERIFIERS: dict[tuple[str, str], Verifier] = {
    ("00_setup_and_data", "n_images"): Verifier(n_images, "exact"),
    ("00_setup_and_data", "md5_ok_fraction"): Verifier(md5_ok_fraction, "exact"),
    ("01_baseline_training", "accuracy"): Verifier(baseline_accuracy, check=_needs_classifier),
    ("01_baseline_training", "accuracy_full_test_set"): Verifier(full_test_accuracy, check=_needs_classifier),
    ("04_refinement_training", "accuracy"): Verifier(study_accuracy, check=_needs_classifier),
    **{("02_lime_analysis", f"lime_{m}"): Verifier(lime_statistic, "close", check=_needs_classifier)
       for m in ATTRIBUTION_STATS},
    **{("02_lime_analysis", m): Verifier(segment_count, "exact") for m in ("segments_mean", "segments_min", "segments_max")},
    ("05_lipschitz_bound", "bound_violation_rate"): Verifier(bound_point, check=_needs_bound),
    ("05_lipschitz_bound", "min_linf_distortion_median"): Verifier(bound_point, "relative", check=_needs_bound),
    ("05_lipschitz_bound", "stronger_attack_below_measured"): Verifier(bound_point, check=_needs_bound),
    **{("05_lipschitz_bound", m): Verifier(bound_point, "close", check=_needs_bound)
       for m in ("bound_median_ratio", "bound_spearman", "alignment_mean", "alignment_spearman")},
    ("06_robustness_curves", "accuracy"): Verifier(curve_point, check=_needs_classifier),
    ("06_robustness_curves", "robust_accuracy"): Verifier(curve_point, check=_needs_classifier),
    ("07_cifar10c_table", "accuracy"): Verifier(corrupted_accuracy, check=_needs_classifier),
    ("07_cifar10c_table", "robust_accuracy"): Verifier(corrupted_accuracy, check=_needs_classifier),
    ("08_ddpm_training", "x0_psnr_db"): Verifier(x0_psnr_db, "db", check=_needs_ddpm),
    **{("10_attribution_stability", m): Verifier(table2_score, "fraction", check=_needs_defence_maps)
       for m in ("attribution_ssim", "attribution_ssim_signed", "attribution_spearman", "prediction_flip_rate")},
    **{("10_attribution_stability", m): Verifier(grounding_score, "fraction", check=_needs_grounding)
       for m in ("saliency_iou", "pointing_game", "saliency_iou_random_map", "saliency_chance_share", "followed_share")},
    ("08_ddpm_training", "model_parameters"): Verifier(model_parameters, "exact", check=_needs_ddpm),
    ("08_ddpm_training", "accuracy"): Verifier(purified_accuracy, check=_needs_purified),
    ("09_purification_and_adversarial_training", "accuracy"): Verifier(defence_accuracy, check=_needs_defence),
    ("09_purification_and_adversarial_training", "masking_check"): Verifier(masking_check, "exact"),
    ("06_robustness_curves", "masking_check"): Verifier(curve_masking_check, "exact"),
    **{("04_refinement_training", m): Verifier(algorithm1_round, kind, check=_needs_round_models)
       for m, kind in (("flagged_segment_frac", "fraction"), ("flagged_pixel_frac", "fraction"), ("jaccard", "close"))},
    ("10_attribution_stability", "attack_reproduced_share"): Verifier(attack_reproduced, check=_needs_defence_maps_of_row),
    ("10_attribution_stability", "ssim_crosscheck_max_diff"): Verifier(ssim_crosscheck, "numerical", check=_needs_classifier),
    **{("03_spurious_features", m): Verifier(identification_statistic, kind, check=_needs_identification)
       for kind, ms in IDENTIFICATION_KINDS.items() for m in ms},
}

# Experiments with no verifier yet, and why (a record whose checkpoint is not committed says that first).
NOT_YET = {
    "bench": ("a benchmark, not a notebook's record: `python -m replication.bench lime-estimators --profile cpu "
              "--images 200 --budget 250 --reference 10000` re-runs it (about 42 min on 2 cores)"),
    "02_lime_analysis": ("not re-measured: the benchmark's coefficient difference to lime (lime's own loop is the slow "
                         "part; tests/test_lime_batched.py holds batched LIME to lime's coefficients)"),
}
# Statistics computed from other records of the same file (each of those verified on its own row).
DERIVED_METRICS = {"accuracy_mean_over_seeds", "accuracy_std_over_seeds", "accuracy_ci95_over_seeds", "accuracy_gain",
                   "paired_difference_mean", "paired_difference_ci95", "paired_t_p", "mcnemar_p", "claims_with_verdict"}
TIMING_METRICS = {"lime_batched_over_inference", "lime_speedup_vs_lime_bs10", "lime_speedup_vs_lime_bs1000"}


def unreachable_reason(ctx: Context, rec: dict) -> str | None:
    """Why a record cannot be re-measured (None: it can), without loading anything."""
    from .results import metric_units

    unit = metric_units().get(rec["metric"], {}).get("unit", "")
    if "second" in unit or rec["metric"] in TIMING_METRICS:
        return "a timing, not a deterministic measurement"
    v = VERIFIERS.get((rec["experiment"], rec["metric"]))
    if v is None and rec["metric"] in DERIVED_METRICS:
        return "a statistic of other records (verified on their own rows)"
    if v is None:
        if rec.get("model_hash") and rec["model_hash"] not in ctx.committed():
            return f"checkpoint not committed: {_uncommitted_label(rec)}"
        return NOT_YET.get(rec["experiment"], f"no verifier yet for {rec['metric']} of {rec['experiment']}")
    if rec["value"] is None and v.kind != "exact":
        return "no committed value (undefined)"
    try:
        if v.check is not None:
            v.check(ctx, rec)
    except Unreachable as exc:
        return str(exc)
    return None


# ---- one row --------------------------------------------------------------------------------------
ABBREV = {"purifier_noise": "noise", "t_star": "t*", "draws": "k"}
HIDDEN = {"ddpm_hash"}
FIRST = ("defence", "threat", "score", "subset", "draws", "t_star", "sampler", "purifier_steps")
SCORES = {"mean over draws": "mean", "fixed noise, as attacked": "fixed"}


def setting_summary(rec: dict, width: int = 64) -> str:
    """The record's setting in a few words: what matters first (a defence, its threat and score)."""
    s = dict(rec["setting"])
    if "threat" in s:
        s["threat"] = f"{s['threat']}/{s.pop('attack_noise', '')}".rstrip("/")
    if "score" in s:
        s["score"] = SCORES.get(s["score"], re.sub(r"worst of (\d+) draws", r"worst-of-\1", str(s["score"])))
    if "sampler" in s and "purifier_steps" in s:
        s["sampler"] = f"{s['sampler']}-{s.pop('purifier_steps')}"
    keys = [k for k in FIRST if k in s] + [k for k in s if k not in FIRST]
    parts = [str(s[k]) if k in ("defence", "threat", "score", "subset", "sampler") else f"{ABBREV.get(k, k)}={s[k]}"
             for k in keys if k not in HIDDEN]
    text = ", ".join(parts) or "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def attack_label(a: dict | None, metric: str = "accuracy") -> str:
    if a is None:
        return "clean" if "accuracy" in metric else "-"
    return f"{a['name']}-{a['steps']}" + (f" x{a['restarts']}" if a["restarts"] > 1 else "") + f" eot{a['eot']}"


def eps_label(eps: float | None) -> str:
    if eps is None:
        return "-"
    k = eps * 255
    return f"{round(k):d}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.4g}"


def new_row(rec: dict) -> Row:
    from .results import record_key

    return Row(rec["experiment"], rec["dataset"], rec["model"], rec["metric"], attack_label(rec["attack"], rec["metric"]), eps_label(rec["eps"]),
               setting_summary(rec), rec["value"], n=rec["n"], estimated_s=rec.get("wall_time_s"), run_id=rec["run_id"],
               key=record_key(rec))


def verify_record(ctx: Context, rec: dict, row: Row) -> Row:
    v = VERIFIERS[(rec["experiment"], rec["metric"])]
    t0 = time.perf_counter()
    try:
        m = v.measure(ctx, rec)
    except Unreachable as exc:
        row.status, row.reason = "unreachable", str(exc)
        return row
    except Exception as exc:  # noqa: BLE001 (a verifier that breaks is a failure to verify, never a pass)
        row.status, row.reason = "error", f"{type(exc).__name__}: {exc}"
        return row
    finally:
        row.seconds = time.perf_counter() - t0
    row.measured, row.tolerance = m.value, tolerance(v.kind, rec["n"])
    if v.kind == "relative" and rec["value"] is not None:
        row.tolerance = RELATIVE * abs(rec["value"])
    problems = []
    if m.n is not None and m.n != rec["n"]:
        problems.append(f"measured on {m.n}, record says n={rec['n']}")
    if (m.value is None) != (rec["value"] is None):
        problems.append("one of the two values is null")
    elif m.value is not None:
        diff = m.value - rec["value"]
        row.diff_images = diff * rec["n"] if v.kind == "fraction" else None
        if abs(diff) > row.tolerance + 1e-9:
            problems.append(f"differs by {diff:+.4g}" + (f" ({diff * rec['n']:+.1f} images)" if v.kind == "fraction" else ""))
    stored = stored_per_image(rec)
    if stored is not None and m.per_image is not None:
        if len(stored) == len(m.per_image):
            row.agreement = f"{int((stored == m.per_image).sum())}/{len(stored)}"
        else:
            problems.append(f"{len(stored)} stored per-image outcomes, {len(m.per_image)} measured")
    row.status = "fail" if problems else "pass"
    row.reason = "; ".join(problems + ([m.note] if m.note else []))
    return row


# ---- selection, printing, summary -----------------------------------------------------------------
def experiments(results_dir: Path, only: list[str] | None) -> list[str]:
    names = sorted(p.stem for p in Path(results_dir).glob("*.json"))
    if only:
        names = [n for n in names if any(n == o or n.startswith(o) or n.split("_")[0] == o for o in only)]
    return names


def load_docs(results_dir: Path, names: list[str]) -> dict[str, dict]:
    from .results import SCHEMA_VERSION, SchemaError, validate_record

    docs = {}
    for name in names:
        path = Path(results_dir) / f"{name}.json"
        doc = json.loads(path.read_text())
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise SchemaError(f"{path}: schema_version {doc.get('schema_version')} != {SCHEMA_VERSION}")
        for rec in doc["records"]:
            validate_record(rec)
        docs[doc.get("experiment", name)] = doc
    return docs


def _fmt(v: float | None, kind_exact: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if kind_exact and float(v).is_integer() and abs(v) >= 2 else f"{v:.4f}"


COLUMNS = ("exp", "model", "metric", "attack", "eps", "setting", "committed", "measured", "Δ img", "agree", "tol", "result")


def format_row(r: Row) -> str:
    exact = VERIFIERS.get((r.experiment, r.metric), Verifier(None)).kind == "exact"
    tol = "-" if r.tolerance is None else ("exact" if r.tolerance == 0 else f"±{r.tolerance:.4g}")
    diff = "-" if r.diff_images is None else f"{r.diff_images:+.0f}"
    result = r.status + (f" ({r.seconds:.0f}s)" if r.seconds is not None and r.status in ("pass", "fail") else "")
    line = (f"{r.experiment[:2]:<3} {str(r.model or r.dataset)[:24]:<24} {r.metric[:16]:<16} {r.attack:<18} {r.eps:<7} "
            f"{r.setting:<64} {_fmt(r.committed, exact):>9} {_fmt(r.measured, exact):>9} {diff:>5} "
            f"{r.agreement or '-':>9} {tol:>8} {result}")
    return line + (f"  [{r.reason}]" if r.reason and r.status != "skipped" else "")


def header(profile: str, results_dir: Path, args) -> str:
    return "\n".join([
        f"verify: profile {profile}, results from {results_dir}, checkpoints from {paths.checkpoints_dir(profile)}",
        f"tolerance: {TOLERANCE}",
        (f"selection: only {' '.join(args.only) if args.only else 'all'}; sample {args.sample or 'all'} (seed {args.seed}); "
         f"max seconds {args.max_seconds if args.max_seconds is not None else 'none'}"),
        "",
        (f"{COLUMNS[0]:<3} {COLUMNS[1]:<24} {COLUMNS[2]:<16} {COLUMNS[3]:<18} {COLUMNS[4]:<7} {COLUMNS[5]:<64} "
         f"{COLUMNS[6]:>9} {COLUMNS[7]:>9} {COLUMNS[8]:>5} {COLUMNS[9]:>9} {COLUMNS[10]:>8} {COLUMNS[11]}")])


def summarise(rows: list[Row]) -> tuple[str, dict[str, dict[str, Any]]]:
    per: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = per.setdefault(r.experiment, {"records": 0, "verified": 0, "passed": 0, "failed": 0, "unreachable": 0,
                                          "skipped": 0, "pending": 0, "reasons": {}, "skips": {}, "seconds": 0.0})
        c["records"] += 1
        c["seconds"] += r.seconds or 0.0
        if r.status in MEASURED:
            c["verified"] += 1
            c["passed" if r.status == "pass" else "failed"] += 1
        elif r.status == "unreachable":
            c["unreachable"] += 1
            c["reasons"][r.reason] = c["reasons"].get(r.reason, 0) + 1
        elif r.status == "pending":
            c["pending"] += 1
        elif r.status == "skipped":
            c["skipped"] += 1
            c["skips"][r.reason] = c["skips"].get(r.reason, 0) + 1
    lines = ["", (f"{'experiment':<44} {'records':>7} {'verified':>8} {'passed':>6} {'failed':>6} {'not reachable':>13} "
                  f"{'skipped':>7} {'time':>7}")]
    for exp, c in per.items():
        lines.append(f"{exp:<44} {c['records']:>7} {c['verified']:>8} {c['passed']:>6} {c['failed']:>6} "
                     f"{c['unreachable']:>13} {c['skipped']:>7} {c['seconds']:>6.0f}s")
    for title, field_ in (("not reachable", "reasons"), ("skipped", "skips")):
        groups = [(exp, reason, k) for exp, c in per.items() for reason, k in c[field_].items()]
        if groups:
            lines += ["", f"{title}:"] + [f"  {exp}: {k} x {reason}" for exp, reason, k in groups]
    failed = [r for r in rows if r.status in ("fail", "error")]
    if failed:
        lines += ["", "failures:"] + [f"  {format_row(r)}" for r in failed]
    return "\n".join(lines), per


def stored_rows(profile: str, verify_dir: Path | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """{experiment: {record key: row}} from results/<profile>/verify/*.json. Files are read in name
    order (NN.json, then narrower re-runs such as NNapgd.json); a later file's row replaces an earlier
    one unless the earlier was measured and the later was not (a narrower run leaves the rest alone)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(Path(verify_dir or paths.results_dir(profile) / "verify").glob("*.json")):
        doc = json.loads(path.read_text())
        for r in doc["rows"]:
            rows = out.setdefault(r["experiment"], {})
            old = rows.get(r["key"])
            if old is None or r["status"] in MEASURED or old["status"] not in MEASURED:
                rows[r["key"]] = {**r, "file": path.name, "finished_utc": doc.get("finished_utc") or doc.get("updated_utc")}
    return out


def summary(profile: str, verify_dir: Path | None = None) -> str:
    """The verify pass so far as Markdown: one row per notebook, then why records are not reachable
    (README's "Re-measuring the committed record" is this text)."""
    per = stored_rows(profile, verify_dir)
    lines = ["| notebook | records | re-measured | pass | fail | per-image outcomes equal | not reachable | verified (UTC) | files |",
             "|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for exp in sorted(per):
        rows = list(per[exp].values())
        st = [r["status"] for r in rows]
        n_meas = sum(s in MEASURED for s in st)
        dates = sorted({(r["finished_utc"] or "")[:10] for r in rows if r["finished_utc"]})
        files = sorted({r["file"] for r in rows})
        # records that keep per-image outcomes: how many re-measure equal on every image ("k/k")
        per_image = [r["agreement"].split("/") for r in rows if r.get("agreement") and "/" in r["agreement"]]
        equal = f"{sum(a == b for a, b in per_image)} of {len(per_image)}" if per_image else "–"
        lines.append(f"| {exp} | {len(rows)} | {n_meas} | {st.count('pass')} | {st.count('fail') + st.count('error')} | "
                     f"{equal} | {st.count('unreachable')} | {', '.join(dates) or '–'} | {', '.join(files)} |")
        reasons: dict[str, int] = {}
        for r in rows:
            if r["status"] != "pass":  # unreachable, skipped, pending, or failed
                why = ("FAILED: " if r["status"] in ("fail", "error") else "") + r["reason"]
                reasons[why] = reasons.get(why, 0) + 1
        notes += [f"- {exp}: {k} x {why}" for why, k in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines + (["", "Not re-measured (or failed), and why:", ""] + notes if notes else [])) + "\n"


def main(argv: list[str] | None = None, *, results_dir: Path | str | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replication.verify", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--only", nargs="+", default=None, help="notebook prefixes (00 01 ...) or experiment names")
    ap.add_argument("--metrics", nargs="+", default=None, help="only records of these metrics")
    ap.add_argument("--attacks", nargs="+", default=None, help="only records of these attacks (fgsm, pgd, apgd-ce, ...)")
    ap.add_argument("--datasets", nargs="+", default=None, help="only records on these data sets")
    ap.add_argument("--sample", type=int, default=None, help="K reachable records per experiment, drawn at random")
    ap.add_argument("--seed", type=int, default=0, help="seed of --sample's draw")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="skip records whose stored wall time exceeds this (too slow for this run)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows and counts as JSON here")
    ap.add_argument("--results-dir", type=Path, default=None, help="default results/<profile>")
    ap.add_argument("--summary", action="store_true",
                    help="print the stored pass (results/<profile>/verify/*.json) as Markdown; re-measure nothing")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows an earlier run measured in --json's file (written every 30 s and at a stop)")
    args = ap.parse_args(argv)
    if args.resume and args.json is None:
        ap.error("--resume needs --json PATH: the file an earlier run wrote its rows to")
    from .profiles import resolve_profile

    profile = resolve_profile(args.profile)
    if args.summary:
        print(summary(profile), end="")
        return 0
    rdir = Path(results_dir or args.results_dir or paths.results_dir(profile))
    docs = load_docs(rdir, experiments(rdir, args.only))
    ctx = Context(profile, docs, results_dir=rdir)
    print(header(profile, rdir, args), flush=True)

    rows: list[Row] = []
    plan: list[tuple[str, list[tuple[dict, Row]]]] = []
    for exp, doc in docs.items():
        todo = []
        for rec in doc["records"]:
            if (args.metrics and rec["metric"] not in args.metrics) or (
                    args.attacks and (rec["attack"] or {}).get("name") not in args.attacks) or (
                    args.datasets and rec["dataset"] not in args.datasets):
                continue
            row = new_row(rec)
            reason = unreachable_reason(ctx, rec)
            if reason is not None:
                row.status, row.reason = "unreachable", reason
            elif args.max_seconds is not None and (rec.get("wall_time_s") or 0) > args.max_seconds:
                row.status, row.reason = "skipped", f"too slow for this run (stored wall time > {args.max_seconds:g} s)"
            else:
                todo.append((rec, row))
            rows.append(row)
        if args.sample is not None and len(todo) > args.sample:
            keep = set(random.Random(f"{args.seed}:{exp}").sample(range(len(todo)), args.sample))
            for i, (_, row) in enumerate(todo):
                if i not in keep:
                    row.status, row.reason = "skipped", f"not drawn by --sample {args.sample}"
            todo = [t for i, t in enumerate(todo) if i in keep]
        plan.append((exp, todo))
    if args.resume:
        resumed = resume_rows(args.json, [row for _, todo in plan for _, row in todo])
        plan = [(exp, [(rec, row) for rec, row in todo if row.status == "pending"]) for exp, todo in plan]
        print(f"resumed {resumed} re-measured rows from {args.json}", flush=True)
    for row in rows:
        if row.status == "pending":
            row.reason = PENDING

    meta = run_meta(profile, rdir, argv)
    written = 0.0  # monotonic time of the last write

    def save(complete: bool, now: bool = True) -> None:
        nonlocal written
        if args.json is not None and (now or time.monotonic() - written >= SAVE_EVERY_S):
            write_json(args.json, meta, rows, complete)
            written = time.monotonic()

    save(False)
    # Rewriting the whole file after every record costs O(rows) each time (07: 2,497 rows); so write at
    # most every SAVE_EVERY_S, and always when the run stops (an exception, Ctrl-C or a SIGTERM).
    with _sigterm_raises(), _saved_on_exit(lambda: save(False)):
        for exp, todo in plan:
            est = stored_minutes([rec for rec, _ in todo])
            if todo:
                tqdm.write(f"-- {exp}: {len(todo)} records to re-measure (stored wall time {est:.1f} min)")
            for rec, row in bar(todo, desc=exp[:24]):
                verify_record(ctx, rec, row)
                tqdm.write(format_row(row))
                save(False, now=False)
            ctx.jobs.clear()
    text, per = summarise(rows)
    print(text, flush=True)
    save(True)
    return 1 if any(r.status in ("fail", "error") for r in rows) else 0


@contextlib.contextmanager
def _saved_on_exit(save: Callable[[], None]):
    """Run `save` if the block is left by an exception (KeyboardInterrupt included), then re-raise."""
    try:
        yield
    except BaseException:
        save()
        raise


@contextlib.contextmanager
def _sigterm_raises():
    """Inside the block a SIGTERM (`kill PID`) raises SystemExit, so the rows measured so far are
    written; the handler before it is restored after. A no-op off the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def stored_minutes(records: list[dict]) -> float:
    """The stored wall time of these records' measurements, in minutes. Every record of one measurement (the
    mean and worst-of-k scores of one attack, say) carries that measurement's whole time, so each (run, time)
    pair counts once."""
    jobs = {(r.get("run_id"), r.get("wall_time_s") or 0.0) for r in records}
    return sum(seconds for _, seconds in jobs) / 60


def resume_rows(path: Path, rows: list[Row]) -> int:
    """Fill `rows` from an earlier (possibly stopped) run's JSON at `path`: a row measured there for
    the same record (key, run and committed value alike) keeps that measurement. Returns how many."""
    if not Path(path).exists():
        return 0
    old = {(r["key"], r["run_id"], r["committed"]): r for r in json.loads(Path(path).read_text())["rows"]
           if r["status"] in MEASURED}
    n = 0
    for row in rows:
        r = old.get((row.key, row.run_id, row.committed))
        if r is not None:
            for f in ("measured", "diff_images", "agreement", "tolerance", "status", "reason", "seconds"):
                setattr(row, f, r[f])
            n += 1
    return n


def run_meta(profile: str, rdir: Path, argv: list[str] | None) -> dict[str, Any]:
    """What a verify JSON says of its run (once per run: git is asked once, not at every write)."""
    from .results import device_description, git_commit, package_versions

    # device and packages: a re-measured value's last digits depend on the CPU's kernels and torch's version
    return {"profile": profile, "tolerance": TOLERANCE, "results_dir": _in_project(rdir) or str(rdir), "git_commit": git_commit(),
            "argv": portable_argv(sys.argv[1:] if argv is None else argv), "device": device_description(),
            "packages": package_versions()}


def portable_argv(argv: list[str]) -> list[str]:
    """The command line as a committed file may keep it: a path inside the project relative to it, any
    other absolute path (a scratch folder of this machine) as `<elsewhere>/name`."""
    return [(_in_project(Path(a)) or f"<elsewhere>/{Path(a).name}") if Path(a).is_absolute() else a for a in argv]


def _in_project(p: Path) -> str | None:
    """`p` relative to the project root, or None when it lies outside."""
    p = p.resolve()
    return str(p.relative_to(paths.PROJECT_ROOT)) if p.is_relative_to(paths.PROJECT_ROOT) else None


def write_json(path: Path, meta: dict[str, Any], rows: list[Row], complete: bool) -> None:
    """The rows and counts, atomically. `complete` false: a run still going (or stopped), its rows not
    yet re-measured marked pending; `finished_utc` is set only once every row is decided."""
    from dataclasses import asdict
    from datetime import datetime, timezone

    from .cache import atomic_write_text

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_text(path, json.dumps({
        **meta, "complete": complete, "updated_utc": now, **({"finished_utc": now} if complete else {}),
        "counts": summarise(rows)[1], "rows": [asdict(r) for r in rows]}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
