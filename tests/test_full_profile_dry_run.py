"""The `full` profile has never run (no GPU has been lent to this project): prove its code paths on
the CPU. Every `full` model is built at its real width and goes through the real trainer for one
step, one FGSM and one PGD step of the evaluation, and one LIME batch on 2 images; the full-width
ResNet-18 also takes one refinement step (mask + reg + adv). Only batch sizes and sample counts
shrink, so that this takes seconds, not days.
"""
import dataclasses

import pytest
import torch

from replication.attacks import Attack
from replication.data import load_split, to_float
from replication.evaluate import evaluate
from replication.explain import lime
from replication.paper_a import refine as rf
from replication.profiles import get_profile
from replication.segments import segment_batch
from replication.train import config_for, train_model

FULL = get_profile("full")


@pytest.fixture(scope="module")
def two_images():
    return load_split("cifar10", True, n=10, seed=0).select(torch.arange(2))


@pytest.mark.parametrize("arch", sorted(FULL.models))
def test_full_model_trains_attacks_and_explains(arch, two_images, isolated_store):
    m = FULL.models[arch]
    cfg = config_for(arch, "cifar10", m, batch_size=2, epochs=1, n_train=2)
    assert cfg.width == m.width and cfg.lr == m.lr  # the profile's model, at its real width
    res = train_model(cfg, f"dry-{arch}", "full", two_images, progress=False)
    assert len(res.history) == 1 and torch.isfinite(torch.tensor(res.history[0]["train_loss"]))
    assert res.path.exists() and not (isolated_store / "checkpoints" / "MANIFEST.json").exists()
    ctx = {"experiment": "dry", "profile": "full", "run_id": "r", "model": None, "model_hash": res.config_hash,
           "setting": {}}
    attacks = {Attack("fgsm"): [8 / 255], Attack("pgd", steps=1, restarts=FULL.pgd.restarts): [8 / 255]}
    recs = evaluate(res.model, two_images, attacks, context=ctx, progress=False)
    assert [r["attack"] and r["attack"]["name"] for r in recs] == [None, "fgsm", "pgd"]
    assert all(0 <= r["value"] <= 1 for r in recs)
    x, y = to_float(two_images.x), two_images.y
    segments, counts = segment_batch(x, "slic", n_segments=50)
    out = lime(res.model, x, y, segments, counts, n_samples=16, seed=0, chunk=FULL.lime.chunk, progress=False)
    assert out.beta.shape[0] == 2 and torch.isfinite(out.beta).all()


def test_full_refinement_step(two_images, isolated_store):
    base = train_model(config_for("resnet18", "cifar10", FULL.models["resnet18"], batch_size=2, epochs=1, n_train=2),
                       "dry-base", "full", two_images, progress=False)
    budget = dataclasses.replace(FULL.refine, epochs=1, batch_size=2)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 4:12, 4:12] = True
    spec = rf.RefineSpec("mask+reg+adv", mask=True, reg=True, adv=True)
    out = rf.refine(base, spec, rf.with_masks(two_images, masks), budget=budget, model=FULL.models["resnet18"],
                    store="full", name="dry-refine", masks_id=rf.masks_id(two_images, masks), progress=False)
    assert len(out.history) == 1 and torch.isfinite(torch.tensor(out.history[0]["train_loss"]))
    before, after = base.model.state_dict(), out.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_full_cifar10c_generation_and_evaluation(two_images, isolated_store):
    """Notebook 07 at `full` settings: generation with the profile's worker processes, and every
    attack of the evaluation (PGD at the profile's steps) on the full-width ResNet-18, on 2 images."""
    import numpy as np

    from replication import cifar10c, notebook
    from replication.paper_a import corrupted

    b = FULL.corruptions
    base = train_model(config_for("resnet18", "cifar10", FULL.models["resnet18"], batch_size=2, epochs=1, n_train=2),
                       "dry-base", "full", two_images, progress=False)
    hwc = two_images.x.permute(0, 2, 3, 1).contiguous().numpy()
    raw, secs, _ = cifar10c.generate(hwc, np.arange(2), ["fog"], [3], 0, isolated_store / "c10c",
                                     processes=b.processes, progress=False)
    sets = cifar10c.CorruptedSets("generated", two_images, np.arange(2),
                                  {("fog", 3): torch.from_numpy(raw[("fog", 3)]).permute(0, 3, 1, 2).contiguous()}, secs, False)
    run = notebook.Run("07_cifar10c_table", FULL, 0, {}, torch.device("cpu"))
    recs = corrupted.evaluate_sets(run, base.model, model_name="resnet18_cifar10", model_hash=base.config_hash,
                                   setting={}, sets=sets, pgd_steps=b.pgd_steps, batch_size=b.batch_size, progress=False)
    assert len(recs) == 2 * 13 and all(0 <= r["value"] <= 1 for r in recs)
    assert {r["attack"]["steps"] for r in recs if r["attack"] and r["attack"]["name"] == "pgd"} == {b.pgd_steps}


