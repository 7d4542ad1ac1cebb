"""Maps and their comparison (saliency.py), the ground-truth constructions (grounded.py), and the
pieces of notebook 10 that can be checked on hand-made inputs with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from replication import grounded, saliency as sal
from replication.data import Split


def _square(r, c, size=4, hw=32):
    m = torch.zeros(1, hw, hw, dtype=torch.bool)
    m[0, r:r + size, c:c + size] = True
    return m


def test_identical_maps_have_ssim_and_spearman_one():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 32, 32, generator=g)
    assert np.allclose(sal.ssim(a, a), 1.0)
    assert np.allclose(sal.spearman(a, a), 1.0)


def test_ssim_of_unrelated_noise_is_near_zero_and_of_inverted_map_negative():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(8, 32, 32, generator=g), torch.rand(8, 32, 32, generator=g)
    assert abs(sal.ssim(a, b).mean()) < 0.1
    assert (sal.ssim(a, 1 - a) < 0).all()


def test_ssim_matches_torchmetrics_with_population_covariance():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(5, 32, 32, generator=g)
    b = (a + 0.3 * torch.rand(5, 32, 32, generator=g)).clamp(0, 1)
    assert np.abs(sal.ssim(a, b, sample_covariance=False) - sal.ssim_torchmetrics(a, b)).max() < 1e-8
    # the sample-covariance definition (ours, Quantus') differs from both, but only slightly
    assert 0 < np.abs(sal.ssim(a, b) - sal.ssim(a, b, sample_covariance=False)).max() < 0.02


def test_magnitude_and_signed_maps_are_scaled_per_image():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 3, 32, 32, generator=g)
    a[1] *= 1000  # the scale of a method's output does not matter
    m, s = sal.magnitude(a), sal.signed(a)
    assert m.shape == (2, 32, 32) and 0 <= m.min() and m.max() == 1
    assert torch.allclose(sal.magnitude(a[1:]), sal.magnitude(a[1:] / 1000), atol=1e-6)
    assert -1 <= s.min() and s.max() <= 1
    # exactly 1% of a continuous map's pixels are clipped at the top
    assert abs(float((m[0] == 1).float().mean()) - 0.01) < 0.003
    assert torch.equal(sal.magnitude(torch.zeros(1, 3, 8, 8)), torch.zeros(1, 8, 8))


def test_topk_iou_known_answers():
    truth = _square(0, 0)
    assert sal.topk_iou(truth.float(), truth)[0] == 1.0
    assert sal.topk_iou(_square(16, 16).float(), truth)[0] == 0.0
    # shifted by 2 columns: 8 of 16 pixels shared, IoU 8 / (32 - 8)
    assert sal.topk_iou(_square(0, 2).float(), truth)[0] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="empty"):
        sal.topk_iou(torch.rand(1, 32, 32), torch.zeros(1, 32, 32, dtype=torch.bool))


def test_topk_iou_breaks_ties_towards_the_lower_index():
    flat = torch.zeros(1, 32, 32)  # every pixel ties: the first 16 pixels (row 0) are taken
    row0 = torch.zeros(1, 32, 32, dtype=torch.bool)
    row0[0, 0, :16] = True
    assert sal.topk_iou(flat, row0)[0] == 1.0


def test_pointing_game_and_chance():
    truth = _square(8, 8)
    m = torch.zeros(2, 32, 32)
    m[0, 9, 9] = 1     # inside
    m[1, 30, 30] = 1   # outside
    assert sal.pointing_game(m, truth.expand(2, -1, -1)).tolist() == [True, False]
    assert sal.chance_share(truth)[0] == pytest.approx(16 / 1024)


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(3, 8, 8, generator=g).round(decimals=1), torch.rand(3, 8, 8, generator=g)  # ties in a
    ours = sal.spearman(a, b)
    for i in range(3):
        assert ours[i] == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten()).statistic, abs=1e-10)
    assert np.isnan(sal.spearman(torch.ones(1, 8, 8), b[:1])[0])


def test_interval():
    m, lo, hi, n = sal.interval(np.array([1.0, 2.0, 3.0, np.nan]))
    assert (m, n) == (2.0, 3) and lo < 2 < hi


def _split(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Split("toy", False, torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                 torch.arange(n) % 10, 10)


def test_paste_puts_the_object_inside_its_mask_on_another_class_background():
    objects, backgrounds = _split(40), _split(40, seed=1)
    g = grounded.paste(objects, backgrounds, size=16, seed=0)
    assert g.mask.shape == (40, 32, 32) and (g.mask.flatten(1).sum(1) == 256).all()
    assert torch.equal(g.target, objects.y)
    # outside the mask every pixel is some background image's pixel of another class
    for i in range(40):
        outside = ~g.mask[i]
        same = [(g.split.x[i][:, outside] == backgrounds.x[j][:, outside]).all() for j in range(40)]
        js = [j for j, s in enumerate(same) if s]
        assert js and all(backgrounds.y[j] != objects.y[i] for j in js)
    with pytest.raises(ValueError, match="paste size"):
        grounded.paste(objects, backgrounds, size=40)


def test_planted_square_targets_the_square_class():
    from replication.shortcuts import plant

    p = plant(_split(30), "decorrelated", seed=0)
    g = grounded.planted_square(p)
    assert len(g) == 30 and torch.equal(g.target, p.patch_class) and (g.target != g.split.y).all()
    assert (g.mask.flatten(1).sum(1) == 16).all()


def test_unrelated_partners_are_of_another_class():
    from replication.paper_b.stability import unrelated

    y = torch.arange(50) % 5
    part = unrelated(y, seed=0)
    assert (y[part] != y).all()


def test_explain_shapes_ranges_and_purified_path():
    from replication.paper_b import ddpm
    from replication.paper_b.defences import Defence
    from replication.paper_b.stability import explain, methods
    from replication.profiles import get_profile
    from replication.train import TrainResult
    from replication.models import build_model

    torch.manual_seed(0)
    clf = build_model("resnet18", 10, width=4).eval()
    unet = ddpm.build(get_profile("smoke").diffusion).eval()
    x = torch.rand(4, 3, 32, 32)
    S = get_profile("smoke").stability
    for d in (Defence("undefended", "toy", TrainResult(clf, [], None, True, "h")),
              Defence("ALDE", "toy", TrainResult(clf, [], None, True, "h"), TrainResult(unet, [], None, True, "u"),
                      ddpm.PurifierConfig(0.1, 2, "ddpm"))):
        for name, ex in methods(S).items():
            m = explain(d, ex, x, 0, 2, progress=False)
            assert m.magnitude.shape == (4, 32, 32) and m.signed.shape == (4, 32, 32), name
            assert 0 <= m.magnitude.min() and m.magnitude.max() <= 1 and m.signed.abs().max() <= 1
            assert m.predicted.shape == (4,)


def test_strongest_picks_the_lowest_record_of_the_defence():
    from replication.attacks import Attack
    from replication.paper_b import adaptive as ad
    from replication.paper_b.defences import MEAN, Defence, Job
    from replication.paper_b.stability import strongest
    from replication.train import TrainResult

    d = Defence("undefended", "toy", TrainResult(None, [], None, True, "h"))
    jobs = [Job(Attack("pgd", steps=4, step_factor=1), ad.Threat("classifier"), 8 / 255),
            Job(Attack("apgd-ce", steps=4), ad.Threat("classifier"), 8 / 255)]

    def rec(job, value, hash_="h"):
        return {"metric": "accuracy", "attack": job.attack.spec(job.eps), "eps": job.eps, "model_hash": hash_, "value": value,
                "setting": {**d.setting(), "subset": "all", "score": MEAN, "draws": 1, **job.threat.setting()}}

    job, r = strongest([rec(jobs[0], 0.3), rec(jobs[1], 0.2), rec(jobs[0], 0.1, "other model")], d, jobs, 8 / 255)
    assert job == jobs[1] and r["value"] == 0.2
    # a partly measured plan is refused: the strongest of some attacks is not the strongest attack
    with pytest.raises(LookupError, match="has not measured 1 attack"):
        strongest([rec(jobs[0], 0.3), rec(jobs[1], 0.2, "other model")], d, jobs, 8 / 255)


def test_imagenet_path_on_a_synthetic_folder(tmp_path):
    from PIL import Image

    from replication import imagenet
    from replication.attacks import eval_mode

    for c in ("n01440764", "n01443537"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(np.random.RandomState(i).randint(0, 256, (80, 96, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    split = imagenet.load_subset(tmp_path, n=4, size=64)
    assert split.x.shape == (4, 3, 64, 64) and split.x.dtype == torch.uint8 and (split.y == -1).all()
    torch.manual_seed(0)
    net = imagenet.resnet50(None)
    split = imagenet.with_predicted_labels(split, net)
    assert ((0 <= split.y) & (split.y < 1000)).all()
    ok, why = imagenet.available(None)
    assert not ok and "IMAGENET_ROOT" in why
    ok, why = imagenet.available(tmp_path / "missing")
    assert not ok and "not a directory" in why
    from replication.explain import CaptumExplainer
    from replication.data import to_float

    with eval_mode(net):
        a = CaptumExplainer("integrated_gradients", n_steps=2).pixel_attributions(net, to_float(split.x[:2]), split.y[:2], 0)
    assert a.shape == (2, 3, 64, 64) and torch.isfinite(a).all()
