"""Paper B's Table 1 as a set of defences, each attacked side by side (notebook 09).

A `Defence` is a classifier, optionally behind the purifier: Table 1's rows (LIME and SHAP =
Paper A's refinement driven by those attributions; ALDE = the PGD-AT classifier behind the
purifier) plus the parts of ALDE on their own (the undefended model, PGD-AT alone, the purifier in
front of the undefended model). A `Job` is one attack (attacks.Attack) under one threat
(adaptive.Threat) at one eps; `measure` runs the jobs on the same images, scores each under k
purifier draws (mean and worst case) and saves after every job, so an interrupted run resumes
from the results file. `table` and `checklist` read the records back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..attacks import Attack
from ..data import Split
from ..papers import eps_reading
from ..progress import bar
from ..evaluate import model_of
from ..results import canonical_eps, make_record, save_records, stored_all
from ..train import TrainResult
from . import adaptive as ad
from .ddpm import PurifierConfig

MEAN = "mean over draws"


def worst(k: int) -> str:
    return f"worst of {k} draws"


@dataclass
class Defence:
    row: str                           # the Table 1 row it is
    model: str                         # the classifier's zoo name
    classifier: TrainResult
    denoiser: TrainResult | None = None
    config: PurifierConfig | None = None
    setting_: dict[str, Any] | None = None  # what else the records carry (e.g. the refinement)

    @property
    def purified(self) -> bool:
        return self.denoiser is not None

    def setting(self) -> dict[str, Any]:
        s = {"defence": self.row, **(self.setting_ or {})}
        if self.purified:
            s.update({k: v for k, v in self.config.setting().items() if k != "purifier_noise"}, ddpm_hash=self.denoiser.config_hash)
        return s


DEFENCES = ("ALDE", "purifier + undefended classifier", "PGD-AT", "undefended", "LIME refinement (Paper A)",
               "SHAP refinement (Paper A, GradientShap)")


def table1(run, denoiser: TrainResult, config: PurifierConfig) -> list[Defence]:
    """Paper B's Table 1 rows and ALDE's parts as defences, in DEFENCES order: ALDE (the PGD-AT
    classifier behind the purifier), the purifier in front of the undefended classifier, PGD-AT
    alone, the undefended classifier, and Paper A's full refinement with LIME's and with
    GradientShap's masks (Table 1's LIME / SHAP rows, our reading). Every classifier is lazy
    (zoo.lazy, Study.refined_by): built only when a record of its defence is missing. Notebooks 09
    and 10 both take their rows from here."""
    from .. import zoo
    from ..explain import CaptumExplainer
    from ..paper_a.study import Study

    P, seed = run.profile, run.seed
    at_name = f"{P.adversarial.archs[0]}_cifar10_pgdat"
    at, base = zoo.lazy(at_name, P, seed), zoo.lazy("resnet18_cifar10", P, seed)
    study = Study(run)
    shap = CaptumExplainer("gradient_shap", name="gradient_shap")
    rows = [Defence(DEFENCES[0], at_name, at, denoiser, config),
            Defence(DEFENCES[1], "resnet18_cifar10", base, denoiser, config),
            Defence(DEFENCES[2], at_name, at),
            Defence(DEFENCES[3], "resnet18_cifar10", base),
            Defence(DEFENCES[4], "resnet18_cifar10", study.refined_by(None), setting_={"explainer": "lime"}),
            Defence(DEFENCES[5], "resnet18_cifar10", study.refined_by(shap), setting_={"explainer": "gradient_shap"})]
    return rows


@dataclass(frozen=True)
class Job:
    attack: Attack | None      # None: the clean images
    threat: ad.Threat
    eps: float | None
    subset: str = "all"        # "all" or "grid" (the purifier grid's smaller subset)
    draws: int | None = None   # purifier draws it is scored under (None: the budget's)


def _pgd(steps: int, eot: int = 1) -> Attack:
    """PGD with step eps / 4 whatever the step count (2/255 at 8/255)."""
    return Attack("pgd", steps=steps, eot=eot, step_factor=steps / 4)


def jobs_for(defence: Defence, budget, eps_main: float, eps_grid: list[float], large_eps: float) -> list[Job]:
    """The attacks of the side-by-side table for one defence. Unpurified: PGD at every eps, APGD-CE /
    DLR at eps_main, PGD at large_eps. Purified: PGD on the classifier alone, BPDA and exact
    gradients with the noise fixed (deterministic, so no EOT needed) at every eps, the last also at
    large_eps; then at eps_main exact gradients with EOT: for ALDE the sweep over 1, light_eot and
    eot samples and APGD-CE / DLR with apgd_eot; for the purifier in front of the undefended model
    light_eot only."""
    B = budget
    pgd = _pgd(B.pgd_steps)
    clean = [Job(None, ad.Threat("classifier"), None)]
    if not defence.purified:  # a deterministic classifier: PGD, APGD-CE / DLR, and the large-eps sanity point
        jobs = [Job(pgd, ad.Threat("classifier"), e) for e in [*eps_grid, eps_main]]
        jobs += [Job(Attack(n, steps=B.apgd_steps), ad.Threat("classifier"), eps_main) for n in ("apgd-ce", "apgd-dlr")]
        return clean + jobs + [Job(pgd, ad.Threat("classifier"), large_eps)]
    light = _pgd(B.pgd_steps, B.light_eot)
    sweep = [_pgd(B.pgd_steps, e) for e in (B.eot, 1, B.light_eot)]
    # eps_main first (the headline), so a run cut short has measured what matters most
    jobs = [Job(pgd, ad.Threat(g, n), eps_main) for g, n in (("classifier", "fresh"), ("bpda", "fresh"), ("exact", "fixed"))]
    if defence.row == "ALDE":  # the defence the paper proposes: the EOT sweep and APGD with EOT
        jobs += [Job(a, ad.Threat("exact"), eps_main) for a in sweep]
        jobs += [Job(Attack(n, steps=B.apgd_steps, eot=B.apgd_eot), ad.Threat("exact"), eps_main) for n in ("apgd-ce", "apgd-dlr")]
    else:  # the purifier in front of the undefended model: the lighter EOT only
        jobs += [Job(light, ad.Threat("exact"), eps_main)]
    jobs += [Job(pgd, ad.Threat(g, n), e) for e in eps_grid for g, n in (("classifier", "fresh"), ("bpda", "fresh"), ("exact", "fixed"))]
    jobs += [Job(pgd, ad.Threat("exact", "fixed"), large_eps)]
    return list(dict.fromkeys(clean + jobs))  # a small budget can make two jobs one (eot == light_eot)


def comparison_jobs(budget, eps: float) -> list[Job]:
    """Clean accuracy and PGD at eps on a classifier (the FGSM-RS vs PGD adversarial-training check)."""
    pgd = _pgd(budget.pgd_steps)
    return [Job(None, ad.Threat("classifier"), None), Job(pgd, ad.Threat("classifier"), eps)]


def grid_jobs(budget, eps: float) -> list[Job]:
    """One purifier-grid cell: clean accuracy and PGD with exact gradients (one EOT sample, fresh
    noise) on the grid subset, one draw each (the grid ranks settings; the table attacks harder)."""
    pgd = _pgd(budget.grid_pgd_steps)
    return [Job(None, ad.Threat("classifier"), None, "grid", 1), Job(pgd, ad.Threat("exact"), eps, "grid", 1)]


def _records(run, defence: Defence, split: Split, job: Job, k: int, value: dict[str, float] | None,
             extra: dict[str, Any] | None, wall: float | None) -> list[dict[str, Any]]:
    """The job's records (value None: templates whose keys say whether the job was measured)."""
    spec = None if job.attack is None else job.attack.spec(job.eps)
    base = {**defence.setting(), "subset": job.subset, "draws": k}
    if job.attack is not None:
        base.update(job.threat.setting())
    scores = [MEAN] + ([worst(k)] if k > 1 else []) + (["fixed noise, as attacked"] if job.threat.noise == "fixed" and defence.purified else [])
    ctx = run.context(model=defence.model, model_hash=defence.classifier.config_hash)
    eps = canonical_eps(job.eps)
    return [make_record(**{**ctx, "setting": {**base, "score": s}}, dataset=split.name, metric="accuracy", attack=spec,
                        eps=eps, eps_reading=None if eps is None else eps_reading(eps, "cifar10"),
                        value=None if value is None else value[s], n=len(split), seed=run.seed, wall_time_s=wall,
                        extra=extra or {}) for s in scores]


