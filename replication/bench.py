"""Speed figures (printed and recorded, never asserted): `python -m replication.bench train --profile cpu`.

- train: training and inference images/s of the profile's ResNet-18 on real CIFAR-10 batches, on this
  device, plus time-to-accuracy read from the profile's cached baseline run (its per-epoch history,
  measured while it trained).
- attack: PGD image-steps/s on the same model.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from .attacks import pgd
from . import zoo
from .hardware import resolve_precision
from .data import iterate_batches, load_split
from .profiles import get_profile
from .results import device_description, make_record, provenance, require_clean_tree, save_records
from .train import config_for
from .models import build_model


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up (kernel selection, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def throughput(arch: str, width: float, batch_size: int, bf16: bool, repeats: int = 5) -> dict[str, float]:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    split = load_split("cifar10", train=True, n=batch_size * 2, seed=0).to(dev)
    x, y = next(iterate_batches(split, batch_size, shuffle=False, train_augment=False))
    model = build_model(arch, 10, width).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def train_step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            model(x)

    def attack():
        pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=5)

    model.train()
    t_train = _timed(train_step, repeats)
    model.eval()
    t_infer = _timed(infer, repeats)
    t_attack = _timed(attack, max(1, repeats // 2))
    return {"train_img_per_s": batch_size / t_train, "infer_img_per_s": batch_size / t_infer,
            "pgd_image_steps_per_s": batch_size * 5 / t_attack}


def time_to_accuracy(history: list[dict], targets=(0.85, 0.88, 0.90)) -> dict[float, float | None]:
    out, elapsed = {}, 0.0
    for t in targets:
        out[t] = None
    for h in history:
        elapsed += h["epoch_time_s"]
        for t in targets:
            if out[t] is None and h.get("test_acc", 0) >= t:
                out[t] = elapsed
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["train"])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-tta", action="store_true", help="skip time-to-accuracy (needs the cached baseline)")
    args = ap.parse_args(argv)
    profile = get_profile(args.profile)
    cfg = config_for("resnet18", "cifar10", profile.models["resnet18"], n_train=profile.n_train)
    precision = resolve_precision(cfg.precision, "cuda" if torch.cuda.is_available() else "cpu")
    bf16 = precision == "bf16"
    print(f"device: {device_description()}; profile {profile.name}: ResNet-18 width {cfg.width}, "
          f"batch {cfg.batch_size}, {'bf16 autocast' if bf16 else 'fp32'}")
    require_clean_tree(profile.name)
    run = provenance({"bench": vars(args)}, precision=precision)
    t0 = time.perf_counter()
    figs = throughput("resnet18", cfg.width, cfg.batch_size, bf16, args.repeats)
    for k, v in figs.items():
        print(f"  {k}: {v:,.0f}")
    base = dict(experiment="bench", dataset="cifar10", model="resnet18_cifar10", n=cfg.batch_size, seed=0,
                profile=profile.name, run_id=run["run_id"])
    recs = [make_record(**base, metric=k, value=v, wall_time_s=time.perf_counter() - t0) for k, v in figs.items()]
    if not args.no_tta:
        res = zoo.get("resnet18_cifar10", profile, progress=True)
        tta = time_to_accuracy(res.history)
        final = res.history[-1]
        total = sum(h["epoch_time_s"] for h in res.history)
        print(f"  time to accuracy (from the run that trained {res.path.name}; eval subset of "
              f"{profile.n_test or 10000} test images):")
        for t, s in tta.items():
            print(f"    >= {100 * t:.0f}%: " + (f"{s / 60:.1f} min" if s is not None else "not reached"))
        print(f"    final: {100 * final['test_acc']:.2f}% after {len(res.history)} epochs, {total / 60:.1f} min")
        for t, s in tta.items():
            recs.append(make_record(**base, model_hash=res.config_hash, metric="time_to_accuracy_s", setting={"target": t},
                                    value=s, wall_time_s=total))
    save_records("bench", profile.name, recs, run)


if __name__ == "__main__":
    main()
