"""Paper B's Tables 2 and 3: how stable attributions are under attack, and whether they point at a
ground truth that exists (notebook 10).

- **What is explained**: each defence's own prediction. An unpurified classifier is explained at
  its input; a purified one (ALDE) by the method applied to the classifier at the purified input
  (alde.PurifiedExplainer: ALDE's Integrated Gradients on purified images), the purifier drawing
  fresh noise per explanation, as deployed.
- **Adversarial images** (Table 2): the attack of notebook 09 that left the defence the lowest
  accuracy at the headline eps, re-crafted with the same seeds on the same images; its per-image
  outcome is compared with the one notebook 09 recorded (`reproduced`).
- **Pairs**: clean vs adversarial (the paper's quantity), and two floors that give it meaning: two
  explanations of the same clean image with another seed (the method's own noise: LIME, GradientShap
  and the purifier sample), and clean explanations of two unrelated images of different classes
  (chance).
- **Ground truth** (Table 3): grounded.py's constructions; IoU of the top-|mask| pixels, the
  pointing game, and a random map through the same scoring (the empirical chance level).

Maps and their scores are saliency.py's. Records are saved after each (defence, method), and a run
resumes from the results file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import saliency as sal
from ..attacks import eval_mode
from ..data import Split, to_float
from ..explain import CaptumExplainer, LimeExplainer
from ..grounded import Grounded
from ..papers import eps_reading
from ..progress import bar
from ..results import canonical_eps, make_record, save_records, stored_all
from . import adaptive as ad
from .alde import PurifiedExplainer
from .ddpm import Purifier
from .defences import MEAN, Defence, Job

PAIRS = ("clean vs adversarial", "same clean image, two seeds", "unrelated clean images")
MAP_METRICS = {"attribution_ssim": "magnitude", "attribution_ssim_signed": "signed", "attribution_spearman": "magnitude"}


def methods(budget) -> dict[str, Any]:
    """The attribution methods at the profile's budget (profiles.yaml: stability)."""
    return {"Integrated Gradients": CaptumExplainer("integrated_gradients", n_steps=budget.ig_steps,
                                                    internal_batch_size=budget.batch_size * 8, name="integrated_gradients"),
            "GradientShap": CaptumExplainer("gradient_shap", n_steps=budget.shap_samples, name="gradient_shap"),
            "LIME": LimeExplainer(n_samples=budget.lime_samples, chunk=budget.batch_size, grid_cell=budget.lime_cell)}


# ---- the adversarial images: notebook 09's strongest attack, re-crafted --------------------------------
def strongest(records: list[dict[str, Any]], defence: Defence, jobs: list[Job], eps: float) -> tuple[Job, dict[str, Any]]:
    """The job among `jobs` at `eps` whose notebook-09 record (mean over draws, all images) has the
    lowest accuracy for `defence`, and that record. Every such job must have been measured: the
    strongest of a partial set is not the strongest attack."""
    want = {**defence.setting(), "subset": "all", "score": MEAN}
    found, missing = [], []
    for job in jobs:
        if job.attack is None or canonical_eps(job.eps) != canonical_eps(eps) or job.subset != "all":
            continue
        spec = job.attack.spec(job.eps)
        match = [r for r in records
                 if r["metric"] == "accuracy" and r["attack"] == spec and canonical_eps(r["eps"]) == canonical_eps(eps)
                 and r["model_hash"] == defence.classifier.config_hash
                 and all(r["setting"].get(k) == v for k, v in {**want, **job.threat.setting()}.items())]
        if match:
            found.append((job, match[0]))
        else:
            missing.append(f"{spec['name']}-{spec['steps']} x EOT-{spec['eot']} ({job.threat.label})")
    if missing:
        raise LookupError(f"notebook 09 has not measured {len(missing)} attack(s) at eps {eps:.4g} on {defence.row!r} "
                          f"(model hash {defence.classifier.config_hash}): {'; '.join(missing)}. Run notebook 09 in this "
                          f"profile to the end first (python -m replication.runner --profile <profile> 09).")
    if not found:
        raise LookupError(f"no attack at eps {eps:.4g} in the plan for {defence.row!r}")
    return min(found, key=lambda jr: jr[1]["value"])