def measure(run, defence: Defence, splits: dict[str, Split], jobs: list[Job], budget, *, progress: bool = True) -> list[dict[str, Any]]:
    """Every job on its subset (same images for every defence), scored with budget.draws purifier
    draws (one for an unpurified classifier); records already in the results file are reused."""
    out = []
    for job in bar(jobs, desc=defence.row, enabled=progress):
        split = splits[job.subset]
        k = (job.draws or budget.draws) if defence.purified else 1
        found = stored_all(_records(run, defence, split, job, k, None, None, None))
        if found is not None:
            out += found
            continue
        res = ad.run_attack(job.attack, job.threat, job.eps, split, denoiser=defence.denoiser and defence.denoiser.model,
                            config=defence.config, classifier=model_of(defence.classifier), k=k, seed=run.seed,
                            batch_size=budget.batch_size, progress=progress, max_batch=budget.max_batch)
        value = ad.scores(res["counts"], k)
        if "fixed_counts" in res:
            value["fixed noise, as attacked"] = float(res["fixed_counts"].float().mean())
        extra = {"correct_draws": ad.to_hex(res["counts"]), "craft_s": round(res["craft_s"], 2), "score_s": round(res["score_s"], 2)}
        recs = _records(run, defence, split, job, k, value, extra, res["craft_s"] + res["score_s"])
        save_records(run.experiment, run.profile.name, recs, run.provenance())
        out += recs
    return run.add(out)


