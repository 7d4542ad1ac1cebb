"""One trainer for every model: SGD + Nesterov, one-cycle or cosine, cached and resumable.

Runs through HF Accelerate, so one process on CPU, one GPU, or several processes launched with
`accelerate launch` share this code path (each process takes a shard of every epoch's order).
bf16 autocast follows the hardware (precision 'auto': GPU or a CPU with AMX) unless forced; each
epoch's history says which precision ran.
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from .cache import key_hash, memo
from .checkpoints import (COMMIT_LIMIT_BYTES, checkpoint_path, load_model, load_resume_state, resume_path, save_model,
                          save_resume_state, state_bytes, update_manifest)
from .data import Split, iterate_batches
from .hardware import check_onednn_safe, resolve_precision
from .models import build_model
from .profiles import ModelBudget
from .progress import bar

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
    optimizer: str | None = None   # None: SGD with Nesterov momentum; "adam"
    ema_decay: float | None = None  # an EMA of the weights (the checkpoint holds the EMA)

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


# step(model, batch) -> (loss, stats): one optimisation step's loss on a batch (x, y, *aux) and
# per-batch sums to report ({"correct": ...} gives train_acc). A classifier step is one `step`;
# a DDPM's noise-prediction loss is another.
Step = Callable[[torch.nn.Module, tuple], tuple[torch.Tensor, dict[str, float]]]


def classifier_step(cfg: TrainConfig, extra_loss: ExtraLoss | None = None, batch_loss: BatchLoss | None = None) -> Step:
    """Cross-entropy (with cfg's label smoothing) plus extra_loss, or batch_loss's own loss."""
    def step(model, batch):
        x, y, *aux = batch
        if batch_loss is not None:
            loss, logits = batch_loss(model, x, y, aux[0] if aux else None)
        else:
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if extra_loss is not None:
                loss = loss + extra_loss(model, x, y, logits)
        return loss, {"correct": (logits.argmax(1) == y).sum().item()}
    return step


def _optimizer(cfg: TrainConfig, params):
    if cfg.optimizer in (None, "sgd"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"Unknown optimizer {cfg.optimizer!r}; use 'sgd' or 'adam'.")


@functools.cache  # registers once per process
def close_group_at_exit() -> None:
    """Destroy torch.distributed's process group (if any) when the interpreter exits, while it is still
    whole: gloo's threads outliving it abort the process ("terminate called without an active
    exception", pytorch/pytorch#190489), turning a finished torchrun into a failed one."""
    atexit.register(lambda: dist.destroy_process_group() if dist.is_available() and dist.is_initialized() else None)


def fit(cfg: TrainConfig, name: str, store: str, model: torch.nn.Module, train_split: Split, step: Step, *,
        evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None, init_state: dict | None = None,
        manifest: bool = False, stop_after_epoch: int | None = None, progress: bool = True) -> TrainResult:
    """Train `model` with `step` under `cfg`, or load it from its cache path when a run with the same
    config (cache key) finished before. Owns Accelerate (1 process or N, each a shard of every epoch),
    the schedule, the precision (cfg.precision, following the hardware for 'auto'), resuming from the
    last epoch, an EMA of the weights (cfg.ema_decay: the checkpoint then holds the EMA weights),
    checkpointing and progress. `evaluate(model)` adds per-epoch metrics to the
    history. `manifest`: list a finished checkpoint in checkpoints/MANIFEST.json (a committed profile).
    `stop_after_epoch` ends early on purpose (tests)."""
    from accelerate import PartialState

    config = cfg.to_dict()
    path = checkpoint_path(name, config, store)
    device = PartialState(cpu=not torch.cuda.is_available()).device  # this process's device (one GPU each)
    close_group_at_exit()

    def lookup() -> TrainResult | None:
        if not path.exists():
            return None
        history = load_model(model, path, config)
        return TrainResult(model.to(device).eval(), history, path, True, key_hash(config))

    result, _ = memo(lookup, lambda: _train(cfg, name, store, model, train_split, step, path, evaluate=evaluate,
                                            init_state=init_state, manifest=manifest,
                                            stop_after_epoch=stop_after_epoch, progress=progress))
    return result


def _train(cfg: TrainConfig, name: str, store: str, model: torch.nn.Module, train_split: Split, step: Step, path, *,
           evaluate, init_state, manifest: bool, stop_after_epoch: int | None, progress: bool) -> TrainResult:
    """fit's loop (fit has looked in the cache first); saves the checkpoint atomically at the end."""
    from accelerate import Accelerator
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    config = cfg.to_dict()
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    device = accelerator.device
    torch.manual_seed(cfg.seed)
    if init_state is not None:
        model.load_state_dict(init_state)
    model = model.to(device)
    check_onednn_safe(model, device)
    opt = _optimizer(cfg, model.parameters())
    train_split = train_split.to(device)
    world, rank = accelerator.num_processes, accelerator.process_index
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # CPU/gloo: per-process BN (no SyncBN)
    steps_per_epoch = len(train_split) // cfg.batch_size  # global batches; each process takes 1/world of each
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(train_split)} training images.")
    sched = _scheduler(cfg, opt, cfg.epochs * steps_per_epoch)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.ema_decay else None)
    model, opt = accelerator.prepare(model, opt)
    bf16 = _use_bf16(cfg, device)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    state = load_resume_state(config, store)
    if state is not None:
        accelerator.unwrap_model(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history, start_epoch = state["history"], int(state["epoch"])
    for epoch in range(start_epoch, cfg.epochs):
        # The epoch's data order, augmentation and any global-RNG draws of `step` (noise, random
        # starts) depend only on (seed, epoch): a resumed run is the same run.
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + epoch)
        torch.manual_seed(cfg.seed * 100_003 + epoch + 1)
        model.train()
        t0, seen, sums = time.perf_counter(), 0, {"loss": 0.0}
        batches = iterate_batches(train_split, cfg.batch_size, shuffle=True, train_augment=cfg.augment,
                                  generator=gen, drop_last=True, shard=(rank, world))
        for batch in bar(batches, total=steps_per_epoch, desc=f"{name} epoch {epoch + 1}/{cfg.epochs}",
                         enabled=progress and accelerator.is_main_process, leave=False):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss, stats = step(model, batch)
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(accelerator.unwrap_model(model))
            n = len(batch[0])
            seen += n
            sums["loss"] += loss.item() * n
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
        dt = time.perf_counter() - t0
        if world > 1:  # every process's sums, so the history describes the whole epoch
            keys = sorted(sums)
            tot = accelerator.reduce(torch.tensor([seen, *(sums[k] for k in keys)], dtype=torch.float64, device=device),
                                     reduction="sum").tolist()
            seen, sums = int(tot[0]), dict(zip(keys, tot[1:]))
        rec = {"epoch": epoch + 1, "train_loss": sums.pop("loss") / seen,
               **({"train_acc": sums.pop("correct") / seen} if "correct" in sums else {}),
               **{k: v / seen for k, v in sums.items()},
               "lr_end": sched.get_last_lr()[0], "epoch_time_s": dt, "train_img_per_s": seen / dt,
               "precision": "bf16" if bf16 else "fp32"}
        final = ema.module if ema is not None else accelerator.unwrap_model(model)
        if evaluate is not None:
            rec.update(evaluate(final))
        history.append(rec)
        if progress and accelerator.is_main_process:
            tqdm.write(f"{name} epoch {epoch + 1}: " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items() if k != "epoch"))
        if accelerator.is_main_process:
            save_resume_state(config, store, {"model": accelerator.unwrap_model(model).state_dict(),
                                       "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                       "epoch": epoch + 1, "history": history,
                                       **({"ema": ema.state_dict()} if ema is not None else {})})
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
            return TrainResult(final.eval(), history, None, False, key_hash(config))
    accelerator.wait_for_everyone()
    final = (ema.module if ema is not None else accelerator.unwrap_model(model)).eval()
    if accelerator.is_main_process:
        # a committed model too large for the repository in fp32 is kept in fp16, and measured as kept
        half = manifest and state_bytes(final) > COMMIT_LIMIT_BYTES
        save_model(final, path, config, history, half=half)
        if half:
            load_model(final, path, config)
        if manifest:
            update_manifest(path)
        resume_path(config, store).unlink(missing_ok=True)
    return TrainResult(final, history, path, False, key_hash(config))


