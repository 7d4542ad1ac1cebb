"""A gradient-masking checklist over one model's accuracy records (Athalye et al. 2018; Carlini et
al. 2019, "On evaluating adversarial robustness"; Croce & Hein 2020).

Each check passes, fails, or is `None` when the records do not hold what it needs. A failure is
reported, never hidden: it says the white-box numbers of that model may overstate its robustness.
Tolerances are in images (`slack_images`, for noise: one step can turn a wrong prediction right)
and, for AutoAttack, in accuracy (`aa_margin`).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

WHITE_BOX = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "autoattack", "pyautoattack")


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["attack"].notna() & df["metric"].isin(["accuracy", "robust_accuracy"])].copy()
    d["value"] = d["value"].astype(float)
    d["eps"] = d["eps"].astype(float)
    for c in ("attack_steps", "attack_restarts", "attack_eot"):
        d[c] = d[c].fillna(1).astype(int) if c in d.columns else 1
    return d


def _result(name: str, ok: bool | None, evidence: str) -> dict[str, Any]:
    return {"check": name, "pass": ok, "evidence": evidence}


def checklist(df: pd.DataFrame, *, slack_images: int = 2, aa_margin: float = 0.02, large_eps: float = 0.25,
              zero_tol: float = 0.01) -> pd.DataFrame:
    """The checks for one model's records (a `query` frame: attack, attack_steps, attack_restarts, eps,
    value as a fraction, n), one row each: check, pass (True / False / None), evidence."""
    d = _rows(df)
    if not len(d):
        return pd.DataFrame([_result("any attack evaluated", None, "no attacked records")])
    n = int(d["n"].max())
    slack = slack_images / n
    out = []

    bad = []
    for (a, s, r, e), g in d.groupby(["attack", "attack_steps", "attack_restarts", "attack_eot"]):
        g = g.sort_values("eps")
        v, eps = g["value"].tolist(), g["eps"].tolist()
        bad += [f"{a}-{s}: {v[i]:.3f} @ {eps[i]:.4g} -> {v[i + 1]:.3f} @ {eps[i + 1]:.4g}"
                for i in range(len(v) - 1) if v[i + 1] > v[i] + slack]
    out.append(_result("accuracy non-increasing in eps", not bad, "; ".join(bad) or "every attack, every eps"))

    fgsm, pgd = d[d["attack"] == "fgsm"], d[d["attack"] == "pgd"]
    common = sorted(set(fgsm["eps"]) & set(pgd["eps"]))
    bad = [f"@ {r.eps:.4g}: PGD-{r.attack_steps}x{r.attack_restarts} {r.value:.3f} > FGSM "
           f"{fgsm[fgsm['eps'] == r.eps]['value'].min():.3f}"
           for r in pgd[pgd["eps"].isin(common)].itertuples()
           if r.value > fgsm[fgsm["eps"] == r.eps]["value"].min() + slack]  # every PGD configuration
    out.append(_result("PGD <= FGSM", (not bad) if common else None,
                       "; ".join(bad) or (f"{len(common)} eps" if common else "no eps with both")))

    bad, pairs = [], 0
    for e, g in pgd.groupby("eps"):
        rows = list(g.itertuples())
        for a in rows:
            for b in rows:
                stronger = (b.attack_steps >= a.attack_steps and b.attack_restarts >= a.attack_restarts
                            and (b.attack_steps, b.attack_restarts) != (a.attack_steps, a.attack_restarts))
                if stronger:
                    pairs += 1
                    if b.value > a.value + slack:
                        bad.append(f"@ {e:.4g}: PGD-{b.attack_steps}x{b.attack_restarts} {b.value:.3f} > "
                                   f"PGD-{a.attack_steps}x{a.attack_restarts} {a.value:.3f}")
    out.append(_result("more steps / restarts never raise accuracy", (not bad) if pairs else None,
                       "; ".join(bad) or (f"{pairs} pairs" if pairs else "one PGD configuration only")))

    square, white = d[d["attack"] == "square"], d[d["attack"].isin(WHITE_BOX)]
    common = sorted(set(square["eps"]) & set(white["eps"]))
    bad = [f"@ {e:.4g}: Square {square[square['eps'] == e]['value'].min():.3f} < white-box "
           f"{white[white['eps'] == e]['value'].min():.3f}"
           for e in common if square[square["eps"] == e]["value"].min() < white[white["eps"] == e]["value"].min() - slack]
    out.append(_result("black-box Square never beats white-box", (not bad) if common else None,
                       "; ".join(bad) or (f"{len(common)} eps" if common else "Square not evaluated")))

    aa = d[d["attack"].isin(["autoattack", "pyautoattack"])]
    iterative = d[d["attack"].isin(["pgd", "apgd-ce", "apgd-dlr"])]
    common = sorted(set(aa["eps"]) & set(iterative["eps"]))
    n_aa = int(aa["n"].max()) if len(aa) else n
    bad = [f"@ {e:.4g}: AutoAttack {aa[aa['eps'] == e]['value'].min():.3f} vs best PGD "
           f"{iterative[iterative['eps'] == e]['value'].min():.3f}"
           for e in common  # the margin counted in images: stored fractions carry float32 rounding
           if round((iterative[iterative["eps"] == e]["value"].min() - aa[aa["eps"] == e]["value"].min()) * n_aa)
           > aa_margin * n_aa + 1e-6]
    out.append(_result(f"AutoAttack within {100 * aa_margin:g} pp of the best PGD", (not bad) if common else None,
                       "; ".join(bad) or (f"{len(common)} eps" if common else "AutoAttack not evaluated")))

    big = d[(d["eps"] - large_eps).abs() < 1e-9]
    worst = big["value"].min() if len(big) else None
    out.append(_result(f"accuracy ~ 0 at eps = {large_eps:g}", None if worst is None else bool(worst <= zero_tol),
                       "not evaluated" if worst is None else f"strongest attack leaves {worst:.3f}"))
    return pd.DataFrame(out)
