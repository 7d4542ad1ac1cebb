"""Paper B's ImageNet rows: a torchvision ResNet-50 on a user-supplied ImageNet subset (notebook 10).

Neither ImageNet nor torchvision's pretrained weights can be had offline here, so this path runs
only where both are present: an ImageFolder directory (one sub-directory per class, named by its
WordNet id, e.g. n01440764, as ImageNet's validation set is usually laid out) and the weights in
torch's hub cache (`torchvision.models.ResNet50_Weights.IMAGENET1K_V2`, fetched once with internet
by `torchvision.models.resnet50(weights="IMAGENET1K_V2")`). Labels are the ImageFolder's indices
when it holds all 1,000 classes; for a subset of the classes the model's clean prediction stands
in for the label (a test runs the path on a synthetic folder with an untrained model).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .data import Split
from .models import Normalize

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def weights_cached(weights: str = "IMAGENET1K_V2") -> bool:
    """Whether torchvision's ResNet-50 `weights` are in the hub cache (so loading needs no internet)."""
    from torchvision.models import ResNet50_Weights

    url = ResNet50_Weights[weights].url
    return (Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]).exists()


def available(root: str | Path | None, weights: str | None = "IMAGENET1K_V2") -> tuple[bool, str]:
    """(whether the ImageNet rows can run, and why not)."""
    if root is None:
        return False, "no ImageNet subset given (IMAGENET_ROOT is None)"
    if not Path(root).is_dir():
        return False, f"IMAGENET_ROOT {root} is not a directory"
    if weights is not None and not weights_cached(weights):
        return False, f"torchvision's ResNet-50 weights {weights} are not in torch's hub cache ({torch.hub.get_dir()})"
    return True, ""


def resnet50(weights: str | None = "IMAGENET1K_V2") -> torch.nn.Module:
    """torchvision's ResNet-50 taking [0, 1] images (its normalisation inside); None: untrained."""
    from torchvision.models import ResNet50_Weights, resnet50 as tv_resnet50

    net = tv_resnet50(weights=None if weights is None else ResNet50_Weights[weights])
    return torch.nn.Sequential(Normalize(MEAN, STD), net).eval()


def load_subset(root: str | Path, n: int | None, seed: int = 0, size: int = 224) -> Split:
    """Up to n images of an ImageFolder (a seeded, class-balanced pick), resized and centre-cropped to
    `size`, as a uint8 Split. Labels are ImageNet's class indices only when the folder holds all
    1,000 classes (sorted WordNet ids are ImageNet's order); otherwise -1, and the notebook attacks
    and explains the model's clean prediction instead."""
    from torchvision import datasets, transforms

    from .data import balanced_subset

    tf = transforms.Compose([transforms.Resize(256 * size // 224), transforms.CenterCrop(size), transforms.PILToTensor()])
    folder = datasets.ImageFolder(str(root), transform=tf)
    labels = torch.tensor(folder.targets)
    idx = balanced_subset(labels, n, seed)
    xs = torch.stack([folder[int(i)][0] for i in idx])
    y = labels[idx] if len(folder.classes) == 1000 else torch.full((len(idx),), -1)
    return Split("imagenet-subset", False, xs, y, 1000)


def with_predicted_labels(split: Split, model: torch.nn.Module, batch_size: int = 32) -> Split:
    """The split with unknown labels (-1) replaced by the model's clean predictions."""
    from .data import to_float

    if (split.y >= 0).all():
        return split
    with torch.no_grad():
        pred = torch.cat([model(to_float(split.x[s:s + batch_size])).argmax(1) for s in range(0, len(split), batch_size)])
    return Split(split.name, split.train, split.x, torch.where(split.y >= 0, split.y, pred.cpu()), split.num_classes)
