import torch
import torchattacks

import pytest

from replication.attacks import Attack, fgsm, pgd
from replication.evaluate import evaluate

CTX = {"experiment": "t", "profile": "smoke", "run_id": "r", "model": "tiny", "model_hash": None, "setting": {}}


def _batch(test, n=64):
    return test.float_batch(0, n)


def test_perturbations_stay_in_ball_and_box(trained_tiny):
    model, test = trained_tiny
    x, y = _batch(test)
    for eps in (0.01, 8 / 255, 0.3):
        for adv in (fgsm(model, x, y, eps), fgsm(model, x, y, eps, random_start=True, alpha=10 / 255 * eps / (8 / 255)),
                    pgd(model, x, y, eps, eps / 4, 5), pgd(model, x, y, eps, eps / 4, 3, restarts=2)):
            assert (adv - x).abs().max() <= eps + 1e-6
            assert adv.min() >= 0 and adv.max() <= 1


def test_fgsm_matches_torchattacks(trained_tiny):
    model, test = trained_tiny
    x, y = _batch(test)
    ours = fgsm(model, x, y, 0.02)
    theirs = torchattacks.FGSM(model, eps=0.02)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_pgd_matches_torchattacks_same_seed(trained_tiny):
    model, test = trained_tiny
    x, y = _batch(test)
    torch.manual_seed(123)
    ours = pgd(model, x, y, 0.03, 0.0075, 10)
    torch.manual_seed(123)
    theirs = torchattacks.PGD(model, eps=0.03, alpha=0.0075, steps=10, random_start=True)(x, y)
    # identical update rule and random start: equal up to float noise in sign() ties
    assert (ours - theirs).abs().max() <= 1e-5
    assert torch.equal(model(ours).argmax(1), model(theirs).argmax(1))


def test_model_is_above_chance_and_pgd_at_large_eps_breaks_it(trained_tiny):
    model, test = trained_tiny
    recs = evaluate(model, test, {Attack("fgsm"): [0.25], Attack("pgd", steps=10): [0.25]}, context=CTX, progress=False)
    by = {r["attack"] and r["attack"]["name"]: r["value"] for r in recs}
    assert by[None] > 0.25
    assert by["pgd"] <= 0.02
    assert by["pgd"] <= by["fgsm"] <= by[None]
    pgd_rec = next(r for r in recs if r["attack"] and r["attack"]["name"] == "pgd")
    assert pgd_rec["attack"] == {"name": "pgd", "steps": 10, "restarts": 1, "eot": 1, "step_size": 0.0625}
    assert pgd_rec["eps"] == 0.25 and pgd_rec["eps_reading"] == "pixel"


def test_restarts_and_eot_only_make_the_attack_stronger(trained_tiny):
    model, test = trained_tiny
    grid = {Attack("pgd", steps=3): [0.02], Attack("pgd", steps=3, restarts=3): [0.02],
            Attack("pgd", steps=3, eot=2): [0.02]}
    one, restarts, eot = (r["value"] for r in evaluate(model, test, grid, context=CTX, progress=False)[1:])
    assert restarts <= one  # robust = survives every restart, the first restart included
    assert 0 <= eot <= 1


def test_attack_objects_reject_what_they_cannot_do():
    with pytest.raises(ValueError, match="Unknown attack"):
        Attack("cw")
    with pytest.raises(ValueError, match="EOT"):
        Attack("fgsm", eot=4)
    assert Attack("fgsm").spec(0.03)["step_size"] == 0.03 and Attack("apgd-ce", steps=20).spec(0.03)["step_size"] is None


def test_pgd_takes_one_eps_per_image(trained_tiny):
    model, test = trained_tiny
    x, y = _batch(test, 8)
    eps = torch.linspace(0.0, 0.05, 8)
    adv = pgd(model, x, y, eps, 2.5 * eps / 5, 5)
    assert ((adv - x).abs().flatten(1).amax(1) <= eps + 1e-6).all() and adv.min() >= 0 and adv.max() <= 1
    torch.manual_seed(1)
    same = pgd(model, x, y, torch.full((8,), 0.02), torch.full((8,), 0.005), 5)
    torch.manual_seed(1)
    scalar = pgd(model, x, y, 0.02, 0.005, 5)
    assert (same - scalar).abs().max() <= 1e-6  # a constant tensor eps is the scalar attack


def test_robust_mask_fgsm_is_torchattacks_fgsm_on_clean_correct_images(trained_tiny):
    from replication.attacks import robust_mask

    model, test = trained_tiny
    x, y = _batch(test)
    adv = torchattacks.FGSM(model, eps=0.02)(x, y)
    with torch.no_grad():
        clean_ok = model(x).argmax(1) == y
        theirs = model(adv).argmax(1) == y
    ours = robust_mask(model, x, y, 0.02, steps=1, random_start=False)
    assert torch.equal(ours, clean_ok & theirs)


def test_robust_mask_pgd_is_the_union_of_every_iterate_of_torchattacks_pgd(trained_tiny):
    """Same seed, so the same random start: fooled at torchattacks' final iterate after k steps, for
    any k = 1..steps, is exactly what the early-stopped attack finds."""
    from replication.attacks import robust_mask

    model, test = trained_tiny
    x, y = _batch(test)
    eps, alpha, steps = 0.03, 0.0075, 4
    torch.manual_seed(7)
    ours = robust_mask(model, x, y, eps, steps=steps, alpha=alpha)
    with torch.no_grad():
        alive = model(x).argmax(1) == y
    for k in range(1, steps + 1):
        torch.manual_seed(7)
        adv = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=k, random_start=True)(x, y)
        with torch.no_grad():
            alive &= model(adv).argmax(1) == y
    assert torch.equal(ours, alive)
    torch.manual_seed(7)
    final = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    with torch.no_grad():
        assert ours.sum() <= (model(final).argmax(1) == y).sum()  # at least as strong as the final iterate


def test_autoattack_as_published_agrees_with_the_authors_implementation(trained_tiny):
    """torchattacks' parts configured as AutoAttack 'standard' (100 iterations, 9 targets, 5,000
    Square queries) against the authors' pyautoattack on the same images: their robust accuracies
    agree within 2 images (different random draws), and both are at most APGD-CE's."""
    pytest.importorskip("pyautoattack")
    from replication.attacks import AUTOATTACK_STANDARD, torchattacks_attack

    model, test = trained_tiny
    x, y = _batch(test, 16)  # 16, not 32: Square's 5,000 queries on the survivors are most of the time
    eps = 1 / 255  # small enough that some images survive (the tiny model is not robust)

    def robust(name, **kw):
        torch.manual_seed(0)
        adv = torchattacks_attack(name, model, eps, n_classes=10, seed=0, **kw)(x, y)
        assert (adv - x).abs().max() <= eps + 1e-6
        with torch.no_grad():
            return int((model(adv).argmax(1) == y).sum())

    before = {k: v.clone() for k, v in model.state_dict().items()}
    ours, authors, apgd = robust("autoattack"), robust("pyautoattack"), robust("apgd-ce", steps=100)
    # the attacks leave the model as they found it: eval mode, same weights and statistics, trainable
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    assert abs(ours - authors) <= 2 and ours <= apgd and authors <= apgd
    assert AUTOATTACK_STANDARD["apgd-t"] == {"iterations": 100, "target_classes": 9}
