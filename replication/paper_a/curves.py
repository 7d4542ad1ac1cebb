"""Paper A's Fig. 3 and Fig. 4 measured with attacks strong enough to trust, and a fair test of how
the paper's eps was read.

- **Families.** Paper A never says whether its eps is on [0,1] pixels or on normalised inputs. If
  it was normalised, its *training* eps was too: a family is the rows that decide what LIME adds
  (full method, random-mask control, reg+adv, adv) refined with FGSM at 0.03 under one reading
  (pixel: 0.03; normalised: 0.03 x the mean channel std, ~0.0075 px), the first two with several
  seeds. Each reading's test points are compared with the family trained under it.
- **Measurements** (`measure`): every attacked number is a `robust_accuracy` record: the share of
  images classified correctly clean and under every restart. FGSM / PGD run early-stopped
  (attacks.robust_mask: an image is fooled at its first fooling iterate); APGD, Square and
  AutoAttack are torchattacks' (or the authors' AutoAttack) run on the clean-correct images. Each
  record keeps its per-image outcome (`extra.robust`, hex bits over the split's images) for the
  paired tests, and the file is saved after every measurement, so an interrupted run resumes.
"""
from __future__ import annotations

import json
import time
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..attacks import AUTOATTACK_STANDARD, Attack, eval_mode
from ..data import Split, balanced_subset
from ..evaluate import correct_mask, model_of, robust_per_image
from ..papers import eps_reading, pixel_eps
from ..progress import bar
from ..results import canonical_eps, load_results, make_record, results_path, save_records, stored
from ..train import TrainResult
from . import refine as rf
from .study import Study

READINGS = ("pixel", "normalised")
RANDOM = "control: random mask + reg + adv"
FAMILY_ROWS = (rf.FULL, RANDOM, "reg+adv", "adv")
SEEDED_ROWS = (rf.FULL, RANDOM)  # the paired test's two rows


def eps_train_for(reading: str, eps: float = 0.03, dataset: str = "cifar10") -> float:
    """The FGSM training eps in pixels for Paper A's `eps` read as `reading`."""
    return canonical_eps(pixel_eps(eps, dataset, reading))


@dataclass
class Refined:
    """One refined (or baseline) model and the setting its records carry."""
    tr: TrainResult
    setting: dict[str, Any]
    dataset: str = "cifar10"

    @property
    def name(self) -> str:
        return f"resnet18_{self.dataset}"


def family(run, reading: str, seeds: list[int], *, eps: float = 0.03) -> dict[tuple[str, int], Refined]:
    """{(row, train seed): Refined} for FAMILY_ROWS refined with FGSM at `eps` read as `reading`
    (SEEDED_ROWS with every seed, the others with the first). Names and seeds are notebook 04's, so
    the pixel family's seed-0 rows are 04's models (same cache entries)."""
    s = Study(run, eps_train=eps_train_for(reading, eps))
    m, base = s.masks_for("cifar10"), s.models["resnet18_cifar10"]
    out = {}
    for row in FAMILY_ROWS:
        spec = s.specs[row]
        for seed in (seeds if row in SEEDED_ROWS else seeds[:1]):
            name = f"resnet18_cifar10_refine-{spec.key()}" + ("" if seed == run.seed else f"-seed{seed}")
            tr = s.refine_with(base, spec, m, name, seed=seed, mask_seed=seed)
            out[(row, seed)] = Refined(tr, spec.setting(train_seed=seed, eps_reading=reading))
    return out


def models(run, seeds: list[int], *, eps: float = 0.03) -> dict[str, Refined]:
    """Every model the notebook attacks, by display label (records carry the structured setting):
    the two baselines, both families, and the CIFAR-100 full method."""
    from .. import zoo

    P = run.profile
    found = [Refined(zoo.lazy("resnet18_cifar10", P, run.seed), {})]
    for reading in READINGS:
        found += list(family(run, reading, seeds, eps=eps).values())
    found += list(cifar100_models(run, eps=eps).values())
    return {label(m.dataset, m.setting): m for m in found}


