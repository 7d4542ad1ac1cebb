"""CIFAR ResNet-18 / ResNet-50 / WideResNet-28-10 with input normalisation inside the model.

Every model takes [0,1] pixels, so every attack works in pixel space. `width` scales the channel
counts: ResNet width w has stages (w, 2w, 4w, 8w) (64 = the standard network); WideResNet's
`width` multiplies its widen factor 10 (1.0 = WRN-28-10).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import MEAN_STD
from .hardware import reroute_faulty_convs


class Normalize(nn.Module):
    """(x - mean) / std per channel; buffers, so they travel with the state dict."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem, no max-pool, four stages, global average pool."""

    def __init__(self, block, layers, num_classes, width=64):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin, stages = width, []
        for i, (planes, n) in enumerate(zip(widths, layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, 2 if (i > 0 and j == 0) else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(cin, num_classes)

    def features(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(out))))

    def forward(self, x):
        out = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.linear(out)


class WideBlock(nn.Module):
    """Pre-activation wide block (Zagoruyko & Komodakis)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if (stride == 1 and cin == cout) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        short = x if self.shortcut is None else self.shortcut(o)
        out = self.conv1(o)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + short


class WideResNet(nn.Module):
    def __init__(self, depth=28, widen=10, num_classes=10, width=1.0):
        super().__init__()
        n = (depth - 4) // 6
        k = widen * width
        chans = [16, max(1, round(16 * k)), max(1, round(32 * k)), max(1, round(64 * k))]
        self.conv1 = nn.Conv2d(3, chans[0], 3, 1, 1, bias=False)
        layers, cin = [], chans[0]
        for i, c in enumerate(chans[1:]):
            for j in range(n):
                layers.append(WideBlock(cin, c, (1 if i == 0 else 2) if j == 0 else 1))
                cin = c
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


ARCHS = ("resnet18", "resnet50", "wrn28_10")


def build_model(arch: str, num_classes: int, width: float = 64, dataset: str = "cifar10") -> nn.Sequential:
    """Normalize -> network. Input: [0,1] pixels, NCHW. Returned in channels_last memory format.

    Shortcut convolutions that oneDNN's AVX2 kernels get wrong (1x1, stride 2, < 8 input channels:
    ResNets at width < 8) are rerouted through an exactly equal form; see `hardware`."""
    if arch == "resnet18":
        net = ResNet(BasicBlock, [2, 2, 2, 2], num_classes, int(width))
    elif arch == "resnet50":
        net = ResNet(Bottleneck, [3, 4, 6, 3], num_classes, int(width))
    elif arch == "wrn28_10":
        net = WideResNet(28, 10, num_classes, float(width))
    else:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {ARCHS}.")
    mean, std = MEAN_STD.get(dataset, MEAN_STD["cifar10"])
    model = nn.Sequential()
    model.add_module("normalize", Normalize(mean, std))
    model.add_module("net", net)
    reroute_faulty_convs(model)
    return model.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
