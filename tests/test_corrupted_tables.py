"""Paper A Table I rendering on hand-made numbers: means over severities, the mean/std rows, the
paper's columns beside ours under both readings, and corrupted vs uncorrupted."""
import pandas as pd
import pytest

from replication.paper_a import corrupted


def _long():
    rows = []
    for role, base in (("baseline", 10.0), ("refined", 50.0)):
        for c, off in (("fog", 0.0), ("frost", 10.0)):
            for sev in (0, 1, 2, 3, 4, 5):
                name = "none" if sev == 0 else c
                if sev == 0 and c == "frost":
                    continue
                rows.append({"role": role, "corruption": name, "severity": sev, "attack": "clean",
                             "paper_eps": None, "reading": None, "accuracy": 90.0 - sev})
                for p in corrupted.eps_points():
                    for attack in ("FGSM", "PGD"):
                        v = base + off + sev + (5 if attack == "FGSM" else 0) - 100 * p["paper_eps"]
                        v += 0 if p["reading"] == "pixel" else 20
                        rows.append({"role": role, "corruption": name, "severity": sev, "attack": attack,
                                     "paper_eps": p["paper_eps"], "reading": p["reading"], "accuracy": v})
    return pd.DataFrame(rows)


def test_table1_averages_severities_and_adds_mean_and_std_rows():
    t = corrupted.table1(_long(), "pixel")
    assert list(t.index) == ["fog", "frost", "mean", "std"]
    # fog, baseline, FGSM @ 0.01: 10 + mean(1..5) + 5 - 1 = 17
    assert t.loc["fog", ("FGSM", 0.01, "baseline")] == pytest.approx(17.0)
    assert t.loc["frost", ("PGD", 0.03, "refined")] == pytest.approx(50 + 10 + 3 - 3)
    assert t.loc["mean", ("FGSM", 0.01, "baseline")] == pytest.approx(22.0)
    assert t.loc["std", ("FGSM", 0.01, "baseline")] == pytest.approx(5.0)  # population std of 17, 27
    assert corrupted.table1(_long(), "normalised").loc["fog", ("FGSM", 0.01, "baseline")] == pytest.approx(37.0)
    # the paper's column order: eps, then attack, then role
    assert [c[:2] for c in t.columns][:4] == [("FGSM", 0.01)] * 2 + [("PGD", 0.01)] * 2


def test_beside_paper_puts_every_cell_of_the_paper_beside_ours():
    b = corrupted.beside_paper(_long())
    fog = b[(b["corruption"] == "fog") & (b["attack"] == "FGSM") & (b["paper eps"] == 0.01) & (b["role"] == "refined")]
    assert fog["paper"].item() == 57.69  # Paper A Table I, fog, FGSM 0.01, refined
    assert fog["ours, pixel"].item() == pytest.approx(50 + 3 + 5 - 1)
    assert fog["ours, normalised"].item() == pytest.approx(50 + 3 + 5 - 1 + 20)
    assert len(b) == (12 + 2) * 12  # the paper's 12 rows + mean + std, 12 columns each
    gauss = b[b["corruption"] == "gaussian_noise"]
    assert gauss["ours, pixel"].isna().all()  # not in the hand-made data: missing, not invented


def test_corrupted_vs_uncorrupted():
    t = corrupted.corrupted_vs_clean(_long())
    row = t.loc[("baseline", "FGSM @ 0.01 (pixel)")]
    assert row["uncorrupted"] == pytest.approx(10 + 5 - 1)
    assert row["corrupted - uncorrupted (pp)"] == pytest.approx(22.0 - 14.0)
    assert t.loc[("refined", "clean")]["uncorrupted"] == pytest.approx(90.0)
