"""Paper B's diffusion pieces: the schedule round trip with an oracle noise prediction, our
reverse step against diffusers' DDPMScheduler, purifier shapes and ranges, and exact gradients
through the checkpointed sampler against finite differences."""
import pytest
import torch

from replication.paper_b import ddpm


class Oracle(torch.nn.Module):
    """Predicts the exact noise that separates x_t from a known x0 (the perfect denoiser for x0)."""

    def __init__(self, x0, abar):
        super().__init__()
        self.x0, self.abar = x0, abar

    def forward(self, x_t, t):
        a = self.abar[t].view(-1, 1, 1, 1).to(x_t)
        return (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()


@pytest.mark.parametrize("sampler,steps", [("ddpm", 1), ("ddpm", 5), ("ddpm", 100), ("ddim", 3), ("x0", 1)])
def test_diffuse_then_denoise_with_an_oracle_returns_the_input(sampler, steps):
    torch.manual_seed(0)
    x01 = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    abar = ddpm.alphas_bar().double()
    p = ddpm.Purifier(Oracle(ddpm.to_model_scale(x01), abar), ddpm.PurifierConfig(0.1, steps, sampler), abar)
    assert torch.allclose(p(x01), x01, atol=1e-6)


@pytest.mark.parametrize("t", [1, 70, 400])
def test_our_ancestral_step_is_diffusers_ddpm_step(t):
    sched = ddpm.scheduler()
    abar = sched.alphas_cumprod.to(torch.float64)
    torch.manual_seed(1)
    x0, eps = torch.rand(3, 3, 8, 8, dtype=torch.float64) * 2 - 1, torch.randn(3, 3, 8, 8, dtype=torch.float64)
    x_t = ddpm.diffuse(x0, torch.full((3,), t), eps, abar)  # so the predicted x0 needs no clipping

    class Fixed(torch.nn.Module):
        def forward(self, x, tt):
            return eps

    ref = sched.step(eps, t, x_t, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ours = ddpm._reverse_step(Fixed(), x_t, t, t - 1, abar, "ddpm", noise)
    assert torch.allclose(ours, ref, atol=1e-4)  # diffusers computes 1 - abar_t in float32: ~1e-4 at t = 1


def test_purifier_shapes_ranges_and_fixed_noise_is_deterministic():
    net = ddpm.NoisePredictor(ddpm.unet([8, 16], layers_per_block=1)).eval()
    x = torch.rand(2, 3, 32, 32)
    fixed = ddpm.Purifier(net, ddpm.PurifierConfig(0.1, 2, "ddpm", seed=3))
    with torch.no_grad():
        a, b = fixed(x), fixed(x)
        fresh = ddpm.Purifier(net, ddpm.PurifierConfig(0.1, 2, "ddpm"))
        c, d = fresh(x), fresh(x)
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(c, d)
    assert ddpm.PurifierConfig(0.1, 2).nfe == 2 and ddpm.PurifierConfig(0.1, 7, "x0").nfe == 1


def test_gradient_through_the_checkpointed_sampler_matches_finite_differences():
    torch.manual_seed(0)
    net = ddpm.NoisePredictor(ddpm.unet([8, 16], layers_per_block=1)).double().eval()
    cls = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3)).double()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64) * 0.8 + 0.1
    y = torch.tensor([1])
    grads = {}
    for ck in (False, True):
        model = ddpm.Defended(ddpm.Purifier(net, ddpm.PurifierConfig(0.05, 3, "ddpm", seed=5, checkpoint=ck)), cls)
        xx = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(xx), y).backward()
        grads[ck] = xx.grad
    assert torch.allclose(grads[True], grads[False], atol=1e-10)  # checkpointing changes memory, not the gradient
    g = grads[True]
    d = torch.zeros_like(x)
    d[0, :, 10:14, 10:14] = torch.randn(3, 4, 4, dtype=torch.float64)
    h = 1e-5
    with torch.no_grad():
        lp = torch.nn.functional.cross_entropy(model(x + h * d), y)
        lm = torch.nn.functional.cross_entropy(model(x - h * d), y)
    fd = (lp - lm) / (2 * h)
    assert float((g * d).sum()) == pytest.approx(float(fd), rel=1e-4, abs=1e-8)


def test_bpda_passes_the_classifier_gradient_through_unchanged_and_worst_of_k_is_at_most_the_mean():
    from replication.paper_b import alde

    torch.manual_seed(0)
    net = ddpm.NoisePredictor(ddpm.unet([8, 16], layers_per_block=1)).eval()
    cls = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    pur = ddpm.Purifier(net, ddpm.PurifierConfig(0.1, 2, "ddpm", seed=1))  # fixed noise: the same purified images twice
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    torch.nn.functional.cross_entropy(alde.BPDA(pur, cls)(x), y, reduction="sum").backward()
    p = pur(x.detach()).detach().requires_grad_(True)
    torch.nn.functional.cross_entropy(cls(p), y, reduction="sum").backward()
    assert torch.allclose(x.grad, p.grad)  # d loss / d x := d loss / d purifier(x)
    fresh = ddpm.Defended(ddpm.Purifier(net, ddpm.PurifierConfig(0.4, 2, "ddpm")), cls)
    correct = alde.draws_correct(fresh, x.detach(), y, k=5, seed=0)
    assert correct.shape == (5, 4) and correct.all(0).float().mean() <= correct.float().mean()
    assert torch.equal(correct, alde.draws_correct(fresh, x.detach(), y, k=5, seed=0))  # seeded draws


def test_an_attack_on_the_pipeline_stays_in_the_ball_and_a_fixed_noise_purifier_draws_alike():
    from replication.attacks import Attack
    from replication.paper_b import alde

    torch.manual_seed(0)
    net = ddpm.NoisePredictor(ddpm.unet([8, 16], layers_per_block=1)).eval()
    cls = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()
    fixed = ddpm.Defended(ddpm.Purifier(net, ddpm.PurifierConfig(0.05, 1, "x0", seed=2)), cls)
    x, y = torch.rand(6, 3, 32, 32), torch.arange(6)
    adv = Attack("pgd", steps=3)(fixed, x, y, 8 / 255, seed=0).detach()
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6 and 0 <= adv.min() and adv.max() <= 1
    correct = alde.draws_correct(fixed, adv, y, k=3, seed=1)
    assert correct.shape == (3, 6)
    assert all(torch.equal(correct[0], row) for row in correct)  # one function, k equal draws