# ---- reading the records back -------------------------------------------------------------------------
def frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Accuracy records of the defences as a long frame: defence, attack label, threat, eps (x255),
    score, accuracy (%), Wilson 95% interval (%), n, attack minutes."""
    rows = []
    for r in records:
        s = r["setting"]
        if r["metric"] != "accuracy" or "defence" not in s:
            continue
        a = r["attack"]
        label = "clean" if a is None else (f"{a['name'].upper()}-{a['steps']}" + (f" x EOT-{a['eot']}" if a["eot"] > 1 else ""))
        lo, hi = ad.wilson(r["value"], r["n"])
        rows.append({"defence": s["defence"], "subset": s["subset"], "attack": label,
                     "threat": "-" if a is None else ad.Threat(s["threat"], s["attack_noise"]).label,
                     "eps (/255)": None if r["eps"] is None else round(r["eps"] * 255, 2), "score": s["score"],
                     "accuracy": 100 * r["value"], "ci_low": 100 * lo, "ci_high": 100 * hi, "n": r["n"],
                     "attack min": r["extra"].get("craft_s", 0) / 60, "eot": None if a is None else a["eot"],
                     "t_star": s.get("t_star"), "sampler": s.get("sampler"), "nfe": s.get("purifier_steps"), "hex": r["extra"].get("correct_draws"),
                     "draws": s["draws"], "score_s": r["extra"].get("score_s", 0)})
    return pd.DataFrame(rows)


def worst_over_attacks(df: pd.DataFrame, defence: str, eps255: float) -> dict[str, float]:
    """Per image the worst outcome over every attack at eps on the "all" subset: the mean score
    takes each image's fewest correct draws, the worst-case score needs all draws of all attacks."""
    sub = df[(df.defence == defence) & (df["eps (/255)"] == round(eps255, 2)) & (df.subset == "all") & (df.score == MEAN)]
    if sub.empty:
        return {}
    counts = np.stack([ad.from_hex(h) for h in sub.hex])
    k = int(sub.draws.iloc[0])
    fewest = counts.min(0)
    return {"mean": 100 * float((fewest / k).mean()), "worst": 100 * float((fewest == k).mean()), "attacks": len(sub), "n": counts.shape[1]}


