"""Notebook 11's scaling study: nested identification rings, padded score concatenation, and the
smallest N at width 1 being notebook 06's models (so their checkpoints and scores are reused)."""
import pytest
import torch

from replication.data import balanced_subset
from replication.paper_a import spurious as sp


def test_rings_are_the_nested_subsets_in_chunks():
    from types import SimpleNamespace

    from replication.paper_a.scaling import Scaling

    labels = torch.arange(10).repeat(50)  # 500 images, 10 classes
    sc = Scaling.__new__(Scaling)  # only the ring arithmetic, no models
    sc.B, sc.seed = SimpleNamespace(n_images=[40, 100, 300], chunk=70), 3
    rings = sc.rings(labels, 300)
    assert torch.equal(rings[0], balanced_subset(labels, 40, 3))  # notebook 03's identification, whole
    assert [len(r) for r in rings] == [40, 60, 70, 70, 60]  # 60 new at 100, then 200 new in chunks of 70
    union = torch.cat(rings)
    assert len(set(union.tolist())) == len(union)  # disjoint
    assert torch.equal(union.sort().values, balanced_subset(labels, 300, 3))
    assert torch.equal(torch.cat(sc.rings(labels, 100)).sort().values, balanced_subset(labels, 100, 3))


def test_concat_pads_segment_columns_and_keeps_padding_out_of_the_rules():
    g = torch.Generator().manual_seed(0)

    def scores(b, f):
        return sp.Scores(segments=torch.randint(0, f, (b, 4, 4), generator=g), counts=torch.full((b,), f),
                         beta=torch.randn(b, f, generator=g), sens=torch.rand(b, f, generator=g),
                         beta_var=torch.rand(b, f, generator=g), beta_ref=None, sens_ref=None)
    a, b = scores(3, 5), scores(2, 8)
    c = sp.concat([a, b])
    assert c.beta.shape == (5, 8) and c.beta_ref is None and torch.equal(c.counts, torch.tensor([5, 5, 5, 8, 8]))
    assert torch.equal(c.beta[:3, :5], a.beta) and c.beta[:3, 5:].abs().sum() == 0 and torch.equal(c.sens[3:], b.sens)
    assert not (sp.identify(c, sp.IdentifyConfig(tau_q=0.0, eps_q=0.0, delta_q=0.0)).spurious[:3, 5:]).any()


@pytest.mark.filterwarnings("ignore")
def test_smallest_n_at_width_one_is_notebook_06s_family(monkeypatch):
    """Same names and config hashes as notebook 06's normalised family at every seed and row it has,
    so the scaling study reuses its (committed or cached) models instead of training them again."""
    from replication import notebook
    from replication.paper_a import curves, scaling

    monkeypatch.setenv("REPLICATION_ALLOW_DIRTY", "1")
    run = notebook.start("11_scaling", {"PROFILE": "cpu", "SEED": 0})
    sc = scaling.Scaling(run)
    fam = curves.family(run, "normalised", [0, 1, 2])
    n0 = run.profile.scaling.n_images[0]
    for (row, seed), ref in fam.items():
        if row not in scaling.ROWS:
            continue
        mine = sc.refined(scaling.Model(1, n0, row, seed, "normalised"))
        assert mine.tr.config_hash == ref.tr.config_hash and mine.tr.name == ref.tr.name, (row, seed)
    wide = sc.refined(scaling.Model(2, 3000, scaling.rf.FULL, 0, "normalised"))
    assert wide.tr.name.startswith("resnet18x2_cifar10_refine-") and wide.tr.name.endswith("-n3000")
    assert wide.setting["refine_epochs"] == 3 and wide.setting["width_factor"] == 2
    # --list reads what is stored without building anything: the smallest N's rings are notebook 03's
    # committed scores; a model none of whose records exist misses every one
    assert sc.status(scaling.Task("identify", 1, n0)) == "done"
    assert sc.status(scaling.Task("model", model=scaling.Model(2, 3000, scaling.rf.FULL, 7, "pixel"))) == \
        "15 record(s) missing"  # clean on both subsets, FGSM/PGD x 3 eps on both, APGD-CE on the strong one