class Crafted:
    """Notebook 09's strongest attack on one defence (`job`, measured in `record`), re-crafted on
    `split` exactly as notebook 09 did it (same seeds and batches) when first needed: the images
    (.adv), the crafting time and the per-image agreement with 09's correct-draw counts
    (.reproduced). Cached under .cache/adversarial/<store>/ (an interrupted notebook does not craft
    twice); a notebook whose records are all present never crafts."""

    def __init__(self, defence: Defence, job: Job, record: dict[str, Any], split: Split, purification, seed: int,
                 store: str, progress: bool = True):
        self.defence, self.job, self.record, self.split = defence, job, record, split
        self.purification, self.seed, self.store, self.progress = purification, seed, store, progress
        self._res = None

    def _get(self) -> dict[str, torch.Tensor]:
        from ..cache import stable_hash, tensor_file_memo
        from ..evaluate import model_of
        from ..paths import cache_dir

        if self._res is None:
            d, job, B, k = self.defence, self.job, self.purification, int(self.record["setting"]["draws"])
            key = {"defence": d.setting(), "model_hash": d.classifier.config_hash, "attack": job.attack.spec(job.eps),
                   "threat": job.threat.setting(), "eps": canonical_eps(job.eps), "seed": self.seed, "k": k,
                   "images": stable_hash(self.split.x.cpu().numpy().tobytes().hex()), "labels": self.split.y.tolist(),
                   "batch_size": B.batch_size, "max_batch": B.max_batch}

            def compute():
                res = ad.run_attack(job.attack, job.threat, job.eps, self.split, denoiser=d.denoiser and d.denoiser.model,
                                    config=d.config, classifier=model_of(d.classifier), k=k, seed=self.seed,
                                    batch_size=B.batch_size, progress=self.progress, max_batch=B.max_batch, keep=True)
                return {"adv": res["adv"], "counts": res["counts"], "craft_s": torch.tensor(res["craft_s"])}

            self._res = tensor_file_memo(cache_dir() / "adversarial" / self.store / f"{stable_hash(key)}.pt", compute)
        return self._res

    @property
    def adv(self) -> torch.Tensor:
        return self._get()["adv"]

    @property
    def craft_s(self) -> float:
        return float(self._get()["craft_s"])

    @property
    def reproduced(self) -> dict[str, float]:
        k = int(self.record["setting"]["draws"])
        ours, theirs = self._get()["counts"].numpy(), ad.from_hex(self.record["extra"]["correct_draws"])
        return {"same counts": float((ours == theirs).mean()), "accuracy now": float((ours / k).mean()),
                "accuracy in 09": self.record["value"]}


def crafted(records09: list[dict[str, Any]], defence: Defence, jobs: list[Job], eps: float, split: Split, purification,
            seed: int, store: str, progress: bool = True) -> Crafted:
    """The (lazy) re-crafting of notebook 09's strongest attack at `eps` on `defence` (see `strongest`)."""
    job, rec = strongest(records09, defence, jobs, eps)
    return Crafted(defence, job, rec, split, purification, seed, store, progress)


def reproduction(run, crafts: dict[str, Crafted]) -> pd.DataFrame:
    """One attack_reproduced_share record per defence (the share of images whose correct-draw count
    equals notebook 09's; read back when stored, so nothing is crafted then) and the table of them."""
    rows = {}
    for row, c in crafts.items():
        d, job = c.defence, c.job

        def compute(c=c):
            rep = c.reproduced
            return {"value": rep["same counts"], "wall_time_s": c.craft_s,
                    "extra": {"accuracy now": rep["accuracy now"], "accuracy in 09": rep["accuracy in 09"]}}
        r = run.record_once(compute, model=d.model, model_hash=d.classifier.config_hash, data="cifar10",
                            metric="attack_reproduced_share", n=len(c.split), attack=job.attack.spec(job.eps), eps=job.eps,
                            defence=d.row, threat=job.threat.label)
        extra = r.get("extra", {})
        rows[row] = {"attack": f"{job.attack.name.upper()}-{job.attack.steps} x EOT-{job.attack.eot}",
                     "threat": job.threat.label, "same counts": 100 * r["value"],
                     "accuracy now": 100 * extra.get("accuracy now", c.record["value"] if r["value"] == 1.0 else float("nan")),
                     "accuracy in 09": 100 * c.record["value"], "craft min": (r["wall_time_s"] or 0) / 60}
    return pd.DataFrame(rows).T


