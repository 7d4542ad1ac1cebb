"""Paper A at a scale that can decide (notebook 11): do LIME-guided masks beat random masks of the
same size once identification has seen more training images (N) and the network is wider?

- **Identification, nested.** At each width the ResNet-18 baseline is identified (eqs 4-7, with the
  ResNet-50 reference, as in notebook 03) on class-balanced training subsets of the sizes
  `scaling.n_images`. `data.balanced_subset` is nested in n for a fixed seed, so identification runs
  in rings: the smallest N exactly as notebook 03 ran it (at width 1 its committed scores), then each
  larger N's new images in chunks of `scaling.chunk`, each kept in results/<profile>/identification
  (a run resumes per chunk). Scores are per image; each N's thresholds (global quantiles) are
  recomputed on its own images. Eq 6's noise is drawn per chunk: the same distribution, another draw.
- **The same refinement budget at every N.** A model fine-tunes the baseline for
  round(refine.epochs x N0 / N) epochs (at least 1) over its N images: in `cpu` 8 / 3 / 1 epochs at
  1,000 / 3,000 / 10,000, i.e. 8,000 / 9,000 / 10,000 image presentations. N changes the evidence
  behind the masks (and which images are seen), not how long the model trains.
- **Rows** at each (N, width): the full method, the random-mask control (per image as many random
  segments as LIME flags, drawn with the training seed) and reg+adv (no mask), `scaling.seeds`
  training seeds each, trained with FGSM at Paper A's 0.03 read as normalised (the reading closest
  to the paper in notebook 06); the full method and its control also at the pixel reading. At
  width 1 and the smallest N the names and configs are notebook 06's, so its checkpoints are reused.
- **Measurements** (`curves.measure`, per-image outcomes kept): clean, FGSM and PGD at Paper A's
  three eps under the family's reading on `scaling.test_images` class-balanced test images, and
  APGD-CE at 0.01 on the nested `strong` subset; `curves.paired` gives LIME minus random with its
  95% interval, the paired t-test and McNemar's exact test.
- **Planted squares.** The planted-shortcut model (notebook 03) identified in rings too: the share of
  its flagged pixels on the planted squares (precision), of the squares flagged (recall), and IoU,
  at each N, against the random control.

Everything runs as `tasks()` in priority order (the paired test at the largest N first), each
idempotent; `python -m replication.paper_a.scaling --profile cpu --hours H` works through them in
the background, and the notebook draws what is there.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch

from .. import zoo
from ..attacks import Attack
from ..data import balanced_subset, load_split
from ..notebook import Run
from ..progress import bar
from ..results import stored_where
from ..shortcuts import mask_scores
from . import curves
from . import refine as rf
from . import spurious as sp
from .study import Masks, Study

PAPER_EPS = (0.01, 0.02, 0.03)
ROWS = (rf.FULL, curves.RANDOM, "reg+adv")
PIXEL_ROWS = (rf.FULL, curves.RANDOM)  # also trained at the pixel reading
POINTS = [{"attack": a, "eps": e} for a in ("FGSM", "PGD") for e in PAPER_EPS]
STRONG_POINTS = [{"attack": "APGD", "eps": PAPER_EPS[0]}]  # APGD-CE on the nested strong subset
PLANTED_BY = ("spurious", "random segments, same count")
PLANTED_METRICS = [f"planted_{k}" for k in ("precision", "recall", "iou")]  # one planted point's records


def baseline_name(width_factor: float) -> str:
    return "resnet18_cifar10" if width_factor == 1 else f"resnet18x{width_factor:g}_cifar10"


@dataclass(frozen=True)
class Model:
    """One refined model of the study."""
    width: float
    n: int
    row: str
    seed: int
    reading: str


@dataclass(frozen=True)
class Task:
    kind: str                 # "identify" | "model" | "planted"
    width: float | None = None
    n: int | None = None
    model: Model | None = None

    def __str__(self) -> str:
        if self.model is not None:
            m = self.model
            return f"model x{m.width:g} N={m.n} {m.row} ({m.reading}) seed {m.seed}"
        return f"{self.kind} " + (f"x{self.width:g} " if self.width else "") + f"N={self.n}"


class Scaling:
    def __init__(self, run: Run):
        self.run, P = run, run.profile
        self.B, self.seed = P.scaling, run.seed
        if self.B.n_images[0] != P.identify.n_images:
            raise ValueError(f"scaling.n_images starts at {self.B.n_images[0]}, identify.n_images is "
                             f"{P.identify.n_images}: the smallest N must be notebook 03's identification")
        self.study = {r: Study(run, eps_train=curves.eps_train_for(r)) for r in curves.READINGS}
        self.cfg = self.study["normalised"].cfg
        ref = zoo.lazy("resnet50_cifar10", P, self.seed)
        self.reference = (ref, ref.config_hash)
        self.test = load_split("cifar10", train=False, n=self.B.test_images, seed=self.seed)
        strong = balanced_subset(self.test.y.cpu(), self.B.strong_images, self.seed + 1)
        self.index = {"all": torch.arange(len(self.test)), "strong": strong}
        self._train = self._planted = None
        self._masks: dict[Any, Masks] = {}
        self._planted_scores: dict[int, sp.Scores] = {}

    # ---- identification in rings --------------------------------------------------------------------
    def baseline(self, width: float):
        return zoo.lazy(baseline_name(width), self.run.profile, self.seed)

    def arch(self, width: float):
        m = self.run.profile.models["resnet18"]
        return replace(m, width=m.width * width)

    @property
    def train(self):
        if self._train is None:
            self._train = load_split("cifar10", train=True, seed=self.seed)
        return self._train

    @property
    def planted(self):
        if self._planted is None:
            self._planted = zoo.shortcut_data(self.run.profile, self.seed)[0]
        return self._planted

    def rings(self, labels: torch.Tensor, n: int) -> list[torch.Tensor]:
        """Dataset indices of each identification batch up to N = n: the smallest N whole, then the
        images each larger N adds, in chunks (their union is balanced_subset(labels, n, seed))."""
        ns = [m for m in self.B.n_images if m <= n]
        out = [balanced_subset(labels, ns[0], self.seed)]
        prev = out[0]
        for m in ns[1:]:
            idx = balanced_subset(labels, m, self.seed)
            new = idx[~torch.isin(idx, prev)]
            out += [new[c:c + self.B.chunk] for c in range(0, len(new), self.B.chunk)]
            prev = idx
        return out

    def _ring_args(self, model, split, idx: torch.Tensor) -> dict[str, Any]:
        """One ring's scores_for arguments: status asks the store about exactly these."""
        return {"model_hash": model.config_hash, "split": split.select(idx), "cfg": self.cfg, "reference": self.reference}

    def _scores(self, model, split, labels, n: int) -> sp.Scores:
        P, parts, where, rings = self.run.profile, [], [], self.rings(labels, n)
        for idx in bar(rings, desc=f"identify N={n}", enabled=len(rings) > 1):
            parts.append(sp.scores_for(model, **self._ring_args(model, split, idx), profile=P.name,
                                       chunk=P.identify.chunk, keep=True))
            where.append(idx)
        order = torch.argsort(torch.cat(where))  # the subset's own (sorted dataset index) order
        s = sp.concat(parts)
        return sp.Scores(**{k: None if v is None else v[order] for k, v in vars(s).items()})

    def recipe(self, model, n: int) -> dict[str, Any]:
        r = {"model": model.config_hash, "reference": self.reference[1], "cfg": self.cfg.to_dict()}
        ns = [m for m in self.B.n_images if m <= n]
        return r if len(ns) == 1 else {**r, "rings": ns, "chunk": self.B.chunk}  # notebook 03's recipe at the smallest N

    def masks(self, width: float, n: int) -> Masks:
        """The (lazy) identification of the width's baseline on N training images."""
        if (width, n) not in self._masks:
            tr, y = self.baseline(width), self.train.y.cpu()
            split = self.train.select(balanced_subset(y, n, self.seed))
            self._masks[(width, n)] = Masks(split, lambda: self._scores(tr, self.train, y, n), self.cfg,
                                            self.recipe(tr, n), self.seed)
        return self._masks[(width, n)]

    # ---- models -----------------------------------------------------------------------------------
    def models(self) -> list[Model]:
        """Every model, the paired test's first: by width, then N from the largest, then reading."""
        out = []
        for w in self.B.width_factors:
            for n in sorted(self.B.n_images, reverse=True):
                for reading, rows in (("normalised", ROWS), ("pixel", PIXEL_ROWS)):
                    out += [Model(w, n, row, s, reading) for row in rows for s in range(self.seed, self.seed + self.B.seeds)]
        return out

    def name(self, m: Model, spec: rf.RefineSpec) -> str:
        """Notebook 06's names at width 1 and the smallest N (its checkpoints are these models)."""
        own = "" if (m.width, m.n) == (1, self.B.n_images[0]) else f"-n{m.n}"
        return f"{baseline_name(m.width)}_refine-{spec.key()}{own}" + ("" if m.seed == self.seed else f"-seed{m.seed}")

    def refined(self, m: Model) -> curves.Refined:
        s, P = self.study[m.reading], self.run.profile
        spec, masks = s.specs[m.row], self.masks(m.width, m.n)
        budget = replace(P.refine, epochs=max(1, round(P.refine.epochs * self.B.n_images[0] / m.n)))
        tr = s.refine_with(self.baseline(m.width), spec, masks, self.name(m, spec), seed=m.seed, mask_seed=m.seed,
                           budget=budget, arch=self.arch(m.width))
        return curves.Refined(tr, {**spec.setting(train_seed=m.seed, eps_reading=m.reading), "n_identify": m.n,
                                   "width_factor": m.width, "refine_epochs": budget.epochs})

    def jobs(self, reading: str) -> list[curves.Job]:
        eps = curves.reading_eps(list(PAPER_EPS), "cifar10", (reading,))
        pgd, apgd = Attack("pgd", steps=self.B.pgd_steps), Attack("apgd-ce", steps=self.B.apgd_steps)
        return ([curves.Job(Attack("fgsm"), e) for e in eps] + [curves.Job(pgd, e) for e in eps]
                + [curves.Job(apgd, eps[0], "strong")])

    def measure(self, m: Model, progress: bool = True) -> list[dict[str, Any]]:
        """Train `m` if a record of it is missing, and attack it (records saved after each attack)."""
        return curves.measure(self.run, self.refined(m), self.test, self.index, self.jobs(m.reading),
                              batch_size=self.B.batch_size, progress=progress)

    # ---- planted squares --------------------------------------------------------------------------
    def planted_point(self, n: int) -> dict[str, dict[str, Any]]:
        """Precision, recall and IoU of the planted-shortcut model's flagged pixels against the planted
        squares on N planted training images (LIME's flags and the random control's)."""
        P, out = self.run.profile, {}
        sc = zoo.lazy("resnet18_cifar10_shortcut", P, self.seed)
        for by in PLANTED_BY:
            def compute(by=by):
                pl, y = self.planted, self.planted.split.y.cpu()
                idx = balanced_subset(y, n, self.seed)
                if n not in self._planted_scores:  # both flag sources read one identification
                    self._planted_scores[n] = self._scores(sc, pl.split, y, n)
                scores = self._planted_scores[n]
                flags = sp.identify(scores, self.cfg).spurious
                if by != "spurious":
                    flags = sp.random_flags(flags, scores.counts, self.seed)
                return mask_scores(sp.pixel_masks(flags, scores.segments), pl.mask[idx])
            got = self.run.records_once(lambda c=compute: {f"planted_{k}": v for k, v in c().items()},
                                        PLANTED_METRICS,
                                        model="resnet18_cifar10_shortcut", model_hash=sc.config_hash,
                                        data="cifar10-shortcut-correlated-train", n=n, flagged_by=by, n_identify=n)
            out[by] = got
        self.run.save(quiet=True)
        return out

    # ---- the plan -----------------------------------------------------------------------------------
    def tasks(self) -> list[Task]:
        """Priority order: width 1's identification, its models (largest N first), the planted squares,
        then the wider network's baseline, identification and models."""
        out = []
        for w in self.B.width_factors:
            out += [Task("identify", w, n) for n in self.B.n_images]
            out += [Task("model", model=m) for m in self.models() if m.width == w]
            if w == self.B.width_factors[0]:
                out += [Task("planted", n=n) for n in self.B.n_images]
        return out

    def do(self, t: Task, progress: bool = True) -> None:
        if t.kind == "identify":
            self.masks(t.width, t.n).flags  # noqa: B018 (computes and keeps the scores of every ring)
        elif t.kind == "model":
            self.run.add(self.measure(t.model, progress=progress))
        else:
            self.planted_point(t.n)

    def status(self, t: Task) -> str:
        """What of task `t` is stored, read without building a model or computing a score."""
        if t.kind == "identify":
            tr, y = self.baseline(t.width), self.train.y.cpu()
            rings = self.rings(y, t.n)
            have = sum(sp.scores_stored(**self._ring_args(tr, self.train, idx), profile=self.run.profile.name)
                       for idx in rings)
            return "done" if have == len(rings) else f"{have}/{len(rings)} rings stored"
        if t.kind == "model":
            m = self.refined(t.model)
            left = curves.missing(self.run, m, self.test, self.index, self.jobs(t.model.reading))
            return "done" if left == 0 else f"{left} record(s) missing"
        # the results file, not run.records: a fresh run holds only what it measured itself
        got = {r["setting"]["flagged_by"] for r in stored_where(self.run.experiment, self.run.profile.name,
                                                                 metric=PLANTED_METRICS,
                                                                 setting={"n_identify": t.n})}
        return "done" if got == set(PLANTED_BY) else "missing"

    def run_tasks(self, *, hours: float | None = None, kinds: tuple[str, ...] = ("identify", "model", "planted"),
                  progress: bool = True) -> list[tuple[str, float]]:
        """Work through tasks() (each skips what is stored); none starts after `hours`. [(task, seconds)]."""
        stop = None if hours is None else time.time() + 3600 * hours
        done = []
        for t in self.tasks():
            if t.kind not in kinds:
                continue
            if stop is not None and time.time() > stop:
                print(f"deadline: stopped before {t}", flush=True)
                break
            t0 = time.perf_counter()
            self.do(t, progress=progress)
            done.append((str(t), time.perf_counter() - t0))
            print(f"{t}: {done[-1][1]:.0f} s", flush=True)
        return done

    # ---- tables -------------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        recs = [r for r in self.run.records if r["metric"] in ("accuracy", "robust_accuracy")]
        return curves.frame(recs, curves.labels_of(recs))

    def paired_table(self, df: pd.DataFrame) -> pd.DataFrame:
        """LIME minus random at every (width, N, training reading, point) with both rows measured."""
        rows = []
        for (w, n), g in df.groupby(["width_factor", "n_identify"], sort=True):
            for subset, points in (("all", POINTS), ("strong", STRONG_POINTS)):
                p = curves.paired(g, points=points, subset=subset)
                if len(p) and subset == "strong":
                    p = p[p["point"] != "clean"]  # the strong subset's clean row repeats the one above on fewer images
                if len(p):
                    rows.append(p.assign(width=w, N=n, subset=subset))
        if not rows:
            return pd.DataFrame()
        out = pd.concat(rows, ignore_index=True)
        return out[["width", "N", "subset", *[c for c in out.columns if c not in ("width", "N", "subset")]]]

    def seed_table(self, df: pd.DataFrame) -> pd.DataFrame:
        """Accuracy (%) per (width, N, training reading, row, point): mean over seeds, 95% interval, seeds."""
        from ..papers import normalised_eps_scale

        d = df[(df["subset"] == "all") & df["refinement"].notna()].copy()
        scale = normalised_eps_scale("cifar10")
        d["point"] = ["clean" if r["point"] == "clean" else
                      f"{r['point'].split('-')[0].upper()} @ "
                      f"{float(r['eps']) / (scale if r['eps_train_reading'] == 'normalised' else 1):.2g}"
                      for _, r in d.iterrows()]  # Paper A's eps, read as the family was trained
        out = (d.groupby(["width_factor", "n_identify", "eps_train_reading", "row", "point"], sort=True)
               ["accuracy"].agg(mean="mean", ci95=lambda v: curves._ci95(list(v)), seeds="count").reset_index())
        return out.rename(columns={"width_factor": "width", "n_identify": "N", "eps_train_reading": "trained"}).round(2)

    def planted_table(self) -> pd.DataFrame:
        recs = [r for r in self.run.records if r["metric"].startswith("planted_")]
        rows: dict[tuple, dict[str, Any]] = {}
        for r in recs:
            k = (r["setting"]["n_identify"], r["setting"]["flagged_by"])
            rows.setdefault(k, {"N": k[0], "flagged by": k[1]})[r["metric"].removeprefix("planted_")] = r["value"]
        return pd.DataFrame(list(rows.values())).sort_values(["flagged by", "N"]).reset_index(drop=True) if rows else pd.DataFrame()

    def record_pairs(self, pairs: pd.DataFrame) -> None:
        """The paired tests as records (the report's claims read them): mean difference, its 95%
        interval, the paired t-test's and McNemar's p, per (width, N, training reading, point)."""
        from ..papers import eps_reading

        for _, r in pairs.iterrows():
            e = r["eps"] if r["eps"] == r["eps"] else None
            attack = None if e is None else {"FGSM": Attack("fgsm"), "PGD": Attack("pgd", steps=self.B.pgd_steps),
                                             "APGD": Attack("apgd-ce", steps=self.B.apgd_steps)}[r["point"].split(" ")[0]]
            common = dict(model="resnet18_cifar10", data="cifar10", n=int(r["n images"]), attack=attack.spec(e) if attack else None,
                          eps=e, eps_reading=eps_reading(e, "cifar10"), a=rf.FULL, b=curves.RANDOM,
                          eps_train_reading=r["eps_train reading"], seeds=int(r["seeds"]), n_identify=int(r["N"]),
                          width_factor=float(r["width"]), subset=r["subset"])
            self.run.record(metric="paired_difference_mean", value=r["LIME - random (pp)"] / 100, **common)
            self.run.record(metric="paired_difference_ci95", value=None if r["ci95 (pp)"] != r["ci95 (pp)"] else r["ci95 (pp)"] / 100, **common)
            self.run.record(metric="paired_t_p", value=None if r["paired t p"] != r["paired t p"] else r["paired t p"], **common)
            self.run.record(metric="mcnemar_p", value=r["McNemar p"], extra={"only_a_right": int(r["only LIME right"]),
                                                                        "only_b_right": int(r["only random right"])}, **common)


