"""The 19 CIFAR-10-C corruptions (Hendrycks & Dietterich, ICLR 2019) at their CIFAR severities.

``corrupt(image, name, severity, rng)`` turns one uint8 HxWx3 image (32x32 for CIFAR) into its
corrupted uint8 copy. The per-severity parameters are read from
``data_files/cifar10c_parameters.yaml`` (the values of the benchmark's own CIFAR generation script,
``make_cifar_c.py`` in hendrycks/robustness); the operations follow that script, reimplemented here:
float images in [0, 1], clipped, scaled by 255 and cast with ``np.uint8`` (truncation, as the
official files were made). All randomness comes from the ``rng`` passed in, so a regenerated set is
reproducible and statistically alike to the public CIFAR-10-C files, but not byte-equal to them (those
are draws from an unknown global NumPy state).

As in the original, OpenCV does the defocus kernel and its filtering, the grey level in snow, the frost
photo resizing, the water-spatter edge/distance pipeline and the elastic affine warp. The original's
ImageMagick (Wand) motion blur is reimplemented in NumPy after ImageMagick's MotionBlurImage. Frost
uses the photos shipped in the ``imagecorruptions`` package (1.1.2), located without importing it.
"""
from __future__ import annotations

import functools
import math
import re
from importlib.util import find_spec
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as nd_zoom
from skimage.color import hsv2rgb, rgb2hsv
from skimage.filters import gaussian
from skimage.util import random_noise

PARAMETERS_FILE = Path(__file__).parent / "data_files" / "cifar10c_parameters.yaml"
SEVERITIES = (1, 2, 3, 4, 5)


@functools.lru_cache(maxsize=None)
def parameters() -> dict:
    """The parameter yaml, parsed once (shared: do not mutate)."""
    with open(PARAMETERS_FILE) as f:
        return yaml.safe_load(f)


GROUPS: dict[str, tuple[str, ...]] = {g: tuple(names) for g, names in parameters()["groups"].items()}
CORRUPTIONS: tuple[str, ...] = tuple(name for names in GROUPS.values() for name in names)

_ARANGE = re.compile(r"\s*arange\(\s*([-+.\deE]+)\s*,\s*([-+.\deE]+)\s*,\s*([-+.\deE]+)\s*\)\s*")


def _parse_arange(text: str) -> np.ndarray:
    """'arange(1, 1.06, 0.01)' -> np.arange(1, 1.06, 0.01), without eval."""
    m = _ARANGE.fullmatch(text)
    if m is None:
        raise ValueError(f"expected 'arange(start, stop, step)', got {text!r}")
    return np.arange(*(float(v) for v in m.groups()))


@functools.lru_cache(maxsize=None)
def _severity_parameters(name: str, severity: int) -> dict:
    out = {}
    for key, values in parameters()[name].items():
        if len(values) != len(SEVERITIES):
            raise ValueError(f"{PARAMETERS_FILE.name}: {name}.{key} has {len(values)} entries, not 5")
        value = values[severity - 1]
        out[key] = _parse_arange(value) if key == "zoom_factors" else value
    return out


# ---------------------------------------------------------------- helpers

