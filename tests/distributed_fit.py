"""Run under torchrun (1 or N CPU processes, gloo) by tests/test_distributed.py:

    python -m torch.distributed.run --standalone --nproc_per_node N tests/distributed_fit.py MODE OUT [--die-at-step K]

MODE train: fit a small BatchNorm-free convnet on 256 CIFAR-10 images for 2 epochs (through the
project's `fit`, checkpoints and resume states under OUT) and save its final weights and history to
OUT/result.pt. MODE eval: evaluate a fixed-seed ResNet-18 (clean, FGSM, PGD) with `evaluate` and
save the records' values. --die-at-step K: process 0 exits hard in the middle of training (a kill),
after the resume state of the epochs before K was written.
"""
import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from replication import paths  # noqa: E402
from replication.attacks import Attack  # noqa: E402
from replication.data import load_split  # noqa: E402
from replication.evaluate import evaluate  # noqa: E402
from replication.models import build_model  # noqa: E402
from replication.train import TrainConfig, classifier_step, close_group_at_exit, fit  # noqa: E402


def net() -> torch.nn.Module:
    # no BatchNorm: on CPU each process normalises its own slice (SyncBatchNorm needs GPUs), which
    # would make N processes differ from one by more than float summation order
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "eval"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--die-at-step", type=int, default=None)
    args = ap.parse_args()
    paths.CHECKPOINTS_DIR, paths.CACHE_DIR = args.out / "checkpoints", args.out / "cache"
    if args.mode == "train":
        cfg = TrainConfig(arch="testnet", dataset="cifar10", num_classes=10, width=1, epochs=2, batch_size=64,
                          lr=0.05, n_train=256, schedule="cosine", seed=3,
                          precision="fp32")  # the test is about distribution: bf16 autocast (AMX) misses its tolerance
        torch.manual_seed(cfg.seed)
        model = net()
        base = classifier_step(cfg)
        steps = [0]

        def step(m, batch):
            steps[0] += 1
            if args.die_at_step is not None and steps[0] == args.die_at_step and int(os.environ.get("RANK", 0)) == 0:
                os._exit(17)  # killed mid-epoch
            return base(m, batch)

        res = fit(cfg, "dist", "smoke", model, load_split("cifar10", True, n=256, seed=0), step, progress=False)
        if int(os.environ.get("RANK", 0)) == 0:
            torch.save({"state": {k: v.detach().clone() for k, v in res.model.state_dict().items()},
                        "history": res.history}, args.out / "result.pt")
    else:
        from accelerate import PartialState

        PartialState(cpu=True)  # initialises torch.distributed (gloo) under torchrun, as notebooks' runs would
        close_group_at_exit()
        torch.manual_seed(0)
        model = build_model("resnet18", 10, 2).eval()
        test = load_split("cifar10", False, n=96, seed=0)
        ctx = {"experiment": "e", "profile": "smoke", "run_id": "r", "model": None, "model_hash": None, "setting": {}}
        recs = evaluate(model, test, {Attack("fgsm"): [0.01], Attack("pgd", steps=3, restarts=2): [0.01]}, context=ctx,
                        batch_size=16, progress=False)
        if not dist.is_initialized() or dist.get_rank() == 0:
            torch.save([r["value"] for r in recs], args.out / "eval.pt")


if __name__ == "__main__":
    main()
