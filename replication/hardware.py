"""What CPU this is, and the oneDNN fault every model built here is steered around.

The fault (oneDNN issue 6035, "1x1 convolution backward_weights writes past the rtus workspace
(nhwc, IC < ic_block)"): where oneDNN's best kernels are AVX2 (no AVX-512: most AMD CPUs, older
Intel ones), the weight gradient of a 1x1 convolution with stride > 1, channels_last input and
fewer than 8 input channels per group is wrong, and the process may then crash or hang. Measured
on an AMD EPYC (AVX2 only, torch 2.14.1, oneDNN 3.12): with 2 threads the weight gradient is off by
1-50% of its largest value, with 1 thread the process segfaults. A ResNet shortcut at width < 8
(the smoke profile's ResNet-18 has width 4) is exactly this shape.

The way round it is exact, not approximate: a 1x1 convolution with stride s and no padding equals
the same 1x1 convolution with stride 1 applied to x[..., ::s, ::s]. `build_model` reroutes every
such convolution through `SubsampledConv2d` (same parameters, same state-dict keys, so checkpoints
load either way), on every device, so numbers do not depend on the CPU. `check_onednn_safe` refuses
a model from elsewhere that still has the shape, before it trains on such a CPU.

`python -m replication.hardware` prints this machine's description and probes the raw fault in a
subprocess (it may crash or hang there; the probe has a timeout): paste its output into a report.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

ONEDNN_ISSUE = ("oneDNN issue 6035 (1x1 convolution backward_weights writes past the rtus workspace, "
                "nhwc, IC < ic_block)")
MIN_SAFE_IN_CHANNELS = 8  # oneDNN's AVX2 input-channel block

# ONEDNN_MAX_CPU_ISA values from least to most capable (oneDNN's dnnl_cpu_isa_t names); a value
# caps the kernels oneDNN dispatches to.
_ISA_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
              "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX",
              "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "DEFAULT")


class OneDNNFaultError(RuntimeError):
    """A model would send a convolution into the faulty oneDNN kernel on this CPU."""


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none, e.g. macOS)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # end of the first processor's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_isa(flags: set[str] | None = None) -> str:
    """The best matrix/vector extension this CPU has, as the project cares about it:
    'AMX' (native bf16 matrix units), 'AVX-512', 'AVX2', or 'other' (e.g. ARM, where oneDNN's x64
    kernels are not used)."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "other"


def onednn_uses_avx2_kernels(flags: set[str] | None = None, env: dict[str, str] | None = None) -> bool:
    """True where oneDNN dispatches its AVX2 kernels: an x86 CPU with AVX2 but no AVX-512, or
    ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) capping a bigger CPU at an AVX2 level."""
    flags = cpu_flags() if flags is None else flags
    env = os.environ if env is None else env
    isa = cpu_isa(flags)
    cap = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in _ISA_ORDER:
        if _ISA_ORDER.index(cap) < _ISA_ORDER.index("AVX2"):
            return False  # oneDNN falls back to older kernels (the issue's ONEDNN_MAX_CPU_ISA=AVX workaround)
        if _ISA_ORDER.index(cap) < _ISA_ORDER.index("AVX512_CORE"):
            return isa in ("AVX2", "AVX-512", "AMX")
    return isa == "AVX2"


