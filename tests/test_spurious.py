"""Identification rules (eqs 4-7) on hand-made scores, and the mask helpers."""
import torch

from replication.paper_a import spurious as sp


def _scores(beta, sens, var, beta_ref=None, sens_ref=None, counts=None):
    b, f = beta.shape
    counts = counts if counts is not None else torch.full((b,), f)
    segments = torch.arange(16).view(4, 4).repeat(b, 1, 1) % f  # 4x4 images, segment = pixel index mod F
    return sp.Scores(segments, counts, beta, sens, var, beta_ref, sens_ref)


def test_rules_flag_the_top_quantile_and_the_reference_vetoes():
    # one image, 10 segments; segment 9 has the largest |beta|, segment 8 the largest gradient,
    # segment 7 the largest variance
    beta = torch.tensor([[1.0] * 9 + [20.0]])
    sens = torch.tensor([[1.0] * 8 + [20.0, 1.0]])
    var = torch.tensor([[0.0] * 7 + [50.0, 0.0, 0.0]])
    cfg = sp.IdentifyConfig(tau_q=0.85, eps_q=0.85, delta_q=0.85, support_q=0.5)
    f = sp.identify(_scores(beta, sens, var), cfg)
    assert f.irrelevant.nonzero()[:, 1].tolist() == [9]
    assert f.sensitive.nonzero()[:, 1].tolist() == [8]
    assert f.unstable.nonzero()[:, 1].tolist() == [7]
    assert f.spurious.nonzero()[:, 1].tolist() == [7, 8, 9]
    # the reference backs segment 9's attribution (top of its own ranking) but not segment 8's gradient
    ref_beta = torch.tensor([[0.1] * 9 + [5.0]])
    ref_sens = torch.tensor([[1.0] * 8 + [0.0, 1.0]])
    f2 = sp.identify(_scores(beta, sens, var, ref_beta, ref_sens), cfg)
    assert not f2.irrelevant.any()
    assert f2.sensitive.nonzero()[:, 1].tolist() == [8]


def test_padding_segments_are_never_flagged():
    beta = torch.tensor([[1.0, 2.0, 3.0, 0.0], [1.0, 1.0, 1.0, 9.0]])
    s = _scores(beta, beta.clone(), beta.clone(), counts=torch.tensor([3, 4]))
    f = sp.identify(s, sp.IdentifyConfig(tau_q=0.0, eps_q=0.0, delta_q=0.0))
    assert not f.spurious[0, 3]


def test_pixel_masks_random_flags_and_class_masks():
    seg = torch.tensor([[[0, 0], [1, 2]], [[2, 1], [0, 0]]])
    flags = torch.tensor([[True, False, True], [False, True, False]])
    pix = sp.pixel_masks(flags, seg)
    assert pix.tolist() == [[[True, True], [False, True]], [[False, True], [False, False]]]
    r = sp.random_flags(flags, torch.tensor([3, 3]), seed=0)
    assert r.sum(1).tolist() == flags.sum(1).tolist()
    cm = sp.class_masks(pix, torch.tensor([0, 0]), num_classes=2)
    assert cm[0].sum() == 2 and not cm[1].any()  # class 0: mean 2 flagged pixels per image
    assert cm[0, 0, 1]  # the pixel both images flag


def test_jaccard_and_overlap_counts():
    a = torch.tensor([[True, True, False]])
    b = torch.tensor([[True, False, False]])
    assert sp.jaccard(a, b) == 0.5 and sp.jaccard(a & False, b & False) == 1.0
    f = sp.Flags(a, b, torch.zeros_like(a), {})
    counts = sp.overlap_counts(f)
    assert counts["irrelevant & sensitive"] == 1 and counts["irrelevant"] == 1 and sum(counts.values()) == 2


def test_segment_sensitivity_is_the_mean_gradient_magnitude_per_segment():
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    x = torch.rand(2, 3, 4, 4)
    y = torch.tensor([0, 1])
    seg = torch.arange(16).view(4, 4).repeat(2, 1, 1) // 8  # two segments: top and bottom half
    out = sp.segment_sensitivity(lin, x, y, seg, 2)
    w = lin[1].weight.detach().view(2, 3, 4, 4).abs().sum(1)  # |d logit_c / d x| summed over channels
    for i in range(2):
        assert torch.allclose(out[i], torch.stack([w[y[i], :2].mean(), w[y[i], 2:].mean()]), atol=1e-6)