def _clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of an HxWxC array by `factor` (bilinear), cropped back to HxW."""
    h, w = img.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    img = nd_zoom(img[top:top + ch, left:left + cw], (factor, factor, 1), order=1)
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[top:top + h, left:left + w]


def _motion_blur(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage on a float HxW(xC) array (any scale), edge pixels replicated.

    A one-sided Gaussian kernel of width 2*radius+1 along the direction `angle` (degrees):
    out(y, x) = sum_i k_i * img(y + oy_i, x + ox_i), offsets rounded as ImageMagick does.
    """
    width = 2 * int(math.ceil(radius)) + 1
    kernel = np.exp(-np.arange(width) ** 2 / (2.0 * sigma ** 2))
    kernel /= kernel.sum()
    px, py = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    hyp = math.hypot(px, py)
    h, w = img.shape[:2]
    rows, cols = np.arange(h), np.arange(w)
    out = np.zeros(img.shape, dtype=np.float64)
    for i in range(width):
        oy, ox = math.ceil(i * px / hyp - 0.5), math.ceil(i * py / hyp - 0.5)
        if abs(oy) >= h or abs(ox) >= w:  # the motion left the image (as the original's ports stop)
            break
        out += kernel[i] * img[np.clip(rows + oy, 0, h - 1)][:, np.clip(cols + ox, 0, w - 1)]
    return out


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """Normalised disk kernel, anti-aliased by a small Gaussian (OpenCV, as the original)."""
    coords, ksize = (np.arange(-8, 9), (3, 3)) if radius <= 8 else (np.arange(-radius, radius + 1), (5, 5))
    xx, yy = np.meshgrid(coords, coords)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def _shuffle_pass(img: np.ndarray, d: int, dx: np.ndarray, dy: np.ndarray) -> None:
    """One glass-blur pass, in place, over rows/cols H-d..d+1 (descending), offsets dx, dy per pixel.

    The original writes ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on NumPy views, which copies pixel
    (h', w') into (h, w) and leaves (h', w') as it was; the official files were made that way, so
    this copies too. With d == 1 the offsets are in {-1, 0}: every source is read before the
    descending sweep overwrites it, so a single gather gives exactly the loop's result.
    """
    hs = np.arange(img.shape[0] - d, d, -1)[:, None]
    ws = np.arange(img.shape[1] - d, d, -1)[None, :]
    if d == 1:
        img[hs, ws] = img[hs + dy, ws + dx]
        return
    for i, h in enumerate(hs[:, 0]):
        for j, w in enumerate(ws[0]):
            img[h, w] = img[h + dy[i, j], w + dx[i, j]]


def _plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map, mapsize x mapsize (a power of two), normalised to [0, 1]."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    hmap = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def wibbled_mean(total):  # the original's noise is wibble * U(-wibble, wibble): kept as is
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = hmap[0::step, 0::step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares += np.roll(squares, -1, axis=1)
        hmap[half::step, half::step] = wibbled_mean(squares)
        centres, corners = hmap[half::step, half::step], hmap[0::step, 0::step]
        hmap[0::step, half::step] = wibbled_mean(
            centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1))
        hmap[half::step, 0::step] = wibbled_mean(
            centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0))
        step //= 2
        wibble /= wibbledecay
    hmap -= hmap.min()
    return hmap / hmap.max()


def _frost_dir() -> Path:
    # find_spec locates the package without importing it (its __init__ fails on NumPy 2)
    spec = find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the frost corruption needs the frost photos of the imagecorruptions package: "
                          "pip install imagecorruptions==1.1.2 (only its frost photos are used)")
    return Path(spec.submodule_search_locations[0]) / "frost"


@functools.lru_cache(maxsize=1)
def _frost_photos() -> tuple[np.ndarray, ...]:
    paths = sorted(p for p in _frost_dir().iterdir() if p.suffix in (".png", ".jpg"))
    if len(paths) != 6:
        raise FileNotFoundError(f"expected frost1..frost6 in {_frost_dir()}, found {[p.name for p in paths]}")
    photos = []
    for path in paths:
        with Image.open(path) as im:
            photo = np.asarray(im.convert("RGB"))  # RGB directly: no BGR swap as after cv2.imread
        photo.flags.writeable = False  # cached and shared
        photos.append(photo)
    return tuple(photos)


def frost_images() -> list[np.ndarray]:
    """The six frost photos (frost1..frost6), RGB uint8, full size, read-only, cached."""
    return list(_frost_photos())


@functools.lru_cache(maxsize=1)
def _frost_small() -> tuple[np.ndarray, ...]:
    return tuple(cv2.resize(p, (0, 0), fx=0.2, fy=0.2) for p in _frost_photos())


# ---------------------------------------------------------------- corruptions
# Each takes (uint8 image, this severity's parameters, rng) and returns values on the 0..255 scale.

def _gaussian_noise(image, p, rng):
    x = image / 255.0
    return np.clip(x + rng.normal(scale=p["sigma"], size=x.shape), 0, 1) * 255


