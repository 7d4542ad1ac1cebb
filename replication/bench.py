"""Speed figures (printed and recorded, never asserted): `python -m replication.bench train --profile cpu`.

- train: training and inference images/s of the profile's ResNet-18 on real CIFAR-10 batches, on this
  device, plus time-to-accuracy read from the profile's cached baseline run (its per-epoch history,
  measured while it trained).
- attack: PGD image-steps/s on the same model.
- lime-estimators: LIME at a quarter of the samples (issue 28). Per image, the top-5 segments (by
  |beta|) of a 10,000-sample `lime` reference; then for each estimator (lime_sampling: plain lime at
  1,000 samples, the bar, and at the budget; the other designs at the budget) the top-5 agreement
  |top5 & ref_top5| / 5 and the Spearman correlation of |beta| with the reference's, averaged over
  seeds, with 95% bootstrap intervals over images (scipy.stats.bootstrap, percentile; the committed
  run of 5 December drew its 2,000 resamples with numpy directly, so a rerun's interval ends differ
  in the third decimal), evaluations and seconds per image.
  `python -m replication.bench lime-estimators --profile cpu --images 200 [--budget 250] [--reference 10000]`
"""
from __future__ import annotations

import argparse
import time

import numpy as np
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


# ---- LIME estimators at a quarter of the samples (issue 28) ----------------------------------------

def _seeds(run: int, n: int) -> list[int]:
    """Mask seeds of images 0..n-1 in run `run` (0, 1, ...); run -1 is the reference. The reference's
    seeds are never a tested run's: lime's first 1,000 rows of a 10,000-row draw with the same seed
    are its 1,000-row draw, which would flatter lime-1000."""
    base = 7_000_003 if run < 0 else 100_003 * (run + 1)
    return [base + i for i in range(n)]


def _top(beta: np.ndarray, k: int = 5) -> set[int]:
    return set(np.argsort(-np.abs(beta), kind="stable")[:k].tolist())


