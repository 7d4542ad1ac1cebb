import pytest
import torch

from replication.data import MEAN_STD
from replication.models import ARCHS, build_model, count_parameters


@pytest.mark.parametrize("arch,width", [("resnet18", 4), ("resnet50", 2), ("wrn28_10", 0.1)])
def test_shapes(arch, width):
    model = build_model(arch, num_classes=7, width=width).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 3, 32, 32)).shape == (3, 7)


def test_width_scales_parameters():
    assert count_parameters(build_model("resnet18", 10, 16)) < count_parameters(build_model("resnet18", 10, 32))
    # width 64 is the standard CIFAR ResNet-18 (11.17M parameters)
    assert abs(count_parameters(build_model("resnet18", 10, 64)) - 11_173_962) < 1000


def test_normalisation_is_inside_the_model():
    model = build_model("resnet18", 10, 4, dataset="cifar100").eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD["cifar100"])
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model.normalize(x), (x - mean) / std)
    with torch.no_grad():
        assert torch.allclose(model(x), model.net((x - mean) / std))


def test_unknown_arch():
    with pytest.raises(ValueError, match="Unknown architecture"):
        build_model("vgg", 10)
    assert set(ARCHS) == {"resnet18", "resnet50", "wrn28_10"}