def test_full_robustness_curves_plan_and_measure(two_images, isolated_store):
    """Notebook 06 at `full` settings: the plan of every job for a baseline and a refined model, the
    nested subsets on a split smaller than them, and each kind of job (FGSM, PGD with restarts, APGD,
    Square, AutoAttack) measured on the full-width ResNet-18, on 2 images. Iterations shrink to 1-2
    (Square: 2 queries) so this takes seconds; AutoAttack keeps its published configuration, which
    `tests/test_attacks.py` checks, and is run here on the 2 images."""
    from replication import notebook
    from replication.paper_a import curves

    b = FULL.curves
    base = train_model(config_for("resnet18", "cifar10", FULL.models["resnet18"], batch_size=2, epochs=1, n_train=2),
                       "dry-base", "full", two_images, progress=False)
    refined_setting = {"refinement": rf.FULL, "eps_train": 0.03, "eps_train_reading": "pixel", "alpha": 1.0,
                       "lambda": 1.0, "train_seed": 0}
    models = {"b": curves.Refined(base, {}), "r": curves.Refined(base, refined_setting)}
    plan = curves.plan(models, b, 0, paper_eps=[0.01, 0.02, 0.03], extra_eps=[8 / 255], strong_paper_eps=[0.01],
                       strong_extra_eps=[8 / 255], square_eps=[8 / 255], autoattack_eps=[8 / 255], large_eps=0.25)
    names = {j.attack.name for j in plan["r"]}
    assert names == {"fgsm", "pgd", "apgd-ce", "apgd-dlr", "square", "autoattack", "pyautoattack"}
    assert {j.attack.steps for j in plan["r"] if j.attack.name == "pgd" and j.subset == "strong"} >= {b.strong_steps}
    index = curves.subsets(two_images, b, 0)
    assert all(len(i) == 2 for i in index.values())  # every subset is the whole (small) split
    small = {"fgsm": 1, "pgd": 2, "apgd-ce": 1, "apgd-dlr": 1, "square": 2}
    jobs = [dataclasses.replace(j, attack=dataclasses.replace(j.attack, steps=small[j.attack.name]))
            for j in plan["r"] if j.attack.name in small][:12]
    jobs += [j for j in plan["r"] if j.attack.name == "autoattack"]
    run = notebook.Run("06_robustness_curves", FULL, 0, {}, torch.device("cpu"))
    recs = curves.measure(run, models["r"], two_images, index, jobs, batch_size=b.batch_size, progress=False)
    assert all(0 <= r["value"] <= 1 for r in recs)
    assert {r["attack"]["name"] for r in recs if r["attack"]} >= {"fgsm", "pgd", "autoattack"}


