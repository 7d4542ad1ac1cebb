"""replication.corruptions: the 19 CIFAR-10-C corruptions. Fast (seconds) and data-free."""
from importlib.util import find_spec

import numpy as np
import pytest

from replication import corruptions as C

RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur",
          "snow", "frost", "fog", "spatter", "elastic_transform")
DETERMINISTIC = tuple(n for n in C.CORRUPTIONS if n not in RANDOM)

needs_frost = pytest.mark.skipif(find_spec("imagecorruptions") is None,
                                 reason="frost photos come from the imagecorruptions package")


def _image() -> np.ndarray:
    """A fixed natural-looking 32x32 image: smooth gradients, a few shapes, mild seeded noise."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    img = np.stack([0.25 + 0.5 * xx, 0.3 + 0.4 * yy, 0.5 + 0.25 * np.sin(6 * xx + 4 * yy)], axis=-1)
    img[6:14, 5:13] = (0.85, 0.25, 0.15)
    img[(xx - 0.68) ** 2 + (yy - 0.62) ** 2 < 0.03] = (0.15, 0.3, 0.8)
    img[22:25, 3:28] = (0.9, 0.9, 0.2)
    img += np.random.default_rng(0).normal(0, 0.02, img.shape)
    return np.uint8(np.clip(img, 0, 1) * 255)


IMG = _image()


def _run(name, severity, seed=0, image=IMG):
    return C.corrupt(image, name, severity, np.random.default_rng(seed))


def _cases(names):
    return [pytest.param(n, marks=needs_frost) if n == "frost" else n for n in names]


def _mean_abs_diff(out, ref=IMG):
    return np.abs(out.astype(np.float64) - ref).mean()


def _laplacian_energy(out):
    o = out.astype(np.float64)
    return np.abs(4 * o[1:-1, 1:-1] - o[:-2, 1:-1] - o[2:, 1:-1] - o[1:-1, :-2] - o[1:-1, 2:]).mean()


def _n_colours(out):
    return len(np.unique(out.reshape(-1, 3), axis=0))


# ---------------------------------------------------------------- parameters and interface

def test_parameters_and_names():
    params = C.parameters()
    assert params is C.parameters()  # cached
    assert tuple(C.GROUPS) == ("noise", "blur", "weather", "digital")
    assert C.CORRUPTIONS == tuple(n for g in C.GROUPS.values() for n in g)
    assert len(C.CORRUPTIONS) == len(set(C.CORRUPTIONS)) == 19
    assert C.SEVERITIES == (1, 2, 3, 4, 5)
    for name in C.CORRUPTIONS:
        assert all(len(values) == 5 for values in params[name].values()), name


def test_zoom_factors_parsed_without_eval():
    assert np.array_equal(C._parse_arange("arange(1, 1.06, 0.01)"), np.arange(1, 1.06, 0.01))
    for s, stop in zip(C.SEVERITIES, (1.06, 1.11, 1.16, 1.21, 1.26)):
        assert np.array_equal(C._severity_parameters("zoom_blur", s)["zoom_factors"], np.arange(1, stop, 0.01))
    for bad in ("__import__('os').system('true')", "arange(1, 2)", "np.arange(1, 2, 0.1)", "arange(1, 2, x)"):
        with pytest.raises(ValueError, match="arange"):
            C._parse_arange(bad)


def test_unknown_name_or_severity_is_a_helpful_value_error():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown corruption 'gaussian'.*gaussian_noise.*saturate"):
        C.corrupt(IMG, "gaussian", 1, rng)
    for severity in (0, 6, -1, 2.0, True, "3", None):
        with pytest.raises(ValueError, match=r"severity must be one of \(1, 2, 3, 4, 5\)"):
            C.corrupt(IMG, "contrast", severity, rng)
    assert C.corrupt(IMG, "contrast", np.int64(3), rng).shape == IMG.shape  # numpy ints are fine
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        C.corrupt(IMG.astype(np.float32), "contrast", 1, rng)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        C.corrupt(IMG[..., 0], "contrast", 1, rng)
    with pytest.raises(TypeError, match="Generator"):
        C.corrupt(IMG, "gaussian_noise", 1, 0)


# ---------------------------------------------------------------- every corruption, every severity

@pytest.mark.parametrize("severity", C.SEVERITIES)
@pytest.mark.parametrize("name", _cases(C.CORRUPTIONS))
def test_output_is_a_changed_uint8_image(name, severity):
    before = IMG.copy()
    out = _run(name, severity)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.array_equal(IMG, before)  # the input is not modified
    assert out.min() < out.max()  # not one flat value
    # on this image every severity changes it (elastic severity 1 still has its random affine)
    assert not np.array_equal(out, IMG)


# ---------------------------------------------------------------- severity ordering
# Only where the CIFAR parameters themselves grow with severity. Not asserted, since their lists are
# not monotone: glass_blur (sigma 0.05, 0.25, 0.4, 0.25, 0.4), motion_blur, snow, spatter (water at
# 1-3, mud at 4-5), frost, fog, saturate, elastic_transform; they are covered by the tests above and below.

@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"])
def test_noise_grows_with_severity(name):
    stat = [np.mean([_mean_abs_diff(_run(name, s, seed)) for seed in range(3)]) for s in C.SEVERITIES]
    assert all(a <= b for a, b in zip(stat, stat[1:])), stat


@pytest.mark.parametrize("name", ["gaussian_blur", "defocus_blur", "zoom_blur"])
def test_blur_removes_more_detail_with_severity(name):
    stat = [_laplacian_energy(IMG)] + [_laplacian_energy(_run(name, s)) for s in C.SEVERITIES]
    assert all(a >= b for a, b in zip(stat, stat[1:])), stat


def test_contrast_and_brightness_with_severity():
    std = [IMG.std()] + [_run("contrast", s).std() for s in C.SEVERITIES]
    assert all(a >= b for a, b in zip(std, std[1:])), std
    mean = [IMG.mean()] + [_run("brightness", s).mean() for s in C.SEVERITIES]
    assert all(a <= b for a, b in zip(mean, mean[1:])), mean


def test_jpeg_and_pixelate_with_severity():
    err = [_mean_abs_diff(_run("jpeg_compression", s)) for s in C.SEVERITIES]
    assert all(a <= b for a, b in zip(err, err[1:])), err
    # pixelate's mean |out - in| is not monotone (24 px of severity 4 tiles 32 more evenly than the 20
    # of severity 5); the number of distinct colours is
    colours = [_n_colours(IMG)] + [_n_colours(_run("pixelate", s)) for s in C.SEVERITIES]
    assert all(a > b for a, b in zip(colours, colours[1:])), colours


# ---------------------------------------------------------------- randomness

@pytest.mark.parametrize("name", _cases(C.CORRUPTIONS))
def test_same_seed_same_bytes_and_seed_matters_only_when_random(name):
    for severity in (1, 3, 5):
        a, b, other = _run(name, severity, 7), _run(name, severity, 7), _run(name, severity, 8)
        assert np.array_equal(a, b)
        if name in RANDOM:
            assert not np.array_equal(a, other), severity
        else:
            assert np.array_equal(a, other), severity


@needs_frost
def test_global_numpy_random_is_untouched():
    np.random.seed(123)
    state = np.random.get_state()
    for name in C.CORRUPTIONS:
        _run(name, 5)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


# ---------------------------------------------------------------- exact checks

def test_contrast_keeps_means_and_scales_deviations():
    for s in C.SEVERITIES:
        f = C.parameters()["contrast"]["factor"][s - 1]
        out = _run("contrast", s).astype(np.float64)
        mean_in, mean_out = IMG.mean(axis=(0, 1)), out.mean(axis=(0, 1))
        assert np.all(np.abs(mean_out - mean_in) <= 1.0)  # truncation to uint8 loses < 1
        assert np.abs((out - mean_out) - f * (IMG - mean_in)).max() <= 1.5


def test_pixelate_with_an_integer_block_is_blockwise_constant():
    # no CIFAR factor gives whole blocks (32*f is 30, 28, 27, 24, 20), so check the PIL pipeline at 0.5
    out = C._pixelate(IMG, {"factor": 0.5}, None)
    blocks = out.reshape(16, 2, 16, 2, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()
    means = IMG.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    assert np.abs(blocks[:, 0, :, 0].astype(np.float64) - means).max() <= 1


def test_gaussian_noise_std_matches_sigma():
    grey = np.full((32, 32, 3), 128, dtype=np.uint8)  # far from 0 and 255: no clipping
    for s in C.SEVERITIES:
        sigma = C.parameters()["gaussian_noise"]["sigma"][s - 1] * 255
        std = (_run("gaussian_noise", s, image=grey).astype(np.float64) - 128).std()
        assert abs(std - sigma) <= 0.1 * sigma, (s, std, sigma)


def test_glass_shuffle_pass_equals_the_original_loop():
    """The original's `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on views copies (h', w') into (h, w);
    the vectorised pass (d = 1) and the loop (d > 1) must give exactly what that statement gives."""
    rng = np.random.default_rng(3)
    for d in (1, 2):
        img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        n = len(range(32 - d, d, -1))
        off = rng.integers(-d, d, size=(n, n, 2))
        ref = img.copy()
        for i, h in enumerate(range(32 - d, d, -1)):
            for j, w in enumerate(range(32 - d, d, -1)):
                dx, dy = off[i, j]
                ref[h, w], ref[h + dy, w + dx] = ref[h + dy, w + dx], ref[h, w]
        C._shuffle_pass(img, d, off[..., 0], off[..., 1])
        assert np.array_equal(img, ref), d


def test_motion_blur_kernel_at_angle_zero():
    # angle 0: a one-sided Gaussian along +x, out(y, x) = sum_i k_i img(y, min(x + i, W-1))
    radius, sigma = 3, 1.5
    img = np.zeros((8, 16))
    img[:, 10] = 1.0
    k = np.exp(-np.arange(7) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    expected = np.zeros(16)
    expected[10 - np.arange(7)] = k
    out = C._motion_blur(img, radius, sigma, 0.0)
    assert np.allclose(out, expected[None, :])
    flat = np.full((8, 16, 3), 0.4)
    assert np.allclose(C._motion_blur(flat, 9, 2.5, 33.0), 0.4)  # weights sum to 1, edges replicated


@needs_frost
def test_frost_images():
    photos = C.frost_images()
    assert len(photos) == 6 and C.frost_images() is not photos
    for p in photos:
        assert p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) * 0.2 > 32
        assert not p.flags.writeable


def test_frost_without_imagecorruptions_says_what_to_install(monkeypatch):
    monkeypatch.setattr(C, "find_spec", lambda name: None)
    C._frost_photos.cache_clear()
    C._frost_small.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install imagecorruptions==1\.1\.2"):
            _run("frost", 1)
    finally:
        C._frost_photos.cache_clear()
        C._frost_small.cache_clear()
