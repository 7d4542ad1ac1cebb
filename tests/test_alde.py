"""Notebook 09's attacks on a purified classifier: batched EOT-PGD against torchattacks' EOTPGD, EOT
averaging the copies' gradients, BPDA's identity backward, the scores over purifier draws, and a
resumable side-by-side measurement."""
import pytest
import torch
import torch.nn.functional as F

from replication import notebook
from replication.attacks import Attack
from replication.data import Split
from replication.paper_b import adaptive as ad
from replication.paper_b import alde, ddpm, defences
from replication.profiles import get_profile
from replication.train import TrainResult


class Linear(torch.nn.Module):
    """A deterministic classifier on 3x8x8 images (float64, so gradients compare exactly)."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(10, 3 * 8 * 8, generator=g, dtype=torch.float64) * 0.3)

    def forward(self, x):
        return x.flatten(1).to(self.w) @ self.w.T


class Noisy(torch.nn.Module):
    """The linear classifier on x + sigma * noise, the noise drawn per call (or given)."""

    def __init__(self, sigma=0.3):
        super().__init__()
        self.lin, self.sigma, self.noise = Linear(), sigma, None

    def forward(self, x):
        n = torch.randn_like(x) if self.noise is None else self.noise
        return self.lin(x + self.sigma * n)


def test_batched_eot_pgd_is_torchattacks_eotpgd_on_a_deterministic_model():
    import torchattacks

    model = Linear().eval()
    x, y = torch.rand(5, 3, 8, 8, dtype=torch.float64), torch.arange(5)
    torch.manual_seed(3)
    ours = ad.eot_pgd(model, x, y, 8 / 255, 2 / 255, 5, eot=3)
    torch.manual_seed(3)
    ref = torchattacks.EOTPGD(model, eps=8 / 255, alpha=2 / 255, steps=5, eot_iter=3, random_start=True)(x, y)
    assert torch.allclose(ours, ref.to(ours), atol=1e-12)
    assert (ours - x).abs().max() <= 8 / 255 + 1e-12 and not torch.equal(ours, x)


def test_eot_gradient_sums_the_copies_gradients_each_with_its_own_noise():
    model = Noisy()
    x, y = torch.rand(4, 3, 8, 8, dtype=torch.float64), torch.tensor([1, 2, 3, 4])
    torch.manual_seed(0)
    batched = ad.eot_gradient(model, x, y, eot=6, max_batch=10)  # 24 images in passes of 10: chunking too
    torch.manual_seed(0)  # what the chunked calls drew, in order
    noise = torch.cat([torch.randn(n, 3, 8, 8, dtype=torch.float64) for n in (10, 10, 4)])
    expected = torch.zeros_like(x)
    for k in range(6):
        xk = x.clone().requires_grad_(True)
        model.noise = noise[4 * k:4 * k + 4]
        (g,) = torch.autograd.grad(F.cross_entropy(model(xk), y, reduction="sum"), xk)
        expected += g
    assert torch.allclose(batched, expected, atol=1e-10)
    model.noise = None
    torch.manual_seed(1)
    one = ad.eot_gradient(model, x, y, eot=1)
    assert not torch.allclose(one * 6, batched, atol=1e-3)  # the copies differ: averaging does something


def test_eot_with_many_samples_approaches_the_expected_gradient():
    model = Noisy(sigma=0.5)
    x, y = torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1])
    torch.manual_seed(0)
    ref = ad.eot_gradient(model, x, y, eot=4000) / 4000
    errs = []
    for k in (4, 64):
        torch.manual_seed(k)
        errs.append(float((ad.eot_gradient(model, x, y, eot=k) / k - ref).norm() / ref.norm()))
    assert errs[1] < errs[0] and errs[1] < 0.3


def test_bpda_passes_the_gradient_at_the_purified_image_straight_to_the_input():
    torch.manual_seed(0)
    net = ddpm.NoisePredictor(ddpm.unet([8, 16], layers_per_block=1)).eval()
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()
    cfg = ddpm.PurifierConfig(0.1, 2, seed=5)
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 3])
    xb = x.clone().requires_grad_(True)
    (g_bpda,) = torch.autograd.grad(F.cross_entropy(alde.BPDA(ddpm.Purifier(net, cfg), clf)(xb), y), xb)
    with torch.no_grad():
        purified = ddpm.Purifier(net, cfg)(x)
    pb = purified.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(F.cross_entropy(clf(pb), y), pb)
    assert torch.allclose(g_bpda, g_ref)
    xe = x.clone().requires_grad_(True)  # the exact gradient differs from BPDA's (the purifier is not the identity)
    (g_exact,) = torch.autograd.grad(F.cross_entropy(ddpm.Defended(ddpm.Purifier(net, cfg), clf)(xe), y), xe)
    assert not torch.allclose(g_exact, g_bpda, atol=1e-6)


def test_threats_scores_and_intervals():
    with pytest.raises(ValueError, match="Unknown threat"):
        ad.Threat("adjoint")
    with pytest.raises(ValueError, match="EOT is implemented"):
        Attack("square", eot=2)
    assert Attack("apgd-ce", steps=5, eot=3).spec(0.03)["eot"] == 3
    s = ad.scores(torch.tensor([3, 2, 3, 0], dtype=torch.uint8), 3)
    assert s["mean over draws"] == pytest.approx(8 / 12) and s["worst of 3 draws"] == 0.5
    assert ad.from_hex(ad.to_hex(torch.tensor([0, 7, 10], dtype=torch.uint8))).tolist() == [0, 7, 10]
    lo, hi = ad.wilson(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    net = ddpm.NoisePredictor(ddpm.unet([8, 16], layers_per_block=1))
    clf = torch.nn.Identity()
    cfg = ddpm.PurifierConfig(0.1, 2)
    assert ad.attacked_model(ad.Threat("classifier"), net, cfg, clf) is clf
    assert isinstance(ad.attacked_model(ad.Threat("bpda"), net, cfg, clf), alde.BPDA)
    exact = ad.attacked_model(ad.Threat("exact", "fixed"), net, cfg, clf, fixed_seed=4)
    assert exact.purifier.config.checkpoint and exact.purifier.config.seed == 4
    assert ad.deployed(net, replace_seed(cfg, 4), clf).purifier.config.seed is None


def replace_seed(cfg, seed):
    from dataclasses import replace
    return replace(cfg, seed=seed)


def test_side_by_side_measurement_resumes_and_scores_every_job(isolated_store):
    torch.manual_seed(0)
    B = get_profile("smoke").purification
    net = ddpm.NoisePredictor(ddpm.unet([8, 16], layers_per_block=1)).eval()
    from replication.models import build_model
    clf = build_model("resnet18", 10, 4, "cifar10").eval()
    x = (torch.rand(12, 3, 32, 32) * 255).to(torch.uint8)
    split = Split("cifar10", False, x, torch.arange(12) % 10, 10)
    splits = {"all": split, "grid": split.select(torch.arange(6))}
    tr = TrainResult(clf, [], None, True, "clfhash")
    den = TrainResult(net, [], None, True, "ddpmhash")
    d = defences.Defence("ALDE", "resnet18_cifar10_pgdat", tr, den, ddpm.PurifierConfig(0.1, 2))
    jobs = defences.jobs_for(d, B, 8 / 255, [0.01], 64 / 255)
    run = notebook.Run("09_purification_and_adversarial_training", get_profile("smoke"), 0, {}, torch.device("cpu"))
    first = defences.measure(run, d, splits, jobs, B, progress=False)
    assert len({r["run_id"] for r in first}) == 1
    # clean (2 scores) + the rest with 2 scores each, fixed-noise jobs with a third
    fixed = sum(j.threat.noise == "fixed" for j in jobs)
    assert len(first) == 2 * len(jobs) + fixed
    again = notebook.Run("09_purification_and_adversarial_training", get_profile("smoke"), 0, {}, torch.device("cpu"))
    second = defences.measure(again, d, splits, jobs, B, progress=False)
    assert [r["run_id"] for r in second] == [r["run_id"] for r in first]  # all reused, nothing measured twice
    df = defences.frame(second)
    assert set(df.threat) >= {"BPDA", "exact gradients + EOT", "exact gradients, fixed noise", "PGD on the classifier alone"}
    for r in second:
        if r["setting"]["score"].startswith("worst"):
            mean = next(q for q in second if q["attack"] == r["attack"] and q["eps"] == r["eps"]
                        and q["setting"] == {**r["setting"], "score": defences.MEAN})
            assert r["value"] <= mean["value"] + 1e-12  # the worst case never beats the mean
    w = defences.worst_over_attacks(df, "ALDE", 8)
    assert w["n"] == 12 and w["worst"] <= w["mean"] <= df[(df.attack == "clean")].accuracy.max() + 1e-9
    checks = defences.checklist(df, "ALDE", 8, 64)
    assert {c["check"] for c in checks} and all(c["pass"] in (True, False, None) for c in checks)
    run.add([])
    again.check(monotone=())


def test_projected_cost_orders_the_attacks_and_scales_with_eot():
    from replication.paper_b import ddpm, defences
    from replication.profiles import get_profile

    P = get_profile("smoke")
    t = defences.projected_cost(P, ddpm.PurifierConfig(0.1, 2, "ddpm"), 8 / 255, [0.01], 64 / 255, sustained_tflops=1.0)
    at8 = t[t["eps (/255)"] == 8.0].set_index(["attack", "threat"]).PFLOP
    pgd = f"PGD-{P.purification.pgd_steps}"
    assert at8[(pgd, "exact gradients, fixed noise")] > at8[(pgd, "BPDA")] > at8[(pgd, "PGD on the classifier alone")]
    clean = float(t[t.attack == "clean"].PFLOP.iloc[0])  # scoring alone: every job pays it once
    eot = P.purification.eot
    assert at8[(f"{pgd} x EOT-{eot}", "exact gradients + EOT")] - clean == pytest.approx(
        eot * (at8[(pgd, "exact gradients, fixed noise")] - clean))
    assert t["projected hours"].sum() == pytest.approx(t.PFLOP.sum() * 1e15 / 1e12 / 3600)
