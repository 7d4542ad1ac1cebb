"""`fit` and `evaluate` on 1 process and on 2 CPU processes (torchrun, gloo): same results.

Training tolerance: with no BatchNorm in the model, 2 processes compute the same global batches as
one (each takes half of every batch; DDP averages the two halves' gradients), so they differ only in
float summation order and the threads each process has (torchrun gives each one). The final weights
agree to 1e-4 relative (measured ~1e-6); the training loss to 1e-4. With BatchNorm on CPUs each
process normalises its own half batch (SyncBatchNorm needs GPUs; `fit` converts on CUDA), so a
ResNet's numbers would differ by more than this. Sharded evaluation gives each process whole
batches, so it equals unsharded exactly.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("distributed_fit.py")
REL = 1e-4


def launch(n: int, mode: str, out: Path, *extra: str) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           str(SCRIPT), mode, str(out), *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode:
        print(f"$ {' '.join(cmd)}\n-> exit {done.returncode}\n{done.stderr[-3000:]}")  # shown if the test fails
    return done.returncode


def result(out: Path) -> dict:
    return torch.load(out / "result.pt", weights_only=True)


def close(a: dict, b: dict, rel: float = REL) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=rel, atol=rel * b[k].abs().max().item()) for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    assert launch(1, "train", out) == 0
    return result(out)


def test_two_processes_train_like_one(one_process, tmp_path):
    assert launch(2, "train", tmp_path) == 0
    two = result(tmp_path)
    assert close(two["state"], one_process["state"])
    for h1, h2 in zip(one_process["history"], two["history"]):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=REL)
        assert h2["train_acc"] == pytest.approx(h1["train_acc"], abs=1 / 256)  # one image may flip


@pytest.mark.parametrize("resume_with", [2, 1])
def test_a_killed_two_process_run_resumes(one_process, tmp_path, resume_with):
    assert launch(2, "train", tmp_path, "--die-at-step", "6") != 0  # 4 steps per epoch: killed in epoch 2
    assert not (tmp_path / "result.pt").exists() and any((tmp_path / "cache" / "resume").rglob("*.pt"))
    assert launch(resume_with, "train", tmp_path) == 0
    resumed = result(tmp_path)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert close(resumed["state"], one_process["state"])


def test_sharded_evaluation_equals_unsharded(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert launch(1, "eval", tmp_path / "a") == 0 and launch(2, "eval", tmp_path / "b") == 0
    one, two = (torch.load(tmp_path / d / "eval.pt", weights_only=True) for d in ("a", "b"))
    assert one == two
