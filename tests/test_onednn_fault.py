"""oneDNN issue 6035: strided 1x1 convolutions with < 8 input channels on AVX2-only CPUs.

The gradient checks run in subprocesses with timeouts (tests/conv_grad_check.py), because on an
affected CPU the fault crashes or hangs the process instead of failing an assertion.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from replication import hardware, profiles
from replication.hardware import (OneDNNFaultError, SubsampledConv2d, check_onednn_safe, faulty_convs,
                                  is_faulty_conv, onednn_uses_avx2_kernels, reroute_faulty_convs)
from replication.models import build_model

CHECK = Path(__file__).with_name("conv_grad_check.py")
# Healthy float32 kernels agree with the float64 recomputation to ~5e-6 (measured); the fault gives
# errors from 1e-2 to 1e3, or a crash or hang. bf16 keeps 8 mantissa bits (measured ~8e-3).
TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2}


def run_check(specs, threads=2, batch=16, precision="fp32", raw=False, timeout=240):
    cmd = [sys.executable, str(CHECK), *(["--raw"] if raw else []), str(threads), str(batch), precision, *specs]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"hung: no answer in {timeout} s"
    if out.returncode != 0:
        return None, f"exit code {out.returncode}: {out.stderr[-2000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1]), ""


def assert_gradients_right(results, why, precision="fp32"):
    assert results is not None, why
    bad = {k: v for k, v in results.items() if not v["max_rel_err"] < TOLERANCE[precision]}
    assert not bad, f"convolution weight gradients off (oneDNN vs float64, {precision}): {bad}"


@pytest.mark.parametrize("width,threads", [(4, 1), (4, 2), (2, 1), (2, 2)])
def test_minimal_reproduction_trains_right(width, threads):
    """The issue's reproduction: the project's ResNet-18 at width 4 (and 2), 100 random images,
    forward and backward, 1 and 2 threads. Before the reroute: segfault, heap corruption or hang."""
    assert_gradients_right(*run_check([f"resnet18:{width}"], threads=threads, batch=100))


@pytest.mark.parametrize("name", profiles.profile_names())
def test_every_profile_model_gets_right_gradients(name):
    """One training step of every model each profile configures, in fp32 and in the profile's precision."""
    p = profiles.get_profile(name)
    specs = [f"{arch}:{m.width}" for arch, m in p.models.items()]
    batch = 4 if name == "full" else 16  # full-width models: a few images keep this to seconds
    assert_gradients_right(*run_check(specs, batch=batch))
    for precision in {m.precision for m in p.models.values()} - {"fp32", "auto"}:
        bf16_specs = [s for s, m in zip(specs, p.models.values()) if m.precision == precision]
        assert_gradients_right(*run_check(bf16_specs, batch=batch, precision=precision), precision=precision)


def test_the_check_catches_the_fault_where_oneDNN_has_it():
    """Without the reroute, the same check fails on an affected CPU: proof that it can fail."""
    results, why = run_check(["resnet18:4"], threads=2, raw=True, timeout=45)
    faulty = results is None or results["resnet18:4"]["max_rel_err"] >= TOLERANCE["fp32"]
    if onednn_uses_avx2_kernels():
        if not faulty:
            pytest.skip("this AVX2 CPU's oneDNN computes the raw shape right (a fixed oneDNN?)")
        return
    assert not faulty, f"a oneDNN fault on a CPU not known to have one ({hardware.cpu_model()}): {why or results}"


@pytest.mark.parametrize("stride,padding,groups,cin", [(2, 0, 1, 4), (2, 0, 1, 1), (3, 0, 2, 6), (2, 1, 1, 3),
                                                      ((2, 1), 0, 1, 5)])
def test_subsampled_conv_equals_strided_conv(stride, padding, groups, cin):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, 8, 1, stride, padding, groups=groups, bias=True).double()
    assert is_faulty_conv(conv) == (cin // groups < 8)
    x = torch.randn(5, cin, 11, 13, dtype=torch.float64, requires_grad=True)
    want = conv(x)
    gw_want, gx_want = torch.autograd.grad(want.square().sum(), (conv.weight, x))
    assert reroute_faulty_convs(conv) == 1 and type(conv) is SubsampledConv2d
    got = conv(x)
    gw, gx = torch.autograd.grad(got.square().sum(), (conv.weight, x))
    assert got.shape == want.shape
    for a, b in ((got, want), (gw, gw_want), (gx, gx_want)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_models_have_no_faulty_convolution_and_keep_their_state_dict_keys():
    for arch, width in [("resnet18", 4), ("resnet18", 2), ("resnet50", 1), ("wrn28_10", 0.02)]:
        model = build_model(arch, 10, width)
        assert faulty_convs(model) == [], (arch, width)
    rerouted = build_model("resnet18", 10, 4)
    # width 4: only layer2's shortcut has < 8 input channels (layer3's has 8)
    assert [n for n, m in rerouted.named_modules() if type(m) is SubsampledConv2d] == ["net.layer2.0.shortcut.0"]
    plain = build_model("resnet18", 10, 16)
    assert sum(type(m) is SubsampledConv2d for m in plain.modules()) == 0
    keys = rerouted.state_dict().keys()
    for m in rerouted.modules():
        if type(m) is SubsampledConv2d:
            m.__class__ = nn.Conv2d
    assert rerouted.state_dict().keys() == keys


def test_guard_refuses_a_faulty_model_only_where_it_matters(monkeypatch):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 8, 1, stride=2))
    monkeypatch.setattr(hardware, "onednn_uses_avx2_kernels", lambda *a, **k: True)
    with pytest.raises(OneDNNFaultError, match="6035") as err:
        check_onednn_safe(net)
    assert "1" in str(err.value) and "reroute_faulty_convs" in str(err.value)
    check_onednn_safe(net, "cuda")  # other devices never reach oneDNN
    with torch.backends.mkldnn.flags(enabled=False):
        check_onednn_safe(net)
    monkeypatch.setattr(hardware, "onednn_uses_avx2_kernels", lambda *a, **k: False)
    check_onednn_safe(net)
    monkeypatch.setattr(hardware, "onednn_uses_avx2_kernels", lambda *a, **k: True)
    reroute_faulty_convs(net)
    check_onednn_safe(net)


@pytest.mark.parametrize("flags,env,expected", [
    ({"avx2"}, {}, True),
    ({"avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX"}, False),
    ({"avx2", "avx512f"}, {}, False),
    ({"avx2", "avx512f"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, True),
    ({"avx2", "avx512f", "amx_bf16"}, {"DNNL_MAX_CPU_ISA": "avx2_vnni"}, True),
    ({"avx2", "avx512f", "amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, False),
    (set(), {}, False),
])
def test_avx2_kernel_detection(flags, env, expected):
    assert onednn_uses_avx2_kernels(flags, env) is expected


def test_cpu_description_names_what_a_report_needs():
    d = hardware.cpu_description()
    assert {"model", "isa", "aten_capability", "onednn", "onednn_avx2_kernels", "threads"} <= set(d)
    assert d["onednn"] != "unknown" or not torch.backends.mkldnn.is_available()
