"""Notebook 04's study: each refinement row fine-tuned from the baseline, attacked and recorded.

Every row fine-tunes the same baseline on the same identified training images for the same steps,
so rows differ only in the loss (refine.RefineSpec). Results go through the Run as schema-2
records: `model` is the zoo name, `setting` the refinement (spec.setting()), the Algorithm 1 round,
the mask scope, or the seeds a mean is over. Methods return DataFrames (accuracy in %) to display.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import pandas as pd
import torch

from .. import zoo
from ..attacks import Attack
from ..data import load_split, to_float
from ..evaluate import evaluate
from ..notebook import Run
from ..results import canonical_eps, make_record, stored
from ..papers import eps_reading, normalised_eps_scale, paper_a_refined_comparison, pixel_eps
from ..segments import segment_batch, to_pixels
from ..tables import metrics_by_point
from ..train import TrainResult, accuracy
from ..zoo import Lazy, lazy_model
from . import refine as rf
from . import spurious as sp

ROW_LAMBDA = ("reg+adv", "control: gradient penalty on all pixels + adv", rf.FULL)  # rows the lambda sweep varies
SEED_ROWS = (rf.FULL, "control: random mask + reg + adv", "reg+adv", "control: gradient penalty on all pixels + adv", "adv")
CIFAR100_ROWS = (rf.FULL, "adv", "control: fast AT (eps 8/255, step 10/255)")
SHORTCUT_ROWS = ("fine-tune only (CE)", "adv", rf.FULL, "control: random mask + reg + adv")
# the refinements whose checkpoints a reported profile commits (at the study's own eps, lambda and
# seed), besides Table 1's SHAP row and Algorithm 1's later rounds: the rows a reader would attack
COMMITTED_ROWS = (rf.FULL, "control: random mask + reg + adv", "reg+adv", "adv", "control: fast AT (eps 8/255, step 10/255)")


class Masks:
    """A dataset's identification split and, on first use, its scores, flags and pixel masks (LIME's,
    and the random control's per seed). `id(...)` names a mask set by its recipe without computing
    it: the refined models' cache keys, so a notebook whose records exist identifies nothing."""

    def __init__(self, split, score: Callable[[], sp.Scores], cfg: sp.IdentifyConfig, recipe: dict[str, Any], seed: int):
        self.split, self._score, self.cfg, self.recipe, self.seed = split, score, cfg, recipe, seed
        self._scores: sp.Scores | None = None
        self._flags: sp.Flags | None = None

    @property
    def scores(self) -> sp.Scores:
        if self._scores is None:
            self._scores = self._score()
        return self._scores

    @property
    def flags(self) -> sp.Flags:
        if self._flags is None:
            self._flags = sp.identify(self.scores, self.cfg)
        return self._flags

    @property
    def lime(self) -> torch.Tensor:
        return sp.pixel_masks(self.flags.spurious, self.scores.segments)

    def random_pixels(self, seed: int | None = None) -> torch.Tensor:
        """Control: per image as many random segments as LIME flags (drawn with `seed`)."""
        flags = sp.random_flags(self.flags.spurious, self.scores.counts, self.seed if seed is None else seed)
        return sp.pixel_masks(flags, self.scores.segments)

    @property
    def random(self) -> torch.Tensor:
        return self.random_pixels()

    def pixels(self, source: str, seed: int | None = None) -> torch.Tensor:
        return self.random_pixels(seed) if source == "random" else self.lime

    def id(self, source: str = "lime", seed: int | None = None, **more: Any) -> str:
        recipe = {**self.recipe, "source": source, **({"seed": self.seed if seed is None else seed} if source == "random" else {}), **more}
        return rf.masks_id(self.split, recipe)


