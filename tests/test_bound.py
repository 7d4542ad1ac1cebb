"""Paper A §IV estimates on a linear classifier, where the first-order estimate is exact, and
CLEVER against adversarial-robustness-toolbox's clever_u."""
import numpy as np
import pytest
import torch

from replication.paper_a import bound


def _linear(k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(3 * 4 * 4, k)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, 48, generator=g) * 0.5)
        lin.bias.zero_()
    return torch.nn.Sequential(torch.nn.Flatten(), lin).eval()


def _points(model, n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + 0.01 * torch.randn(n, 3, 4, 4, generator=g)  # interior: the box [0,1] never binds
    with torch.no_grad():
        y = model(x).argmax(1)
    return x, y


def _art_clever(clf, x, reps=5, **kw):
    """ART's clever_u per image, the median over `reps` seeded repetitions: its Weibull fit
    (scipy_optimizer) lands on a degenerate optimum about once in a hundred draws (measured: 3 of
    300 on the nonlinear model below, one at 5e-5 against a typical 0.069), which made a single
    unseeded call flaky in CI; seeded numpy makes the reference deterministic, the median robust."""
    from art.metrics import clever_u

    out, state = [], np.random.get_state()
    for xi in x:
        scores = []
        for r in range(reps):
            np.random.seed(r)  # ART samples the ball and picks batches from numpy's global RNG
            scores.append(clever_u(clf, xi.numpy(), norm=np.inf, verbose=False, **kw))
        out.append(np.median(scores))
    np.random.set_state(state)  # leave other tests' numpy draws as they were
    return np.array(out)


def test_first_order_estimate_is_the_true_minimal_distortion_of_a_linear_classifier():
    model = _linear(k=2)
    x, y = _points(model)
    est = bound.first_order(model, x, y)
    w = model[1].weight.detach()
    truth = est.margin_value / (w[y] - w[1 - y]).abs().sum(1)  # exact for a linear binary classifier
    torch.testing.assert_close(est.margin, truth)
    measured = bound.minimal_linf(model, x, y, fab_steps=50, bisection_steps=12, pgd_steps=10)["measured"]
    assert torch.isfinite(measured).all()
    # the attacks find (about) the true distortion, never less (nothing flips below it)
    assert (measured >= truth * (1 - 1e-4)).all() and (measured <= truth * 1.02 + 1e-4).all()
    # zeroing coordinates only shrinks the L1 norm: the mask can only raise the estimate
    mask = torch.zeros(len(x), 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    masked = bound.first_order(model, x, y, spurious=mask).masked
    assert (masked >= est.unmasked - 1e-9).all() and (masked > est.unmasked).any()


def test_alignment_is_a_cosine():
    model = _linear(k=2)
    x, y = _points(model, n=4)
    grad_y = model[1].weight.detach()[y].view(-1, 3, 4, 4)
    attribution = grad_y.abs().sum(1)  # nonnegative, aligned with |grad| per pixel
    al = bound.first_order(model, x, y, attribution=attribution).alignment
    assert ((al >= -1) & (al <= 1)).all()
    assert torch.isnan(bound.first_order(model, x, y).alignment).all()


def test_clever_matches_the_analytic_value_and_art():
    pytest.importorskip("art")
    from art.estimators.classification import PyTorchClassifier

    model = _linear(k=2, seed=3)
    x, y = _points(model, n=3, seed=4)
    est = bound.first_order(model, x, y)
    ours = bound.clever(model, x, y, est.runner_up, radius=0.5, n_batches=10, batch_size=16)
    torch.testing.assert_close(ours, est.margin.clamp(max=0.5).float(), rtol=1e-4, atol=1e-6)
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 4, 4), nb_classes=2,
                            clip_values=(0.0, 1.0), device_type="cpu")
    art = _art_clever(clf, x, nb_batches=10, batch_size=16, radius=0.5)
    np.testing.assert_allclose(art, ours.numpy(), rtol=0.02)


def test_violation_summary():
    s = bound.violation_summary(torch.tensor([1.0, 2.0, 3.0, float("inf")]), torch.tensor([2.0, 1.0, 4.0, 1.0]))
    assert s["n"] == 3 and s["violation_rate"] == pytest.approx(1 / 3)
    assert s["median_ratio"] == pytest.approx(0.75) and s["spearman"] == pytest.approx(0.5)


def test_clever_agrees_with_art_on_a_nonlinear_model():
    """Both sample the ball at random (different draws): the scores agree to 10%."""
    pytest.importorskip("art")
    from art.estimators.classification import PyTorchClassifier

    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).eval()
    x, y = _points(model, n=3, seed=6)
    est = bound.first_order(model, x, y)
    ours = bound.clever(model, x, y, est.runner_up, radius=0.3, n_batches=50, batch_size=64)
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 4, 4), nb_classes=3,
                            clip_values=(0.0, 1.0), device_type="cpu")
    art = _art_clever(clf, x, nb_batches=50, batch_size=64, radius=0.3)
    # ART's untargeted score is the minimum over all other classes, ours targets the runner-up: here
    # the same class (measured: 0.0676/0.0727/0.0685 vs ART's 0.0690/0.0729/0.0693)
    np.testing.assert_allclose(ours.numpy(), art, rtol=0.1)
