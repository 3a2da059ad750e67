"""Synthetic leaf rosettes: an endless, embedded stand-in for CVPPP A1 (which is licensed and never shipped).

A scene looks like an Arabidopsis rosette seen from above: ``n`` elongated leaves (teardrop
blades on thin petioles) radiate from a centre near the image centre, at roughly even angles.
Leaves are drawn one after the other, so later leaves hide parts of earlier ones; the label map
holds the *visible* part of each leaf, and a leaf left with a tiny visible area is removed (as
annotators would not label a sliver). Older leaves are drawn first and are longer, younger ones are
shorter and lie on top, as in a real rosette.

What makes the task hard is the same as in CVPPP: leaves share one colour, touch and overlap, and
only shading (a bright midrib, darker edges, a gradient from base to tip) and small hue differences
separate them.

Two styles. ``style="classic"`` (the default) is the scene described above, and what the shipped
checkpoints, fixtures and figures were made from: it never changes. ``style="rosette"`` is closer to
a real Arabidopsis rosette and is meant for CVPPP-shaped scenes ((H, W) = (106, 100), 11-20 leaves;
calibrated on the CVPPP A1 statistics in ``notebooks/references.md``): ovate blades on petioles
placed by the golden angle, young leaves small near the centre and older ones large outside, a pot
of brown soil with its rim, soft shadows where a leaf lies on another, and uneven light (a
gradient and vignetting).

Reproducibility: scene ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])`` with
float64 NumPy maths, so it is the same on every machine, for any access order, in any DataLoader
worker. No torch RNG is involved.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from rsis_lite.errors import ConfigError


# Reference side length: areas given "at 64x64 scale" are scaled by (H * W) / REF**2.
REF = 64


@lru_cache(maxsize=16)
def _upsample_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation matrix: ``M @ g`` upsamples a coarse 1-D grid smoothly.

    Separable bilinear upsampling of a small random grid ``A @ G @ B.T`` gives smooth "soil" noise
    in two matrix products, much faster than scipy.ndimage filters at these sizes.
    """
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] = 1.0 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w) float64 smooth noise in about [-1, 1] from a (cells+1)^2 random grid."""
    g = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1))
    return _upsample_matrix(h, cells + 1) @ g @ _upsample_matrix(w, cells + 1).T


def _soil(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float64 brownish soil: a random brown tint modulated by two octaves of smooth noise."""
    base = np.array([0.36, 0.27, 0.18]) * rng.uniform(0.75, 1.2) + rng.uniform(-0.04, 0.04, size=3)
    tex = 0.6 * _smooth_noise(rng, h, w, 4) + 0.4 * _smooth_noise(rng, h, w, 12)
    return base[None, None, :] * (1.0 + 0.3 * tex[..., None])


def drop_slivers(labels: np.ndarray, pieces: list, min_area: float) -> np.ndarray:
    """Remove the objects whose visible area is under ``min_area`` pixels at 64x64 (scaled with the
    image area) and recomposite ``labels`` (H, W) in place, so what lay beneath shows again.

    ``pieces[k]`` is ``(slice_y, slice_x, mask, ...)`` of object k + 1 in drawing order, or None.
    Removing an object only grows the others' visible areas, so one pass is enough. Returns
    ``keep`` (n,) bool.
    """
    h, w = labels.shape
    n = len(pieces)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = areas >= min_area * (h * w) / REF**2
    if not keep.all():
        labels[:] = 0
        for k in range(n):
            if keep[k] and pieces[k] is not None:
                labels[pieces[k][0], pieces[k][1]][pieces[k][2]] = k + 1
    return keep


