"""Notebook 04's study: each refinement row fine-tuned from the baseline, attacked and recorded.

Every row fine-tunes the same baseline on the same identified training images for the same steps,
so rows differ only in the loss (refine.RefineSpec). Results go through the Run as schema-2
records: `model` is the zoo name, `setting` the refinement (spec.setting()), the Algorithm 1 round,
the mask scope, or the seeds a mean is over. Methods return DataFrames (accuracy in %) to display.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import torch

from .. import zoo
from ..attacks import Attack
from ..data import load_split, to_float
from ..evaluate import evaluate
from ..notebook import Run
from ..results import canonical_eps
from ..papers import eps_reading, normalised_eps_scale, paper_a_refined_comparison, pixel_eps
from ..segments import segment_batch, to_pixels
from ..tables import metrics_by_point
from ..train import TrainResult, accuracy
from . import refine as rf
from . import spurious as sp

ROW_LAMBDA = ("reg+adv", "control: gradient penalty on all pixels + adv", rf.FULL)  # rows the lambda sweep varies
SEED_ROWS = (rf.FULL, "control: random mask + reg + adv", "reg+adv", "control: gradient penalty on all pixels + adv", "adv")
CIFAR100_ROWS = (rf.FULL, "adv", "control: fast AT (eps 8/255, step 10/255)")
SHORTCUT_ROWS = ("fine-tune only (CE)", "adv", rf.FULL, "control: random mask + reg + adv")


@dataclass
class Masks:
    """A dataset's identification split, its scores and the LIME / random-control pixel masks."""
    split: Any
    scores: sp.Scores
    flags: sp.Flags
    lime: torch.Tensor
    random: torch.Tensor


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
        self.models = {n: zoo.get(n, P, self.run.seed) for n in zoo.BASELINES}
        self.reference = (self.models["resnet50_cifar10"].model, self.models["resnet50_cifar10"].config_hash)
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

    def masks_for(self, dataset: str) -> Masks:
        if dataset not in self.masks:
            P, b = self.run.profile, self.models[f"resnet18_{dataset}"]
            split = sp.identification_split(dataset, P.identify, self.run.seed)
            scores = sp.scores_for(b.model, b.config_hash, split, self.cfg, P.name, chunk=P.identify.chunk,
                                   reference=self.reference if dataset == "cifar10" else None)
            flags = sp.identify(scores, self.cfg)
            rand = sp.random_flags(flags.spurious, scores.counts, self.run.seed)
            self.masks[dataset] = Masks(split, scores, flags, sp.pixel_masks(flags.spurious, scores.segments),
                                        sp.pixel_masks(rand, scores.segments))
        return self.masks[dataset]

    def refine(self, init: TrainResult, spec: rf.RefineSpec, split, pixels: torch.Tensor, name: str,
               seed: int | None = None, budget=None, masks_tag: str = "") -> TrainResult:
        P = self.run.profile
        return rf.refine(init, spec, rf.with_masks(split, pixels), budget=budget or P.refine, model=P.models["resnet18"],
                         store=P.name, name=name, masks_id=rf.masks_id(split, pixels) + masks_tag,
                         seed=self.run.seed if seed is None else seed)

    def refined_by(self, explainer=None) -> TrainResult:
        """The full method (mask + reg + adv) on CIFAR-10 with the spurious masks that `explainer`'s
        attributions give under the same rules (None: LIME, notebook 04's full row and cache entry)."""
        P, base, full = self.run.profile, self.models["resnet18_cifar10"], self.specs[rf.FULL]
        if explainer is None:
            m = self.masks_for("cifar10")
            return self.refine(base, full, m.split, m.lime, f"resnet18_cifar10_refine-{full.key()}")
        split = sp.identification_split("cifar10", P.identify, self.run.seed)
        scores = sp.scores_for(base.model, base.config_hash, split, self.cfg, P.name, chunk=P.identify.chunk,
                               reference=self.reference, explainer=explainer)
        pixels = sp.pixel_masks(sp.identify(scores, self.cfg).spurious, scores.segments)
        return self.refine(base, full, split, pixels, f"resnet18_cifar10_refine-{full.key()}-{explainer.name}")

    def assess(self, tr: TrainResult, dataset: str, setting: dict[str, Any], extra: dict | None = None) -> dict[str, float]:
        """Attack `tr` on the grid, record accuracies and training time; one summary row (%)."""
        ctx = self.run.context(model=f"resnet18_{dataset}", model_hash=tr.config_hash, **setting)
        recs = self.run.add(evaluate(tr.model, self.tests[dataset], self.grid(dataset), context=ctx,
                                     seed=self.run.seed, progress=False))
        secs = sum(h.get("epoch_time_s", 0) for h in tr.history)
        self.run.record(model=f"resnet18_{dataset}", model_hash=tr.config_hash, data=dataset, metric="train_time_s",
                        value=secs, n=len(tr.history), wall_time_s=secs, extra=extra, **setting)
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
        print(f"spurious pixels: {100 * m.lime.float().mean():.1f}% (LIME), {100 * m.random.float().mean():.1f}% (random control)")
        for spec in self.specs.values():
            pixels = m.random if spec.mask_source == "random" else m.lime
            tr = self.refine(b10, spec, m.split, pixels, f"resnet18_cifar10_refine-{spec.key()}")
            self.refined[(spec.name, "cifar10", self.run.seed, spec.lam)] = tr
            self.assess(tr, "cifar10", spec.setting())
        return self.table("cifar10")

    def algorithm1(self, tol_acc: float, tol_jaccard: float) -> pd.DataFrame:
        """Algorithm 1 from the baseline with the full method; round 1 is the ablation's full row."""
        m, b10, full = self.masks_for("cifar10"), self.models["resnet18_cifar10"], self.specs[rf.FULL]
        P = self.run.profile

        def identify_round(tr):
            s = sp.scores_for(tr.model, tr.config_hash, m.split, self.cfg, P.name, reference=self.reference,
                              chunk=P.identify.chunk)
            f = sp.identify(s, self.cfg)
            return f.spurious, sp.pixel_masks(f.spurious, s.segments), float(f.spurious.sum() / sp.valid(s.counts, f.spurious.shape[1]).sum())

        def refine_round(tr, pixels, r):
            name = f"resnet18_cifar10_refine-{full.key()}" if r == 1 else f"resnet18_cifar10_alg1-round{r}"
            return self.refine(tr, full, m.split, pixels, name)

        self.final10, history = rf.algorithm1(
            b10, full, identify_round, refine_round, lambda tr, r: self.assess(tr, "cifar10", {**full.setting(), "round": r}),
            rounds=P.refine.rounds, robust_key=self.robust_point, tol_acc=tol_acc, tol_jaccard=tol_jaccard)
        self.rounds = len(history)
        rows = []
        for h in history:
            setting = {**full.setting(), "round": h.round}
            common = dict(model="resnet18_cifar10", model_hash=None, data="cifar10", n=len(m.split))
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
        cm10 = sp.class_masks(m.lime, m.split.y.cpu(), 10)
        big = load_split("cifar10", train=True, n=P.refine.class_scope_n, seed=self.run.seed + 1)
        epochs = max(1, round(P.refine.epochs * len(m.split) / len(big)))
        tr = self.refine(self.models["resnet18_cifar10"], full, big, cm10[big.y.cpu()], "resnet18_cifar10_refine-classmask",
                         budget=replace(P.refine, epochs=epochs), masks_tag="-class")
        self.assess(tr, "cifar10", {**full.setting(), "mask_scope": "class"}, extra={"images": len(big), "epochs": epochs})
        return self.table("cifar10", rf.FULL)

    def cifar100(self) -> pd.DataFrame:
        m, b100 = self.masks_for("cifar100"), self.models["resnet18_cifar100"]
        for name in CIFAR100_ROWS:
            spec = self.specs[name]
            tr = self.refine(b100, spec, m.split, m.lime, f"resnet18_cifar100_refine-{spec.key()}")
            self.refined[(name, "cifar100", self.run.seed, spec.lam)] = tr
            self.assess(tr, "cifar100", spec.setting())
        return self.table("cifar100")

    def shortcut(self) -> pd.DataFrame:
        """Refine the planted-shortcut model: does the method remove reliance on the squares?"""
        P, seed = self.run.profile, self.run.seed
        planted = zoo.shortcut_data(P, seed)
        sc = zoo.get("resnet18_cifar10_shortcut", P, seed, planted=planted)
        from ..shortcuts import planted_subset
        sub = planted_subset(planted[0], P.identify.n_images, seed)
        scores = sp.scores_for(sc.model, sc.config_hash, sub.split, self.cfg, P.name, reference=self.reference,
                               chunk=P.identify.chunk)
        flags = sp.identify(scores, self.cfg)
        pix = sp.pixel_masks(flags.spurious, scores.segments)
        rand = sp.pixel_masks(sp.random_flags(flags.spurious, scores.counts, seed), scores.segments)
        clean_test = load_split("cifar10", train=False, n=P.n_test, seed=seed)
        variants = {"shortcut model": (sc, {})}
        for name in SHORTCUT_ROWS:
            spec = self.specs[name]
            tr = self.refine(sc, spec, sub.split, rand if spec.mask_source == "random" else pix,
                             f"resnet18_cifar10_shortcut_refine-{spec.key()}")
            variants[name] = (tr, spec.setting())
        rows = []
        for name, (tr, setting) in variants.items():
            row = {"model": name}
            for test_name, split in (("clean", clean_test), ("correlated", planted[1].split), ("decorrelated", planted[2].split)):
                a = accuracy(tr.model, split)
                row[test_name] = 100 * a
                self.run.record(model="resnet18_cifar10_shortcut", model_hash=tr.config_hash, data=f"cifar10-shortcut-{test_name}",
                                metric="accuracy", value=a, n=len(split), **setting)
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
            recs = self.run.add(evaluate(tr.model, self.tests["cifar10"], {apgd: [0.01 * s10, 0.01, 0.03]}, context=ctx,
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
                tr = self.refined[(name, "cifar10", self.run.seed, self.lam)] if s == self.run.seed else self.refine(
                    b10, spec, m.split, sp.pixel_masks(sp.random_flags(m.flags.spurious, m.scores.counts, s), m.scores.segments)
                    if spec.mask_source == "random" else m.lime, f"resnet18_cifar10_refine-{spec.key()}-seed{s}", seed=s)
                if s != self.run.seed:
                    self.run.add(evaluate(tr.model, self.tests["cifar10"], self.grid("cifar10"), seed=self.run.seed,
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
                tr = self.refine(b10, spec, m.split, m.lime, f"resnet18_cifar10_refine-{spec.key()}")
                self.run.add(evaluate(tr.model, self.tests["cifar10"], self.grid("cifar10"), seed=self.run.seed,
                                      context=self.run.context(model="resnet18_cifar10", model_hash=tr.config_hash,
                                                               **spec.setting()), progress=False))
                rows.append({"lambda": lam, "row": name, **{k: 100 * v for k, v in self._points(tr.config_hash).items()}})
        for name in ROW_LAMBDA:
            tr = self.refined[(name, "cifar10", self.run.seed, self.lam)]
            rows.append({"lambda": self.lam, "row": name, **{k: 100 * v for k, v in self._points(tr.config_hash).items()}})
        cols = ["clean", self.robust_point, f"pgd-{self.pgd.steps}@0.01", "fgsm@0.03"]
        return pd.DataFrame(rows).sort_values(["row", "lambda"]).set_index(["row", "lambda"])[cols].round(2)

    def lime_maps(self, k: int = 8):
        """LIME maps of the baseline and the final refined model on the same test images."""
        from .. import figures
        from ..data import class_names
        from ..explain import lime

        P = self.run.profile
        xt, yt = to_float(self.tests["cifar10"].x[:k]), self.tests["cifar10"].y[:k]
        segs, counts = segment_batch(xt, "slic", n_segments=50)
        for label, tr in (("baseline", self.models["resnet18_cifar10"]), ("refined (Algorithm 1)", self.final10)):
            res = lime(tr.model, xt, yt, segs, counts, P.lime.n_samples, self.run.seed, chunk=k, progress=False)
            with torch.no_grad():
                preds = tr.model(xt).argmax(1)
            fig = figures.lime_maps(xt, to_pixels(res.beta, segs), yt, preds, class_names("cifar10"),
                                    title=f"LIME, {label} ResNet-18")
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
