"""Run in a subprocess by test_onednn_fault.py: a oneDNN fault may crash or hang the process.

One training step (train mode, cross-entropy, backward, SGD step) of each ARCH:WIDTH on random
channels_last images, as the project trains. For every convolution, the weight gradient that
oneDNN computed is checked against the same gradient recomputed in float64 with oneDNN off, from
the very input and output gradient that convolution saw: each kernel is checked in its real
context, and rounding upstream (large in train mode: batch-norm's batch statistics make two
healthy float32 paths differ by up to 10% on random images) does not blur the comparison.
Prints JSON: per model, the largest relative L2 error of any convolution weight gradient.

usage: python conv_grad_check.py [--raw] THREADS BATCH PRECISION ARCH:WIDTH [ARCH:WIDTH ...]
--raw undoes build_model's reroute of the faulty shape, to show that the check catches the fault.
"""
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from replication.hardware import SubsampledConv2d
from replication.models import build_model


def main():
    args = sys.argv[1:]
    raw = args[0] == "--raw"
    args = args[1:] if raw else args
    threads, batch, precision = int(args[0]), int(args[1]), args[2]
    torch.set_num_threads(threads)
    out = {}
    for spec in args[3:]:
        arch, width = spec.split(":")
        torch.manual_seed(0)
        model = build_model(arch, 10, float(width)).train()
        if raw:
            for m in model.modules():
                if type(m) is SubsampledConv2d:
                    m.__class__ = nn.Conv2d
        seen = {}

        def keep(name):
            def hook(module, inputs, output):
                seen[name] = {"x": inputs[0].detach()}
                output.register_hook(lambda g: seen[name].__setitem__("g", g.detach()))
            return hook

        convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        handles = [m.register_forward_hook(keep(n)) for n, m in convs.items()]
        x = torch.rand(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        for h in handles:
            h.remove()
        err = {}
        with torch.backends.mkldnn.flags(enabled=False):
            for n, m in convs.items():
                want = torch.nn.grad.conv2d_weight(seen[n]["x"].double(), m.weight.shape, seen[n]["g"].double(),
                                                   m.stride, m.padding, m.dilation, m.groups)
                got = m.weight.grad.double()
                err[n] = ((got - want).norm() / want.norm().clamp_min(1e-30)).item()
        opt.step()
        worst = max(err, key=err.get)
        out[spec] = {"max_rel_err": err[worst], "worst": worst, "n_conv": len(err), "loss": loss.item()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
