import torch
import torchattacks

from replication.attacks import fgsm, pgd
from replication.evaluate import evaluate


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
    recs = evaluate(model, test, ["fgsm", "pgd"], [0.25], steps=10, progress=False,
                    record={"experiment": "t", "model": "tiny", "profile": "smoke", "config_hash": "x"})
    by = {r["attack"]: r["value"] for r in recs}
    assert by["none"] > 0.25
    assert by["pgd-10"] <= 0.02
    assert by["pgd-10"] <= by["fgsm"] <= by["none"]
