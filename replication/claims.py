"""The two papers' claims as data (data_files/claims.yaml) and their verdicts, computed from records.

Each claim names where the paper makes it, the paper's number where it gives one, the query that
selects our records and the rule that decides it. Nothing here is typed by hand: a verdict is what
the rule says about the selected records.

Queries. `query` (one value) or `a` and `b` (a difference a - b) select records by their fields:
experiment, model, dataset, metric, attack (name, and steps where given; "clean" for none), eps
(pixel eps, or `paper_eps` with its `reading`, converted by papers.pixel_eps), n, and `setting`
(every key given must equal the record's; `setting_absent` lists keys the record must not have).
`reduce` says how several matches become one value: "one" (the default: exactly one record must
match), "min" (the strongest of several attacks) or "mean" (e.g. over corruptions); `expect`
bounds how many records may match. A query that matches no record, or more than it should, is an
error (QueryError), never a quiet verdict.

Intervals. Where a record carries ci_low / ci_high they are used; an accuracy-like share uses
Wilson's interval of a proportion on n images; a Spearman correlation Fisher's z; a mean over
records the widest interval of one of them (the sets share their images). A difference of two
values adds their variances (independent images: conservative where they are the same images).
A paired difference uses its own ..._ci95 record (CI_RECORDS); a mean over training seeds its own
(over seeds) added in quadrature to Wilson's (over images).

Rules (`rule.kind`), with values in the records' units (shares in [0, 1]):
- level: |ours - paper| <= tol: reproduced; else not reproduced.
- direction (a sign claimed, with the paper's size where it gives one): the interval excludes zero
  on the paper's side: reproduced if |ours - paper| <= tol (or no size is claimed; where the paper
  gives no size, `min_effect` is the least effect that counts, e.g. a Spearman of 0.3), else
  direction only; excludes zero on the other side: contradicted; else not reproduced.
- at_most (a share the claim says is about zero, e.g. a bound's violations): the interval reaches
  down to `tol`: reproduced; its lower end above `contradicted_above`: contradicted; else not
  reproduced.
- not_testable: the claim cannot be tested here; `why` says why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from .paths import DATA_FILES_DIR

# metrics whose 95% interval (a half width) is another record of the same measurement
CI_RECORDS = {"paired_difference_mean": "paired_difference_ci95", "accuracy_mean_over_seeds": "accuracy_ci95_over_seeds"}
VERDICTS = ("reproduced", "direction only", "not reproduced", "contradicted", "not testable here")
Z95 = 1.959964


class QueryError(LookupError):
    """A claim's query matched no record, or more than it should."""


@dataclass
class Claim:
    id: str
    paper: str
    where: str
    claim: str
    rule: dict[str, Any]
    paper_value: float | None = None
    query: dict[str, Any] | None = None
    a: dict[str, Any] | None = None
    b: dict[str, Any] | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    section: str = ""
    why: str = ""


@dataclass
class Estimate:
    value: float
    low: float
    high: float
    records: list[dict[str, Any]]


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    ours: Estimate | None
    delta: float | None
    reason: str

    def row(self) -> dict[str, Any]:
        c, e = self.claim, self.ours
        return {"id": c.id, "paper": c.paper, "where": c.where, "claim": c.claim, "paper value": c.paper_value,
                "ours": None if e is None else e.value, "ci low": None if e is None else e.low,
                "ci high": None if e is None else e.high, "delta": self.delta, "verdict": self.verdict,
                "reason": self.reason, "runs": sorted({r["run_id"] for r in (e.records if e else [])}),
                "notebook": c.evidence.get("notebook"), "figure": c.evidence.get("figure")}