def test_full_ddpm_trains_one_step_and_purifies_with_exact_gradients(two_images, isolated_store):
    """Notebook 08/09 at `full` settings: the 35.7M DDPM of Ho et al. through fit for one step (batch
    2), then one checkpointed reverse step of the purifier with the gradient reaching the input."""
    from replication.paper_b import ddpm

    D = dataclasses.replace(FULL.diffusion, epochs=1, batch_size=2)
    assert 35e6 < ddpm.n_parameters(ddpm.build(FULL.diffusion)) < 36.5e6
    tr = ddpm.train(D, two_images, "full", seed=0, t_max=0.4, focus=0.5, progress=False)
    assert len(tr.history) == 1 and torch.isfinite(torch.tensor(tr.history[0]["train_loss"]))
    x = to_float(two_images.x).contiguous().requires_grad_(True)
    out = ddpm.Purifier(tr.model, ddpm.PurifierConfig(0.1, 1, "ddpm", seed=0, checkpoint=True))(x)
    out.sum().backward()
    assert out.shape == x.shape and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_full_adversarial_training_and_the_alde_attacks_run(two_images, isolated_store, monkeypatch):
    """Notebook 09 at `full` settings: PGD-10 adversarial training of the full-width WideResNet-28-10
    from scratch (one step, batch 2), then ALDE's headline attacks (the full profile's PGD x EOT
    with exact gradients through the purifier, BPDA, fixed noise) for one iteration each on 2 images,
    with an untrained full-size DDPM, scored under the profile's draws."""
    from replication import notebook, zoo
    from replication.data import Split
    from replication.paper_b import ddpm, defences

    A = FULL.adversarial
    assert A.init == "scratch" and A.steps == 10 and "wrn28_10" in A.archs
    monkeypatch.setattr(zoo, "load_split", lambda name, train, n=None, seed=0, device="cpu": two_images)
    P = dataclasses.replace(FULL, adversarial=dataclasses.replace(A, epochs=1),
                            models={**FULL.models, "wrn28_10": dataclasses.replace(FULL.models["wrn28_10"], batch_size=2)})
    tr = zoo.adversarial_training("wrn28_10", P, 0, progress=False)
    assert len(tr.history) == 1 and tr.path.exists()
    B = dataclasses.replace(FULL.purification, pgd_steps=1, eot=2, light_eot=2, apgd_steps=1, apgd_eot=1, draws=2,
                            batch_size=2, max_batch=4)
    den = ddpm.build(FULL.diffusion).eval()
    d = defences.Defence("ALDE", "wrn28_10_cifar10_pgdat", tr, alde_train_result(den), ddpm.PurifierConfig(0.1, 1, "ddpm"))
    jobs = [j for j in defences.jobs_for(d, B, 8 / 255, [0.01], 64 / 255) if j.eps in (None, 8 / 255)
            and (j.attack is None or j.attack.name == "pgd")]
    run = notebook.Run("09_purification_and_adversarial_training", FULL, 0, {}, torch.device("cpu"))
    split = Split("cifar10", False, two_images.x, two_images.y, 10)
    recs = defences.measure(run, d, {"all": split}, jobs, B, progress=False)
    assert {r["setting"].get("threat") for r in recs} >= {"bpda", "exact", "classifier"}
    assert all(0 <= r["value"] <= 1 for r in recs)


def alde_train_result(model):
    from replication.train import TrainResult

    return TrainResult(model, [], None, True, "untrained-full-ddpm")