def label(dataset: str, setting: dict[str, Any]) -> str:
    """A model's display label from its record setting (display only: nothing parses it back)."""
    if not setting.get("refinement"):
        return f"{dataset} · baseline"
    return f"{dataset} · {setting['refinement']} · eps_train {setting['eps_train_reading']} · seed {setting['train_seed']}"


def labels_of(records: list[dict[str, Any]]) -> dict[str, str]:
    """{model_hash: label} of the accuracy records in a results file (what `frame` needs)."""
    return {r["model_hash"]: label(r["dataset"].split("-")[0], {k: v for k, v in r["setting"].items() if k != "subset"})
            for r in records if r["metric"] in ("accuracy", "robust_accuracy") and r["model_hash"]}


def cifar100_models(run, *, eps: float = 0.03) -> dict[str, Refined]:
    """The CIFAR-100 baseline and the full method (pixel reading, seed 0: notebook 04's row)."""
    s = Study(run, eps_train=eps_train_for("pixel", eps))
    m, base, full = s.masks_for("cifar100"), s.models["resnet18_cifar100"], s.specs[rf.FULL]
    tr = s.refine_with(base, full, m, f"resnet18_cifar100_refine-{full.key()}")
    return {"baseline": Refined(base, {}, "cifar100"), "refined": Refined(tr, full.setting(), "cifar100")}


# ---- the eps on the axis, and the attack jobs -------------------------------------------------------
def reading_eps(paper_eps: list[float], dataset: str, readings=READINGS) -> list[float]:
    """Paper A's eps in pixels under each reading."""
    return [canonical_eps(pixel_eps(e, dataset, r)) for r in readings for e in paper_eps]


@dataclass(frozen=True)
class Job:
    """One measurement: `attack` at `eps` (pixels) on the named image subset ("all", "strong",
    "autoattack": nested class-balanced subsets of the test images, see `subsets`)."""
    attack: Attack
    eps: float
    subset: str = "all"


def points(budget, dataset: str, readings=READINGS) -> list[Job]:
    """The paper's quoted points (FGSM at 0.01 and 0.03, PGD at 0.01) under `readings`."""
    pgd = Attack("pgd", steps=budget.pgd_steps)
    return ([Job(Attack("fgsm"), e) for e in reading_eps([0.01, 0.03], dataset, readings)]
            + [Job(pgd, e) for e in reading_eps([0.01], dataset, readings)])


def curve(budget, dataset: str, paper_eps: list[float], extra_eps: list[float]) -> list[Job]:
    """FGSM and PGD at every eps of the axis: the paper's eps under both readings, and `extra_eps`."""
    eps = sorted(set(reading_eps(paper_eps, dataset)) | {canonical_eps(e) for e in extra_eps})
    pgd = Attack("pgd", steps=budget.pgd_steps)
    return [Job(a, e) for a in (Attack("fgsm"), pgd) for e in eps]


def strong(budget, strong_eps: list[float], square_eps: list[float], large_eps: float) -> list[Job]:
    """On the "strong" subset: PGD with more steps and restarts, APGD-CE and APGD-DLR, black-box
    Square, and PGD at a large eps (where accuracy must reach ~0)."""
    jobs = [Job(Attack("pgd", steps=budget.strong_steps, restarts=budget.strong_restarts), e, "strong") for e in strong_eps]
    jobs += [Job(Attack(n, steps=budget.apgd_steps), e, "strong") for n in ("apgd-ce", "apgd-dlr") for e in strong_eps]
    jobs += [Job(Attack("square", steps=budget.square_queries), e, "strong") for e in square_eps]
    return jobs + [Job(Attack("pgd", steps=budget.pgd_steps), large_eps, "strong")]


def autoattack(aa_eps: list[float], reference: bool = False) -> list[Job]:
    """AutoAttack 'standard' as published (torchattacks' parts; `reference`: the authors' package too)."""
    return [Job(Attack(n), e, "autoattack") for e in aa_eps for n in (("autoattack", "pyautoattack") if reference else ("autoattack",))]