def checklist(df: pd.DataFrame, defence: str, eps255: float, large255: float, slack: float = 1.0) -> list[dict[str, Any]]:
    """The gradient-masking checklist for a purified defence (pass True / False, None: not run):
    accuracy ~0 at a large eps; BPDA and transfer from the classifier never stronger than exact
    gradients; more EOT samples never raise accuracy. `slack` in percentage points."""
    d = df[(df.defence == defence) & (df.subset == "all") & (df.score == MEAN)]

    def acc(threat, eps, eot=None):
        m = d[(d.threat == threat) & (d["eps (/255)"] == round(eps, 2))]
        if eot is not None:
            m = m[m.eot == eot]
        return None if m.empty else float(m.accuracy.min())

    exact = {e: acc("exact gradients + EOT", eps255, e) for e in sorted(d[d.threat == "exact gradients + EOT"].eot.unique())}
    strongest_exact = min([v for v in exact.values() if v is not None] + [acc("exact gradients, fixed noise", eps255) or 1e9])
    out = []

    def check(name, ok, evidence):
        out.append({"defence": defence, "check": name, "pass": ok, "evidence": evidence})

    large = acc("exact gradients, fixed noise", large255)
    check(f"accuracy ~0 at eps {large255:g}/255 (<= 2%)", None if large is None else large <= 2.0, f"{large}")
    for threat in ("BPDA", "PGD on the classifier alone"):
        v = acc(threat, eps255)
        check(f"{threat} not stronger than exact gradients at {eps255:g}/255",
              None if v is None else v >= strongest_exact - slack, f"{threat} {v} vs exact {strongest_exact}")
    eots = [(e, v) for e, v in exact.items() if v is not None]
    check("more EOT samples never raise accuracy", None if len(eots) < 2 else all(b <= a + slack for (_, a), (_, b) in zip(eots, eots[1:])),
          json.dumps({int(e): v for e, v in eots}))
    return out


def grid_table(df: pd.DataFrame) -> pd.DataFrame:
    """The purifier grid: clean and robust accuracy (%) and cost per (t*, sampler, network evaluations)."""
    g = df[(df.subset == "grid") & (df.score == MEAN)]
    clean = g[g.attack == "clean"].set_index(["t_star", "sampler", "nfe"])
    rob = g[g.attack != "clean"].set_index(["t_star", "sampler", "nfe"])
    out = pd.DataFrame({"clean": clean.accuracy, "robust": rob.accuracy, "robust CI low": rob.ci_low,
                        "robust CI high": rob.ci_high,
                        "ms per image": 1000 * clean.score_s / (clean.n * clean.draws),
                        "attack min": rob["attack min"]})
    return out.sort_index()


def summary(df: pd.DataFrame, eps255: float) -> pd.DataFrame:
    """One row per defence at eps: clean accuracy, each attack's accuracy (mean over draws), the
    per-image worst over all of them, and that under the worst-of-k-draws score (%)."""
    rows = {}
    for name, d in df[df.subset == "all"].groupby("defence", sort=False):
        m = d[d.score == MEAN]
        row = {"clean": float(m[m.attack == "clean"].accuracy.iloc[0]) if (m.attack == "clean").any() else None}
        at = m[m["eps (/255)"] == round(eps255, 2)]
        for _, r in at.iterrows():
            row[f"{r.attack} · {r.threat}"] = r.accuracy
        w = worst_over_attacks(df, name, eps255)
        row["worst over attacks"] = w.get("mean")
        row["… and worst of the draws"] = w.get("worst")
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


TABLE1_ROWS = {"LIME": "LIME refinement (Paper A)", "SHAP": "SHAP refinement (Paper A, GradientShap)", "ALDE": "ALDE"}


def table1_ours(summ: pd.DataFrame) -> pd.DataFrame:
    """Our numbers for Paper B's three Table 1 methods: the naive one (PGD on the classifier alone,
    what a paper that never attacks the purifier reports) and the worst over our attacks."""
    naive = [c for c in summ.columns if c.endswith("PGD on the classifier alone")]
    out = {}
    for method, row in TABLE1_ROWS.items():
        if row in summ.index:
            r = summ.loc[row]
            out[method] = {"ours: clean": r["clean"], "ours: PGD on the classifier alone": r[naive[0]] if naive else None,
                           "ours: worst over attacks": r["worst over attacks"], "ours: … worst of the draws": r["… and worst of the draws"]}
    return pd.DataFrame.from_dict(out, orient="index")