def _bootstrap_ci(v: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of v over images (scipy's resampler)."""
    from scipy.stats import bootstrap

    if len(v) < 2:
        return float("nan"), float("nan")
    ci = bootstrap((np.asarray(v, dtype=float),), np.mean, n_resamples=n_boot, confidence_level=0.95,
                   method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def lime_estimators(model, x, y, segments, counts, specs: list[tuple[str, int]], reference: int = 10_000,
                    seeds: int = 3, lime_check: int = 3, chunk: int = 16, progress: bool = True) -> dict:
    """Each (estimator, n_samples) in specs against a `reference`-sample lime reference, per image
    (see the module docstring). The first spec is the bar. Returns {"reference": ..., "rows": [...],
    "per_image": {label: agreement per image}, "lime_check_max_abs_diff": float}."""
    from scipy.stats import spearmanr

    from . import explain, lime_sampling

    n, cnt = len(x), counts.tolist()
    t0 = time.perf_counter()
    ref = lime_sampling.explain(model, x, y, segments, counts, "lime", reference, _seeds(-1, n), chunk=chunk,
                                progress=progress).beta.cpu().numpy()
    out = {"reference": {"n_samples": reference, "s_per_image": (time.perf_counter() - t0) / n}, "rows": [],
           "per_image": {}}
    ref_top = [_top(ref[i, :cnt[i]]) for i in range(n)]
    bar_label = None
    for name, n_samples in specs:
        label = f"{name}-{n_samples}"
        agree, rho, secs, evals = np.zeros((seeds, n)), np.zeros((seeds, n)), [], None
        # warm-up on one image: the first forward pass at a new batch shape picks kernels (oneDNN, cuDNN)
        lime_sampling.explain(model, x[:1], y[:1], segments[:1], counts[:1], name, n_samples, [0], chunk=chunk)
        for r in range(seeds):
            t0 = time.perf_counter()
            res = lime_sampling.explain(model, x, y, segments, counts, name, n_samples, _seeds(r, n), chunk=chunk)
            secs.append((time.perf_counter() - t0) / n)
            evals = res.targets.shape[1]
            beta = res.beta.cpu().numpy()
            for i in range(n):
                b, ref_i = beta[i, :cnt[i]], ref[i, :cnt[i]]
                agree[r, i] = len(_top(b) & ref_top[i]) / 5
                rho[r, i] = spearmanr(np.abs(b), np.abs(ref_i)).statistic
            if r == 0 and name == "lime" and lime_check and "lime_check_max_abs_diff" not in out:
                # the bar is lime's own estimator: the `lime` package on the same images and seeds
                diffs = [np.abs(explain.lime_reference(model, x[i], segments[i].cpu().numpy(), int(y[i]), n_samples,
                                                       _seeds(0, n)[i])[0] - beta[i, :cnt[i]]).max()
                         for i in range(min(lime_check, n))]
                out["lime_check_max_abs_diff"] = float(max(diffs))
                out["lime_check"] = {"images": len(diffs), "n_samples": n_samples}
        per_image = agree.mean(0)
        out["per_image"][label] = per_image
        bar_label = bar_label or label
        diff = per_image - out["per_image"][bar_label]
        row = {"label": label, "estimator": name, "n_samples": n_samples, "evaluations": int(evals),
               "agreement": float(per_image.mean()), "agreement_ci": _bootstrap_ci(per_image),
               "vs_bar": float(diff.mean()), "vs_bar_ci": _bootstrap_ci(diff),
               "spearman": float(np.nanmean(rho)), "spearman_ci": _bootstrap_ci(np.nanmean(rho, 0)),
               "s_per_image": float(np.mean(secs)), "bar": label == bar_label}
        row["meets_target"] = row["agreement"] >= out["rows"][0]["agreement"] if out["rows"] else True
        out["rows"].append(row)
        if progress:
            print(f"  {label}: agreement {row['agreement']:.3f}", flush=True)
    return out


def _lime_estimators_main(args, profile) -> None:
    from .data import load_split, to_float
    from .segments import segment_batch

    names = [e.strip() for e in args.estimators.split(",") if e.strip()]
    specs = [("lime", args.bar)] + [(e, args.budget) for e in names]
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {device_description()}; profile {profile.name}: resnet18_cifar10, {args.images} class-balanced "
          f"{args.split} images (seed 0), SLIC n_segments=50, explained for the true label (as identification, "
          f"paper_a/spurious.py); reference: lime at {args.reference:,} samples; {args.seeds} seed(s) per estimator")
    if not args.no_record:
        require_clean_tree(profile.name)
    run = provenance({"bench": vars(args)})
    res = zoo.get("resnet18_cifar10", profile, progress=False)
    model = res.model.to(dev).eval()
    split = load_split("cifar10", train=args.split == "train", n=args.images, seed=0)
    x, y = to_float(split.x).to(dev), split.y.to(dev)
    segs, counts = segment_batch(x.cpu(), "slic", n_segments=50)
    print(f"  segments per image: mean {counts.float().mean():.1f}, min {int(counts.min())}, max {int(counts.max())}")
    t0 = time.perf_counter()
    out = lime_estimators(model, x, y, segs.to(dev), counts, specs, args.reference, args.seeds, args.lime_check,
                          chunk=args.chunk)
    wall = time.perf_counter() - t0
    bar = out["rows"][0]
    if "lime_check_max_abs_diff" in out:
        print(f"  the `lime` package at {out['lime_check']['n_samples']} samples on {out['lime_check']['images']} images "
              f"vs batched lime-{bar['n_samples']} (same masks): max |beta difference| {out['lime_check_max_abs_diff']:.2e}")
    print(f"  reference: {out['reference']['s_per_image']:.2f} s per image")
    print(f"\n  {'estimator':<28}{'evals':>6}{'top-5 agreement [95% CI]':>28}{'minus bar [95% CI]':>28}"
          f"{'Spearman |beta|':>17}{'s/image':>9}  target")
    for r in out["rows"]:
        meets = "bar" if r["bar"] else ("meets" if r["meets_target"] and r["evaluations"] <= args.budget else "no")
        print(f"  {r['label']:<28}{r['evaluations']:>6}{r['agreement']:>10.3f} [{r['agreement_ci'][0]:.3f}, "
              f"{r['agreement_ci'][1]:.3f}]{r['vs_bar']:>+12.3f} [{r['vs_bar_ci'][0]:+.3f}, {r['vs_bar_ci'][1]:+.3f}]"
              f"{r['spearman']:>11.3f}     {r['s_per_image']:>8.3f}  {meets}")
    winners = [r["label"] for r in out["rows"][1:] if r["meets_target"] and r["evaluations"] <= args.budget]
    print(f"\n  target (mean agreement >= lime-{bar['n_samples']}'s {bar['agreement']:.3f} with <= {args.budget} "
          f"evaluations per image): " + (", ".join(winners) if winners else "met by none"))
    if args.no_record:
        return
    base = dict(experiment="bench", dataset="cifar10", model="resnet18_cifar10", model_hash=res.config_hash,
                n=len(x), seed=0, profile=profile.name, run_id=run["run_id"])
    common = {"reference_samples": args.reference, "seeds": args.seeds, "split": args.split}
    recs = []
    for r in out["rows"]:
        st = {"estimator": r["estimator"], "n_samples": r["n_samples"], **common}
        for metric, v, ci in (("lime_estimator_top5_agreement", r["agreement"], r["agreement_ci"]),
                              ("lime_estimator_top5_agreement_vs_bar", r["vs_bar"], r["vs_bar_ci"]),
                              ("lime_estimator_spearman", r["spearman"], r["spearman_ci"]),
                              ("lime_estimator_evaluations_per_image", r["evaluations"], None),
                              ("lime_estimator_seconds_per_image", r["s_per_image"], None)):
            recs.append(make_record(**base, metric=metric, setting=st, value=v, wall_time_s=wall,
                                    extra={"ci95": list(ci)} if ci else None))
    if "lime_check_max_abs_diff" in out:
        recs.append(make_record(**base, metric="lime_max_abs_coef_diff_vs_lime", value=out["lime_check_max_abs_diff"],
                                setting={"estimator": "lime", "n_samples": out["lime_check"]["n_samples"],
                                         "images": out["lime_check"]["images"], **common}, wall_time_s=wall))
    print(f"  recorded in {save_records('bench', profile.name, recs, run)}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["train", "lime-estimators"])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-tta", action="store_true", help="skip time-to-accuracy (needs the cached baseline)")
    g = ap.add_argument_group("lime-estimators")
    g.add_argument("--images", type=int, default=200, help="class-balanced CIFAR-10 images")
    g.add_argument("--budget", type=int, default=250, help="model evaluations per image for the new estimators")
    g.add_argument("--reference", type=int, default=10_000, help="samples of the lime reference")
    g.add_argument("--bar", type=int, default=1000, help="samples of plain lime, the bar")
    g.add_argument("--seeds", type=int, default=3, help="mask seeds per estimator (agreement averaged per image)")
    g.add_argument("--estimators", default="lime,antithetic,orthogonal,kernel,orthogonal-unanchored",
                   help="lime_sampling.ESTIMATORS names run at --budget")
    g.add_argument("--lime-check", type=int, default=3, help="images on which the `lime` package is run for the bar")
    g.add_argument("--split", choices=["test", "train"], default="test")
    g.add_argument("--chunk", type=int, default=16, help="images per batched-LIME call")
    g.add_argument("--no-record", action="store_true", help="print only (no results/<profile>/bench.json)")
    args = ap.parse_args(argv)
    profile = get_profile(args.profile)
    if args.what == "lime-estimators":
        return _lime_estimators_main(args, profile)
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
