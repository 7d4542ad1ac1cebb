"""The Explainer interface: LIME and captum's methods give per-segment attributions of one shape."""
import torch

from replication.explain import CaptumExplainer, LimeExplainer, lime
from replication.segments import segment_batch


def test_every_explainer_gives_one_value_per_segment(trained_tiny):
    model, test = trained_tiny
    x, y = test.float_batch(0, 3)
    segs, counts = segment_batch(x, "grid", cell=8)  # 16 segments per image
    lime_ex = LimeExplainer(n_samples=40, chunk=3)
    assert torch.equal(lime_ex.segment_attributions(model, x, y, segs, counts, seed=0),
                       lime(model, x, y, segs, counts, 40, 0, chunk=3, progress=False).beta)
    for method in ("integrated_gradients", "gradient_shap", "kernel_shap"):
        a = CaptumExplainer(method=method, n_steps=16).segment_attributions(model, x, y, segs, counts, seed=0)
        assert a.shape == (3, 16) and torch.isfinite(a).all(), method
    assert "progress" not in lime_ex.key() and "internal_batch_size" not in CaptumExplainer().key()


def test_integrated_gradients_pooled_over_segments_keeps_completeness(trained_tiny):
    """IG's attributions sum to f_y(x) - f_y(black image); pooling over segments must not lose any."""
    model, test = trained_tiny
    x, y = test.float_batch(0, 2)
    segs, counts = segment_batch(x, "grid", cell=4)
    a = CaptumExplainer(n_steps=200).segment_attributions(model, x, y, segs, counts, seed=0)
    with torch.no_grad():
        gap = model(x).gather(1, y[:, None])[:, 0] - model(torch.zeros_like(x)).gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(a.sum(1), gap, rtol=0.05, atol=0.05)
