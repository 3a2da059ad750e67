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

Reproducibility: scene ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])`` with
float64 NumPy maths, so it is the same on every machine, for any access order, in any DataLoader
worker. No torch RNG is involved.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor


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


def render_scene(
    rng: np.random.Generator,
    size: int | tuple[int, int] = 64,
    min_leaves: int = 2,
    max_leaves: int = 8,
    overlap: float = 0.35,
    leaf_length: tuple[float, float] = (0.22, 0.42),
    leaf_width: tuple[float, float] = (0.35, 0.6),
    noise: float = 0.03,
    min_area: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one rosette. Pure function of ``rng`` and the arguments.

    Args:
        rng: the scene's generator (``np.random.default_rng([seed, i])``).
        size: side length, or (H, W). Shapes scale with ``min(H, W)``.
        min_leaves, max_leaves: number of leaves drawn (uniform, inclusive). Leaves hidden down to
            fewer than ``min_area`` visible pixels are removed, so a few scenes have fewer.
        overlap: angular jitter of each leaf as a fraction of the even spacing ``2*pi/n``
            (std of a normal). 0 = perfectly even, larger = neighbours cross and hide each other more.
        leaf_length: range of the leaf length (petiole + blade) as a fraction of ``min(H, W)``.
        leaf_width: range of the blade's greatest width as a fraction of that leaf's length.
        noise: std of the Gaussian pixel noise added at the end.
        min_area: smallest visible area kept, in pixels at 64x64 (scaled with the image area).

    Returns:
        image (H, W, 3) float32 in [0, 1]; labels (H, W) int64, 0 = soil, leaves 1..K in drawing
        order (later = on top).
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
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
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = areas >= min_area * (h * w) / REF**2
    if not keep.all():
        labels[:] = 0
        for k in range(n):
            if keep[k] and leaves[k] is not None:
                sy, sx, mask, _ = leaves[k]
                labels[sy, sx][mask] = k + 1

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
    lut = np.zeros(n + 1, dtype=np.int64)
    lut[np.flatnonzero(keep) + 1] = np.arange(1, int(keep.sum()) + 1)
    return image, lut[labels]


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
    ``transform(image, labels) -> (image, labels)`` is applied after rendering.
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
    ) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if not 1 <= min_leaves <= max_leaves:
            raise ValueError(f"need 1 <= min_leaves <= max_leaves, got {min_leaves}, {max_leaves}")
        self.n, self.size, self.seed = int(n), size, int(seed)
        self.kwargs = dict(min_leaves=min_leaves, max_leaves=max_leaves, overlap=overlap,
                           leaf_length=tuple(leaf_length), leaf_width=tuple(leaf_width), noise=noise)
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
        return render_scene(np.random.default_rng([self.seed, i]), self.size, **self.kwargs)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        image, labels = self.render(int(i))
        img_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        lab_t = torch.from_numpy(labels)
        if self.transform is not None:
            img_t, lab_t = self.transform(img_t, lab_t)
        return img_t, lab_t

    def __repr__(self) -> str:
        return f"SyntheticLeaves(n={self.n}, size={self.size}, seed={self.seed}, {self.kwargs})"
