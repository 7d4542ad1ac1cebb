"""The Explainer interface: LIME and captum's methods give per-segment attributions of one shape."""
import numpy as np
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


def test_gradient_shap_is_split_into_calls_of_bounded_size(trained_tiny):
    """captum's GradientShap runs images x samples in one batch; ours caps each call at shap_batch
    passes, and with a cap above the whole batch it is captum's answer exactly."""
    import captum.attr as ca

    model, test = trained_tiny
    x, y = test.float_batch(0, 5)
    seen = []
    hook = model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    try:
        small = CaptumExplainer("gradient_shap", n_steps=8, shap_batch=16).pixel_attributions(model, x, y, seed=0)
    finally:
        hook.remove()
    assert small.shape == x.shape and torch.isfinite(small).all() and max(seen) <= 16
    whole = CaptumExplainer("gradient_shap", n_steps=8, shap_batch=1000).pixel_attributions(model, x, y, seed=0)
    torch.manual_seed(0), np.random.seed(0)  # captum draws from numpy's global RNG
    base = torch.stack([torch.zeros_like(x[0]), torch.ones_like(x[0])])
    theirs = ca.GradientShap(model).attribute(x, baselines=base, target=y, n_samples=8)
    torch.testing.assert_close(whole, theirs.detach())
    again = CaptumExplainer("gradient_shap", n_steps=8, shap_batch=16).pixel_attributions(model, x, y, seed=0)
    assert torch.equal(small, again)  # one seed, one answer, whatever numpy's global state