def sentences(pairs: pd.DataFrame, planted: pd.DataFrame, point: str = "PGD @ 0.01") -> list[str]:
    """One sentence per (width, N) at `point` under each training reading, and one per planted N: what
    the numbers say, computed from them (so the reading of a rerun follows its numbers)."""
    out = []
    for _, r in pairs[(pairs["subset"] == "all") & pairs["point"].str.startswith(point)].sort_values(
            ["width", "N", "eps_train reading"]).iterrows():
        d, ci, p = r["LIME - random (pp)"], r["ci95 (pp)"], r["McNemar p"]
        if ci != ci:
            verdict = "one seed, no interval"
        elif d - ci > 0:
            verdict = "LIME's masks are better"
        elif d + ci < 0:
            verdict = "random masks are better"
        else:
            verdict = "no difference the seeds can resolve"
        out.append(f"width x{r['width']:g}, N = {int(r['N']):,}, trained {r['eps_train reading']}: {r['point']}, "
                   f"LIME - random = {d:+.2f} pp" + ("" if ci != ci else f" (95% interval {d - ci:+.2f} to {d + ci:+.2f})")
                   + f" over {int(r['seeds'])} seed(s), McNemar p = {p:.2g}: {verdict}.")
    for n, g in planted.groupby("N", sort=True) if len(planted) else []:
        by = g.set_index("flagged by")
        lime, rand = by.loc["spurious"], by.loc["random segments, same count"]
        out.append(f"planted squares, N = {int(n):,}: LIME's flags cover {100 * lime['recall']:.1f}% of the squares at "
                   f"{100 * lime['precision']:.1f}% precision (random segments: {100 * rand['recall']:.1f}% at "
                   f"{100 * rand['precision']:.1f}%).")
    return out


def main(argv: list[str] | None = None) -> None:
    from .. import notebook

    ap = argparse.ArgumentParser(prog="python -m replication.paper_a.scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--hours", type=float, default=None, help="start no task after this many hours")
    ap.add_argument("--kinds", nargs="+", default=["identify", "model", "planted"])
    ap.add_argument("--list", action="store_true", help="print the tasks in order, each with what of it is stored, and exit")
    args = ap.parse_args(argv)
    os.environ["REPLICATION_PROFILE"] = args.profile
    # --list reads and writes nothing, so an uncommitted change may look (a save would still refuse it)
    run = notebook.start("11_scaling", {"PROFILE": args.profile, "SEED": 0}, writes=not args.list)
    sc = Scaling(run)
    if args.list:
        states = [(str(t), sc.status(t)) for t in sc.tasks()]
        for t, st in states:
            print(f"{t}: {st}")
        print(f"{sum(st == 'done' for _, st in states)} of {len(states)} tasks done", flush=True)
        return
    done = sc.run_tasks(hours=args.hours, kinds=tuple(args.kinds))
    if run.records:
        run.save(quiet=True)
    print(f"{len(done)} task(s) in {sum(s for _, s in done) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