def close_gaps(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Kept object k + 1 -> its rank among the kept ones, so the ids are 1..K. Every kept object is
    visible (its area only grew when others were removed)."""
    lut = np.zeros(len(keep) + 1, dtype=np.int64)
    lut[np.flatnonzero(keep) + 1] = np.arange(1, int(keep.sum()) + 1)
    return lut[labels]


# --- the "rosette" style ------------------------------------------------------------------------
STYLES = ("classic", "rosette")

# Shape constants of the rosette style, calibrated so that CVPPP-shaped scenes ((H, W) = (106, 100),
# 11-20 leaves) match the CVPPP A1 statistics of notebooks/references.md: plant fraction of the
# image (median 0.134), leaf area (median 1790 px at 530 x 500 = 72 px at 106 x 100), leaf area /
# plant area growing from the centre outwards (0.014 within 0.3 plant radii, 0.103 beyond 0.9),
# leaf elongation (median 1.75), mean leaf RGB (106, 164, 35) and background RGB (137, 87, 55).
# Lengths are fractions of min(H, W); the oldest leaf's length sets the plant's size.
ROSETTE: dict[str, Any] = dict(
    oldest_length=0.30,         # median length (petiole + blade) of the oldest leaf / min(H, W)
    size_spread=0.12,           # std of log(oldest length) across plants
    youngest=0.2,               # the youngest leaf's length as a fraction of the oldest's
    mature_age=0.65,            # leaves older than this (age q in 0..1) have their full length
    growth_power=2.0,           # length(q) = youngest + (1 - youngest) * min(1, q / mature_age)^power
    length_jitter=0.08,         # std of log(length) of one leaf around that curve
    petiole=(0.15, 0.55),       # petiole share of the length: youngest .. oldest leaf (+- 0.04)
    blade_aspect=(0.55, 0.85),  # greatest blade width / blade length (uniform)
    angle_jitter=0.15,          # std (radians) of each leaf's angle around the golden-angle spiral
    centre_jitter=0.04,         # std of the rosette centre around the image centre / min(H, W)
    leaf_rgb=(106 / 255, 164 / 255, 35 / 255),   # target mean leaf colour (A1)
    soil_rgb=(137 / 255, 87 / 255, 55 / 255),    # target mean background colour (A1, soil and pot)
    plant_rgb_std=0.02,         # per-plant std of the leaf colour (A1: about 6-7 / 255)
    leaf_gain=1.08,             # 1 / the mean of shading, shadows and light on a leaf
    soil_gain=1.1,              # the same for the background (the rim shade, the dark tray)
    pot_half=(0.44, 0.62),      # half-side of the square pot / min(H, W): its rim shows near the border
    min_area=2.0,               # smallest visible leaf kept, pixels at 64 x 64 (5.2 px at 106 x 100)
)
GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))  # 137.5 degrees: the spiral phyllotaxis of Arabidopsis


def _pot_and_soil(rng: np.random.Generator, h: int, w: int, cy: float, cx: float) -> np.ndarray:
    """(h, w, 3) float64: brown soil in a square pot with rounded corners, its rim, the tray beyond.

    The pot is centred near the plant and about as large as the image, so its rim and the tray show
    along some borders and in the corners.
    """
    s = float(min(h, w))
    soil_rgb = ROSETTE["soil_gain"] * np.asarray(ROSETTE["soil_rgb"])
    base = soil_rgb * rng.uniform(0.85, 1.1) + rng.uniform(-0.03, 0.03, size=3)
    tex = 0.5 * _smooth_noise(rng, h, w, 5) + 0.5 * _smooth_noise(rng, h, w, 20)   # (h, w) clumps + grain
    image = base[None, None, :] * (1.0 + 0.22 * tex[..., None])                    # (h, w, 3)
    half = rng.uniform(*ROSETTE["pot_half"]) * s
    py, px = cy + rng.normal(0.0, 0.03 * s), cx + rng.normal(0.0, 0.03 * s)
    rim = rng.uniform(0.025, 0.045) * s                   # rim width
    rim_rgb = np.array([0.62, 0.40, 0.27]) * rng.uniform(0.85, 1.1)   # lit terracotta-brown rim
    tray_rgb = np.array([0.22, 0.16, 0.12]) * rng.uniform(0.8, 1.2)   # the dark tray / gap
    yy = np.abs(np.arange(h) + 0.5 - py)[:, None] / half
    xx = np.abs(np.arange(w) + 0.5 - px)[None, :] / half
    d = (yy**4 + xx**4) ** 0.25                            # (h, w) superellipse distance: 1 = pot edge
    r = rim / half
    in_rim = (d >= 1.0) & (d < 1.0 + r)
    beyond = d >= 1.0 + r
    image[in_rim] = rim_rgb * (1.0 + 0.1 * tex[in_rim][:, None])
    image[beyond] = tray_rgb * (1.0 + 0.2 * tex[beyond][:, None])
    # The soil darkens towards the rim (the pot wall shades it).
    inner = np.clip((d - (1.0 - 2.0 * r)) / (2.0 * r), 0.0, 1.0) * (d < 1.0)
    return image * (1.0 - 0.35 * inner[..., None])


def _illumination(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) float64 light field with mean 1: a linear gradient in a random direction, vignetting."""
    y = (np.arange(h) + 0.5) / h * 2.0 - 1.0              # (h,) in [-1, 1]
    x = (np.arange(w) + 0.5) / w * 2.0 - 1.0              # (w,)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    grad = rng.uniform(0.0, 0.18)                          # +-18 % at most from one side to the other
    vig = rng.uniform(0.05, 0.3)                           # darker corners
    oy, ox = rng.normal(0.0, 0.15, size=2)                 # the vignette is not quite centred
    light = (1.0 + grad * (np.sin(phi) * y[:, None] + np.cos(phi) * x[None, :])) \
        * (1.0 - vig * 0.5 * ((y[:, None] - oy) ** 2 + (x[None, :] - ox) ** 2))
    return light / light.mean()


def render_rosette(
    rng: np.random.Generator,
    size: tuple[int, int],
    min_leaves: int,
    max_leaves: int,
    noise: float = 0.03,
    min_area: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One rosette in the ``"rosette"`` style (see :data:`ROSETTE` for the constants).

    Leaf ``k`` (0 = oldest, drawn first) has age ``q = 1 - (k + 0.5) / n``; its angle follows the
    golden-angle spiral, its length grows with age (young leaves are small and near the centre,
    old ones large and outside), its petiole grows longer with age. Each blade is ovate (widest
    below the middle: half-width ``~ t^a (1 - t)^b`` with ``a < b``). Younger leaves lie on top;
    each casts a soft shadow on what lies beneath, towards the side away from the light. All random
    numbers are drawn up front in a fixed order, as in the classic style.

    Args:
        rng: the scene's generator.
        size: (H, W).
        min_leaves, max_leaves: number of leaves drawn (uniform, inclusive).
        noise: std of the Gaussian pixel noise.
        min_area: smallest visible area kept, pixels at 64 x 64 (scaled with the image area).

    Returns:
        image (H, W, 3) float32 in [0, 1]; labels (H, W) int64, 0 = background, leaves 1..K from
        the oldest (bottom) to the youngest (top).
    """
    h, w = int(size[0]), int(size[1])
    s = float(min(h, w))
    c = ROSETTE
    n = int(rng.integers(min_leaves, max_leaves + 1))
    cy = h / 2 + rng.normal(0.0, c["centre_jitter"] * s)
    cx = w / 2 + rng.normal(0.0, c["centre_jitter"] * s)
    # Plants with more leaves are older and larger (weakly).
    oldest = c["oldest_length"] * s * np.exp(rng.normal(0.0, c["size_spread"])) * (n / 16.0) ** 0.25
    q = 1.0 - (np.arange(n) + 0.5) / n                     # (n,) age: 1 = oldest (drawn first)
    rel = c["youngest"] + (1.0 - c["youngest"]) * np.minimum(1.0, q / c["mature_age"]) ** c["growth_power"]
    lengths = oldest * rel * np.exp(rng.normal(0.0, c["length_jitter"], size=n))   # (n,) pixels
    turn = GOLDEN_ANGLE * (1.0 if rng.uniform() < 0.5 else -1.0)                   # spiral direction
    angles = rng.uniform(0, 2 * np.pi) + turn * np.arange(n) + rng.normal(0.0, c["angle_jitter"], size=n)
    p0, p1 = c["petiole"]
    petiole = np.clip(p0 + (p1 - p0) * q + rng.uniform(-0.04, 0.04, size=n), 0.05, 0.6)  # (n,) share
    aspect = rng.uniform(*c["blade_aspect"], size=n)       # greatest width / blade length
    shape_a = rng.uniform(0.35, 0.5, size=n)               # a < b: widest below the middle (ovate)
    shape_b = rng.uniform(0.45, 0.6, size=n)
    leaf_rgb = c["leaf_gain"] * np.asarray(c["leaf_rgb"]) + rng.normal(0.0, c["plant_rgb_std"], size=3)
    tint = rng.uniform(0.92, 1.08, size=(n, 1)) + rng.uniform(-0.02, 0.02, size=(n, 3))   # (n, 3)
    # Young leaves are a lighter, yellower green.
    colours = leaf_rgb * tint + (1.0 - q)[:, None] * np.array([0.05, 0.04, 0.0])           # (n, 3)
    image = _pot_and_soil(rng, h, w, cy, cx)
    light = _illumination(rng, h, w)
    sun = rng.uniform(0, 2 * np.pi)                        # shadows fall away from this direction
    exposure = rng.uniform(0.92, 1.08)

    labels = np.zeros((h, w), dtype=np.int64)
    leaves = []                                            # (slice_y, slice_x, mask, shade) or None
    pw_base = max(0.55, 0.011 * s)                         # petiole half-width of the oldest leaf
    for k in range(n):
        co, si = np.cos(angles[k]), np.sin(angles[k])
        width = aspect[k] * (1.0 - petiole[k]) * lengths[k]
        pad = 0.5 * width + 2.0
        ty, tx = cy + lengths[k] * si, cx + lengths[k] * co
        y0, y1 = max(int(min(cy, ty) - pad), 0), min(int(max(cy, ty) + pad) + 1, h)
        x0, x1 = max(int(min(cx, tx) - pad), 0), min(int(max(cx, tx) + pad) + 1, w)
        if y1 <= y0 or x1 <= x0:
            leaves.append(None)
            continue
        yy = (np.arange(y0, y1) + 0.5 - cy)[:, None]
        xx = (np.arange(x0, x1) + 0.5 - cx)[None, :]
        u = xx * co + yy * si                              # (by, bx) along the leaf, outwards
        v = -xx * si + yy * co                             # (by, bx) across it
        p = petiole[k] * lengths[k]
        t = (u - p) / (lengths[k] - p)                     # 0 at the blade base, 1 at the tip
        tc = np.minimum(np.maximum(t, 0.0), 1.0)
        a, b = shape_a[k], shape_b[k]
        peak = (a / (a + b)) ** a * (b / (a + b)) ** b
        half = 0.5 * width * tc**a * (1.0 - tc) ** b / peak
        in_blade = (t >= 0) & (t <= 1) & (np.abs(v) < half)
        pw = pw_base * (0.6 + 0.4 * q[k])
        in_pet = (u >= 0) & (u < p + 1e-9) & (np.abs(v) < pw)
        mask = in_blade | in_pet
        # Darker edges (a curved blade), a light midrib, a little brighter towards the tip; the
        # petiole is paler.
        r_ = np.minimum(np.abs(v) / np.maximum(half, pw), 1.0)
        shade = (0.85 + 0.15 * tc) * (1.0 - 0.3 * r_ * r_)
        shade = shade + 0.15 * np.exp(-((v / max(0.05 * width, 0.45)) ** 2)) * (t > 0.03) * (t < 0.85)
        shade = np.where(in_blade, shade, 1.1)
        leaves.append((slice(y0, y1), slice(x0, x1), mask, shade))
        labels[y0:y1, x0:x1][mask] = k + 1

    keep = drop_slivers(labels, leaves, min_area)
    for k in range(n):
        if not keep[k] or leaves[k] is None:
            continue
        sy, sx, _, shade = leaves[k]
        vis = labels[sy, sx] == k + 1
        image[sy, sx][vis] = colours[k][None, :] * shade[vis][:, None]

    # Soft shadows: a pixel whose neighbour one or two pixels towards the light belongs to a leaf
    # lying higher (drawn later) is shaded -- the soil around the plant and older leaves beneath
    # younger ones. Two shifts, no loop.
    dy, dx = np.sin(sun), np.cos(sun)
    shadow = np.zeros((h, w))
    for dist, strength in ((1.0, 0.22), (2.2, 0.12)):
        oy, ox = int(round(dy * dist)), int(round(dx * dist))
        up = _shift(labels, oy, ox)                        # (h, w) label of the neighbour towards the light
        shadow = np.maximum(shadow, strength * (up > labels))
    image = image * (1.0 - shadow[..., None]) * (light * exposure)[..., None]
    image = image + rng.normal(0.0, noise, size=image.shape)
    image = np.minimum(np.maximum(image, 0.0), 1.0).astype(np.float32)
    return image, close_gaps(labels, keep)


def _shift(a: np.ndarray, oy: int, ox: int) -> np.ndarray:
    """``out[y, x] = a[y + oy, x + ox]`` (zero outside): the value of the neighbour at (oy, ox)."""
    h, w = a.shape
    out = np.zeros_like(a)
    ys, yd = (slice(oy, h), slice(0, h - oy)) if oy >= 0 else (slice(0, h + oy), slice(-oy, h))
    xs, xd = (slice(ox, w), slice(0, w - ox)) if ox >= 0 else (slice(0, w + ox), slice(-ox, w))
    out[yd, xd] = a[ys, xs]
    return out


def render_scene(
    rng: np.random.Generator,
    size: int | tuple[int, int] = 64,
    min_leaves: int = 2,
    max_leaves: int = 8,
    overlap: float = 0.35,
    leaf_length: tuple[float, float] = (0.22, 0.42),
    leaf_width: tuple[float, float] = (0.35, 0.6),
    noise: float = 0.03,
    min_area: float | None = None,
    style: str = "classic",
) -> tuple[np.ndarray, np.ndarray]:
    """Render one rosette. Pure function of ``rng`` and the arguments.

    Args:
        rng: the scene's generator (``np.random.default_rng([seed, i])``).
        size: side length, or (H, W). Shapes scale with ``min(H, W)``.
        min_leaves, max_leaves: number of leaves drawn (uniform, inclusive). Leaves hidden down to
            fewer than ``min_area`` visible pixels are removed, so a few scenes have fewer.
        overlap: angular jitter of each leaf as a fraction of the even spacing ``2*pi/n``
            (std of a normal). 0 = perfectly even, larger = neighbours cross and hide each other more.
            Classic style only.
        leaf_length: range of the leaf length (petiole + blade) as a fraction of ``min(H, W)``.
            Classic style only.
        leaf_width: range of the blade's greatest width as a fraction of that leaf's length.
            Classic style only.
        noise: std of the Gaussian pixel noise added at the end.
        min_area: smallest visible area kept, in pixels at 64x64 (scaled with the image area);
            default 10 for ``classic``, ``ROSETTE["min_area"]`` for ``rosette`` (whose youngest
            leaves are as small as real ones).
        style: ``"classic"`` (the default, unchanged scenes) or ``"rosette"`` (closer to real
            Arabidopsis, see :func:`render_rosette`; its shape constants are :data:`ROSETTE`).

    Returns:
        image (H, W, 3) float32 in [0, 1]; labels (H, W) int64, 0 = soil, leaves 1..K in drawing
        order (later = on top).
    """
    if style not in STYLES:
        raise ConfigError(f"unknown scene style {style!r}; choose one of {', '.join(STYLES)}")
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if style == "rosette":
        return render_rosette(rng, (h, w), min_leaves, max_leaves, noise,
                              ROSETTE["min_area"] if min_area is None else min_area)
    if min_area is None:
        min_area = 10.0
    s = float(min(h, w))
    n = int(rng.integers(min_leaves, max_leaves + 1))

    # --- geometry: all random numbers drawn up front in a fixed order, so the stream never depends
    # on what is visible.
    cy = h / 2 + rng.normal(0.0, 0.03 * s)
    cx = w / 2 + rng.normal(0.0, 0.03 * s)
    spacing = 2 * np.pi / max(n, 1)
    angles = rng.uniform(0, 2 * np.pi) + spacing * np.arange(n) + rng.normal(0.0, overlap * spacing, size=n)
    angles = angles[rng.permutation(n)]  # drawing order unrelated to angle
    lengths = np.sort(rng.uniform(*leaf_length, size=n))[::-1] * s  # older (first) leaves longer
    widths = rng.uniform(*leaf_width, size=n) * lengths  # greatest blade width (full, not half)
    petiole = rng.uniform(0.0, 0.3, size=n)  # petiole share of the length
    shape_a = rng.uniform(0.45, 0.9, size=n)  # blade profile t^a (1-t)^b: a < b = wide near tip
    shape_b = rng.uniform(0.6, 1.1, size=n)
    green = np.array([0.22, 0.55, 0.14])
    colours = green * rng.uniform(0.75, 1.25, size=(n, 1)) + rng.uniform(-0.05, 0.05, size=(n, 3))
    image = _soil(rng, h, w)

    # --- per-leaf masks and shading, each inside the leaf's bounding box only (speed).
    labels = np.zeros((h, w), dtype=np.int64)
    leaves = []  # (slice_y, slice_x, mask, shade)
    for k in range(n):
        # Box around the segment centre -> tip, padded by the blade's half-width: a thin leaf at
        # 45 degrees covers a fraction of a square around the centre, and this loop is the cost.
        c, si = np.cos(angles[k]), np.sin(angles[k])
        pad = 0.5 * widths[k] + 2.0
        ty, tx = cy + lengths[k] * si, cx + lengths[k] * c
        y0, y1 = max(int(min(cy, ty) - pad), 0), min(int(max(cy, ty) + pad) + 1, h)
        x0, x1 = max(int(min(cx, tx) - pad), 0), min(int(max(cx, tx) + pad) + 1, w)
        if y1 <= y0 or x1 <= x0:
            leaves.append(None)
            continue
        yy = (np.arange(y0, y1) + 0.5 - cy)[:, None]
        xx = (np.arange(x0, x1) + 0.5 - cx)[None, :]
        u = xx * c + yy * si  # along the leaf axis, outwards from the centre
        v = -xx * si + yy * c  # across it
        p = petiole[k] * lengths[k]
        blade = lengths[k] - p
        t = (u - p) / blade  # 0 at the blade base, 1 at the tip
        tc = np.minimum(np.maximum(t, 0.0), 1.0)  # (np.clip's Python wrapper costs more here)
        a, b = shape_a[k], shape_b[k]
        peak = (a / (a + b)) ** a * (b / (a + b)) ** b  # max of t^a (1-t)^b, to normalise to 1
        half = 0.5 * widths[k] * tc**a * (1.0 - tc) ** b / peak  # half-width of the blade at t
        in_blade = (t >= 0) & (t <= 1) & (np.abs(v) < half)
        pw = max(0.6, 0.012 * s)  # petiole half-width: at least ~1 px wide
        in_pet = (u >= 0) & (u < p + 1e-9) & (np.abs(v) < pw)
        mask = in_blade | in_pet
        # Shading: darker towards the edges (a curved blade), brighter along the midrib, and
        # brighter from base to tip. These cues are what separates touching leaves.
        rel = np.minimum(np.abs(v) / np.maximum(half, pw), 1.0)
        shade = (0.78 + 0.3 * tc) * (1.0 - 0.35 * rel * rel)
        shade = shade + 0.25 * np.exp(-((v / max(0.06 * widths[k], 0.5)) ** 2)) * (t > 0.02) * (t < 0.9)
        leaves.append((slice(y0, y1), slice(x0, x1), mask, shade))
        labels[y0:y1, x0:x1][mask] = k + 1  # later leaves overwrite: occlusion

    # --- drop leaves whose visible part is tiny, then recomposite so what lay beneath shows again.
    # Removing a leaf only grows the others' visible areas, so a single pass is enough.
    keep = drop_slivers(labels, leaves, min_area)

    # --- paint the visible part of every kept leaf.
    for k in range(n):
        if not keep[k] or leaves[k] is None:
            continue
        sy, sx, _, shade = leaves[k]
        vis = labels[sy, sx] == k + 1
        image[sy, sx][vis] = colours[k][None, :] * shade[vis][:, None]

    image = image + rng.normal(0.0, noise, size=image.shape)
    image = np.minimum(np.maximum(image, 0.0), 1.0).astype(np.float32)
    # Close the gaps left by removed leaves: kept leaf k+1 -> its rank among the kept ones. Every
    # kept leaf is visible (its area only grew when others were removed), so ids are 1..K.
    return image, close_gaps(labels, keep)


class _SceneIds(Sequence[str]):
    """The ids ``scene00000 ...`` as a lazy list: a 10-million-scene training set needs no 10M strings."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [f"scene{j:05d}" for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return f"scene{i:05d}"


class SyntheticLeaves(torch.utils.data.Dataset):
    """``n`` synthetic rosettes, rendered on demand. ``ds[i] -> (image (3,H,W) float32 in [0,1], labels (H,W) int64)``.

    Scene ``i`` depends only on ``(seed, i)`` and the shape arguments (see :func:`render_scene`).
    Use distinct seeds for training and validation (the registry uses 0 and 1000).
    ``style`` is ``"classic"`` (the default; these scenes never change) or ``"rosette"`` (closer to
    real Arabidopsis, for CVPPP-shaped scenes; ``overlap``, ``leaf_length`` and ``leaf_width`` are
    classic-only). ``transform(image, labels) -> (image, labels)`` is applied after rendering.
    """

    def __init__(
        self,
        n: int,
        size: int | tuple[int, int] = 64,
        seed: int = 0,
        min_leaves: int = 2,
        max_leaves: int = 8,
        overlap: float = 0.35,
        leaf_length: tuple[float, float] = (0.22, 0.42),
        leaf_width: tuple[float, float] = (0.35, 0.6),
        noise: float = 0.03,
        transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
        style: str = "classic",
    ) -> None:
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        if style not in STYLES:
            raise ConfigError(f"unknown scene style {style!r}; choose one of {', '.join(STYLES)}")
        if not 1 <= min_leaves <= max_leaves:
            raise ConfigError(f"need 1 <= min_leaves <= max_leaves, got {min_leaves}, {max_leaves}")
        self.n, self.size, self.seed = int(n), size, int(seed)
        self.kwargs = dict(min_leaves=min_leaves, max_leaves=max_leaves, overlap=overlap,
                           leaf_length=tuple(leaf_length), leaf_width=tuple(leaf_width), noise=noise)
        self.style = style
        self.transform = transform
        self.ids = _SceneIds(self.n)

    def __len__(self) -> int:
        return self.n

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene ``i`` as NumPy arrays: image (H, W, 3) float32, labels (H, W) int64."""
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"scene index {i} out of range for {self.n} scenes")
        return render_scene(np.random.default_rng([self.seed, i]), self.size, **self.kwargs, style=self.style)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        image, labels = self.render(int(i))
        img_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        lab_t = torch.from_numpy(labels)
        if self.transform is not None:
            img_t, lab_t = self.transform(img_t, lab_t)
        return img_t, lab_t

    def __repr__(self) -> str:
        style = "" if self.style == "classic" else f", style={self.style!r}"
        return f"SyntheticLeaves(n={self.n}, size={self.size}, seed={self.seed}{style}, {self.kwargs})"