def _shot_noise(image, p, rng):
    return np.clip(rng.poisson(image / 255.0 * p["rate"]) / p["rate"], 0, 1) * 255


def _impulse_noise(image, p, rng):
    seed = int(rng.integers(2 ** 63))  # skimage seeds its own Generator from it
    return np.clip(random_noise(image / 255.0, mode="s&p", amount=p["amount"], rng=seed), 0, 1) * 255


def _speckle_noise(image, p, rng):
    x = image / 255.0
    return np.clip(x + x * rng.normal(scale=p["sigma"], size=x.shape), 0, 1) * 255


def _gaussian_blur(image, p, rng):
    return np.clip(gaussian(image / 255.0, sigma=p["sigma"], channel_axis=-1), 0, 1) * 255


def _glass_blur(image, p, rng):
    sigma, d = p["sigma"], p["max_delta"]
    img = np.uint8(gaussian(image / 255.0, sigma=sigma, channel_axis=-1) * 255)
    n_h, n_w = len(range(img.shape[0] - d, d, -1)), len(range(img.shape[1] - d, d, -1))
    for _ in range(p["iterations"]):
        # (dx, dy) per visited pixel, in the original's visiting order; upper bound exclusive as randint
        offsets = rng.integers(-d, d, size=(n_h, n_w, 2))
        _shuffle_pass(img, d, offsets[..., 0], offsets[..., 1])
    return np.clip(gaussian(img / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def _defocus_blur(image, p, rng):
    # float64 as the original (float32 differs in the last bit and flips a few truncated values);
    # filter2D applies the kernel to each channel separately, BORDER_REFLECT_101
    x = image / 255.0
    return np.clip(cv2.filter2D(x, -1, _disk(p["radius"], p["alias_blur"])), 0, 1) * 255


def _motion_blur_corruption(image, p, rng):
    out = _motion_blur(image.astype(np.float64), p["radius"], p["sigma"], rng.uniform(-45, 45))
    return np.rint(out)  # ImageMagick rounds when it writes the 8-bit result


def _zoom_blur(image, p, rng):
    x = (image / 255.0).astype(np.float32)
    out = x.copy()
    for factor in p["zoom_factors"]:
        out += _clipped_zoom(x, factor)
    return np.clip(out / (len(p["zoom_factors"]) + 1), 0, 1) * 255


def _snow(image, p, rng):
    x = image.astype(np.float32) / 255
    layer = rng.normal(loc=p["loc"], scale=p["scale"], size=x.shape[:2])
    layer = _clipped_zoom(layer[..., None], p["zoom"])[..., 0]
    layer[layer < p["threshold"]] = 0
    # the original blurred the layer as an 8-bit greyscale PNG in ImageMagick: same quantisation here
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8).astype(np.float64)
    layer = np.rint(_motion_blur(layer, p["blur_radius"], p["blur_sigma"], rng.uniform(-135, -45)))
    layer = (layer / 255)[..., None]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = p["blend"] * x + (1 - p["blend"]) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def _frost(image, p, rng):
    photo = _frost_small()[rng.integers(5)]  # randint(5) in the original: frost6 is never drawn
    h, w = image.shape[:2]
    top, left = rng.integers(0, photo.shape[0] - h), rng.integers(0, photo.shape[1] - w)
    crop = photo[top:top + h, left:left + w].astype(np.float64)
    return np.clip(p["image_weight"] * image + p["frost_weight"] * crop, 0, 255)


def _fog(image, p, rng):
    x = image / 255.0
    h, w = x.shape[:2]
    mapsize = 1 << (max(h, w) - 1).bit_length()  # 32 for CIFAR
    max_val = x.max()
    x = x + p["strength"] * _plasma_fractal(mapsize, p["wibbledecay"], rng)[:h, :w, None]
    return np.clip(x * max_val / (max_val + p["strength"]), 0, 1) * 255


def _spatter(image, p, rng):
    x = image.astype(np.float32) / 255
    layer = rng.normal(loc=p["loc"], scale=p["scale"], size=x.shape[:2])
    layer = gaussian(layer, sigma=p["sigma"])
    layer[layer < p["threshold"]] = 0
    if p["mode"] == 0:  # water: edges of the liquid layer, shaded by a distance map
        layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)  # clip: >1 would wrap in uint8
        dist = cv2.distanceTransform(255 - cv2.Canny(layer, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        kernel = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)
        dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, kernel), (3, 3)).astype(np.float32)
        m = layer * dist
        peak = m.max()
        m = m / peak * p["intensity"] if peak > 0 else np.zeros_like(m)
        # the original's BGR<->BGRA conversions only add and drop an alpha channel; the colour is
        # added in the image's own (RGB) channel order: pale turquoise (175, 238, 238)
        colour = np.array([175, 238, 238], dtype=np.float32) / 255
        return np.clip(x + m[..., None] * colour, 0, 1) * 255
    m = gaussian((layer > p["threshold"]).astype(np.float32), sigma=p["intensity"])  # mud
    m[m < 0.8] = 0
    m = m[..., None]
    colour = np.array([63, 42, 20], dtype=np.float32) / 255 * m  # mud brown
    return np.clip(x * (1 - m) + colour, 0, 1) * 255