@lru_cache(maxsize=1)
def onednn_version() -> str:
    m = re.search(r"(?:MKL-DNN|oneDNN) v([0-9.]+)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def cpu_description() -> dict[str, str | int | bool]:
    """What a crash report or a result's provenance needs to say about the CPU."""
    return {
        "model": cpu_model(),
        "machine": platform.machine(),
        "isa": cpu_isa(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": onednn_version(),
        "onednn_avx2_kernels": onednn_uses_avx2_kernels(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "threads": torch.get_num_threads(),
    }


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """bf16 pays off only with native bf16 units: a CUDA GPU that has them, or a CPU with AMX that
    oneDNN may use. Elsewhere (e.g. AVX2) bf16 autocast was measured ~3x *slower* than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    return cpu_isa() == "AMX" and (not cap or "AMX" in cap or cap == "ALL")


def resolve_precision(requested: str, device: torch.device | str = "cpu") -> str:
    """'bf16' or 'fp32': 'auto' follows the hardware (native_bf16); 'bf16' / 'fp32' are kept."""
    if requested not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision {requested!r}: choose auto, bf16 or fp32")
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return requested


# --- the guard -------------------------------------------------------------------------------------

def is_faulty_conv(m: nn.Module) -> bool:
    """A plain Conv2d of the shape oneDNN 6035 gets wrong: 1x1, stride > 1, < 8 input channels per group."""
    return (type(m) is nn.Conv2d and m.kernel_size == (1, 1) and m.stride != (1, 1)
            and m.in_channels // m.groups < MIN_SAFE_IN_CHANNELS)


class SubsampledConv2d(nn.Conv2d):
    """A 1x1 strided convolution computed as subsample-then-stride-1 convolution (exactly equal).

    Its parameters and state-dict keys are those of the nn.Conv2d it replaces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding  # a tuple: reroute_faulty_convs reroutes no other kind
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        sh, sw = self.stride
        return F.conv2d(x[..., ::sh, ::sw], self.weight, self.bias, 1, 0, self.dilation, self.groups)


def reroute_faulty_convs(module: nn.Module) -> int:
    """Turn every faulty-shape Conv2d in `module` into a SubsampledConv2d in place; return how many."""
    n = 0
    for m in module.modules():
        if is_faulty_conv(m) and m.padding_mode == "zeros" and isinstance(m.padding, tuple):
            m.__class__ = SubsampledConv2d
            n += 1
    return n


def faulty_convs(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if is_faulty_conv(m)]


def check_onednn_safe(module: nn.Module, device: torch.device | str = "cpu") -> None:
    """Refuse to train `module` on a CPU whose oneDNN has the fault while it has the faulty shape."""
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return
    if not torch.backends.mkldnn.enabled or not onednn_uses_avx2_kernels():
        return
    bad = faulty_convs(module)
    if bad:
        raise OneDNNFaultError(
            f"{len(bad)} convolution(s) ({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}) are 1x1 with "
            f"stride > 1 and fewer than {MIN_SAFE_IN_CHANNELS} input channels. On this CPU "
            f"({cpu_model()}, oneDNN {onednn_version()} with AVX2 kernels) their weight gradients are wrong "
            f"and training may crash or hang: {ONEDNN_ISSUE}. Build the model with "
            f"replication.models.build_model, or call replication.hardware.reroute_faulty_convs(model) "
            f"(exact, same parameters), or use width >= {MIN_SAFE_IN_CHANNELS}.")


# --- the probe -------------------------------------------------------------------------------------

_PROBE = """
import sys, torch, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(0)
x = torch.randn(64, 4, 16, 16).contiguous(memory_format=torch.channels_last)
w = torch.randn(8, 4, 1, 1, requires_grad=True)
for i in range(2):
    g, = torch.autograd.grad(F.conv2d(x, w, stride=2).square().sum(), w)
    with torch.backends.mkldnn.flags(enabled=False):
        r, = torch.autograd.grad(F.conv2d(x.contiguous(), w, stride=2).square().sum(), w)
    print(((g - r).abs().max() / r.abs().max()).item(), flush=True)
"""


def probe_raw_fault(threads: int = 2, timeout_s: float = 60.0) -> str:
    """Run the bare faulty shape (not rerouted) in a subprocess: 'absent', 'wrong gradients (...)',
    'crashed (...)' or 'hung'. Says whether this machine's oneDNN has the fault; the project's
    models avoid it either way."""
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE, str(threads)], capture_output=True, text=True,
                             timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"hung (no answer in {timeout_s:.0f} s)"
    if out.returncode != 0:
        return f"crashed (exit code {out.returncode})"
    errs = [float(v) for v in out.stdout.split()]
    worst = max(errs) if errs else float("nan")
    return "absent" if worst < 1e-4 else f"wrong gradients (max relative error {worst:.3g})"


def main() -> None:
    print("torch", torch.__version__)
    for k, v in cpu_description().items():
        print(f"{k}: {v}")
    for threads in (1, 2):
        print(f"raw oneDNN 6035 shape, {threads} thread(s): {probe_raw_fault(threads)}")
    print("The project's models reroute that shape (replication.hardware.SubsampledConv2d), so they avoid it.")
    print("Reporting a crash? Include all of the above and the output of:\n"
          "  python -c 'import torch; print(torch.__config__.show()); "
          "print(torch.backends.cpu.get_cpu_capability())'")


if __name__ == "__main__":
    main()
