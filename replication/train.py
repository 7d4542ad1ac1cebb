"""One trainer for every model: SGD + Nesterov, one-cycle or cosine, cached and resumable.

Runs through HF Accelerate, so one process on CPU, one GPU, or several processes launched with
`accelerate launch` share this code path (each process takes a shard of every epoch's order).
bf16 autocast follows the hardware (precision 'auto': GPU or a CPU with AMX) unless forced; each
epoch's history says which precision ran.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoints import (checkpoint_path, load_model, load_resume_state, resume_path, save_model,
                          save_resume_state, update_manifest)
from .data import Split, iterate_batches
from .hardware import check_onednn_safe, resolve_precision
from .models import build_model
from .profiles import ModelBudget
from .results import stable_hash

# extra_loss(model, x, y, logits) -> tensor added to the task loss (adversarial / regularised training)
ExtraLoss = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# batch_loss(model, x, y, aux) -> (loss, logits): replaces the task loss entirely (refinement, notebook 04);
# aux is the split's per-pixel side channel after augmentation, or None.
BatchLoss = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TrainConfig:
    arch: str
    dataset: str
    num_classes: int
    width: float
    epochs: int
    batch_size: int
    lr: float                      # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"     # or "cosine"
    warmup_frac: float = 0.2       # one-cycle: fraction of steps spent rising to the peak
    label_smoothing: float = 0.0   # off for attacked models: smoothing masks gradients (see README)
    n_train: int | None = None     # class-balanced subset size; None = whole split
    augment: bool = True
    precision: str = "auto"        # auto: bf16 where native (GPU, AMX), else fp32; or "bf16" / "fp32"
    seed: int = 0
    extra_loss: str | None = None  # a name for the extra-loss hook, so its runs cache apart
    init_from: str | None = None   # config hash of a checkpoint to fine-tune from
    data_variant: str | None = None  # names a modified training set (e.g. planted shortcuts)

    def to_dict(self) -> dict[str, Any]:
        # None fields are left out, so a new optional field does not change existing cache keys.
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict[str, Any]]
    path: Any
    from_cache: bool
    config_hash: str = ""


def _use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """'auto' follows the hardware: bf16 only with native bf16 units (GPU, CPU with AMX)."""
    return resolve_precision(cfg.precision, device) == "bf16"


def _scheduler(cfg: TrainConfig, opt, total_steps: int):
    if cfg.schedule == "onecycle":
        warm = max(1, int(cfg.warmup_frac * total_steps))

        def f(step):  # linear up to the peak, then linearly down to zero
            return step / warm if step < warm else max(0.0, (total_steps - step) / max(1, total_steps - warm))
    elif cfg.schedule == "cosine":
        def f(step):
            return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    else:
        raise ValueError(f"Unknown schedule {cfg.schedule!r}; use 'onecycle' or 'cosine'.")
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


@torch.no_grad()
def accuracy(model: torch.nn.Module, split: Split, batch_size: int = 500, bf16: bool = False) -> float:
    was = model.training
    model.eval()
    correct = 0
    dev = next(model.parameters()).device
    for x, y in iterate_batches(split, batch_size, shuffle=False, train_augment=False):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            correct += (model(x).argmax(1) == y).sum().item()
    model.train(was)
    return correct / max(1, len(split))


def train_model(cfg: TrainConfig, name: str, profile: str, train_split: Split, eval_split: Split | None = None,
                *, extra_loss: ExtraLoss | None = None, batch_loss: BatchLoss | None = None,
                init_model: torch.nn.Module | None = None, manifest: bool = True,
                stop_after_epoch: int | None = None, progress: bool = True) -> TrainResult:
    """Train `cfg`, or load it from its cache path when a run with the same config finished before.

    A killed run resumes from its last epoch state. `stop_after_epoch` ends early on purpose (tests).
    `batch_loss` computes the whole loss itself, instead of cross-entropy plus extra_loss.
    manifest=False keeps a cpu-profile checkpoint out of MANIFEST.json (regenerable fine-tunes, not committed).
    """
    from accelerate import Accelerator

    if extra_loss is not None and batch_loss is not None:
        raise ValueError("Pass extra_loss or batch_loss, not both.")
    if (extra_loss is None and batch_loss is None) != (cfg.extra_loss is None):
        raise ValueError("Pass extra_loss or batch_loss together with a cfg.extra_loss name (it keys the cache).")
    if (init_model is None) != (cfg.init_from is None):
        raise ValueError("Pass init_model together with cfg.init_from (its config hash).")
    config = cfg.to_dict()
    path = checkpoint_path(name, config, profile)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    device = accelerator.device
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, cfg.num_classes, cfg.width, cfg.dataset)
    if path.exists():
        history = load_model(model, path, config)
        return TrainResult(model.to(device).eval(), history, path, True, stable_hash(config))
    if init_model is not None:
        model.load_state_dict(init_model.state_dict())
    model = model.to(device)
    check_onednn_safe(model, device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    train_split = train_split.to(device)
    world, rank = accelerator.num_processes, accelerator.process_index
    steps_per_epoch = len(train_split) // world // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(train_split)} training images.")
    sched = _scheduler(cfg, opt, cfg.epochs * steps_per_epoch)
    model, opt = accelerator.prepare(model, opt)
    bf16 = _use_bf16(cfg, device)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    state = load_resume_state(config)
    if state is not None:
        accelerator.unwrap_model(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, start_epoch = state["history"], int(state["epoch"])
    for epoch in range(start_epoch, cfg.epochs):
        # The epoch's data order and augmentation depend only on (seed, epoch): resumable.
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + epoch)
        model.train()
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        batches = iterate_batches(train_split, cfg.batch_size, shuffle=True, train_augment=cfg.augment,
                                  generator=gen, drop_last=True, shard=(rank, world))
        bar = tqdm(batches, total=steps_per_epoch, desc=f"{name} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress or not accelerator.is_main_process, leave=False)
        for x, y, *aux in bar:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                if batch_loss is not None:
                    loss, logits = batch_loss(model, x, y, aux[0] if aux else None)
                else:
                    logits = model(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                    if extra_loss is not None:
                        loss = loss + extra_loss(model, x, y, logits)
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            opt.step()
            sched.step()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
        dt = time.perf_counter() - t0
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "lr_end": sched.get_last_lr()[0], "epoch_time_s": dt, "train_img_per_s": seen * world / dt,
               "precision": "bf16" if bf16 else "fp32"}
        if eval_split is not None:
            rec["test_acc"] = accuracy(accelerator.unwrap_model(model), eval_split.to(device), bf16=bf16)
        history.append(rec)
        if progress and accelerator.is_main_process:
            tqdm.write(f"{name} epoch {epoch + 1}: " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items() if k != "epoch"))
        if accelerator.is_main_process:
            save_resume_state(config, {"model": accelerator.unwrap_model(model).state_dict(),
                                       "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                       "epoch": epoch + 1, "history": history})
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
            return TrainResult(accelerator.unwrap_model(model).eval(), history, None, False, stable_hash(config))
    model = accelerator.unwrap_model(model).eval()
    if accelerator.is_main_process:
        save_model(model, path, config, history)
        if profile == "cpu" and manifest:
            update_manifest(path)
        resume_path(config).unlink(missing_ok=True)
    return TrainResult(model, history, path, False, stable_hash(config))


def config_for(arch: str, dataset: str, budget: "ModelBudget", *, n_train: int | None = None, seed: int = 0,
               **overrides) -> TrainConfig:
    """The TrainConfig a model budget (profiles.yaml: models.<arch>) gives `arch` on `dataset`."""
    from .data import num_classes

    fields = dict(arch=arch, dataset=dataset, num_classes=num_classes(dataset), width=budget.width,
                  epochs=budget.epochs, batch_size=budget.batch_size, lr=budget.lr, n_train=n_train,
                  seed=seed, precision=budget.precision)
    fields.update(overrides)
    return TrainConfig(**fields)