def test_full_attribution_stability_and_grounding(two_images, isolated_store, monkeypatch):
    """Notebook 10 at `full` settings: the full profile's methods (IG at its steps, GradientShap at
    its samples; LIME's samples shrink to 16) explaining the full-width ResNet-18 and it behind an
    untrained full-size DDPM, Table 2's pairs under a one-step PGD, Table 3 on pasted objects, and
    the PGD-AT fine-tune of a ground-truth model (the `base` path of zoo.adversarial_training)."""
    from replication import grounded, notebook, zoo
    from replication.data import Split
    from replication.paper_b import ddpm, defences, stability
    from replication.paper_b import adaptive as ad

    S = dataclasses.replace(FULL.stability, lime_samples=16, batch_size=2)
    base = train_model(config_for("resnet18", "cifar10", FULL.models["resnet18"], batch_size=2, epochs=1, n_train=2),
                       "dry-base", "full", two_images, progress=False)
    den = alde_train_result(ddpm.build(FULL.diffusion).eval())
    rows = [defences.Defence("undefended", "resnet18_cifar10", base),
            defences.Defence("ALDE", "resnet18_cifar10", base, den, ddpm.PurifierConfig(0.1, 1, "ddpm"))]
    run = notebook.Run("10_attribution_stability", FULL, 0, {}, torch.device("cpu"))
    x = to_float(two_images.x)
    job = defences.Job(defences._pgd(1), ad.Threat("classifier"), 8 / 255)
    adv = {"adv": ad.craft(job.attack, base.model.eval(), x, two_images.y, 8 / 255, seed=0), "job": job}
    pasted = grounded.paste(two_images, load_split("cifar10", True, n=10, seed=1), size=zoo.PASTE_SIZE, seed=0)
    pasted.target[:] = -1  # nothing is predicted as class -1: exercises the "nothing to score" path
    for d in rows:
        for name, ex in stability.methods(S).items():
            recs = stability.stability(run, d, name, ex, two_images, adv, S, progress=False)
            assert len(recs) == 10 and all(r["value"] is None or -1 <= r["value"] <= 1 for r in recs)
            g = stability.grounding(run, d, name, ex, pasted, S, progress=False)
            assert [r["n"] for r in g if r["metric"] == "saliency_iou"] == [0]
    assert len(stability.table2(stability.frame(run.records))) == len(rows) * 3

    monkeypatch.setattr(zoo, "lazy", lambda name, profile, seed=0, *a, **kw: zoo.Lazy(name, base.config_hash, lambda: base))
    P = dataclasses.replace(FULL, models={**FULL.models, "resnet18": dataclasses.replace(FULL.models["resnet18"], batch_size=2)})
    split = Split("cifar10-pasted16", True, pasted.split.x, pasted.split.y, 10)
    tr = zoo.adversarial_training("resnet18", P, 0, progress=False, base="resnet18_cifar10_pasted", data=(split, split),
                                   n_train=2, epochs=1, data_variant="pasted16")
    assert len(tr.history) == 1 and tr.path.name.startswith("resnet18_cifar10_pasted_pgdat")


def test_full_scaling_wider_network_and_rings(two_images, isolated_store):
    """Notebook 11 at `full`: the x2-wide ResNet-18 (width 128) trains and refines one step, and the
    identification rings cover N = 10,000 / 25,000 / 50,000 of CIFAR-10's training labels in chunks."""
    from types import SimpleNamespace

    from replication import zoo
    from replication.paper_a.scaling import Scaling

    arch = dataclasses.replace(FULL.models["resnet18"], width=FULL.models["resnet18"].width * zoo.entry("resnet18x2_cifar10").width_factor)
    assert arch.width == 128
    base = train_model(config_for("resnet18", "cifar10", arch, batch_size=2, epochs=1, n_train=2), "dry-wide", "full",
                       two_images, progress=False)
    spec = rf.RefineSpec("mask+reg+adv", mask=True, reg=True, adv=True)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    out = rf.refine(base, spec, rf.with_masks(two_images, masks), budget=dataclasses.replace(FULL.refine, epochs=1, batch_size=2),
                    model=arch, store="full", name="dry-wide-refine", masks_id=rf.masks_id(two_images, masks), progress=False)
    assert torch.isfinite(torch.tensor(out.history[0]["train_loss"]))
    sc = Scaling.__new__(Scaling)
    sc.B, sc.seed = FULL.scaling, 0
    labels = load_split("cifar10", True).y
    rings = sc.rings(labels, FULL.scaling.n_images[-1])
    assert len(rings[0]) == FULL.identify.n_images == FULL.scaling.n_images[0]
    assert sum(map(len, rings)) == 50000 and max(map(len, rings[1:])) == FULL.scaling.chunk
