"""`fit` beyond classifiers: any step function, Adam, an EMA of the weights that resumes with the run."""
import dataclasses

import torch

from replication.data import load_split
from replication.train import TrainConfig, fit


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 15 * 15, 3 * 32 * 32))


def _denoise_step(model, batch):
    """A DDPM-like objective: predict the noise added to the image (no labels)."""
    x = batch[0]
    noise = torch.randn_like(x)
    loss = ((model(x + 0.1 * noise) - noise.flatten(1)) ** 2).mean()
    return loss, {}


def test_fit_trains_any_step_with_adam_and_ema_and_resumes_it(isolated_store):
    data = load_split("cifar10", True, n=64, seed=0)
    cfg = TrainConfig(arch="denoiser-test", dataset="cifar10", num_classes=0, width=1, epochs=3, batch_size=16,
                      lr=1e-3, n_train=64, optimizer="adam", ema_decay=0.9, schedule="cosine", augment=False)
    full = fit(cfg, "ema", "smoke", _net(), data, _denoise_step, progress=False)
    assert [set(h) >= {"train_loss", "precision"} for h in full.history] == [True] * 3 and "train_acc" not in full.history[0]
    plain = fit(dataclasses.replace(cfg, ema_decay=None), "plain", "smoke", _net(), data, _denoise_step, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(full.model.state_dict().values(), plain.model.state_dict().values()))
    full.path.unlink()
    part = fit(cfg, "ema", "smoke", _net(), data, _denoise_step, stop_after_epoch=1, progress=False)
    assert part.path is None and len(part.history) == 1
    resumed = fit(cfg, "ema", "smoke", _net(), data, _denoise_step, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # the EMA state (and the step's noise, reseeded per epoch) resumes with the run: same weights
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
