"""The claims file and its verdicts: computed from records by the stated rules (checked exactly on a
small fixture, every verdict kind), and every claim's query selecting the committed `cpu` records
it should: none missing, none doubled."""
import math

import pytest
import yaml
from scipy.stats import binomtest

from replication import claims

FIXTURE = [
    # experiment, model, metric, attack, eps, value, n, setting, extra
    ("e", "base", "accuracy", "fgsm", 0.01, 0.55, 400, {}, {}),
    ("e", "base", "accuracy", "pgd", 0.01, 0.20, 400, {}, {}),
    ("e", "refined", "accuracy", "pgd", 0.01, 0.70, 400, {"refinement": "full"}, {}),
    ("e", "other", "accuracy", "pgd", 0.01, 0.45, 400, {"refinement": "full"}, {}),
    ("e", "refined", "paired_difference_mean", "pgd", 0.01, 0.002, 2000, {"a": "lime", "b": "random"}, {}),
    ("e", "refined", "paired_difference_ci95", "pgd", 0.01, 0.02, 2000, {"a": "lime", "b": "random"}, {}),
    ("e", "base", "bound_violation_rate", None, None, 0.9, 100, {}, {}),
    ("e", "base", "alignment_spearman", None, None, 0.15, 453, {}, {}),
    ("e", "base", "saliency_iou", None, None, 0.48, 500, {"defence": "ALDE"}, {"ci_low": 0.45, "ci_high": 0.51}),
]


def _records():
    return [{"experiment": e, "dataset": "cifar10", "model": m, "metric": k, "setting": s, "run_id": f"run-{i}",
             "attack": None if a is None else {"name": a, "steps": 20 if a == "pgd" else 1, "restarts": 1, "eot": 1, "step_size": None},
             "eps": eps, "value": v, "n": n, "extra": x}
            for i, (e, m, k, a, eps, v, n, s, x) in enumerate(FIXTURE)]


def q(model, metric="accuracy", attack="pgd", **kw):
    return {"experiment": "e", "model": model, "metric": metric, "attack": attack, "eps": 0.01, **kw}


CLAIMS = {"sections": [{"title": "fixture", "claims": [
    {"id": "level-ok", "paper": "A", "where": "Fig. 3", "claim": "c", "paper_value": 0.5429,
     "query": q("base", attack="fgsm"), "rule": {"kind": "level", "tol": 0.05}},
    {"id": "level-off", "paper": "A", "where": "Fig. 3", "claim": "c", "paper_value": 0.4406,
     "query": q("base"), "rule": {"kind": "level", "tol": 0.05}},
    {"id": "gain-size-off", "paper": "A", "where": "Fig. 3", "claim": "c", "paper_value": 0.2735,
     "a": q("refined"), "b": q("base"), "rule": {"kind": "direction", "tol": 0.05}},
    {"id": "gain-ok", "paper": "A", "where": "Fig. 3", "claim": "c", "paper_value": 0.2735,
     "a": q("refined"), "b": q("other"), "rule": {"kind": "direction", "tol": 0.05}},
    {"id": "gain-opposite", "paper": "A", "where": "Table I", "claim": "c", "paper_value": 0.1,
     "a": q("base"), "b": q("base", attack="fgsm"), "rule": {"kind": "direction", "tol": 0.05}},
    {"id": "paired-null", "paper": "A", "where": "§III", "claim": "c",
     "query": q("refined", "paired_difference_mean", setting={"a": "lime"}), "rule": {"kind": "direction", "sign": 1}},
    {"id": "bound", "paper": "A", "where": "eq 22", "claim": "c",
     "query": {"experiment": "e", "metric": "bound_violation_rate"}, "rule": {"kind": "at_most", "tol": 0.05, "contradicted_above": 0.5}},
    {"id": "weak-correlation", "paper": "A", "where": "eq 19", "claim": "c",
     "query": {"experiment": "e", "metric": "alignment_spearman"}, "rule": {"kind": "direction", "sign": 1, "min_effect": 0.3}},
    {"id": "stored-interval", "paper": "B", "where": "Table 3", "claim": "c", "paper_value": 0.63,
     "query": {"experiment": "e", "metric": "saliency_iou", "setting": {"defence": "ALDE"}}, "rule": {"kind": "level", "tol": 0.05, "unit": "score"}},
    {"id": "imagenet", "paper": "B", "where": "Table 1", "claim": "c", "rule": {"kind": "not_testable"}, "why": "no ImageNet"},
]}]}