# ---- explanations ---------------------------------------------------------------------------------------
@dataclass
class Maps:
    magnitude: torch.Tensor   # (N,H,W) in [0,1]
    signed: torch.Tensor      # (N,H,W) in [-1,1]
    predicted: torch.Tensor   # (N,) the class explained
    seconds: float


def ssim_crosscheck(maps: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Our SSIM (population covariance) and torchmetrics' on the same pairs: each map against the
    next one, and uniform random maps against each other (both ends of the scale)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.cat([maps, torch.rand(maps.shape, generator=g)])
    b = torch.cat([maps.roll(1, 0), torch.rand(maps.shape, generator=g)])
    return sal.ssim(a, b, sample_covariance=False), sal.ssim_torchmetrics(a, b)


def explain(defence: Defence, explainer, x: torch.Tensor, seed: int, batch_size: int, progress: bool = True) -> Maps:
    """Maps of `explainer` for each image of x (N,3,H,W float) explaining the defence's prediction;
    a purified defence is explained on its purified input (module docstring). Batch b uses seed + b."""
    from ..evaluate import model_of

    clf = model_of(defence.classifier)
    ex = None
    if defence.purified:
        ex = PurifiedExplainer(explainer, Purifier(defence.denoiser.model, replace(defence.config, seed=None, checkpoint=False)))
    mags, sgns, preds = [], [], []
    t0 = time.perf_counter()
    with eval_mode(clf):
        for s in bar(range(0, len(x), batch_size), desc=explainer.name, enabled=progress, leave=False):
            xb = x[s:s + batch_size].contiguous()
            if ex is not None:
                xb = ex.purify(xb, seed + s)
            with torch.no_grad():
                p = clf(xb).argmax(1)
            a = explainer.pixel_attributions(clf, xb, p, seed + s)
            mags.append(sal.magnitude(a))
            sgns.append(sal.signed(a))
            preds.append(p.cpu())
    return Maps(torch.cat(mags), torch.cat(sgns), torch.cat(preds), time.perf_counter() - t0)


def example_maps(run, defences: list[Defence], methods: dict[str, Any], split: Split, crafts: dict[str, Crafted],
                 k: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The example figure's data: the first k images, the first defence's adversarial versions, and
    per (defence, method) the magnitude maps on clean and adversarial images. Stored beside the
    results (Run.figure_data): a rerun redraws without crafting or explaining."""
    key = {"defences": [(d.row, d.classifier.config_hash) for d in defences], "methods": {m: ex.key() for m, ex in methods.items()},
           "images": split.name, "n": len(split), "k": k, "seed": run.seed,
           "attacks": {d.row: crafts[d.row].job.attack.spec(crafts[d.row].job.eps) for d in defences}}
    names = [(d, m) for d in defences for m in methods]

    def compute():
        x = to_float(split.x[:k])
        out = {"x": x, "adv": crafts[defences[0].row].adv[:k]}
        for i, (d, m) in enumerate(names):
            out[f"clean{i}"] = explain(d, methods[m], x, run.seed, k, progress=False).magnitude
            out[f"adv{i}"] = explain(d, methods[m], crafts[d.row].adv[:k], run.seed + 1, k, progress=False).magnitude
        return out

    t = run.figure_data("10_map_examples", key, compute)
    return t["x"], t["adv"], {f"{d.row} · {m}": (t[f"clean{i}"], t[f"adv{i}"]) for i, (d, m) in enumerate(names)}


def grounded_examples(run, defence: Defence, methods: dict[str, Any], data: Grounded, k: int) -> dict[str, torch.Tensor]:
    """The pasted-object figure's data: the first k images and each method's magnitude maps of
    `defence` on them (stored beside the results, like example_maps)."""
    key = {"defence": (defence.row, defence.classifier.config_hash), "methods": {m: ex.key() for m, ex in methods.items()},
           "images": data.split.name, "k": k, "seed": run.seed}

    def compute():
        x = to_float(data.split.x[:k])
        return {"x": x, "mask": data.mask[:k].float(),
                **{f"map{i}": explain(defence, ex, x, run.seed, k, progress=False).magnitude for i, ex in enumerate(methods.values())}}

    t = run.figure_data("10_pasted_examples", key, compute)
    return {"x": t["x"], "mask": t["mask"] > 0.5, "maps": {m: t[f"map{i}"] for i, m in enumerate(methods)}}


def unrelated(y: torch.Tensor, seed: int) -> torch.Tensor:
    """(N,) a partner for each image: a seeded random image of another class (of another index
    where every image has the same class)."""
    g = torch.Generator().manual_seed(seed)
    y = y.cpu()
    out = torch.empty(len(y), dtype=torch.long)
    for i in range(len(y)):
        others = torch.nonzero(y != y[i]).flatten()
        if not len(others):
            others = torch.tensor([j for j in range(len(y)) if j != i] or [i])
        out[i] = others[torch.randint(len(others), (1,), generator=g)]
    return out


def pair_scores(a: Maps, b: Maps, partner: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Per-image SSIM (magnitude and signed) and Spearman between a[i] and b[i] (b[partner[i]])."""
    idx = torch.arange(len(a.predicted)) if partner is None else partner
    return {"attribution_ssim": sal.ssim(a.magnitude, b.magnitude[idx]),
            "attribution_ssim_signed": sal.ssim(a.signed, b.signed[idx], data_range=2.0),
            "attribution_spearman": sal.spearman(a.magnitude, b.magnitude[idx])}


def _num(v):
    """A float for a record, None where it is undefined (NaN)."""
    return None if v is None or v != v else float(v)


def _make(run, defence: Defence, method: str, metric: str, value, n: int, dataset: str, attack=None, eps=None,
          extra=None, wall=None, **setting) -> dict[str, Any]:
    ctx = run.context(model=defence.model, model_hash=defence.classifier.config_hash)
    return make_record(**{**ctx, "setting": {**defence.setting(), "method": method, **setting}}, dataset=dataset,
                       metric=metric, attack=attack, eps=canonical_eps(eps),
                       eps_reading=None if eps is None else eps_reading(eps, "cifar10"), value=value, n=n,
                       seed=run.seed, wall_time_s=wall, extra=extra or {})


def stability_scores(defence: Defence, explainer, split: Split, adv: torch.Tensor | None, seed: int, batch_size: int,
                     progress: bool = True) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray | None, float]:
    """Table 2's measurement: per pair of PAIRS its per-image pair_scores, the per-image "the attack
    flipped the prediction", and the seconds the maps took. Clean maps use `seed`, adversarial ones
    seed + 1, the second clean run seed + 2. adv None: the two clean-only pairs (no flips).
    `stability` records it; replication.verify re-measures it."""
    x = to_float(split.x)
    clean = explain(defence, explainer, x, seed, batch_size, progress)
    attacked = None if adv is None else explain(defence, explainer, adv, seed + 1, batch_size, progress)
    rerun = explain(defence, explainer, x, seed + 2, batch_size, progress)  # in this order: as first recorded
    per_pair = {PAIRS[1]: pair_scores(clean, rerun), PAIRS[2]: pair_scores(clean, clean, unrelated(split.y, seed))}
    wall, flipped = clean.seconds + rerun.seconds, None
    if attacked is not None:
        per_pair = {PAIRS[0]: pair_scores(clean, attacked), **per_pair}
        flipped, wall = (clean.predicted != attacked.predicted).numpy(), wall + attacked.seconds
    return per_pair, flipped, wall


def stability(run, defence: Defence, method: str, explainer, split: Split, adv: dict[str, Any], budget,
              progress: bool = True) -> list[dict[str, Any]]:
    """Table 2 for one (defence, method): every pair's SSIM, signed SSIM and Spearman (mean and 95%
    interval over images), the share of predictions the attack flipped, and the clean-vs-adversarial
    SSIM split by flipped / kept, on the images of `split` (adv["adv"]: their adversarial versions).
    Reused from the results file when already measured."""
    x, dataset = split.x, split.name
    job = adv.job if isinstance(adv, Crafted) else adv["job"]
    spec = job.attack.spec(job.eps)
    extra_attack = {"threat": job.threat.label}
    templates = [_make(run, defence, method, m, None, len(x), dataset, spec, job.eps, pair=p, **extra_attack)
                 for p in PAIRS for m in MAP_METRICS]
    templates.append(_make(run, defence, method, "prediction_flip_rate", None, len(x), dataset, spec, job.eps, **extra_attack))
    found = stored_all(templates)
    if found is not None:
        return run.add(found)
    per_pair, flipped, wall = stability_scores(defence, explainer, split, adv.adv if isinstance(adv, Crafted) else adv["adv"],
                                               run.seed, budget.batch_size, progress)
    recs = []
    for t in templates:
        m, p = t["metric"], t["setting"].get("pair")
        if m == "prediction_flip_rate":
            t.update(value=float(flipped.mean()), wall_time_s=round(wall, 2),
                     extra={"s_per_image_per_map": round(wall / (3 * len(x)), 5)})
        else:
            v = per_pair[p][m]
            mean, lo, hi, n = sal.interval(v)
            extra = {"ci_low": _num(lo), "ci_high": _num(hi), "n_finite": n}
            if p == PAIRS[0]:
                extra.update({"flipped": _num(sal.interval(v[flipped])[0]) if flipped.any() else None,
                              "kept": _num(sal.interval(v[~flipped])[0]) if (~flipped).any() else None,
                              "per_image": [_num(round(float(u), 4)) for u in v]})
            t.update(value=_num(mean), extra=extra, wall_time_s=round(wall, 2))
        recs.append(t)
    save_records(run.experiment, run.profile.name, recs, run.provenance())
    return run.add(recs)


def ground_scores(defence: Defence, explainer, data: Grounded, seed: int, batch_size: int,
                  progress: bool = True) -> tuple[dict[str, Any], int, float]:
    """Table 3's measurement: ({"followed_share": share, and where any image is followed, per kept
    image "saliency_iou", "pointing_game", "saliency_iou_random_map", "saliency_chance_share"},
    images kept, seconds the maps took). `grounding` records it; replication.verify re-measures it."""
    maps = explain(defence, explainer, to_float(data.split.x), seed, batch_size, progress)
    keep = maps.predicted == data.target.cpu()
    mask = data.mask[keep]
    values: dict[str, Any] = {"followed_share": float(keep.float().mean())}
    n_kept = int(keep.sum())
    if n_kept:
        g = torch.Generator().manual_seed(seed)
        values.update(saliency_iou=sal.topk_iou(maps.magnitude[keep], mask),
                      pointing_game=sal.pointing_game(maps.magnitude[keep], mask).astype(float),
                      saliency_iou_random_map=sal.topk_iou(torch.rand(mask.shape, generator=g), mask),
                      saliency_chance_share=sal.chance_share(mask))
    return values, n_kept, maps.seconds


def grounding(run, defence: Defence, method: str, explainer, data: Grounded, budget, progress: bool = True) -> list[dict[str, Any]]:
    """Table 3 for one (defence, method) on one construction: on the images where the defence
    predicts the masked pixels' class, the top-|mask| IoU, the pointing game, a random map's IoU and
    the |mask| / (H W) chance share; and that share of images (`followed_share`)."""
    dataset = data.split.name
    setting = {"construction": data.construction}
    metrics = ("saliency_iou", "pointing_game", "saliency_iou_random_map", "saliency_chance_share", "followed_share")
    templates = [_make(run, defence, method, m, None, len(data), dataset, **setting) for m in metrics]
    found = stored_all(templates, match_n=False)  # n is the images the defence followed: an outcome
    if found is not None:
        return run.add(found)
    values, n_kept, seconds = ground_scores(defence, explainer, data, run.seed, budget.batch_size, progress)
    recs = []
    for t in templates:
        m = t["metric"]
        if m == "followed_share":
            t.update(value=values[m], wall_time_s=round(seconds, 2))
        elif m in values:
            mean, lo, hi, _ = sal.interval(values[m])
            t.update(value=_num(mean), n=n_kept, extra={"ci_low": _num(lo), "ci_high": _num(hi)})
        else:  # no image followed the mask's class: nothing to score
            t.update(n=0, extra={"reason": "the defence never predicts the masked pixels' class"})
        recs.append(t)
    save_records(run.experiment, run.profile.name, recs, run.provenance())
    return run.add(recs)


# ---- reading the records back ----------------------------------------------------------------------------
def frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The records of notebook 10 as a long frame: defence, method, pair / construction, metric,
    value with its interval, n."""
    rows = []
    for r in records:
        s = r["setting"]
        if "method" not in s:
            continue
        e = r.get("extra") or {}
        rows.append({"defence": s["defence"], "method": s["method"], "pair": s.get("pair"),
                     "construction": s.get("construction"), "metric": r["metric"], "value": r["value"],
                     "ci_low": e.get("ci_low"), "ci_high": e.get("ci_high"), "n": r["n"],
                     "flipped": e.get("flipped"), "kept": e.get("kept"), "threat": s.get("threat"),
                     "attack": None if r["attack"] is None else r["attack"]["name"], "wall_time_s": r["wall_time_s"]})
    return pd.DataFrame(rows)


def cost_table(df: pd.DataFrame) -> pd.DataFrame:
    """Maps per second of each (defence, method) on this machine: Table 2's three maps per image
    (clean, adversarial, clean again), purification included for purified defences."""
    d = df[df.metric == "prediction_flip_rate"].set_index(["defence", "method"])
    return pd.DataFrame({"maps": 3 * d.n, "minutes": d.wall_time_s / 60, "maps per s": 3 * d.n / d.wall_time_s})


def table2(df: pd.DataFrame, metric: str = "attribution_ssim") -> pd.DataFrame:
    """SSIM (or `metric`) per defence and method: clean vs adversarial beside its two floors, the
    split by flipped / kept predictions, and the flip rate."""
    d = df[df.metric == metric]
    out = d.pivot_table(index=["defence", "method"], columns="pair", values="value", sort=False)[list(PAIRS)]
    adv = d[d.pair == PAIRS[0]].set_index(["defence", "method"])
    out["CI low"], out["CI high"] = adv.ci_low, adv.ci_high
    out["… flipped"], out["… kept"] = adv.flipped, adv.kept
    flips = df[df.metric == "prediction_flip_rate"].set_index(["defence", "method"]).value
    out["predictions flipped (%)"] = 100 * flips
    return out


def table3(df: pd.DataFrame) -> pd.DataFrame:
    """IoU, pointing game and the chance levels per construction, defence and method."""
    d = df[df.construction.notna()]
    out = d.pivot_table(index=["construction", "defence", "method"], columns="metric", values="value", sort=False)
    n = d[d.metric == "saliency_iou"].set_index(["construction", "defence", "method"]).n
    out["images scored"] = n
    cols = ["saliency_iou", "saliency_iou_random_map", "saliency_chance_share", "pointing_game", "followed_share", "images scored"]
    return out[[c for c in cols if c in out]]


# Our reading of Paper B's Table 2/3 columns: SHAP = GradientShap maps of the SHAP-refined model
# (Table 1's SHAP row), LIME = LIME maps of the LIME-refined model, ALDE = Integrated Gradients on
# purified inputs of ALDE.
PAPER_COLUMNS = {"SHAP": ("SHAP refinement (Paper A, GradientShap)", "GradientShap"),
                 "LIME": ("LIME refinement (Paper A)", "LIME"), "ALDE": ("ALDE", "Integrated Gradients")}


def table2_ours(t2: pd.DataFrame) -> pd.DataFrame:
    """Our numbers for Paper B's Table 2 columns (PAPER_COLUMNS): SSIM clean vs adversarial, beside
    the two floors."""
    out = {}
    for method, key in PAPER_COLUMNS.items():
        if key in t2.index:
            r = t2.loc[key]
            out[method] = {"ours: clean vs adversarial": r[PAIRS[0]], "ours: same image, two seeds": r[PAIRS[1]],
                           "ours: unrelated images": r[PAIRS[2]]}
    return pd.DataFrame.from_dict(out, orient="index")


def table3_ours(t3: pd.DataFrame) -> pd.DataFrame:
    """Our IoU for Paper B's Table 3 columns, per construction beside the random map: SHAP / LIME =
    GradientShap / LIME maps of the construction's undefended model (Paper A's refinements exist
    for the natural CIFAR-10 model only), ALDE = Integrated Gradients on purified inputs."""
    out: dict[str, dict[str, float]] = {}
    for construction in t3.index.get_level_values(0).unique():
        sub = t3.loc[construction]
        for method, (defence, m) in {"SHAP": ("undefended", "GradientShap"), "LIME": ("undefended", "LIME"),
                                     "ALDE": ("ALDE", "Integrated Gradients")}.items():
            if (defence, m) in sub.index:
                out.setdefault(method, {})[f"ours: {construction}"] = sub.loc[(defence, m), "saliency_iou"]
                out[method][f"random map: {construction}"] = sub.loc[(defence, m), "saliency_iou_random_map"]
    return pd.DataFrame.from_dict(out, orient="index")


# ---- the ImageNet rows (a user-supplied subset and torchvision's weights; imagenet.py) --------------------
def imagenet_rows(run, split: Split, model: torch.nn.Module, weights: str | None, explainers: dict[str, Any],
                  eps: float, pgd_steps: int, budget, progress: bool = True) -> list[dict[str, Any]]:
    """Table 2 for the undefended torchvision ResNet-50 on an ImageNet subset: PGD (step eps/4) on
    the classifier, then `stability` per method. No ImageNet diffusion model exists here, so there
    is no ALDE row on ImageNet."""
    from ..train import TrainResult
    from .defences import _pgd

    d = Defence("undefended (torchvision ResNet-50, ImageNet)", "resnet50_imagenet",
                TrainResult(model, [], None, True, config_hash=f"torchvision-resnet50-{weights or 'untrained'}"))
    job = Job(_pgd(pgd_steps), ad.Threat("classifier"), eps)
    x = to_float(split.x)
    advs = []
    with eval_mode(model):
        for s in range(0, len(x), budget.batch_size):
            advs.append(ad.craft(job.attack, model, x[s:s + budget.batch_size], split.y[s:s + budget.batch_size], eps,
                                 seed=run.seed + s).cpu())
    adv = {"adv": torch.cat(advs), "job": job}
    return [r for name, ex in explainers.items()
            for r in stability(run, d, name, ex, split, adv, budget, progress=progress)]


# ---- Table 3's data and defences ---------------------------------------------------------------------------
GROUND_TRUTH_MODELS = {"planted square": "resnet18_cifar10_shortcut", "pasted object": "resnet18_cifar10_pasted"}


def grounded_sets(profile, seed: int, n: int) -> dict[str, Grounded]:
    """The first n test images of each ground-truth construction (grounded.py)."""
    from .. import zoo
    from ..grounded import planted_square

    sets = {"planted square": planted_square(zoo.shortcut_data(profile, seed)[2]), "pasted object": zoo.pasted_data(profile, seed)[1]}
    return {c: g.select(torch.arange(min(n, len(g)))) for c, g in sets.items()}


def ground_truth_defences(profile, seed: int, grounded: dict[str, Grounded], denoiser, config):
    """(defence, data) pairs of Table 3: each construction's undefended model, its PGD-AT fine-tune,
    and that behind the purifier (ALDE). The models are lazy (zoo.lazy): built, with the training
    data they need, only when a record of theirs is missing."""
    from .. import zoo

    for c, data in grounded.items():
        name = GROUND_TRUTH_MODELS[c]
        clf, adv_clf = zoo.lazy(name, profile, seed), zoo.lazy(f"{name}_pgdat", profile, seed)
        for d in (Defence("undefended", name, clf), Defence("PGD-AT", f"{name}_pgdat", adv_clf),
                  Defence("ALDE", f"{name}_pgdat", adv_clf, denoiser, config)):
            yield d, data