def plan(models: dict[str, Refined], budget, seed: int, *, paper_eps: list[float], extra_eps: list[float],
         strong_paper_eps: list[float], strong_extra_eps: list[float], square_eps: list[float],
         autoattack_eps: list[float], large_eps: float) -> dict[str, list[Job]]:
    """{label: jobs}. The baselines and the full method at the first seed get the whole curve, the
    strong attacks and (CIFAR-10) AutoAttack, the pixel-trained one also the authors' AutoAttack as
    a cross-check; the other family members the paper's points under their own training reading,
    and PGD at `large_eps` (the checklist's accuracy ~ 0)."""
    out = {}
    for label, m in models.items():
        ds, s = m.dataset, m.setting
        headline = not s or (s["refinement"] == rf.FULL and s["train_seed"] == seed)
        if headline:
            jobs = curve(budget, ds, paper_eps, extra_eps)
            jobs += strong(budget, reading_eps(strong_paper_eps, ds) + strong_extra_eps, square_eps, large_eps)
            if ds == "cifar10":
                jobs += autoattack(autoattack_eps, reference=bool(s) and s["eps_train_reading"] == "pixel")
        else:
            jobs = points(budget, ds, (s["eps_train_reading"],))
            jobs += [Job(Attack("pgd", steps=budget.pgd_steps), large_eps, "strong")]
        out[label] = jobs
    return out


def earlier_checklists(profile: str, experiments=("04_refinement_training",)) -> pd.DataFrame:
    """The checklist of every model an earlier notebook attacked, from its results file (absent: empty)."""
    from ..results import records_frame

    frames = [checklist_of_records(records_frame(load_results(e, profile)["records"]), e.split("_")[0])
              for e in experiments if results_path(e, profile).exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def subsets(split: Split, budget, seed: int) -> dict[str, torch.Tensor]:
    """{"all", "strong", "autoattack"}: indices into `split`, each a class-balanced subset of the one before."""
    out = {"all": torch.arange(len(split))}
    for name, n in (("strong", budget.strong_images), ("autoattack", budget.autoattack_images)):
        prev = out[list(out)[-1]]
        out[name] = prev[balanced_subset(split.y.cpu()[prev], n, seed + len(out))]
    return out


# ---- measuring, resumably ---------------------------------------------------------------------------
def to_hex(mask: torch.Tensor) -> str:
    return np.packbits(mask.cpu().numpy().astype(np.uint8)).tobytes().hex()


def from_hex(s: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(s), dtype=np.uint8))[:n].astype(bool)


def _seed(*parts: Any) -> int:
    return zlib.crc32(json.dumps(parts, sort_keys=True).encode())


def _key(subset: str, spec: dict | None, eps: float | None) -> str:
    return json.dumps([subset, spec, canonical_eps(eps)], sort_keys=True)


def robust(model, split: Split, correct: torch.Tensor, attack: Attack, eps: float, *, batch_size: int,
           seed: int) -> torch.Tensor:
    """Per image: correct clean and under every restart of `attack` at `eps` (see the module docstring)."""
    return robust_per_image(model, split, correct, eps=eps, batch_size=batch_size, attack=attack, seed=seed,
                            restarts=attack.restarts if attack.random else 1,
                            batch_seed=lambda start, r: _seed(seed, start, attack.spec(eps), r))


def _wanted(names: list[str], jobs: list[Job]) -> list[tuple]:
    """(subset, attack spec, eps) of every record `measure` makes: clean on each subset, each job on
    its subset and on the subsets nested in it."""
    w = [(s, None, None) for s in names] + [(j.subset, j.attack.spec(j.eps), canonical_eps(j.eps)) for j in jobs]
    w += [(inner, j.attack.spec(j.eps), canonical_eps(j.eps)) for j in jobs for inner in names[names.index(j.subset) + 1:]]
    return list({json.dumps(x, sort_keys=True): x for x in w}.values())