@cache
def _load(path: str) -> tuple[Claim, ...]:
    with open(path) as f:
        raw = yaml.safe_load(f)
    claims = []
    for section in raw["sections"]:
        for c in section["claims"]:
            unknown = set(c) - set(Claim.__dataclass_fields__)
            if unknown:
                raise ValueError(f"claim {c.get('id')!r}: unknown keys {sorted(unknown)}")
            claims.append(Claim(section=section["title"], **c))
    ids = [c.id for c in claims]
    if len(ids) != len(set(ids)):
        raise ValueError("claim ids repeat: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
    for c in claims:
        if c.rule["kind"] not in ("level", "direction", "at_most", "not_testable"):
            raise ValueError(f"claim {c.id!r}: unknown rule {c.rule['kind']!r}")
        if c.rule["kind"] != "not_testable" and (c.query is None) == (c.a is None):
            raise ValueError(f"claim {c.id!r}: give either `query` or `a` and `b`")
    return tuple(claims)


def load_claims(path=None) -> list[Claim]:
    return list(_load(str(path or DATA_FILES_DIR / "claims.yaml")))


# ---- selecting records ---------------------------------------------------------------------------------
def _pixel_eps(q: dict[str, Any]) -> float | None:
    from .papers import pixel_eps

    if "paper_eps" in q:
        return pixel_eps(q["paper_eps"], q["dataset"], q["reading"])
    return q.get("eps")


def matches(rec: dict[str, Any], q: dict[str, Any]) -> bool:
    from .results import canonical_eps

    for k in ("experiment", "model", "dataset", "metric", "n"):
        if k in q and rec.get(k) != q[k]:
            return False
    if "attack" in q:
        a = rec.get("attack")
        if q["attack"] == "clean":
            if a is not None:
                return False
        elif a is None or a["name"] != q["attack"] or ("steps" in q and a["steps"] != q["steps"]):
            return False
    eps = _pixel_eps(q)
    if eps is not None and (rec.get("eps") is None or canonical_eps(rec["eps"]) != canonical_eps(eps)):
        return False
    s = rec.get("setting") or {}
    if any(s.get(k) != v for k, v in (q.get("setting") or {}).items()):
        return False
    return not any(k in s for k in q.get("setting_absent", ()))


def select(records: list[dict[str, Any]], q: dict[str, Any]) -> list[dict[str, Any]]:
    """The records `q` selects; QueryError if none, or more than `expect` (default: 1 for
    reduce "one", any number otherwise)."""
    found = [r for r in records if r["experiment"] == q["experiment"] and matches(r, q)]
    reduce = q.get("reduce", "one")
    lo, hi = q.get("expect", [1, 1] if reduce == "one" else [1, 10**9])
    if not lo <= len(found) <= hi:
        raise QueryError(f"query {q} matched {len(found)} records, expected {lo}..{hi}")
    return found


def _interval(rec: dict[str, Any]) -> tuple[float, float]:
    extra, v, n = rec.get("extra") or {}, rec["value"], rec["n"]
    if extra.get("ci_low") is not None and extra.get("ci_high") is not None:
        return extra["ci_low"], extra["ci_high"]
    if "spearman" in rec["metric"] and n > 3:
        z, se = math.atanh(max(min(v, 0.999999), -0.999999)), 1 / math.sqrt(n - 3)
        return math.tanh(z - Z95 * se), math.tanh(z + Z95 * se)
    if 0 <= v <= 1 and n > 0:  # Wilson's interval of a proportion: inside [0, 1] even at 0% or 100%
        z2 = Z95 * Z95 / n
        centre, half = (v + z2 / 2) / (1 + z2), Z95 * math.sqrt(v * (1 - v) / n + z2 / (4 * n)) / (1 + z2)
        return centre - half, centre + half
    return v, v


def estimate(records: list[dict[str, Any]], q: dict[str, Any]) -> Estimate:
    found = select(records, q)
    reduce = q.get("reduce", "one")
    if reduce == "min":
        pick = min(found, key=lambda r: r["value"])
        lo, hi = _interval(pick)
        return Estimate(pick["value"], lo, hi, found)
    if reduce == "mean":
        v = sum(r["value"] for r in found) / len(found)
        half = max((h - lo) / 2 for lo, h in map(_interval, found))
        return Estimate(v, v - half, v + half, found)
    (r,) = found
    sibling = CI_RECORDS.get(r["metric"])
    if sibling:  # a mean over seeds or a paired difference: its interval is a record of its own
        (c,) = select(records, {**q, "metric": sibling})
        half = c["value"]
        if r["metric"] == "accuracy_mean_over_seeds":  # seeds vary the model; the images vary too
            lo, hi = _interval(r)
            half = math.hypot(half, (hi - lo) / 2)
        return Estimate(r["value"], r["value"] - half, r["value"] + half, found + [c])
    lo, hi = _interval(r)
    return Estimate(r["value"], lo, hi, found)


def difference(a: Estimate, b: Estimate) -> Estimate:
    half = math.hypot((a.high - a.low) / 2, (b.high - b.low) / 2)
    v = a.value - b.value
    return Estimate(v, v - half, v + half, a.records + b.records)


# ---- verdicts ---------------------------------------------------------------------------------------------
def judge(claim: Claim, records: list[dict[str, Any]]) -> Verdict:
    rule = claim.rule
    if rule["kind"] == "not_testable":
        return Verdict(claim, "not testable here", None, None, claim.why)
    est = estimate(records, claim.query) if claim.query else difference(estimate(records, claim.a), estimate(records, claim.b))
    pv, tol = claim.paper_value, rule.get("tol")
    delta = None if pv is None else est.value - pv
    if rule["kind"] == "level":
        ok = abs(delta) <= tol
        return Verdict(claim, "reproduced" if ok else "not reproduced", est, delta,
                       f"|ours - paper| {'<=' if ok else '>'} {tol:g}")
    if rule["kind"] == "at_most":
        if est.low <= tol:
            return Verdict(claim, "reproduced", est, delta, f"interval reaches {tol:g}")
        if est.low > rule.get("contradicted_above", tol):
            return Verdict(claim, "contradicted", est, delta, f"interval above {rule.get('contradicted_above', tol):g}")
        return Verdict(claim, "not reproduced", est, delta, f"interval above {tol:g}")
    sign = rule.get("sign", 1 if pv is None or pv >= 0 else -1)
    if (est.low > 0 and sign > 0) or (est.high < 0 and sign < 0):
        if "min_effect" in rule and abs(est.value) < rule["min_effect"]:
            return Verdict(claim, "direction only", est, delta, f"same sign, interval excludes 0, |effect| < {rule['min_effect']:g}")
        if tol is None or pv is None or abs(delta) <= tol:
            return Verdict(claim, "reproduced", est, delta, "same sign, interval excludes 0" + ("" if tol is None or pv is None else f", within {tol:g}"))
        return Verdict(claim, "direction only", est, delta, f"same sign, interval excludes 0, size off by {delta:+.3g}")
    if (est.high < 0 and sign > 0) or (est.low > 0 and sign < 0):
        return Verdict(claim, "contradicted", est, delta, "opposite sign, interval excludes 0")
    return Verdict(claim, "not reproduced", est, delta, "interval includes 0")


def verdicts(records: list[dict[str, Any]], claims: list[Claim] | None = None, *, strict: bool = True) -> list[Verdict]:
    """Every claim's verdict. strict=False (the smoke profile, whose records are a sketch): a claim
    whose records are not there gets "no record" instead of raising QueryError."""
    out = []
    for c in claims if claims is not None else load_claims():
        try:
            out.append(judge(c, records))
        except QueryError as exc:
            if strict:
                raise QueryError(f"claim {c.id!r}: {exc}") from None
            out.append(Verdict(c, "no record", None, None, str(exc)))
    return out


def profile_records(profile: str) -> list[dict[str, Any]]:
    """Every record of a profile's results files."""
    import json

    from .paths import results_dir

    out = []
    for path in sorted(results_dir(profile).glob("*.json")):
        out += json.loads(path.read_text()).get("records", [])
    return out


def table(vs: list[Verdict]):
    import pandas as pd

    return pd.DataFrame([v.row() for v in vs]).set_index("id")


def _pct(v: float | None, share: bool) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f}" if share else f"{v:.3f}"


def markdown(vs: list[Verdict], profile: str) -> str:
    """The verdict table as Markdown: one row per claim, values in % for shares."""
    lines = [f"| claim | where | paper | ours ({profile}) | 95% interval | Δ | verdict |", "|---|---|---|---|---|---|---|"]
    for v in vs:
        c, e = v.claim, v.ours
        share = c.rule.get("unit", "share") == "share"
        ci = "–" if e is None else f"[{_pct(e.low, share)}, {_pct(e.high, share)}]"
        lines.append(f"| {c.id}: {c.claim} | {c.paper} {c.where} | {_pct(c.paper_value, share)} | "
                     f"{_pct(None if e is None else e.value, share)} | {ci} | {_pct(v.delta, share)} | **{v.verdict}** |")
    return "\n".join(lines)
