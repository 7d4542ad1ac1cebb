"""Paper B's diffusion model (eqs 1-2) and the purifier made from it.

Forward process (eq 1): q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with the linear beta
schedule of Ho et al. (2020), 1e-4 to 0.02 over T = 1000 steps, on images scaled to [-1, 1]; the
schedule is diffusers' `DDPMScheduler`, whose `alphas_cumprod` every function here reads. The
network is diffusers' `UNet2DModel` predicting the added noise.

Reverse process (eq 2), from x_{t*} back to an image, three ways, each a differentiable function
of its input: DDPM ancestral steps (on a strided sub-sequence of timesteps when fewer steps than
t* are asked for, with the posterior recomputed for the stride, as in Nichol & Dhariwal 2021),
DDIM (eta = 0) and a one-shot x0 prediction (= DDIM with one step). `Purifier` wraps one of them as
an nn.Module on [0, 1] images, so a classifier behind it is attacked like any model; its reverse
steps can run under torch.utils.checkpoint, which keeps the memory of exact gradients through the
whole sampler at one step's activations. Its randomness is either fresh per call (the defence as
deployed) or fixed by a seed (a deterministic function, the attack of arXiv 2505.22839).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

T_STEPS = 1000
SAMPLERS = ("ddpm", "ddim", "x0")


def scheduler(T: int = T_STEPS):
    """diffusers' DDPM scheduler with the paper's forward process (linear beta, epsilon prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         prediction_type="epsilon", clip_sample=False, variance_type="fixed_small")


def unet(channels: list[int], layers_per_block: int = 2, attention: bool = False):
    """diffusers' UNet2DModel for 32x32 RGB; `attention` puts self-attention in the second level
    (the 35.7M CIFAR-10 DDPM of Ho et al. has it at 16x16)."""
    from diffusers import UNet2DModel

    down = ["DownBlock2D"] * len(channels)
    up = ["UpBlock2D"] * len(channels)
    if attention and len(channels) > 1:
        down[1], up[-2] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=layers_per_block,
                       block_out_channels=tuple(channels), down_block_types=tuple(down), up_block_types=tuple(up),
                       norm_num_groups=min(32, min(channels)))


class NoisePredictor(torch.nn.Module):
    """eps_theta(x_t, t): the UNet's output tensor (x_t on the [-1, 1] scale, t integer timesteps)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t).sample


def alphas_bar(T: int = T_STEPS) -> torch.Tensor:
    return scheduler(T).alphas_cumprod.to(torch.float32)


def to_model_scale(x01: torch.Tensor) -> torch.Tensor:
    return x01 * 2 - 1


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


def diffuse(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """Eq 1 in closed form: sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (t: one timestep per image)."""
    a = abar.to(x0)[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def sample_timesteps(n: int, T: int, t_max: int | None, focus: float, generator: torch.Generator | None = None,
                     device=None) -> torch.Tensor:
    """Training timesteps: with probability `focus` uniform on [0, t_max] (the range purification
    uses), else uniform on [0, T). focus = 0 is the standard DDPM objective."""
    t = torch.randint(0, T, (n,), generator=generator, device=device)
    if t_max is not None and focus > 0:
        low = torch.randint(0, t_max + 1, (n,), generator=generator, device=device)
        pick = torch.rand(n, generator=generator, device=device) < focus
        t = torch.where(pick, low, t)
    return t


def noise_prediction_step(abar: torch.Tensor, *, t_max: int | None = None, focus: float = 0.0):
    """A `train.fit` step: the simple DDPM loss ||eps - eps_theta(x_t, t)||^2 on a batch of [0, 1]
    images (labels unused); timesteps from `sample_timesteps`, noise from the global RNG (which fit
    seeds per epoch, so a resumed run is the same run)."""
    def step(model, batch):
        x0 = to_model_scale(batch[0].float())
        t = sample_timesteps(len(x0), len(abar), t_max, focus, device=x0.device)
        noise = torch.randn_like(x0)
        pred = model(diffuse(x0, t, noise, abar), t)
        return F.mse_loss(pred.float(), noise), {}
    return step


def predict_x0(model, x_t: torch.Tensor, t: int, abar: torch.Tensor) -> torch.Tensor:
    a = abar[t].to(x_t)
    tt = torch.full((len(x_t),), t, device=x_t.device, dtype=torch.long)
    return (x_t - (1 - a).sqrt() * model(x_t, tt)) / a.sqrt()


def timesteps(t_star: int, steps: int) -> list[int]:
    """The reverse sampler's timesteps: `steps` of them from t_star down, evenly spaced, distinct."""
    steps = max(1, min(steps, t_star))
    return sorted({round(t_star - i * t_star / steps) for i in range(steps)}, reverse=True)