def _record(ctx: dict[str, Any], split: Split, index: dict[str, torch.Tensor], seed: int, subset: str,
            spec: dict | None, eps: float | None, mask: torch.Tensor | None = None, wall: float | None = None,
            **extra) -> dict[str, Any]:
    """The record of one (subset, attack, eps) measurement (value None: the template `stored` looks up)."""
    return make_record(**{**ctx, "setting": {**ctx["setting"], "subset": subset}}, dataset=split.name,
                       metric="accuracy" if spec is None else "robust_accuracy", attack=spec, eps=eps,
                       eps_reading=eps_reading(eps, split.name), value=None if mask is None else float(mask.float().mean()),
                       n=len(index[subset]), seed=seed, wall_time_s=wall,
                       extra=None if mask is None else {"robust": to_hex(mask), **extra})


def _have(template: dict[str, Any]) -> dict[str, Any] | None:
    r = stored(template)
    return r if r is not None and "robust" in r.get("extra", {}) else None


def missing(run, ref: Refined, split: Split, index: dict[str, torch.Tensor], jobs: list[Job]) -> int:
    """How many of the records `measure` would make are not in the results file (nothing is built)."""
    ctx = run.context(model=ref.name, model_hash=ref.tr.config_hash, **ref.setting)
    return sum(_have(_record(ctx, split, index, run.seed, *w)) is None for w in _wanted(list(index), jobs))


def measure(run, ref: Refined, split: Split, index: dict[str, torch.Tensor], jobs: list[Job], *,
            batch_size: int, progress: bool = True) -> list[dict[str, Any]]:
    """Clean accuracy on every subset and `robust_accuracy` for each job, each record with its
    per-image outcome; a job measured on a subset is also recorded on the subsets nested in it
    (sliced, no new attack), so every subset's comparisons are on the same images; a job on a subset
    an earlier job covered is that slice. Records of this model already in the results file are
    reused; the file is saved after each new measurement."""
    ctx = run.context(model=ref.name, model_hash=ref.tr.config_hash, **ref.setting)
    seed = run.seed
    names = list(index)
    out: dict[str, dict[str, Any]] = {}

    def template(subset, spec, eps, mask=None, wall=None, **extra):
        return _record(ctx, split, index, seed, subset, spec, eps, mask, wall, **extra)

    def rec(subset, spec, eps, mask, wall, **extra):
        r = template(subset, spec, eps, mask, wall, **extra)
        out[_key(subset, spec, eps)] = r
        return r

    def have(subset, spec, eps):
        return _have(template(subset, spec, eps))

    found = [have(*w) for w in _wanted(names, jobs)]
    if all(r is not None for r in found):  # every record is there: the model is not even built
        return found
    model = model_of(ref.tr)

    def slices(subset, spec, eps, mask):
        """The measurement on `subset` restricted to each subset nested in it (no new attack)."""
        made = []
        for inner in names[names.index(subset) + 1:]:
            k, old = _key(inner, spec, eps), have(inner, spec, eps)
            if old is not None:
                out[k] = old
                continue
            pos = torch.searchsorted(index[subset], index[inner])  # inner's images within subset's
            made.append(rec(inner, spec, eps, mask[pos], None, sliced_from=subset))
        return made

    def measured(subset, spec, eps, compute):
        k, old = _key(subset, spec, eps), have(subset, spec, eps)
        if old is not None:
            out[k] = old
            return torch.from_numpy(from_hex(old["extra"]["robust"], old["n"])), []
        t0 = time.perf_counter()
        mask = compute()
        extra = {"config": AUTOATTACK_CONFIG} if spec and spec["name"] in ("autoattack", "pyautoattack") else {}
        return mask, [rec(subset, spec, eps, mask, time.perf_counter() - t0, **extra)]

    def save(new):
        if new:
            save_records(run.experiment, run.profile.name, new, run.provenance())

    with eval_mode(model):
        correct, new = measured("all", None, None, lambda: correct_mask(model, split, batch_size))
        save(new + slices("all", None, None, correct))
        for job in bar(jobs, desc=f"{ref.name} attacks", enabled=progress):
            spec, eps, idx = job.attack.spec(job.eps), canonical_eps(job.eps), index[job.subset]
            mask, new = measured(job.subset, spec, eps, lambda: robust(
                model, split.select(idx), correct[idx], job.attack, eps, batch_size=batch_size, seed=seed))
            save(new + slices(job.subset, spec, eps, mask))
    return list(out.values())