def cost_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per defence and attack (all eps together): CPU minutes crafting, and the throughput of one
    attack iteration in image x EOT-sample gradient passes per second."""
    d = df[(df.subset == "all") & (df.attack != "clean") & (df.score == MEAN)].copy()
    d["steps"] = d.attack.str.extract(r"-(\d+)")[0].astype(float)
    d["passes"] = d.n * d.steps * d.eot
    g = d.groupby(["defence", "attack", "threat"], sort=False).agg(**{"attack min": ("attack min", "sum"), "passes": ("passes", "sum")})
    g["image-iterations per s"] = g.passes / (60 * g["attack min"]).clip(lower=1e-9)
    return g.drop(columns="passes")


# ---- what the `full` plan would cost (a projection, not a measurement) --------------------------------
def forward_flops(model: torch.nn.Module, *inputs) -> int:
    """FLOPs of one forward pass (torch's FlopCounterMode: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*inputs)
    return int(fc.get_total_flops())


def projected_cost(profile, config: PurifierConfig, eps: float, eps_grid: list[float], large_eps: float, *,
                   sustained_tflops: float, measured: pd.DataFrame | None = None) -> pd.DataFrame:
    """ALDE's attack plan at `profile` (jobs_for, the ALDE row) in FLOPs, and hours at an assumed
    `sustained_tflops`. An attack step costs, per image and EOT sample: exact gradients 3x a forward
    through the sampler's network evaluations and the classifier (forward + backward); BPDA a
    purifier forward and 3x the classifier; the classifier alone 3x the classifier. Scoring costs one
    forward per image and purifier draw. `measured` (frame() of a run at this profile): adds the
    minutes that run took and the FLOP rate it achieved, the check on the formula."""
    from ..models import build_model
    from .ddpm import build

    B, A = profile.purification, profile.adversarial
    x = torch.zeros(1, 3, 32, 32)
    u = forward_flops(build(profile.diffusion).eval(), x, torch.tensor([100]))
    c = forward_flops(build_model(A.archs[0], 10, profile.models[A.archs[0]].width).eval(), x)
    nfe = config.nfe
    step = {"exact": 3 * (nfe * u + c), "bpda": nfe * u + 3 * c, "classifier": 3 * c}
    d = Defence("ALDE", "projection", TrainResult(None, [], None, True, ""), TrainResult(None, [], None, True, ""), config)
    rows = []
    for job in jobs_for(d, B, eps, eps_grid, large_eps):
        n = B.n_images
        steps = 0 if job.attack is None else job.attack.steps * job.attack.eot * job.attack.restarts
        flops = n * steps * step[job.threat.gradient] + n * B.draws * (nfe * u + c)
        rows.append({"attack": "clean" if job.attack is None else f"{job.attack.name.upper()}-{job.attack.steps}"
                     + (f" x EOT-{job.attack.eot}" if job.attack.eot > 1 else ""),
                     "threat": "-" if job.attack is None else job.threat.label,
                     "eps (/255)": None if job.eps is None else round(job.eps * 255, 2), "PFLOP": flops / 1e15,
                     "projected hours": flops / (sustained_tflops * 1e12) / 3600})
    out = pd.DataFrame(rows)
    if measured is not None:
        m = measured[(measured.defence == "ALDE") & (measured.subset == "all") & (measured.score == MEAN)
                     & (measured.t_star == config.t_star) & (measured.nfe == nfe)]
        m = m.assign(seconds=60 * m["attack min"] + m.score_s)[["attack", "threat", "eps (/255)", "seconds"]]
        out = out.merge(m, on=["attack", "threat", "eps (/255)"], how="left")
        out["measured min"] = out.seconds / 60
        out["achieved TFLOP/s"] = out.PFLOP * 1e3 / out.seconds
        out = out.drop(columns="seconds")
    out.attrs.update(unet_gflops=u / 1e9, classifier_gflops=c / 1e9, sustained_tflops=sustained_tflops)
    return out