def _reverse_step(model, x, t: int, t_next: int | None, abar, sampler: str, noise: torch.Tensor | None):
    """One reverse step from timestep t to t_next (None: to the image itself)."""
    a = abar[t].to(x)
    a_next = abar[t_next].to(x) if t_next is not None else torch.ones((), dtype=x.dtype, device=x.device)
    tt = torch.full((len(x),), t, device=x.device, dtype=torch.long)
    eps = model(x, tt)
    x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
    if sampler in ("ddim", "x0") or t_next is None:
        if t_next is None:
            return x0
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()  # consistent with the clipped x0
        return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    beta = 1 - a / a_next  # the stride's effective beta
    mean = (a_next.sqrt() * beta / (1 - a)) * x0 + ((1 - beta).sqrt() * (1 - a_next) / (1 - a)) * x
    var = beta * (1 - a_next) / (1 - a)
    return mean + var.sqrt() * noise


@dataclass
class PurifierConfig:
    t_star: float          # fraction of T the image is diffused to
    steps: int             # reverse steps (network evaluations per image)
    sampler: str = "ddpm"  # ddpm | ddim | x0
    seed: int | None = None  # fixed randomness (a deterministic purifier); None: fresh per call
    checkpoint: bool = False

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r}; choose one of {SAMPLERS}.")
        if not 0 < self.t_star <= 1:
            raise ValueError(f"t_star is a fraction of the {T_STEPS} steps, in (0, 1]; got {self.t_star}.")

    def setting(self) -> dict[str, Any]:
        return {"t_star": self.t_star, "purifier_steps": self.nfe, "sampler": self.sampler,
                "purifier_noise": "fresh" if self.seed is None else "fixed"}

    @property
    def nfe(self) -> int:
        """Network evaluations per image."""
        return 1 if self.sampler == "x0" else len(timesteps(round(self.t_star * T_STEPS), self.steps))


class Purifier(torch.nn.Module):
    """x in [0, 1] -> diffused to t* and denoised back, in [0, 1] (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, config: PurifierConfig, abar: torch.Tensor | None = None):
        super().__init__()
        self.model, self.config = model, config
        self.register_buffer("abar", alphas_bar() if abar is None else abar, persistent=False)

    def _noise(self, shape, n: int, like: torch.Tensor) -> list[torch.Tensor]:
        g = None
        if self.config.seed is not None:
            g = torch.Generator(device=like.device).manual_seed(self.config.seed)
        return [torch.randn(shape, generator=g, device=like.device, dtype=like.dtype) for _ in range(n)]

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        c = self.config
        t_star = max(1, round(c.t_star * len(self.abar)))
        ts = [t_star] if c.sampler == "x0" else timesteps(t_star, c.steps)
        noises = self._noise(x01.shape, len(ts) + 1, x01)
        x = diffuse(to_model_scale(x01), torch.full((len(x01),), t_star, device=x01.device), noises[0], self.abar)
        for i, t in enumerate(ts):
            t_next = ts[i + 1] if i + 1 < len(ts) else None
            if c.checkpoint and torch.is_grad_enabled():
                x = checkpoint(_reverse_step, self.model, x, t, t_next, self.abar, c.sampler, noises[i + 1],
                               use_reentrant=False)
            else:
                x = _reverse_step(self.model, x, t, t_next, self.abar, c.sampler, noises[i + 1])
        return to_pixels(x)


class Defended(torch.nn.Module):
    """classifier(purifier(x)): the pipeline an attack sees (x in [0, 1])."""

    def __init__(self, purifier: Purifier, classifier: torch.nn.Module):
        super().__init__()
        self.purifier, self.classifier = purifier, classifier

    def forward(self, x):
        return self.classifier(self.purifier(x))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image PSNR (dB) of two [0, 1] batches."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


# ---- training and quality ---------------------------------------------------------------------------
def build(budget) -> NoisePredictor:
    """The profile's noise predictor (untrained)."""
    return NoisePredictor(unet(list(budget.channels), budget.layers_per_block, budget.attention))


def train_config(budget, *, n_train: int | None, seed: int, t_max: float, focus: float, epochs: int | None = None):
    """fit's config for the DDPM: Adam as in Ho et al. (no weight decay), a short warm-up, no
    augmentation (images are the data distribution), an EMA of the weights; the UNet's shape and the
    timestep weighting name the run (cache key)."""
    from ..train import TrainConfig

    shape = "-".join(str(c) for c in budget.channels) + f"-l{budget.layers_per_block}" + ("-attn" if budget.attention else "")
    return TrainConfig(arch="ddpm_unet", dataset="cifar10", num_classes=10, width=float(budget.channels[0]),
                       epochs=epochs or budget.epochs, batch_size=budget.batch_size, lr=budget.lr, weight_decay=0.0,
                       warmup_frac=0.05, n_train=n_train, augment=False, seed=seed, optimizer="adam",
                       ema_decay=budget.ema_decay, extra_loss=f"ddpm-eps-tmax{t_max:g}-focus{focus:g}",
                       data_variant=f"unet-{shape}")


