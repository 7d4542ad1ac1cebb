import torch

from replication.data import load_split
from replication.shortcuts import mask_scores, patch_layout, plant


def test_layout_is_distinct_and_seeded():
    pos, col = patch_layout(10, seed=0)
    assert len({tuple(p) for p in pos.tolist()}) == 10 and len({tuple(c) for c in col.tolist()}) == 10
    assert torch.equal(pos, patch_layout(10, seed=0)[0]) and not torch.equal(pos, patch_layout(10, seed=1)[0])
    assert (pos >= 0).all() and (pos <= 28).all()


def test_correlated_and_decorrelated_planting():
    s = load_split("cifar10", train=False, n=200, seed=0)
    pos, col = patch_layout(10)
    cor = plant(s, "correlated", rate=0.5, seed=3)
    assert 0.3 < cor.planted.float().mean() < 0.7
    assert torch.equal(cor.patch_class[cor.planted], s.y[cor.planted])
    i = int(cor.planted.nonzero()[0])
    r, q = pos[int(s.y[i])].tolist()
    assert (cor.split.x[i, :, r:r + 4, q:q + 4] == col[int(s.y[i])].view(3, 1, 1)).all()
    assert cor.mask[i].sum() == 16 and cor.mask[~cor.planted].sum() == 0
    # pixels outside the mask are untouched
    assert torch.equal(cor.split.x[~cor.mask[:, None].expand_as(s.x)], s.x[~cor.mask[:, None].expand_as(s.x)])
    dec = plant(s, "decorrelated", seed=3)
    assert dec.planted.all() and (dec.patch_class != s.y).all()
    assert torch.equal(plant(s, "decorrelated", seed=3).split.x, dec.split.x)


def test_mask_scores():
    truth = torch.zeros(1, 4, 4, dtype=torch.bool)
    truth[0, :2, :2] = True
    flagged = torch.zeros_like(truth)
    flagged[0, :2, :] = True
    assert mask_scores(flagged, truth) == {"precision": 0.5, "recall": 1.0, "iou": 0.5}