AUTOATTACK_CONFIG = {"version": "standard", "parts": AUTOATTACK_STANDARD}  # carried by every AutoAttack record


# ---- tables -----------------------------------------------------------------------------------------
def frame(records: list[dict[str, Any]], labels: dict[str, str]) -> pd.DataFrame:
    """Accuracy records as a long frame: label (from {model_hash: label}), dataset, subset, point
    (clean / attack label), eps, reading, train reading, row, train seed, accuracy (%)."""
    from ..results import records_frame
    from ..tables import attack_label

    records = list(records)
    df = records_frame(records)
    df["setting_"] = [r["setting"] for r in records]
    df = df[df["metric"].isin(["accuracy", "robust_accuracy"]) & df["model_hash"].isin(list(labels))].copy()
    df["label"] = df["model_hash"].map(labels)
    df["point"] = [("clean" if r["attack"] is None else attack_label(r)) for _, r in df.iterrows()]
    df["accuracy"] = df["value"].astype(float) * 100
    for c in ("refinement", "eps_train_reading", "train_seed"):
        if c not in df:
            df[c] = None
    df["row"] = df["refinement"].fillna("baseline")
    return df


def curve_table(df: pd.DataFrame, dataset: str, subset: str = "all") -> pd.DataFrame:
    """Accuracy (%) by model and attack (rows) and eps in pixels (columns); eps 0 is clean."""
    d = df[(df["dataset"] == dataset) & (df["subset"] == subset)]
    clean = d[d["point"] == "clean"].set_index("label")["accuracy"]
    att = d[d["point"] != "clean"]
    t = att.pivot_table(index=["label", "point"], columns="eps", values="accuracy", sort=False)
    t.insert(0, 0.0, [clean.get(label) for label, _ in t.index])
    return t.round(2)


def _ci95(values: list[float]) -> float:
    from scipy import stats

    v = np.asarray(values, dtype=float)
    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def _paper_points(dataset: str) -> list[dict[str, Any]]:
    from ..papers import paper_a_points

    return paper_a_points(dataset)


def _points_read(dataset: str, reading: str, clean: bool = True, points: list[dict[str, Any]] | None = None):
    """(paper point, eps in pixels under `reading`, display label) for clean (eps None) and each of
    the paper's quoted points (or of `points`: {"attack": "FGSM" | "PGD", "eps": Paper A's eps})."""
    for p in ([{"attack": "clean", "eps": None}] if clean else []) + (points or _paper_points(dataset)):
        e = None if p["eps"] is None else canonical_eps(pixel_eps(p["eps"], dataset, reading))
        yield p, e, "clean" if e is None else f"{p['attack']} @ {p['eps']:g} ({e:.4g} px)"


def _at(d: pd.DataFrame, p: dict[str, Any], e: float | None) -> pd.DataFrame:
    """The rows of `d` measuring paper point `p` at eps `e` (clean when e is None)."""
    return d[(d["point"] == "clean") if e is None else (d["point"].str.startswith(p["attack"].lower()) & (d["eps"] == e))]


def seed_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per family (training reading), row and paper point: mean over training seeds, 95% t interval
    (half width) and the per-seed values, each point read under the family's own reading."""
    rows = []
    d = df[(df["dataset"] == "cifar10") & (df["subset"] == "all") & df["refinement"].notna()]
    for reading in READINGS:
        for p, e, name in _points_read("cifar10", reading):
            for row, g in _at(d[d["eps_train_reading"] == reading], p, e).groupby("row", sort=False):
                vals = g.sort_values("train_seed")["accuracy"].tolist()
                rows.append({"eps_train reading": reading, "row": row, "point": name,
                             "seeds": len(vals), "mean": np.mean(vals), "ci95": _ci95(vals),
                             "per seed": ", ".join(f"{v:.2f}" for v in vals)})
    return pd.DataFrame(rows).round(2)