def train(budget, split, store: str, *, seed: int, t_max: float, focus: float, epochs: int | None = None,
          manifest: bool = False, progress: bool = True):
    """Train (or load from the cache) the noise predictor on `split` through `train.fit`; the result
    holds the EMA weights. `manifest`: list the finished checkpoint for committing."""
    from ..train import fit

    cfg = train_config(budget, n_train=len(split), seed=seed, t_max=t_max, focus=focus, epochs=epochs)
    step = noise_prediction_step(alphas_bar(), t_max=round(t_max * T_STEPS), focus=focus)
    name = f"ddpm_cifar10-focus{focus:g}"
    return fit(cfg, name, store, build(budget), split, step, manifest=manifest, progress=progress)


@torch.no_grad()
def x0_psnr(model, split, ts: list[int], *, batch_size: int, seed: int) -> dict[int, torch.Tensor]:
    """Per t: per-image PSNR (dB) of the one-shot x0 prediction from x_t against the clean image
    (noise seeded per t, the same for every model compared)."""
    from ..data import to_float

    abar, out = alphas_bar(), {}
    for t in ts:
        g = torch.Generator().manual_seed(seed * 7919 + t)
        vals = []
        for s in range(0, len(split), batch_size):
            x01 = to_float(split.x[s:s + batch_size]).contiguous()
            x0 = to_model_scale(x01)
            x_t = diffuse(x0, torch.full((len(x0),), t), torch.randn(x0.shape, generator=g), abar)
            vals.append(psnr(to_pixels(predict_x0(model, x_t, t, abar)), x01))
        out[t] = torch.cat(vals)
    return out


@torch.no_grad()
def sample(model, n: int, steps: int, seed: int) -> torch.Tensor:
    """Unconditional samples: DDIM (eta = 0) with `steps` steps from pure noise at t = T - 1."""
    abar = alphas_bar()
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    ts = timesteps(T_STEPS - 1, steps)
    for i, t in enumerate(ts):
        x = _reverse_step(model, x, t, ts[i + 1] if i + 1 < len(ts) else None, abar, "ddim", None)
    return to_pixels(x)


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def psnr_rows(per_t: dict[int, torch.Tensor], model: str) -> list[dict[str, Any]]:
    """Mean PSNR per t with a normal 95% interval (half width) over images."""
    return [{"model": model, "t": t, "psnr": float(v.mean()), "ci": float(1.96 * v.std() / len(v) ** 0.5), "n": len(v)}
            for t, v in per_t.items()]


@torch.no_grad()
def record_purified_accuracy(run, classifier, denoiser, split, configs: list[PurifierConfig], *,
                             batch_size: int, model: str = "resnet18_cifar10") -> list[dict[str, Any]]:
    """Notebook 08's purified clean accuracy: one record per purifier configuration (its time per
    image in wall_time_s), measured only where the results file lacks it (run.record_once), so the
    classifier (a lazy model) and the denoiser (a TrainResult) are only used then. The table's rows."""
    from ..evaluate import model_of

    rows = []
    for c in configs:
        def measure(c=c):
            (r,) = purified_accuracy(model_of(classifier), denoiser.model, split, [c], batch_size=batch_size)
            return {"value": r["accuracy"], "n": r["n"], "wall_time_s": r["ms_per_image"] * r["n"] / 1000}

        rec = run.record_once(measure, model=model, model_hash=classifier.config_hash, data=split.name,
                              metric="accuracy", n=len(split), ddpm_hash=denoiser.config_hash, **c.setting())
        rows.append({**c.setting(), "accuracy": rec["value"], "nfe": c.nfe, "n": rec["n"],
                     "ms_per_image": None if rec["wall_time_s"] is None else 1000 * rec["wall_time_s"] / rec["n"]})
    return rows


def purified_accuracy(classifier, model, split, configs: list[PurifierConfig], *, batch_size: int) -> list[dict[str, Any]]:
    """The classifier's clean accuracy on purified clean images, per purifier configuration, with
    the cost: network evaluations per image and measured ms per image on this machine."""
    import time

    from ..data import to_float

    rows = []
    classifier.eval()
    for c in configs:
        p = Purifier(model, c)
        correct, t0 = 0, time.perf_counter()
        for s in range(0, len(split), batch_size):
            x01, y = to_float(split.x[s:s + batch_size]).contiguous(), split.y[s:s + batch_size]
            correct += int((classifier(p(x01)).argmax(1) == y).sum())
        dt = time.perf_counter() - t0
        rows.append({**c.setting(), "accuracy": correct / len(split), "nfe": c.nfe, "ms_per_image": 1000 * dt / len(split),
                     "n": len(split)})
    return rows