def train_model(cfg: TrainConfig, name: str, profile: str, train_split: Split | None, eval_split: Split | None = None,
                *, extra_loss: ExtraLoss | None = None, batch_loss: BatchLoss | None = None,
                init_model: torch.nn.Module | None = None, manifest: bool = False,
                stop_after_epoch: int | None = None, progress: bool = True) -> TrainResult:
    """A classifier through `fit`: cfg.arch built at cfg.width, cross-entropy (plus extra_loss) or
    batch_loss's own loss, test accuracy on `eval_split` after each epoch. `profile` names the
    checkpoint store; manifest=True lists the checkpoint for committing (profiles.yaml says which
    profiles commit theirs; the zoo passes it)."""
    if extra_loss is not None and batch_loss is not None:
        raise ValueError("Pass extra_loss or batch_loss, not both.")
    if (extra_loss is None and batch_loss is None) != (cfg.extra_loss is None):
        raise ValueError("Pass extra_loss or batch_loss together with a cfg.extra_loss name (it keys the cache).")
    cached = checkpoint_path(name, cfg.to_dict(), profile).exists()
    if (init_model is None) != (cfg.init_from is None) and not cached:  # loading needs no initial model
        raise ValueError("Pass init_model together with cfg.init_from (its config hash).")
    if train_split is None and not cached:
        raise ValueError(f"{name}: no checkpoint at {checkpoint_path(name, cfg.to_dict(), profile)} and no training data.")
    torch.manual_seed(cfg.seed)  # the initial weights follow the seed
    model = build_model(cfg.arch, cfg.num_classes, cfg.width, cfg.dataset)
    bf16 = _use_bf16(cfg, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    evaluate = None
    if eval_split is not None:
        def evaluate(m):
            return {"test_acc": accuracy(m, eval_split.to(next(m.parameters()).device), bf16=bf16)}
    return fit(cfg, name, profile, model, train_split, classifier_step(cfg, extra_loss, batch_loss),
               evaluate=evaluate, init_state=None if init_model is None else init_model.state_dict(),
               manifest=manifest, stop_after_epoch=stop_after_epoch, progress=progress)


def config_for(arch: str, dataset: str, budget: "ModelBudget", *, n_train: int | None = None, seed: int = 0,
               **overrides) -> TrainConfig:
    """The TrainConfig a model budget (profiles.yaml: models.<arch>) gives `arch` on `dataset`."""
    from .data import num_classes

    fields = dict(arch=arch, dataset=dataset, num_classes=num_classes(dataset), width=budget.width,
                  epochs=budget.epochs, batch_size=budget.batch_size, lr=budget.lr, n_train=n_train,
                  seed=seed, precision=budget.precision)
    fields.update(overrides)
    return TrainConfig(**fields)