def test_scores_for_keys_lime_as_before_and_another_explainer_apart(monkeypatch):
    """A non-LIME explainer (notebook 09's SHAP row) caches apart from LIME, and LIME's cache keys
    are unchanged by the option (notebook 03/04's cached scores stay valid)."""
    import torch

    from replication.data import Split
    from replication.explain import CaptumExplainer
    from replication.paper_a import spurious as sp

    keys = []
    monkeypatch.setattr(sp, "scores_cached", lambda key, profile, compute, keep=False: keys.append(key) or None)
    split = Split("cifar10", True, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 1]), 10)
    cfg = sp.IdentifyConfig()
    sp.scores_for(None, "h", split, cfg, "smoke")
    sp.scores_for(None, "h", split, cfg, "smoke", explainer=CaptumExplainer("gradient_shap", name="gradient_shap"))
    assert keys[0] == {"model": "h", "reference": None, "images": sp.images_key(split), "cfg": cfg.to_dict()}
    assert keys[1]["explainer"]["method"] == "gradient_shap" and {k: v for k, v in keys[1].items() if k != "explainer"} == keys[0]


def test_kept_scores_are_committed_compactly_and_read_before_the_cache(isolated_store):
    """keep=True writes results/<profile>/identification/<hash>.safetensors (uint8 segment ids);
    any later lookup of the key reads it without computing; a file holding another key fails loudly."""
    import pytest
    import torch

    from replication import paths
    from replication.paper_a import spurious as sp

    g = torch.Generator().manual_seed(0)
    made = sp.Scores(segments=torch.randint(0, 36, (3, 32, 32), generator=g), counts=torch.tensor([36, 30, 12]),
                     beta=torch.randn(3, 36, generator=g), sens=torch.rand(3, 36, generator=g),
                     beta_var=torch.rand(3, 36, generator=g), beta_ref=None, sens_ref=None)
    key = {"model": "h", "reference": None, "images": "abc", "cfg": {"n_samples": 5}}
    calls = []
    first = sp.scores_cached(key, "cpu", lambda: calls.append(1) or made, keep=True)
    kept = paths.results_dir("cpu") / "identification"
    (path,) = kept.glob("*.safetensors")
    assert not (paths.cache_dir() / "identification" / "cpu").exists()  # kept scores skip the cache
    from safetensors.torch import load_file
    assert load_file(str(path))["segments"].dtype == torch.uint8
    again = sp.scores_cached(key, "cpu", lambda: calls.append(2) or made)
    assert calls == [1]
    for a in (first, again):
        assert a.segments.dtype == torch.int64 and torch.equal(a.segments, made.segments)
        assert torch.equal(a.counts, made.counts) and torch.equal(a.beta, made.beta) and a.beta_ref is None
    other = {**key, "images": "def"}
    from replication.cache import stable_hash
    path.rename(kept / f"{stable_hash(other)}.safetensors")  # a file under another key's name
    with pytest.raises(ValueError, match="another identification"):
        sp.scores_cached(other, "cpu", lambda: made)


def test_fresh_scores_compute_both_sides_and_touch_no_store(isolated_store):
    """fresh=True (what replication.verify re-measures) computes the reference's and the model's
    scores again even where a store holds them, writes nothing, and equals the stored computation;
    stored_scores reads a store without computing and says None where there is none."""
    import torch

    from replication.data import Split
    from replication.models import build_model
    from replication.paper_a import spurious as sp

    torch.manual_seed(0)
    net, ref = build_model("resnet18", 10, width=4).eval(), build_model("resnet18", 10, width=4).eval()
    g = torch.Generator().manual_seed(1)
    split = Split("cifar10", True, torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g), torch.tensor([0, 1, 2]), 10)
    cfg = sp.IdentifyConfig(n_samples=20, n_segments=12, n_perturb=1)
    ref_key, key = sp.score_keys("h", split, cfg, "r")
    assert sp.stored_scores(key, "cpu") is None
    stored = sp.scores_for(net, "h", split, cfg, "cpu", reference=(ref, "r"), chunk=3, progress=False)
    assert sp.stored_scores(key, "cpu") is not None and sp.stored_scores(ref_key, "cpu") is not None
    files = sorted(p for p in isolated_store.rglob("*") if p.is_file())
    fresh = sp.scores_for(net, "h", split, cfg, "cpu", reference=(ref, "r"), chunk=3, progress=False, fresh=True)
    assert sorted(p for p in isolated_store.rglob("*") if p.is_file()) == files
    for f in ("segments", "counts", "beta", "sens", "beta_var", "beta_ref", "sens_ref"):
        assert torch.equal(getattr(fresh, f), getattr(stored, f)), f