def paired(df: pd.DataFrame, a: str = rf.FULL, b: str = RANDOM, points: list[dict[str, Any]] | None = None,
           subset: str = "all") -> pd.DataFrame:
    """LIME mask (`a`) minus random mask (`b`), same training seeds, same test images, per family and
    paper point (or each of `points`): the mean difference over seeds with its 95% t interval and
    paired t-test, and an exact McNemar test on the per-image outcomes pooled over seeds (b01: only
    `a` right; b10: only `b`)."""
    from scipy import stats

    rows = []
    d = df[(df["dataset"] == "cifar10") & (df["subset"] == subset)]
    for reading in READINGS:
        for p, e, name in _points_read("cifar10", reading, points=points):
            sel = _at(d[d["eps_train_reading"] == reading], p, e)
            A = sel[sel["row"] == a].set_index("train_seed")
            B = sel[sel["row"] == b].set_index("train_seed")
            seeds = sorted(set(A.index) & set(B.index))
            if not seeds:
                continue
            diff = [A.loc[s, "accuracy"] - B.loc[s, "accuracy"] for s in seeds]
            only_a = only_b = 0
            for s in seeds:
                ma = from_hex(A.loc[s, "extra"]["robust"], A.loc[s, "n"])
                mb = from_hex(B.loc[s, "extra"]["robust"], B.loc[s, "n"])
                only_a += int((ma & ~mb).sum())
                only_b += int((~ma & mb).sum())
            with warnings.catch_warnings():  # identical differences over seeds: scipy warns, p is nan or 0
                warnings.simplefilter("ignore")
                t_p = float(stats.ttest_rel(A.loc[seeds, "accuracy"], B.loc[seeds, "accuracy"]).pvalue) if len(seeds) > 1 else float("nan")
            m_p = float(stats.binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
            rows.append({"eps_train reading": reading, "point": name, "eps": e, "seeds": len(seeds), "LIME - random (pp)": np.mean(diff), "ci95 (pp)": _ci95(diff),
                         "paired t p": t_p, "only LIME right": only_a, "only random right": only_b, "McNemar p": m_p,
                         "n images": int(A["n"].iloc[0])})
    return pd.DataFrame(rows)


def fair_test(df: pd.DataFrame) -> pd.DataFrame:
    """Each of the paper's quoted CIFAR-10 / CIFAR-100 points under each reading: the paper's baseline
    and refined numbers beside our baseline and the full method trained under that reading (mean
    over seeds) and under the other one (seed 0: the only one the other reading's curve has)."""
    rows = []
    d = df[df["subset"] == "all"]
    for ds in ("cifar10", "cifar100"):
        dd = d[d["dataset"] == ds]
        for p in _paper_points(ds):
            for reading in READINGS:
                e = canonical_eps(pixel_eps(p["eps"], ds, reading))
                at = _at(dd, p, e)
                base = at[at["row"] == "baseline"]["accuracy"]
                full = at[at["row"] == rf.FULL]
                row = {"dataset": ds, "point": f"{p['attack']} @ {p['eps']:g}", "reading": reading, "eps (px)": e,
                       "paper baseline": p["baseline"], "paper refined": p["refined"],
                       "ours baseline": base.iloc[0] if len(base) else None}
                for tr in READINGS:
                    v = full[full["eps_train_reading"] == tr]["accuracy"]
                    tag = "same reading" if tr == reading else "other reading"
                    row[f"ours refined, trained {tag}"] = v.mean() if len(v) else None
                    row[f"seeds ({tag})"] = len(v)
                rows.append(row)
    out = pd.DataFrame(rows)
    cols = [c for c in out.columns if c.startswith(("paper", "ours"))]
    out[cols] = out[cols].astype(float).round(2)
    return out


# ---- gradient masking, AutoAttack cross-check ---------------------------------------------------------
SUBSET_ORDER = ("all", "strong", "autoattack")  # larger first: a check is read on the largest subset that can answer it


def passed(v) -> bool | None:
    """A check's result as True / False / None (pandas turns None into NaN along the way)."""
    return None if v is None or v != v else bool(v)


def checklist(df: pd.DataFrame) -> pd.DataFrame:
    """masking.checklist for each model, run on each subset's records apart (a comparison is only
    fair on the same images) and combined: a check fails if it fails on any subset, passes if it
    passes on at least one and fails on none, and is not evaluated (None) if no subset can answer.
    One row per (model, check), the evidence of each subset that answered."""
    from ..masking import checklist as run_checks

    rows = []
    for label, g in df.groupby("label", sort=False):
        answers: dict[str, list] = {}
        for subset in SUBSET_ORDER:
            sub = g[g["subset"] == subset]
            if len(sub):
                for c in run_checks(sub).to_dict("records"):
                    answers.setdefault(c["check"], [])
                    if passed(c["pass"]) is not None:
                        answers[c["check"]].append((passed(c["pass"]), f"{subset} ({int(sub['n'].max())} images): {c['evidence']}"))
        first = g.iloc[0]
        for check, got in answers.items():
            rows.append({"model": label, "model_name": first["model"], "model_hash": first["model_hash"],
                         "dataset": first["dataset"], "n": int(g["n"].max()), "source": "06", "check": check,
                         "pass": all(p for p, _ in got) if got else None,
                         "evidence": " | ".join(e for _, e in got) or "not evaluated"})
    return pd.DataFrame(rows)


def checklist_of_records(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """The same checklist for models only earlier notebooks evaluated (e.g. every row of notebook 04):
    `df` a records_frame of one results file; one model = one (model, setting) = one model_hash."""
    from ..masking import checklist as run_checks
    from ..tables import model_label

    rows = []
    d = df[df["metric"].isin(["accuracy", "robust_accuracy"]) & df["model_hash"].notna()]
    for h, g in d.groupby("model_hash", sort=False):
        label = model_label(g.iloc[0])
        for c in run_checks(g).to_dict("records"):
            rows.append({"model": label, "model_name": g.iloc[0]["model"], "model_hash": h, "dataset": g.iloc[0]["dataset"],
                         "n": int(g["n"].max()), "source": source, "check": c["check"],
                         "pass": passed(c["pass"]), "evidence": c["evidence"]})
    return pd.DataFrame(rows)


def pass_grid(checks: pd.DataFrame) -> pd.DataFrame:
    """model x check: 'pass' / 'FAIL' / '-' (not evaluated)."""
    c = checks.copy()
    c["result"] = [{None: "-", True: "pass", False: "FAIL"}[passed(v)] for v in c["pass"]]
    return c.pivot_table(index="model", columns="check", values="result", aggfunc="first", sort=False).fillna("-")


def failures(*checks: pd.DataFrame) -> pd.DataFrame:
    """The failed checks of every frame given: model, check, evidence."""
    c = pd.concat([f for f in checks if len(f)], ignore_index=True)
    return c[[passed(v) is False for v in c["pass"]]][["model", "check", "evidence"]].reset_index(drop=True)


def autoattack_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """torchattacks' AutoAttack (configured as published) against the authors' package on the same
    images: accuracy of each and the share of images on which they agree."""
    rows = []
    d = df[df["subset"] == "autoattack"]
    for (label, eps), g in d[d["attack"].isin(["autoattack", "pyautoattack"])].groupby(["label", "eps"], sort=False):
        by = {r["attack"]: from_hex(r["extra"]["robust"], r["n"]) for _, r in g.iterrows()}
        if len(by) < 2:
            continue
        ta, pa = by["autoattack"], by["pyautoattack"]
        t = g.set_index("attack")["wall_time_s"]
        rows.append({"model": label, "eps": eps, "n": len(ta), "torchattacks parts (%)": 100 * ta.mean(),
                     "pyautoattack (%)": 100 * pa.mean(), "agree (%)": 100 * (ta == pa).mean(),
                     "only torchattacks robust": int((ta & ~pa).sum()), "only pyautoattack robust": int((~ta & pa).sum()),
                     "torchattacks s": t.get("autoattack"), "pyautoattack s": t.get("pyautoattack")})
    out = pd.DataFrame(rows)
    return out.round({c: 2 for c in out.columns if c != "eps"})


def strongest(df: pd.DataFrame, subset: str = "strong") -> pd.DataFrame:
    """Per model and eps on `subset`: each attack's accuracy (%) and the best (lowest) of them."""
    d = df[(df["subset"] == subset) & (df["point"] != "clean")]
    t = d.pivot_table(index=["label", "eps"], columns="point", values="accuracy", sort=False)
    t["strongest"] = t.min(axis=1)
    return t.round(2)


# ---- summaries as records ---------------------------------------------------------------------------
def record_summaries(run, df: pd.DataFrame, pairs: pd.DataFrame, checks: pd.DataFrame, pgd_steps: int) -> None:
    """Means and intervals over seeds, the paired tests and every check, as records (the README and
    the figures read them back)."""
    from ..attacks import Attack as A

    d = df[(df["dataset"] == "cifar10") & (df["subset"] == "all") & df["refinement"].notna()]
    n = int(d["n"].max())
    fgsm, pgd = A("fgsm"), A("pgd", steps=pgd_steps)
    for (row, reading, point, eps), g in d.groupby(["row", "eps_train_reading", "point", "eps"], dropna=False, sort=False):
        if g["train_seed"].nunique() < 2:
            continue
        eps = None if eps is None or eps != eps else float(eps)
        attack = None if point == "clean" else (fgsm if point == "fgsm" else pgd if point == f"pgd-{pgd_steps}" else None)
        if point != "clean" and attack is None:
            continue
        setting = {k: v for k, v in g.iloc[0]["setting_"].items() if k not in ("train_seed", "subset")}
        common = dict(model="resnet18_cifar10", data="cifar10", n=n, attack=attack.spec(eps) if attack else None, eps=eps,
                      eps_reading=eps_reading(eps, "cifar10"), train_seeds=sorted(int(s) for s in g["train_seed"]), **setting)
        vals = (g["accuracy"] / 100).tolist()
        run.record(metric="accuracy_mean_over_seeds", value=float(np.mean(vals)), **common)
        run.record(metric="accuracy_ci95_over_seeds", value=_ci95(vals), **common)
    for _, r in pairs.iterrows():
        e = r["eps"] if r["eps"] == r["eps"] else None
        attack = None if e is None else (fgsm if r["point"].startswith("FGSM") else pgd)
        common = dict(model="resnet18_cifar10", data="cifar10", n=int(r["n images"]), attack=attack.spec(e) if attack else None,
                      eps=e, eps_reading=eps_reading(e, "cifar10"), a=rf.FULL, b=RANDOM, eps_train_reading=r["eps_train reading"],
                      seeds=int(r["seeds"]))
        run.record(metric="paired_difference_mean", value=r["LIME - random (pp)"] / 100, **common)
        run.record(metric="paired_difference_ci95", value=r["ci95 (pp)"] / 100, **common)
        run.record(metric="paired_t_p", value=r["paired t p"], **common)
        run.record(metric="mcnemar_p", value=r["McNemar p"], extra={"only_a_right": int(r["only LIME right"]),
                                                                    "only_b_right": int(r["only random right"])}, **common)
    for c in checks.to_dict("records"):
        p = passed(c["pass"])
        run.record(model=c["model_name"], model_hash=c["model_hash"], data=c["dataset"], metric="masking_check",
                   value=None if p is None else float(p), n=int(c["n"]), check=c["check"],
                   model_label=c["model"], evaluated_in=c["source"], extra={"evidence": c["evidence"]})
