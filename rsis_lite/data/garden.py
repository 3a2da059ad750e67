"""Synthetic garden beds: multi-class scenes where an instance's class means something.

A scene is a patch of soil seen from above with ``n`` objects of three classes scattered over it,
overlapping one another:

====  ========  ==============================================================================
id    class     shape and colour
====  ========  ==============================================================================
1     leaf      an elongated teardrop blade on a thin petiole; green, a bright midrib, darker edges
2     flower    a yellow-brown disc ringed by 5-8 oval petals; white, pink, purple or red
3     stone     a rounded irregular blob; grey to beige, speckled, lit from one side
====  ========  ==============================================================================

The classes differ in shape (elongated, star-like, compact) and in colour statistics (green,
saturated, grey), and the scene uses the leaves' background and noise model (the same soil
texture from :mod:`rsis_lite.data.synthetic` and Gaussian pixel noise), so a system that
segments leaves sees familiar soil and has to learn what tells the three kinds apart.

Objects are drawn one after the other (later on top); the label map holds the *visible* part of
each object and an object hidden down to a sliver is removed, as for the leaves. ``classes[k-1]``
is the class id (1..3) of instance k.

Reproducibility: scene ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i, 7])``
(the extra 7 keeps garden streams apart from leaf streams of the same seed) with float64 NumPy
maths: the same on every machine, in any access order, in any DataLoader worker.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from rsis_lite.data.synthetic import _SceneIds, _soil, _upsample_matrix, close_gaps, drop_slivers
from rsis_lite.errors import ConfigError

CLASS_NAMES = ("leaf", "flower", "stone")   # class id k is CLASS_NAMES[k - 1]
NUM_CLASSES = len(CLASS_NAMES)
_STREAM = 7                                 # third word of the scene's seed sequence

# Petal colours of the flowers: white, pink, purple, red (RGB in [0, 1]).
_PETALS = np.array([[0.92, 0.92, 0.88], [0.95, 0.55, 0.75], [0.62, 0.38, 0.85], [0.88, 0.18, 0.2]])


def _box(cy: float, cx: float, r: float, h: int, w: int):
    """Row/column slices of the square of half-side ``r`` around (cy, cx), clipped to the image,
    and the pixel-centre coordinates relative to (cy, cx): yy (h', 1), xx (1, w')."""
    y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, h)
    x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, w)
    if y1 <= y0 or x1 <= x0:
        return None
    yy = (np.arange(y0, y1) + 0.5 - cy)[:, None]
    xx = (np.arange(x0, x1) + 0.5 - cx)[None, :]
    return slice(y0, y1), slice(x0, x1), yy, xx


def _leaf(rng: np.random.Generator, s: float):
    """Parameters of a leaf, drawn in a fixed order; :func:`_draw_leaf` renders them."""
    length = rng.uniform(0.22, 0.42) * s
    return dict(angle=rng.uniform(0, 2 * np.pi), length=length, width=rng.uniform(0.3, 0.5) * length,
                petiole=rng.uniform(0.1, 0.3), a=rng.uniform(0.45, 0.9), b=rng.uniform(0.6, 1.1),
                colour=np.array([0.22, 0.55, 0.14]) * rng.uniform(0.8, 1.2) + rng.uniform(-0.04, 0.04, 3))


def _draw_leaf(p: dict, cy: float, cx: float, s: float, h: int, w: int):
    """(slices, mask, rgb) of a leaf whose petiole starts at (cy, cx)."""
    c, si = np.cos(p["angle"]), np.sin(p["angle"])
    box = _box(cy + 0.5 * p["length"] * si, cx + 0.5 * p["length"] * c, 0.5 * p["length"] + 0.5 * p["width"] + 2, h, w)
    if box is None:
        return None
    sy, sx, yy, xx = box
    yy = yy + 0.5 * p["length"] * si                      # coordinates relative to the leaf base
    xx = xx + 0.5 * p["length"] * c
    u, v = xx * c + yy * si, -xx * si + yy * c            # along / across the leaf axis
    pet = p["petiole"] * p["length"]
    t = (u - pet) / (p["length"] - pet)                   # 0 at the blade base, 1 at the tip
    tc = np.clip(t, 0.0, 1.0)
    a, b = p["a"], p["b"]
    peak = (a / (a + b)) ** a * (b / (a + b)) ** b
    half = 0.5 * p["width"] * tc**a * (1.0 - tc) ** b / peak
    pw = max(0.6, 0.012 * s)
    mask = ((t >= 0) & (t <= 1) & (np.abs(v) < half)) | ((u >= 0) & (u < pet) & (np.abs(v) < pw))
    rel = np.minimum(np.abs(v) / np.maximum(half, pw), 1.0)
    shade = (0.8 + 0.25 * tc) * (1.0 - 0.35 * rel * rel)
    shade = shade + 0.25 * np.exp(-((v / max(0.06 * p["width"], 0.5)) ** 2)) * (t > 0.02) * (t < 0.9)
    return sy, sx, mask, p["colour"][None, None, :] * shade[..., None]


def _flower(rng: np.random.Generator, s: float):
    n_petals = int(rng.integers(5, 9))
    return dict(radius=rng.uniform(0.09, 0.16) * s, n=n_petals, phase=rng.uniform(0, 2 * np.pi),
                petal_width=rng.uniform(0.45, 0.7), disc=rng.uniform(0.25, 0.38),
                colour=_PETALS[int(rng.integers(0, len(_PETALS)))] * rng.uniform(0.85, 1.05) + rng.uniform(-0.04, 0.04, 3),
                centre=np.array([0.85, 0.65, 0.12]) * rng.uniform(0.7, 1.0))


def _draw_flower(p: dict, cy: float, cx: float, s: float, h: int, w: int):
    """(slices, mask, rgb) of a flower centred at (cy, cx): disc + ``n`` oval petals."""
    box = _box(cy, cx, p["radius"] + 1, h, w)
    if box is None:
        return None
    sy, sx, yy, xx = box
    r = np.sqrt(yy * yy + xx * xx)
    theta = np.arctan2(yy, xx)
    sector = 2 * np.pi / p["n"]
    d = np.angle(np.exp(1j * ((theta - p["phase"]) - sector * np.round((theta - p["phase"]) / sector))))
    # Each petal is an ellipse along its axis: radial half-length R/2 centred at R/2, tangential
    # half-width petal_width * R * sin(sector / 2).
    along = r * np.cos(d) - 0.5 * p["radius"]
    across = r * np.sin(d)
    half_w = p["petal_width"] * p["radius"] * np.sin(sector / 2)
    petals = (along / (0.5 * p["radius"])) ** 2 + (across / max(half_w, 0.6)) ** 2 <= 1.0
    disc = r <= p["disc"] * p["radius"]
    mask = petals | disc
    shade = 0.85 + 0.25 * np.clip(r / p["radius"], 0, 1)  # petals paler towards the tips
    rgb = np.where(disc[..., None], p["centre"][None, None, :], p["colour"][None, None, :] * shade[..., None])
    return sy, sx, mask, rgb


def _stone(rng: np.random.Generator, s: float):
    return dict(radius=rng.uniform(0.07, 0.14) * s, elong=rng.uniform(0.65, 1.0), angle=rng.uniform(0, np.pi),
                wobble=rng.uniform(0.0, 0.15, size=3), wphase=rng.uniform(0, 2 * np.pi, size=3),
                light=rng.uniform(0, 2 * np.pi), grey=rng.uniform(0.45, 0.75),
                tint=np.array([1.0, 0.97, 0.9]) + rng.uniform(-0.05, 0.05, 3),
                speckle=rng.uniform(-1.0, 1.0, size=(6, 6)))


def _draw_stone(p: dict, cy: float, cx: float, s: float, h: int, w: int):
    """(slices, mask, rgb) of a stone centred at (cy, cx): an ellipse with a wobbly outline."""
    box = _box(cy, cx, p["radius"] * 1.2 + 1, h, w)
    if box is None:
        return None
    sy, sx, yy, xx = box
    c, si = np.cos(p["angle"]), np.sin(p["angle"])
    u, v = xx * c + yy * si, (-xx * si + yy * c) / p["elong"]
    r, theta = np.sqrt(u * u + v * v), np.arctan2(v, u)
    edge = p["radius"] * (1.0 + sum(p["wobble"][k] * np.sin((k + 2) * theta + p["wphase"][k]) for k in range(3)))
    mask = r <= edge
    rel = np.clip(r / np.maximum(edge, 1e-6), 0, 1)
    lit = 0.5 * (1.0 + (xx * np.cos(p["light"]) + yy * np.sin(p["light"])) / (p["radius"] * 1.2))
    hh, ww = mask.shape
    speck = _upsample_matrix(hh, 6) @ p["speckle"] @ _upsample_matrix(ww, 6).T
    shade = p["grey"] * (0.75 + 0.35 * lit) * (1.0 - 0.25 * rel**4) * (1.0 + 0.08 * speck)
    return sy, sx, mask, p["tint"][None, None, :] * shade[..., None]


_DRAW = {1: (_leaf, _draw_leaf), 2: (_flower, _draw_flower), 3: (_stone, _draw_stone)}


def render_garden(rng: np.random.Generator, size: int | tuple[int, int] = 64, min_objects: int = 2,
                  max_objects: int = 8, noise: float = 0.03, min_area: float = 10.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one garden scene. Pure function of ``rng`` and the arguments.

    Returns image (H, W, 3) float32 in [0, 1]; labels (H, W) int64 (0 = soil, objects 1..K in
    drawing order, later on top); classes (K,) int64 with ``classes[k-1]`` in 1..3 the class of
    instance k (:data:`CLASS_NAMES`).
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    s = float(min(h, w))
    n = int(rng.integers(min_objects, max_objects + 1))
    kinds = rng.integers(1, NUM_CLASSES + 1, size=n)                      # class of each object
    centres = np.stack([rng.uniform(0.15, 0.85, size=n) * h, rng.uniform(0.15, 0.85, size=n) * w], axis=1)
    params = [_DRAW[int(k)][0](rng, s) for k in kinds]                     # drawn up front, fixed order
    image = _soil(rng, h, w)
    labels = np.zeros((h, w), dtype=np.int64)
    drawn = []
    for j in range(n):
        d = _DRAW[int(kinds[j])][1](params[j], centres[j, 0], centres[j, 1], s, h, w)
        drawn.append(d)
        if d is not None:
            labels[d[0], d[1]][d[2]] = j + 1
    keep = drop_slivers(labels, drawn, min_area)                         # recomposite without slivers
    for j in range(n):
        if keep[j] and drawn[j] is not None:
            sy, sx, _, rgb = drawn[j]
            vis = labels[sy, sx] == j + 1
            image[sy, sx][vis] = rgb[vis]
    image = image + rng.normal(0.0, noise, size=image.shape)
    image = np.minimum(np.maximum(image, 0.0), 1.0).astype(np.float32)
    return image, close_gaps(labels, keep), kinds[keep].astype(np.int64)


class SyntheticGarden(torch.utils.data.Dataset):
    """``n`` garden scenes rendered on demand:
    ``ds[i] -> (image (3, H, W) float32 in [0, 1], labels (H, W) int64, classes (K,) int64)``.

    Scene ``i`` depends only on ``(seed, i)`` and the shape arguments (see :func:`render_garden`).
    ``transform(image, labels, classes) -> (image, labels, classes)`` runs after rendering
    (:class:`rsis_lite.data.JointAugment` accepts the classes and keeps them aligned).
    """

    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES

    def __init__(self, n: int, size: int | tuple[int, int] = 64, seed: int = 0, min_objects: int = 2,
                 max_objects: int = 8, noise: float = 0.03,
                 transform: Callable[..., tuple[Tensor, Tensor, Tensor]] | None = None) -> None:
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        if not 1 <= min_objects <= max_objects:
            raise ConfigError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
        self.n, self.size, self.seed = int(n), size, int(seed)
        # "max_leaves" is the key rsis_lite.data.registry.max_instances reads for synthetic scenes.
        self.kwargs = dict(min_leaves=min_objects, max_leaves=max_objects, noise=noise)
        self.transform = transform
        self.ids = _SceneIds(self.n)

    def __len__(self) -> int:
        return self.n

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scene ``i`` as NumPy arrays: image (H, W, 3), labels (H, W), classes (K,)."""
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"scene index {i} out of range for {self.n} scenes")
        kw = self.kwargs
        return render_garden(np.random.default_rng([self.seed, i, _STREAM]), self.size, kw["min_leaves"],
                             kw["max_leaves"], kw["noise"])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        image, labels, classes = self.render(int(i))
        img_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))   # (3, H, W)
        lab_t, cls_t = torch.from_numpy(labels), torch.from_numpy(classes)         # (H, W), (K,)
        if self.transform is not None:
            img_t, lab_t, cls_t = self.transform(img_t, lab_t, cls_t)
        return img_t, lab_t, cls_t

    def __repr__(self) -> str:
        return f"SyntheticGarden(n={self.n}, size={self.size}, seed={self.seed}, {self.kwargs})"
