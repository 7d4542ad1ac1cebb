import numpy as np
import pytest
import torch

from replication.explain import lime_batched, lime_masks, lime_reference, pad_masks, weighted_ridge
from replication.segments import segment

# Tolerance: `lime` runs the model on float64 images cast to float32 and fits sklearn's Ridge in
# float64; we fit in float64 too, so coefficients agree to ~1e-6 of their scale.
ATOL = 1e-5


@pytest.fixture(scope="module")
def model_and_images(trained_tiny):
    model, test = trained_tiny
    x, y = test.float_batch(0, 3)
    return model, x.contiguous(), y


def test_weighted_ridge_matches_sklearn():
    from sklearn.linear_model import Ridge

    rng = np.random.RandomState(0)
    X = rng.randint(0, 2, (200, 12)).astype(float)
    y = X @ rng.randn(12) + 0.1 * rng.randn(200)
    w = rng.rand(200)
    for alpha in (1.0, 0.0):
        ref = Ridge(alpha=alpha, fit_intercept=True).fit(X, y, sample_weight=w)
        beta, b0 = weighted_ridge(torch.tensor(X)[None], torch.tensor(y)[None], torch.tensor(w)[None], alpha)
        np.testing.assert_allclose(beta[0].numpy(), ref.coef_, atol=1e-8)
        np.testing.assert_allclose(float(b0[0]), ref.intercept_, atol=1e-8)


def test_segmentations_give_usable_counts(model_and_images):
    _, x, _ = model_and_images
    img = x[0].permute(1, 2, 0).numpy().astype(np.float64)
    assert segment(img, "grid", cell=4).max() + 1 == 64
    n_slic = segment(img, "slic", n_segments=50).max() + 1
    assert 10 <= n_slic <= 80
    seg = segment(img, "quickshift")
    assert seg.min() == 0 and len(np.unique(seg)) == seg.max() + 1


@pytest.mark.parametrize("method", ["grid", "slic"])
def test_batched_lime_matches_lime_package(model_and_images, method):
    model, x, y = model_and_images
    n_samples, seed = 300, 3
    segs = [segment(x[i].permute(1, 2, 0).numpy().astype(np.float64), method, cell=8, n_segments=30)
            for i in range(len(x))]
    counts = [int(s.max()) + 1 for s in segs]
    f_max = max(counts)
    masks = np.stack([pad_masks(lime_masks(n_samples, c, seed), f_max) for c in counts])
    ours = lime_batched(model, x, torch.from_numpy(np.stack(segs)), torch.from_numpy(masks), y,
                        n_features=torch.tensor(counts), forward_batch=128)
    for i in range(len(x)):
        ref_beta, ref_b0 = lime_reference(model, x[i], segs[i], int(y[i]), n_samples, seed)
        np.testing.assert_allclose(ours.beta[i, :counts[i]].numpy(), ref_beta, atol=ATOL)
        assert float(ours.intercept[i]) == pytest.approx(ref_b0, abs=ATOL)
        assert torch.all(ours.beta[i, counts[i]:] == 0)  # padding columns


def test_paper_kernel_is_pixel_distance(model_and_images):
    model, x, y = model_and_images
    seg = torch.from_numpy(segment(x[0].permute(1, 2, 0).numpy(), "grid", cell=8))[None]
    masks = torch.from_numpy(lime_masks(50, 16, 0))
    res = lime_batched(model, x[:1], seg, masks, y[:1], kernel="paper", width=4.0, alpha=0.0)
    assert res.weights[0, 0] == 1.0  # the unperturbed image is at distance 0
    off = (1 - masks.float())[:, seg[0].flatten()].view(50, 1, 32, 32)
    d2 = ((x[:1] * off) ** 2).flatten(1).sum(1)  # hiding with 0 removes exactly the hidden pixels
    torch.testing.assert_close(res.weights[0], torch.exp(-d2 / 16.0))


def test_to_pixels_pool_and_stats():
    from replication.explain import attribution_stats
    from replication.segments import pool, to_pixels

    seg = torch.tensor([[[0, 0, 1], [2, 2, 1]]])
    beta = torch.tensor([[0.5, -1.0, 2.0, 9.0]])  # the last is a padding column
    assert to_pixels(beta, seg).tolist() == [[[0.5, 0.5, -1.0], [2.0, 2.0, -1.0]]]
    assert pool(torch.ones(1, 2, 3), seg, 4).tolist() == [[2.0, 2.0, 2.0, 0.0]]
    b = torch.tensor([[4.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    stats = attribution_stats(b, b, torch.tensor([11]))
    assert stats["top10pct_share_mean"] == pytest.approx(1.0)  # top 2 of 11 segments hold everything
    assert stats["resample_corr_mean"] == pytest.approx(1.0)