@dataclass
class Study:
    run: Run
    eps_train: float = 0.03
    alpha: float = 1.0
    lam: float = 1.0
    models: dict[str, TrainResult] = field(default_factory=dict)
    refined: dict[tuple, TrainResult] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self):
        P = self.run.profile
        self.cfg = sp.identify_config(P.identify, self.run.seed)  # notebook 03's defaults: its cached scores are reused
        self.models = {n: zoo.lazy(n, P, self.run.seed) for n in zoo.BASELINES}  # built only if a record is missing
        ref = self.models["resnet50_cifar10"]
        self.reference = (ref, ref.config_hash)
        self.tests = {ds: load_split(ds, train=False, n=P.refine.n_eval, seed=self.run.seed) for ds in ("cifar10", "cifar100")}
        self.fgsm, self.pgd = Attack("fgsm"), Attack("pgd", steps=P.pgd.steps, restarts=P.pgd.restarts)
        self.specs = {s.name: s for s in rf.ablation_specs(self.eps_train, self.alpha, self.lam)}
        self.masks: dict[str, Masks] = {}

    # ---- pieces -----------------------------------------------------------------------------------
    def grid(self, dataset: str) -> dict[Attack, list[float]]:
        """Paper A's eps 0.01 / 0.03 read as pixels and as normalised inputs."""
        s = normalised_eps_scale(dataset)
        return {self.fgsm: [0.01 * s, 0.03 * s, 0.01, 0.03], self.pgd: [0.01 * s, 0.01, 0.03]}

    def figure_points(self) -> dict[str, tuple[dict | None, float | None]]:
        """The ablation figure's points, each label saying how the paper's eps was read."""
        e = 0.01 * normalised_eps_scale("cifar10")
        return {"clean": (None, None),
                f"PGD-{self.pgd.steps} @ {e:.4f} px (paper's 0.01, normalised reading)": (self.pgd.spec(e), canonical_eps(e)),
                f"PGD-{self.pgd.steps} @ 0.01 px (paper's 0.01, pixel reading)": (self.pgd.spec(0.01), 0.01)}

    @property
    def robust_point(self) -> str:
        """The robust accuracy Algorithm 1 watches: PGD at the paper's 0.01 read as normalised."""
        return f"pgd-{self.pgd.steps}@{0.01 * normalised_eps_scale('cifar10'):.4g}"

    def identification(self, tr, split, reference: bool = True, explainer=None) -> Masks:
        """The (lazy) identification of `tr` on `split` under this study's rules."""
        P = self.run.profile
        ref = self.reference if reference else None
        recipe = {"model": tr.config_hash, "reference": ref and ref[1], "cfg": self.cfg.to_dict(),
                  **({"explainer": explainer.key()} if explainer is not None else {})}
        return Masks(split, lambda: sp.scores_for(tr, tr.config_hash, split, self.cfg, P.name, chunk=P.identify.chunk,
                                                  reference=ref, explainer=explainer),
                     self.cfg, recipe, self.run.seed)

    def masks_for(self, dataset: str) -> Masks:
        if dataset not in self.masks:
            split = sp.identification_split(dataset, self.run.profile.identify, self.run.seed)
            self.masks[dataset] = self.identification(self.models[f"resnet18_{dataset}"], split, reference=dataset == "cifar10")
        return self.masks[dataset]

    def refine(self, init, spec: rf.RefineSpec, split, pixels: Callable[[], torch.Tensor], name: str, *, masks_id: str,
               seed: int | None = None, budget=None, commit: bool = False, arch=None) -> Lazy:
        """`init` fine-tuned with `spec` on `split` under the masks `pixels()` names `masks_id`:
        a lazy handle, trained (or loaded) only when a record of it is missing. commit=True: one of
        the checkpoints a reported profile commits (COMMITTED_ROWS, the SHAP row, Algorithm 1's
        later rounds: the models a reader would attack), listed in checkpoints/MANIFEST.json."""
        P = self.run.profile
        seed = self.run.seed if seed is None else seed
        budget, arch = budget or P.refine, arch or P.models["resnet18"]  # arch: another width (notebook 11)
        cfg = rf.refine_config(init.config_hash, spec, split, budget=budget, model=arch, masks_id=masks_id, seed=seed)

        def build() -> TrainResult:
            return rf.refine(init, spec, rf.with_masks(split, pixels()), budget=budget, model=arch,
                             store=P.name, name=name, masks_id=masks_id, seed=seed,
                             manifest=commit and P.commit_checkpoints)
        return lazy_model(name, cfg, build)

    def refine_with(self, init, spec: rf.RefineSpec, m: Masks, name: str, *, seed: int | None = None,
                    mask_seed: int | None = None, commit: bool = False, budget=None, arch=None) -> Lazy:
        """`init` refined with `spec` on `m`'s images under its LIME masks, or under the random
        control's drawn with `mask_seed` (default: the study's seed) when the spec says so."""
        src = "random" if spec.mask_source == "random" else "lime"
        return self.refine(init, spec, m.split, lambda: m.pixels(src, mask_seed), name, seed=seed,
                           masks_id=m.id(src, mask_seed), commit=commit, budget=budget, arch=arch)

    def refined_by(self, explainer=None) -> Lazy:
        """The full method (mask + reg + adv) on CIFAR-10 with the spurious masks that `explainer`'s
        attributions give under the same rules (None: LIME, notebook 04's full row and cache entry)."""
        base, full = self.models["resnet18_cifar10"], self.specs[rf.FULL]
        if explainer is None:
            return self.refine_with(base, full, self.masks_for("cifar10"), f"resnet18_cifar10_refine-{full.key()}",
                                    commit=self._commits(full))
        m = self.identification(base, sp.identification_split("cifar10", self.run.profile.identify, self.run.seed),
                                explainer=explainer)
        return self.refine_with(base, full, m, f"resnet18_cifar10_refine-{full.key()}-{explainer.name}",
                                commit=self._commits(full))

    def _commits(self, spec: rf.RefineSpec, *rows: str) -> bool:
        """Is this model one of the committed checkpoints? The study's own eps and lambda only."""
        return (spec.name in (rows or COMMITTED_ROWS) and spec.lam == self.lam
                and canonical_eps(spec.eps) == canonical_eps(self.specs[spec.name].eps))

    def assess(self, tr, dataset: str, setting: dict[str, Any], extra: dict | None = None) -> dict[str, float]:
        """Attack `tr` on the grid, record accuracies and training time; one summary row (%)."""
        ctx = self.run.context(model=f"resnet18_{dataset}", model_hash=tr.config_hash, **setting)
        recs = self.run.add(evaluate(tr, self.tests[dataset], self.grid(dataset), context=ctx,
                                     seed=self.run.seed, progress=False))
        secs = self.run.train_time(tr, model=f"resnet18_{dataset}", data=dataset, extra=extra, **setting)["value"]
        self.run.save(quiet=True)  # after every model: an interrupted notebook resumes from the results file
        m = self._points_from(recs)
        self.rows.append({"dataset": dataset, "model": _label(dataset, setting), **{k: 100 * v for k, v in m.items()},
                          "train s": round(secs, 1)})
        return m

    def table(self, dataset: str, contains: str = "") -> pd.DataFrame:
        rows = [r for r in self.rows if r["dataset"] == dataset and contains in r["model"]]
        return pd.DataFrame(rows).set_index("model").drop(columns="dataset").round(2)

    # ---- the notebook's sections -----------------------------------------------------------------
    def baselines(self) -> pd.DataFrame:
        self.base_metrics = {ds: self.assess(self.models[f"resnet18_{ds}"], ds, {}) for ds in ("cifar10", "cifar100")}
        return pd.DataFrame(self.rows).set_index(["dataset", "model"]).round(2)

    def ablation(self) -> pd.DataFrame:
        """Every spec on CIFAR-10 (LIME masks; the random-mask control gets random ones)."""
        m, b10 = self.masks_for("cifar10"), self.models["resnet18_cifar10"]
        for spec in self.specs.values():
            tr = self.refine_with(b10, spec, m, f"resnet18_cifar10_refine-{spec.key()}", commit=self._commits(spec))
            self.refined[(spec.name, "cifar10", self.run.seed, spec.lam)] = tr
            self.assess(tr, "cifar10", spec.setting())
        return self.table("cifar10")

    def algorithm1(self, tol_acc: float, tol_jaccard: float) -> pd.DataFrame:
        """Algorithm 1 from the baseline with the full method; round 1 is the ablation's full row.
        A round whose records are all in the results file is read back, not recomputed."""
        m, b10, full = self.masks_for("cifar10"), self.models["resnet18_cifar10"], self.specs[rf.FULL]
        P = self.run.profile
        common = dict(model="resnet18_cifar10", model_hash=None, data="cifar10", n=len(m.split))

        def stored_round(r):
            """The round's identification records, if a run has made them: {metric: record}."""
            setting = {**full.setting(), "round": r}
            found = {}
            for metric in ("flagged_segment_frac", "flagged_pixel_frac", "round_time_s") + (("jaccard",) if r > 1 else ()):
                extra = {"compared_to": "previous round"} if metric == "jaccard" else {}
                t = make_record(**self.run.context(**{k: v for k, v in common.items() if k in ("model", "model_hash")},
                                                   **extra, **setting),
                                dataset="cifar10", metric=metric, value=None, n=len(m.split), seed=self.run.seed)
                found[metric] = stored(t)
            return found if all(found.values()) else None

        def identify_round(tr, r):
            masks = m if r == 1 else self.identification(tr, m.split)
            known = stored_round(r)
            if known is not None:
                return masks, known
            f = masks.flags
            return masks, float(f.spurious.sum() / sp.valid(masks.scores.counts, f.spurious.shape[1]).sum())

        def refine_round(tr, masks, r):
            name = f"resnet18_cifar10_refine-{full.key()}" if r == 1 else f"resnet18_cifar10_alg1-round{r}"
            return self.refine_with(tr, full, masks, name, commit=self._commits(full))

        self.final10, history = rf.algorithm1(
            b10, full, identify_round, refine_round, lambda tr, r: self.assess(tr, "cifar10", {**full.setting(), "round": r}),
            rounds=P.refine.rounds, robust_key=self.robust_point, tol_acc=tol_acc, tol_jaccard=tol_jaccard)
        self.rounds = len(history)
        rows = []
        for h in history:
            setting = {**full.setting(), "round": h.round}
            if h.stored:
                self.run.add(h.stored.values())
            else:
                self.run.record(**common, metric="flagged_segment_frac", value=h.flagged_segment_frac, **setting)
                self.run.record(**common, metric="flagged_pixel_frac", value=h.flagged_pixel_frac, **setting)
                self.run.record(**common, metric="round_time_s", value=h.wall_time_s, wall_time_s=h.wall_time_s, **setting)
                if h.jaccard_to_previous is not None:
                    self.run.record(**common, metric="jaccard", value=h.jaccard_to_previous, compared_to="previous round", **setting)
            rows.append({"round": h.round, "flagged segments (%)": 100 * h.flagged_segment_frac,
                         "flagged pixels (%)": 100 * h.flagged_pixel_frac, "Jaccard to previous": h.jaccard_to_previous,
                         **{k: 100 * v for k, v in h.metrics.items()}, "round time (s)": h.wall_time_s,
                         "converged": h.converged})
        print(f"Algorithm 1: {len(history)} round(s), converged: {history[-1].converged}")
        return pd.DataFrame(rows).set_index("round").round(3)

    def class_masks(self) -> pd.DataFrame:
        """The full method with one mask per class (the union of its images' masks) on more images,
        for the same number of optimisation steps."""
        P, m, full = self.run.profile, self.masks_for("cifar10"), self.specs[rf.FULL]
        big = load_split("cifar10", train=True, n=P.refine.class_scope_n, seed=self.run.seed + 1)
        epochs = max(1, round(P.refine.epochs * len(m.split) / len(big)))
        pixels = lambda: sp.class_masks(m.lime, m.split.y.cpu(), 10)[big.y.cpu()]  # noqa: E731
        tr = self.refine(self.models["resnet18_cifar10"], full, big, pixels, "resnet18_cifar10_refine-classmask",
                         budget=replace(P.refine, epochs=epochs), masks_id=m.id("lime", scope="class", images=sp.images_key(big)))
        self.assess(tr, "cifar10", {**full.setting(), "mask_scope": "class"}, extra={"images": len(big), "epochs": epochs})
        return self.table("cifar10", rf.FULL)

    def cifar100(self) -> pd.DataFrame:
        m, b100 = self.masks_for("cifar100"), self.models["resnet18_cifar100"]
        for name in CIFAR100_ROWS:
            spec = self.specs[name]
            tr = self.refine_with(b100, spec, m, f"resnet18_cifar100_refine-{spec.key()}", commit=self._commits(spec, rf.FULL))
            self.refined[(name, "cifar100", self.run.seed, spec.lam)] = tr
            self.assess(tr, "cifar100", spec.setting())
        return self.table("cifar100")

    def shortcut(self) -> pd.DataFrame:
        """Refine the planted-shortcut model: does the method remove reliance on the squares?"""
        P, seed = self.run.profile, self.run.seed
        planted = zoo.shortcut_data(P, seed)
        sc = zoo.lazy("resnet18_cifar10_shortcut", P, seed, planted=planted)
        from ..shortcuts import planted_subset
        sub = planted_subset(planted[0], P.identify.n_images, seed)
        m = self.identification(sc, sub.split)
        clean_test = load_split("cifar10", train=False, n=P.n_test, seed=seed)
        variants = {"shortcut model": (sc, {})}
        for name in SHORTCUT_ROWS:
            spec = self.specs[name]
            variants[name] = (self.refine_with(sc, spec, m, f"resnet18_cifar10_shortcut_refine-{spec.key()}"), spec.setting())
        rows = []
        for name, (tr, setting) in variants.items():
            row = {"model": name}
            for test_name, split in (("clean", clean_test), ("correlated", planted[1].split), ("decorrelated", planted[2].split)):
                r = self.run.record_once(lambda: accuracy(tr.model, split), model="resnet18_cifar10_shortcut",
                                         model_hash=tr.config_hash, data=f"cifar10-shortcut-{test_name}",
                                         metric="accuracy", n=len(split), **setting)
                row[test_name] = 100 * r["value"]
            row["reliance (corr - decorr, pp)"] = row["correlated"] - row["decorrelated"]
            rows.append(row)
        return pd.DataFrame(rows).set_index("model").round(2)

    def strong_attacks(self) -> pd.DataFrame:
        """APGD-CE beside PGD for the final, fast-AT and baseline models: does PGD overstate robustness?"""
        s10, apgd = normalised_eps_scale("cifar10"), Attack("apgd-ce", steps=self.pgd.steps)
        fast = "control: fast AT (eps 8/255, step 10/255)"
        rows = []
        for label, tr, setting in (("Algorithm 1 final", self.final10, {**self.specs[rf.FULL].setting(), "round": self.rounds}),
                                   ("control: fast AT", self.refined[(fast, "cifar10", self.run.seed, self.lam)], self.specs[fast].setting()),
                                   ("baseline", self.models["resnet18_cifar10"], {})):
            ctx = self.run.context(model="resnet18_cifar10", model_hash=tr.config_hash, **setting)
            recs = self.run.add(evaluate(tr, self.tests["cifar10"], {apgd: [0.01 * s10, 0.01, 0.03]}, context=ctx,
                                         seed=self.run.seed, progress=False)[1:])  # the clean record is assess's
            pgd = self._points(tr.config_hash, "pgd")
            rows.append({"model": label, **{k: 100 * v for k, v in {**self._points_from(recs), **pgd}.items()}})
        return pd.DataFrame(rows).set_index("model").round(2)

    def gains(self) -> dict[str, pd.DataFrame]:
        """Refined minus baseline at the paper's points, both eps readings, beside the paper's gains."""
        out = {}
        for ds, tr, setting in (("cifar10", self.final10, {**self.specs[rf.FULL].setting(), "round": self.rounds}),
                                ("cifar100", self.refined[(rf.FULL, "cifar100", self.run.seed, self.lam)], self.specs[rf.FULL].setting())):
            base = self._frame(self.models[f"resnet18_{ds}"].config_hash, ds)
            mine = self._frame(tr.config_hash, ds)
            out[ds] = t = paper_a_refined_comparison(base, mine, ds)
            for _, row in t.iterrows():
                attack = self.fgsm if row["attack"] == "FGSM" else self.pgd
                eps = pixel_eps(row["paper eps"], ds, row["eps reading"])
                self.run.record(model=f"resnet18_{ds}", model_hash=tr.config_hash, data=ds, metric="accuracy_gain",
                                value=row["our gain (pp)"] / 100, n=len(self.tests[ds]), attack=attack.spec(eps), eps=eps,
                                eps_reading=row["eps reading"], **setting)
        return out

    def seeds(self, extra_seeds: list[int]) -> pd.DataFrame:
        """The rows that decide what LIME adds, fine-tuned with more seeds: mean and std."""
        m, b10 = self.masks_for("cifar10"), self.models["resnet18_cifar10"]
        seeds = [self.run.seed] + list(extra_seeds)
        rows = []
        for name in SEED_ROWS:
            spec = self.specs[name]
            for s in seeds:
                tr = self.refined[(name, "cifar10", self.run.seed, self.lam)] if s == self.run.seed else self.refine_with(
                    b10, spec, m, f"resnet18_cifar10_refine-{spec.key()}-seed{s}", seed=s, mask_seed=s)
                if s != self.run.seed:
                    self.run.add(evaluate(tr, self.tests["cifar10"], self.grid("cifar10"), seed=self.run.seed,
                                          context=self.run.context(model="resnet18_cifar10", model_hash=tr.config_hash,
                                                                   **spec.setting(train_seed=s)), progress=False))
                rows.append({"row": name, "seed": s, **{k: 100 * v for k, v in self._points(tr.config_hash).items()}})
        df = pd.DataFrame(rows)
        cols = ["clean", self.robust_point, f"pgd-{self.pgd.steps}@0.01", "fgsm@0.03"]
        summary = df.groupby("row", sort=False)[cols].agg(["mean", "std"]).round(2)
        points = {"clean": (None, None), self.robust_point: (self.pgd, 0.01 * normalised_eps_scale("cifar10")),
                  f"pgd-{self.pgd.steps}@0.01": (self.pgd, 0.01), "fgsm@0.03": (self.fgsm, 0.03)}
        for name in SEED_ROWS:
            setting = {k: v for k, v in self.specs[name].setting().items() if k != "train_seed"}
            for c, (attack, eps) in points.items():
                mean, std = df[df["row"] == name][c].mean() / 100, df[df["row"] == name][c].std() / 100
                common = dict(model="resnet18_cifar10", data="cifar10", n=len(self.tests["cifar10"]),
                              attack=attack.spec(eps) if attack else None, eps=eps,
                              eps_reading=eps_reading(eps, "cifar10"),
                              train_seeds=seeds, **setting)
                self.run.record(metric="accuracy_mean_over_seeds", value=mean, **common)
                self.run.record(metric="accuracy_std_over_seeds", value=std, **common)
        return summary

    def lambda_sweep(self, lambdas: list[float]) -> pd.DataFrame:
        m, b10 = self.masks_for("cifar10"), self.models["resnet18_cifar10"]
        rows = []
        for lam in lambdas:
            for name in ROW_LAMBDA:
                spec = replace(self.specs[name], lam=lam)
                tr = self.refine_with(b10, spec, m, f"resnet18_cifar10_refine-{spec.key()}")
                self.run.add(evaluate(tr, self.tests["cifar10"], self.grid("cifar10"), seed=self.run.seed,
                                      context=self.run.context(model="resnet18_cifar10", model_hash=tr.config_hash,
                                                               **spec.setting()), progress=False))
                rows.append({"lambda": lam, "row": name, **{k: 100 * v for k, v in self._points(tr.config_hash).items()}})
        for name in ROW_LAMBDA:
            tr = self.refined[(name, "cifar10", self.run.seed, self.lam)]
            rows.append({"lambda": self.lam, "row": name, **{k: 100 * v for k, v in self._points(tr.config_hash).items()}})
        cols = ["clean", self.robust_point, f"pgd-{self.pgd.steps}@0.01", "fgsm@0.03"]
        return pd.DataFrame(rows).sort_values(["row", "lambda"]).set_index(["row", "lambda"])[cols].round(2)

    def lime_maps(self, k: int = 8):
        """LIME maps of the baseline and the final refined model on the same test images (the maps
        are stored beside the results: a rerun redraws them without building either model)."""
        from .. import figures
        from ..data import class_names
        from ..explain import lime

        P = self.run.profile
        xt, yt = to_float(self.tests["cifar10"].x[:k]), self.tests["cifar10"].y[:k]
        for label, tr in (("baseline", self.models["resnet18_cifar10"]), ("refined (Algorithm 1)", self.final10)):
            def compute(tr=tr):
                segs, counts = segment_batch(xt, "slic", n_segments=50)
                res = lime(tr.model, xt, yt, segs, counts, P.lime.n_samples, self.run.seed, chunk=k, progress=False)
                with torch.no_grad():
                    preds = tr.model(xt).argmax(1)
                return {"maps": to_pixels(res.beta, segs), "preds": preds}
            d = self.run.figure_data(f"04_lime_maps_{label.split(' ')[0]}", {"model": tr.config_hash, "k": k,
                                     "samples": P.lime.n_samples, "seed": self.run.seed, "images": self.tests["cifar10"].name}, compute)
            fig = figures.lime_maps(xt, d["maps"], yt, d["preds"], class_names("cifar10"), title=f"LIME, {label} ResNet-18")
            self.run.figure(fig, "04_lime_maps_" + label.split(" ")[0])

    # ---- lookups of this run's records ------------------------------------------------------------
    def _frame(self, model_hash: str, dataset: str) -> pd.DataFrame:
        from ..results import records_frame

        df = records_frame(self.run.records)
        return df[(df["model_hash"] == model_hash) & (df["dataset"] == dataset) & (df["metric"] == "accuracy")]

    def _points(self, model_hash: str, attack: str | None = None) -> dict[str, float]:
        df = self._frame(model_hash, "cifar10")
        if attack is not None:
            df = df[df["attack"] == attack]
        return metrics_by_point(df)

    def _points_from(self, recs: list[dict[str, Any]]) -> dict[str, float]:
        from ..results import records_frame

        return metrics_by_point(records_frame(recs))


def _label(dataset: str, setting: dict[str, Any]) -> str:
    from ..tables import model_label

    return model_label({"model": f"resnet18_{dataset}", **setting})