def _brightness(image, p, rng):
    hsv = rgb2hsv(image / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + p["value_shift"], 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _contrast(image, p, rng):
    x = image / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * p["factor"] + means, 0, 1) * 255


def _saturate(image, p, rng):
    hsv = rgb2hsv(image / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * p["scale"] + p["shift"], 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _jpeg_compression(image, p, rng):
    buffer = BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=p["quality"])
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB"))


def _pixelate(image, p, rng):
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((int(w * p["factor"]), int(h * p["factor"])), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BOX))


def _elastic_transform(image, p, rng):
    h, w, c = image.shape
    size = min(h, w)  # the yaml gives fractions of the image side (IMSIZE = 32 in the original)
    alpha, sigma, affine = size * p["alpha"], size * p["sigma"], size * p["affine"]
    x = image.astype(np.float32) / 255
    # random affine: three points around the centre, each moved by U(-affine, affine)
    centre, square = np.float32([h, w]) // 2, min(h, w) // 3
    pts1 = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    pts2 = pts1 + rng.uniform(-affine, affine, size=pts1.shape).astype(np.float32)
    x = cv2.warpAffine(x, cv2.getAffineTransform(pts1, pts2), (w, h), borderMode=cv2.BORDER_REFLECT_101)
    if alpha > 0:  # severity 1 has alpha = sigma = 0: the affine part only
        dx, dy = ((gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha)
                  .astype(np.float32)[..., None] for _ in range(2))
        yy, xx, zz = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
        x = map_coordinates(x, [yy + dy, xx + dx, zz], order=1, mode="reflect")
    return np.clip(x, 0, 1) * 255


_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise, "speckle_noise": _speckle_noise,
    "defocus_blur": _defocus_blur, "glass_blur": _glass_blur, "motion_blur": _motion_blur_corruption,
    "zoom_blur": _zoom_blur, "gaussian_blur": _gaussian_blur,
    "snow": _snow, "frost": _frost, "fog": _fog, "spatter": _spatter,
    "brightness": _brightness, "contrast": _contrast, "elastic_transform": _elastic_transform,
    "pixelate": _pixelate, "jpeg_compression": _jpeg_compression, "saturate": _saturate,
}
if set(_FUNCTIONS) != set(CORRUPTIONS) or len(CORRUPTIONS) != 19:
    raise RuntimeError(f"{PARAMETERS_FILE.name} groups do not name the 19 corruptions implemented here")


def corrupt(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Corrupt one uint8 HxWx3 image by `name` at `severity` (1..5), drawing randomness from `rng` only.

    Returns a new uint8 array of the same shape.
    """
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    out = _FUNCTIONS[name](image, _severity_parameters(name, int(severity)), rng)
    return np.uint8(np.clip(out, 0, 255))