@pytest.fixture()
def fixture_claims(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(CLAIMS))
    return claims.load_claims(path)


def _wilson(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


def test_the_verdict_table_is_computed_exactly(fixture_claims):
    t = claims.table(claims.verdicts(_records(), fixture_claims))
    assert list(t["verdict"]) == ["reproduced", "not reproduced", "direction only", "reproduced", "contradicted",
                                  "not reproduced", "contradicted", "direction only", "not reproduced", "not testable here"]
    assert set(claims.VERDICTS) <= set(t["verdict"])  # every kind of verdict appears
    row = t.loc["level-ok"]
    assert row["ours"] == 0.55 and math.isclose(row["delta"], 0.55 - 0.5429)
    assert (row["ci low"], row["ci high"]) == pytest.approx(_wilson(220, 400), abs=1e-9)  # scipy's Wilson interval
    # a difference: a - b, the half widths added in quadrature
    lo_a, hi_a = _wilson(280, 400)
    lo_b, hi_b = _wilson(80, 400)
    half = math.hypot((hi_a - lo_a) / 2, (hi_b - lo_b) / 2)
    row = t.loc["gain-size-off"]
    assert row["ours"] == pytest.approx(0.5) and row["delta"] == pytest.approx(0.5 - 0.2735)
    assert (row["ci low"], row["ci high"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert t.loc["paired-null", ["ci low", "ci high"]].tolist() == pytest.approx([0.002 - 0.02, 0.002 + 0.02])
    z = math.atanh(0.15)
    assert t.loc["weak-correlation", "ci low"] == pytest.approx(math.tanh(z - 1.959964 / math.sqrt(450)))
    assert t.loc["stored-interval", ["ci low", "ci high"]].tolist() == [0.45, 0.51]
    assert t.loc["imagenet", "reason"] == "no ImageNet" and math.isnan(t.loc["imagenet", "ours"])
    assert t.loc["gain-ok", "runs"] == ["run-2", "run-3"]  # each verdict names the runs of its records
    md = claims.markdown(claims.verdicts(_records(), fixture_claims), "cpu")
    assert "| level-ok: c | A Fig. 3 | 54.3 | 55.0 |" in md and "**not testable here**" in md


def test_a_query_matching_no_record_or_too_many_is_an_error(fixture_claims):
    none = claims.Claim("x", "A", "w", "c", {"kind": "level", "tol": 0.05}, 0.5, query=q("nobody"))
    with pytest.raises(claims.QueryError, match="matched 0 records"):
        claims.judge(none, _records())
    two = claims.Claim("y", "A", "w", "c", {"kind": "level", "tol": 0.05}, 0.5,
                       query={"experiment": "e", "metric": "accuracy", "attack": "pgd", "setting": {"refinement": "full"}})
    with pytest.raises(claims.QueryError, match="matched 2 records"):
        claims.judge(two, _records())


def test_every_claim_selects_its_committed_cpu_records():
    cl = claims.load_claims()
    assert 30 <= len(cl) <= 60
    vs = claims.verdicts(claims.profile_records("cpu"), cl)  # a QueryError here names the claim's query
    assert all(v.verdict in claims.VERDICTS for v in vs)
    assert {c.paper for c in cl} == {"A", "B"}
    assert sum(v.verdict == "not testable here" for v in vs) >= 2 and all(v.claim.why for v in vs if v.ours is None)
