"""The gradient-masking checklist on hand-made records: each check passes on a sound evaluation
and fails on the pattern it exists to catch."""
import numpy as np
import pandas as pd

from replication.masking import checklist


def _frame(rows, n=1000):
    return pd.DataFrame([{"metric": "accuracy", "attack": a, "attack_steps": s, "attack_restarts": r, "attack_eot": 1,
                          "eps": e, "value": v, "n": n} for a, s, r, e, v in rows])


SOUND = [("fgsm", 1, 1, 0.01, 0.50), ("fgsm", 1, 1, 0.03, 0.30), ("pgd", 20, 1, 0.01, 0.40), ("pgd", 20, 1, 0.03, 0.10),
         ("pgd", 50, 2, 0.01, 0.39), ("pgd", 50, 2, 0.03, 0.09), ("square", 5000, 1, 0.03, 0.15),
         ("autoattack", 100, 1, 0.03, 0.085), ("pgd", 20, 1, 0.25, 0.0)]


def _verdicts(rows):
    t = checklist(_frame(rows))
    return dict(zip(t["check"], t["pass"]))


def test_a_sound_evaluation_passes_every_check():
    assert all(v is True for v in _verdicts(SOUND).values())


def test_each_masking_pattern_fails_its_check():
    def with_(*changes):
        rows = [r for r in SOUND if not any(r[:4] == c[:4] for c in changes)]
        return _verdicts(rows + list(changes))

    assert with_(("pgd", 20, 1, 0.03, 0.45))["accuracy non-increasing in eps"] is False
    assert with_(("pgd", 20, 1, 0.01, 0.60))["PGD <= FGSM"] is False
    assert with_(("pgd", 50, 2, 0.03, 0.20))["more steps / restarts never raise accuracy"] is False
    assert with_(("square", 5000, 1, 0.03, 0.02))["black-box Square never beats white-box"] is False
    assert with_(("autoattack", 100, 1, 0.03, 0.05))["AutoAttack within 2 pp of the best PGD"] is False
    assert with_(("pgd", 20, 1, 0.25, 0.30))["accuracy ~ 0 at eps = 0.25"] is False


def test_what_was_not_evaluated_is_none_not_a_pass():
    v = _verdicts([("pgd", 20, 1, 0.01, 0.4), ("pgd", 20, 1, 0.03, 0.1)])
    assert v["PGD <= FGSM"] is None and v["black-box Square never beats white-box"] is None
    assert v["accuracy ~ 0 at eps = 0.25"] is None and v["accuracy non-increasing in eps"] is True


def test_two_images_of_noise_are_tolerated():
    v = _verdicts([("fgsm", 1, 1, 0.01, 0.500), ("pgd", 20, 1, 0.01, 0.502)])
    assert v["PGD <= FGSM"] is True


def test_the_autoattack_margin_is_counted_in_images_not_float_bits():
    # 5% vs 3% of 200 images is exactly 2 pp; as float32 fractions the difference is 0.0200000014
    f32 = lambda v: float(np.float32(v))
    assert f32(0.05) - f32(0.03) > 0.02
    t = checklist(_frame([("pgd", 20, 1, 0.03, f32(0.05)), ("autoattack", 100, 1, 0.03, f32(0.03))], n=200))
    assert dict(zip(t["check"], t["pass"]))["AutoAttack within 2 pp of the best PGD"] is True
    t = checklist(_frame([("pgd", 20, 1, 0.03, f32(0.055)), ("autoattack", 100, 1, 0.03, f32(0.03))], n=200))
    assert dict(zip(t["check"], t["pass"]))["AutoAttack within 2 pp of the best PGD"] is False
