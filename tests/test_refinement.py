"""The refinement loss (eqs 8-15), mask alignment through augmentation, and Algorithm 1's stopping rule."""
import torch
import torch.nn.functional as F

from replication.paper_a import refine as rf
from replication.data import Split, iterate_batches
from replication.models import build_model


class Recorder(torch.nn.Module):
    """Wraps a model and keeps every input it is called with."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def _model():
    torch.manual_seed(0)
    return build_model("resnet18", 10, 1, "cifar10")


def _batch(n=6):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    spur = torch.zeros(n, 1, 32, 32)
    spur[:, :, 4:12, 8:20] = 255.0
    spur[0] = 0  # one image with nothing flagged
    return x, y, spur


def test_reg_is_exactly_zero_when_nothing_is_flagged():
    m = _model()
    x, y, _ = _batch()
    spec = rf.RefineSpec("reg", reg=True, lam=5.0)
    loss, logits = rf.RefinementLoss(spec)(m, x, y, torch.zeros(len(x), 1, 32, 32))
    assert torch.equal(loss, F.cross_entropy(logits.float(), y))
    xin = x.clone().requires_grad_(True)
    assert rf.sensitivity_penalty(m(xin), y, xin, torch.zeros(len(x), 1, 32, 32)).item() == 0.0


def test_reg_is_positive_and_differentiable_when_flagged():
    m = _model()
    x, y, spur = _batch()
    loss, logits = rf.RefinementLoss(rf.RefineSpec("reg", reg=True, lam=1.0))(m, x, y, spur)
    assert loss.item() > F.cross_entropy(logits.float(), y).item()
    loss.backward()  # double backprop reaches the weights
    assert m[1].conv1.weight.grad.abs().sum() > 0


def test_masking_zeroes_exactly_the_flagged_pixels():
    m = Recorder(_model())
    x, y, spur = _batch()
    rf.RefinementLoss(rf.RefineSpec("mask", mask=True))(m, x, y, spur)
    seen = m.seen[0]
    flagged = (spur > 0).expand_as(x)
    assert torch.equal(seen[flagged], torch.zeros_like(seen[flagged]))
    assert torch.equal(seen[~flagged], x[~flagged])


def test_fgsm_in_the_loop_stays_in_the_eps_ball_and_the_box():
    for spec in (rf.RefineSpec("adv", adv=True, eps=0.03), rf.RefineSpec("fast", fast_at=True, clean_loss=False, eps=8 / 255),
                 rf.RefineSpec("all", mask=True, reg=True, adv=True, eps=0.03)):
        m = Recorder(_model())
        x, y, spur = _batch()
        rf.RefinementLoss(spec)(m, x, y, spur)
        clean_in, adv = m.seen[0], m.seen[-1]
        assert (adv - clean_in).abs().max() <= spec.eps + 1e-6
        assert (adv - clean_in).abs().max() > spec.eps / 2  # it did move
        assert adv.min() >= 0 and adv.max() <= 1


def test_mask_channel_follows_crop_and_flip():
    # images whose every channel equals the mask: after augmentation they must still match
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(16, 32, 32, generator=g) < 0.2
    x = mask.to(torch.uint8)[:, None].mul(255).repeat(1, 3, 1, 1)
    split = rf.with_masks(Split("t", True, x, torch.zeros(16, dtype=torch.long), 10), mask)
    for xb, _, aux in iterate_batches(split, 8, shuffle=True, train_augment=True, generator=torch.Generator().manual_seed(3)):
        assert torch.equal((xb[:, :1] * 255).round(), aux)


class _Masks:
    """What algorithm1 reads of a study.Masks: its flags and pixel masks (counted when read)."""
    reads = 0

    def __init__(self, flags):
        self._flags = flags

    @property
    def flags(self):
        _Masks.reads += 1
        return type("F", (), {"spurious": self._flags})()

    @property
    def lime(self):
        return self._flags[:, :, None].float()


def test_algorithm1_stops_on_convergence_or_the_round_limit():
    flags = torch.tensor([[True, False]])
    accs = iter([0.50, 0.505, 0.9])

    def ident(_, r):
        return _Masks(flags), 0.5

    out, hist = rf.algorithm1("m0", None, ident, lambda m, p, r: f"m{r}", lambda m, r: {"pgd": next(accs)},
                              rounds=5, robust_key="pgd", tol_acc=0.01, tol_jaccard=0.8)
    assert out == "m2" and [h.converged for h in hist] == [False, True] and hist[1].jaccard_to_previous == 1.0
    accs2 = iter([0.1, 0.3, 0.6])
    out, hist = rf.algorithm1("m0", None, ident, lambda m, p, r: f"m{r}", lambda m, r: {"pgd": next(accs2)},
                              rounds=3, robust_key="pgd")
    assert out == "m3" and not any(h.converged for h in hist)


def test_algorithm1_reads_stored_rounds_back_without_identifying():
    """A round whose records a run made is read back: its Jaccard and shares come from the records,
    and no flags are computed (the identification never runs)."""
    def rec(v):
        return {"value": v}

    stored = {1: {"flagged_segment_frac": rec(0.2), "flagged_pixel_frac": rec(0.1), "round_time_s": rec(5.0)},
              2: {"flagged_segment_frac": rec(0.25), "flagged_pixel_frac": rec(0.12), "round_time_s": rec(6.0),
                  "jaccard": rec(0.9)}}
    accs = iter([0.50, 0.505])
    _Masks.reads = 0
    out, hist = rf.algorithm1("m0", None, lambda m, r: (_Masks(torch.tensor([[True]])), stored[r]),
                              lambda m, p, r: f"m{r}", lambda m, r: {"pgd": next(accs)}, rounds=5, robust_key="pgd")
    assert out == "m2" and [h.converged for h in hist] == [False, True] and _Masks.reads == 0
    assert [h.flagged_segment_frac for h in hist] == [0.2, 0.25] and hist[1].jaccard_to_previous == 0.9
    assert hist[0].stored is stored[1]


def test_ablation_specs_cover_every_combination_and_the_controls():
    names = [s.name for s in rf.ablation_specs(0.03, 1.0, 1.0)]
    for n in ("mask", "reg", "adv", "mask+reg", "mask+adv", "reg+adv", "mask+reg+adv"):
        assert n in names
    assert sum(n.startswith("control") for n in names) == 3
    assert len({s.key() for s in rf.ablation_specs(0.03, 1.0, 1.0)}) == len(names)


def test_refinement_and_identification_are_deterministic(tmp_path, monkeypatch):
    from replication import paths
    from replication.paper_a import spurious as sp
    from replication.profiles import ModelBudget, RefineBudget
    from replication.data import load_split, to_float
    from replication.train import TrainResult

    split = load_split("cifar10", True, n=40, seed=0)
    x, y = to_float(split.x), split.y
    cfg = sp.IdentifyConfig(n_samples=30, n_perturb=2)
    base = TrainResult(_model().eval(), [], None, False, "init")
    model, budget = ModelBudget(width=1, epochs=1, batch_size=20, lr=0.1), RefineBudget(1, 20, 0.02, None, 1, None)
    runs = []
    for k in range(2):
        monkeypatch.setattr(paths, "CHECKPOINTS_DIR", tmp_path / f"ck{k}")
        monkeypatch.setattr(paths, "CACHE_DIR", tmp_path / f"cache{k}")
        s = sp.attribution_scores(base.model, x, y, cfg, progress=False)
        pixels = sp.pixel_masks(sp.identify(s, cfg).spurious, s.segments)
        spec = rf.RefineSpec("all", mask=True, reg=True, adv=True)
        tr = rf.refine(base, spec, rf.with_masks(split, pixels), budget=budget, model=model, store="smoke", name="t",
                       masks_id=rf.masks_id(split, pixels), progress=False)
        runs.append((s, pixels, tr))
    (s0, p0, t0), (s1, p1, t1) = runs
    assert all(torch.equal(a, b) for a, b in zip(s0.tensors().values(), s1.tensors().values()))
    assert torch.equal(p0, p1) and p0.any()
    assert t0.history[0]["train_loss"] == t1.history[0]["train_loss"]
    sa, sb = t0.model.state_dict(), t1.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
