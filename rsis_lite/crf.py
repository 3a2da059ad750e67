"""Dense-CRF refinement of instance label maps: the fully connected CRF of Krähenbühl & Koltun.

Krähenbühl & Koltun, *Efficient Inference in Fully Connected CRFs with Gaussian Edge Potentials*
(NeurIPS 2011) put a pairwise term between **every** pair of pixels, with a Gaussian edge potential
on positions and colours, and show that mean-field inference only needs a filter of the current
marginals (their sections 3 and 4). Zheng et al., *Conditional Random Fields as Recurrent Neural
Networks* (ICCV 2015), read the same iterations as layers of a network: every stage is
differentiable, so gradients reach the unaries (and learnable weights, :class:`CRFasRNN`).

Here the labels are background (0) and the K instances a system predicted (1..K); L = K + 1.

Energy (K&K eq. 1-3), with U the unary and Q the mean-field marginals::

    E(x) = sum_i U_i(x_i) + sum_{i<j} mu(x_i, x_j) k(f_i, f_j)
    k(f_i, f_j) = w_g exp(-|p_i - p_j|^2 / 2 theta_gamma^2)                                  spatial
                + w_b exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)  bilateral
    mu(l, l') = [l != l']                                                                     Potts

p are pixel coordinates (row, column) and I colours in [0, 255] units (as pydensecrf). One
mean-field iteration (K&K Algorithm 1, one short function each below)::

    message passing          m^(k)_i(l) = sum_{j != i} k^(k)(f_i, f_j) Q_j(l)         message_passing
    weighting                m_i(l)     = sum_k w^(k) m^(k)_i(l)                       weight_messages
    compatibility transform  P_i(l)     = sum_l' mu(l, l') m_i(l')                     compatibility_transform
    local update             z_i(l)     = -U_i(l) - P_i(l)                             local_update
    normalise                Q_i(l)     = softmax_l z_i(l)                             normalise

Kernel normalisation (``CRFParams.normalize``): ``"none"`` uses the raw Gaussians above;
``"symmetric"`` (the default, pydensecrf's ``NORMALIZE_SYMMETRIC``) replaces each kernel by
D^-1/2 K D^-1/2 with d_i = sum_j k(i, j) (self included), so a weight w is "w times an average
neighbour" whatever the image size or theta; the sum still skips j = i.

Two ways to run the message passing, same interface (``CRFParams.method``):

* ``exact``: every pixel pair. The spatial kernel is exactly separable (G_H Q G_W^T); the
  bilateral one is an (N, N) matrix per image (N = H*W), so a message is one matrix product. The
  reference; fine up to 64 x 64 (one 64 MB matrix per image there).
* ``fast``: each kernel is cut to a square window of radius ``ceil(truncate * theta)`` (ConvCRF,
  Teichmann & Cipolla 2018): the spatial kernel as two 1-D convolutions, the bilateral one with
  per-pixel, per-offset weights computed once (``F.unfold`` of the image) and a sum of shifted
  marginals per message. On large images each kernel runs on a grid of stride s (sum-pool the
  marginals over s x s blocks, filter there with block-mean colours, bilinear upsample), s the
  smallest that keeps the work per label bounded (``stride=0``; 530 x 500 with the defaults:
  s = 2 for the spatial kernel, 3 for the bilateral one). With s = 1 and a window covering the
  image, ``fast`` equals ``exact``.
* ``auto`` (default): exact up to 64 x 64 pixels, fast above.

Unaries from a :class:`~rsis_lite.systems.Prediction` (:func:`prediction_probabilities`): take the
soft mask m_k of each kept instance (``masks[steps[k]]``), softened by a temperature T on its
logit, m_k <- sigmoid(logit(m_k) / T) (the RIS Figure-3 head saturates: almost every value is
below 0.01 or above 0.99), and build per-pixel label probabilities with ``CRFParams.unary``:

* ``"score"`` (default): P(k) proportional to s_k m_k (s_k the instance's score), P(0) to
  prod_k (1 - m_k).
* ``"sequential"``: instances claim pixels in emission order, as :func:`assemble_labels` does
  (earlier instances win): P(k) = m_k prod_{j<k} (1 - m_j), P(0) = prod_k (1 - m_k); these sum
  to one.
* ``"max"``: P(k) proportional to m_k, P(0) to 1 - max_k m_k.

then mix with a uniform eps, P <- (1 - eps) P / sum P + eps / L, and U = -log P. The refined
label map is the argmax of Q. A Potts prior favours deleting small regions, and the CRF would
delete small leaves the system found; ``keep`` gives an instance left with less than that
fraction of its pixels its original pixels back, so the CRF moves boundaries and leaves the
instance count (and |DiC|) to the system.

Run ``python -m rsis_lite crf-bench`` for timings and ``python -m rsis_lite crf-search
--checkpoint CKPT`` to choose parameters on validation scenes (written to ``CKPT.crf.json``, which
``predict --crf`` and ``evaluate --crf`` read).
"""
from __future__ import annotations

import itertools
import json
import math
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from rsis_lite.data.instances import relabel_sequential, resize_labels
from rsis_lite.errors import ConfigError, DataError
from rsis_lite.fileio import atomic_write_text
from rsis_lite.metrics import image_scores

METHODS = ("auto", "exact", "fast")
NORMALIZATIONS = ("symmetric", "none")
UNARIES = ("sequential", "score", "max")
EXACT_MAX_PIXELS = 64 * 64          # "auto" uses the dense path up to this many pixels
WORK_PER_LABEL = 1 << 21            # "fast", stride 0: window work per label and message (530 x 500 x 8)


# -- parameters ------------------------------------------------------------------------------------
@dataclass
class CRFParams:
    """Every knob of the refinement; plain data (``to_dict`` / ``from_dict``, JSON files).

    The defaults were chosen on 64 x 64 synthetic leaves (seeds 1000 and 2000) for the shipped RIS
    checkpoint by hand-run grids around :data:`DEFAULT_GRID`; thetas are in pixels, so other image
    sizes and data want their own :func:`search_params`.
    """

    w_g: float = 3.0                 # spatial (smoothness) kernel weight
    theta_gamma: float = 3.0         # its width in pixels
    w_b: float = 20.0                # bilateral (appearance) kernel weight
    theta_alpha: float = 3.5         # its spatial width in pixels
    theta_beta: float = 16.0         # its colour width in [0, 255] units
    n_iter: int = 5                  # mean-field iterations
    eps: float = 0.05                # uniform mixed into the label probabilities, in (0, 1]
    temperature: float = 2.0         # mask logits are divided by it before the unaries (> 1 softens)
    keep: float = 0.3                # an instance left with < keep x its pixels gets them back (0: off)
    unary: str = "score"             # sequential | score | max (module docstring)
    normalize: str = "symmetric"     # symmetric | none
    method: str = "auto"             # auto | exact | fast
    truncate: float = 2.5            # fast: window radius = ceil(truncate * theta) pixels
    radius: int = 0                  # fast: > 0 sets both windows' radius in pixels instead
    stride: int = 0                  # fast: grid stride (1 = full resolution), 0 = by image size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "CRF parameters") -> "CRFParams":
        """Build and check; unknown keys are an error (a typo must not fall back to a default)."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a JSON object of CRF parameters, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown CRF parameter(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**d).validate(source)

    def validate(self, source: str = "CRF parameters") -> "CRFParams":
        """Raise :class:`ConfigError` naming the first bad field; return self."""
        def bad(name: str, rule: str) -> ConfigError:
            return ConfigError(f"{source}: {name} must be {rule} (got {getattr(self, name)!r})")

        def number(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(name, "a finite number")
            return float(v)

        for name in ("w_g", "w_b"):
            if not 0 <= number(name) <= 1e4:
                raise bad(name, "in [0, 10000]")
        for name, hi in (("theta_gamma", 1e3), ("theta_alpha", 1e3), ("theta_beta", 1e3), ("temperature", 1e3),
                         ("truncate", 10.0)):
            if not 0 < number(name) <= hi:
                raise bad(name, f"in (0, {hi:g}]")
        if not 0 < number("eps") <= 1:
            raise bad("eps", "in (0, 1]")
        if not 0 <= number("keep") <= 1:
            raise bad("keep", "in [0, 1]")
        for name, hi in (("n_iter", 100), ("radius", 256), ("stride", 64)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                raise bad(name, f"an integer from 0 to {hi}")
        for name, choices in (("unary", UNARIES), ("normalize", NORMALIZATIONS), ("method", METHODS)):
            if getattr(self, name) not in choices:
                raise bad(name, "one of " + ", ".join(choices))
        return self

    def kernel_key(self) -> tuple:
        """The fields the filters depend on (the search builds filters once per key)."""
        return (self.theta_gamma, self.theta_alpha, self.theta_beta, self.normalize, self.method,
                self.truncate, self.radius, self.stride)


def load_params(path: str | Path, flag: str = "--crf-params") -> CRFParams:
    """Read a JSON file of :class:`CRFParams` fields; one-line :class:`ConfigError` naming ``flag``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag} {path} does not exist")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{flag} {path} is not a JSON file of CRF parameters ({e})") from None
    if isinstance(d, dict) and isinstance(d.get("params"), dict):   # a search result file
        d = d["params"]
    try:
        return CRFParams.from_dict(d, source=f"{flag} {path}")
    except TypeError as e:
        raise ConfigError(f"{flag} {path}: {e}") from None


def params_path(checkpoint: str | Path) -> Path:
    """Where :func:`search_params` results for a checkpoint live: ``<checkpoint>.crf.json``."""
    return Path(str(checkpoint) + ".crf.json")


def resolve_params(checkpoint: str | Path | None, params_file: str | Path | None) -> tuple[CRFParams, str]:
    """The parameters ``--crf`` uses and where they came from: ``--crf-params FILE``, else
    ``<checkpoint>.crf.json`` when it exists, else the defaults."""
    if params_file is not None:
        return load_params(params_file, "--crf-params"), str(params_file)
    if checkpoint is not None and params_path(checkpoint).is_file():
        return load_params(params_path(checkpoint), "--crf (parameters next to the checkpoint)"), \
            str(params_path(checkpoint))
    return CRFParams(), "defaults"


# -- kernels: exact, windowed ---------------------------------------------------------------------
class DenseKernel:
    """All pixel pairs, exactly: Q (B, L, H, W) -> sum_{j != i} k~(i, j) Q_j, (B, L, H, W).

    The spatial kernel is separable, K = G_H (x) G_W (Kronecker product of the 1-D Gaussians over
    rows and columns), and so is its symmetric normalisation (d = d_H d_W): K Q = G_H Q G_W^T costs
    N (H + W) per label. The bilateral kernel is an (N, N) matrix per image, normalised and with
    its diagonal removed once, so a message is one matrix product. Built without gradient (the
    kernels are constants of the image).
    """

    def __init__(self, theta_xy: float, image: Tensor | None, theta_c: float, size: tuple[int, int],
                 normalize: str, like: Tensor) -> None:
        h, w = size
        dt, dev = like.dtype, like.device
        self.matrix = None
        with torch.no_grad():
            gy = _gauss_1d(torch.arange(h, dtype=dt, device=dev), theta_xy)   # (H, H)
            gx = _gauss_1d(torch.arange(w, dtype=dt, device=dev), theta_xy)   # (W, W)
            if image is None:
                dy, dx = gy.sum(1), gx.sum(1)                                # (H,), (W,) row sums
                if normalize == "symmetric":
                    gy = gy / (dy[:, None] * dy[None, :]).sqrt()              # D^-1/2 G D^-1/2
                    gx = gx / (dx[:, None] * dx[None, :]).sqrt()
                    self.self_weight = 1.0 / (dy[:, None] * dx[None, :])      # (H, W) k~(i, i)
                else:
                    self.self_weight = torch.ones(h, w, dtype=dt, device=dev)
                self.gy, self.gx = gy, gx
            else:
                self.matrix = _bilateral_matrix(gy, gx, image.to(dt), theta_c, normalize)

    def __call__(self, q: Tensor) -> Tensor:
        b, l, h, w = q.shape
        if self.matrix is None:
            out = self.gy @ q @ self.gx.T                                    # (B, L, H, W) G_H Q G_W^T
            return out - self.self_weight * q
        out = self.matrix @ q.flatten(2).transpose(1, 2)                     # (B, N, L)
        return out.transpose(1, 2).reshape(b, l, h, w)                      # (B, L, H, W)


def _bilateral_matrix(gy: Tensor, gx: Tensor, image: Tensor, theta_c: float, normalize: str) -> Tensor:
    """(B, N, N) bilateral kernel of images (B, C, H, W), normalised, zero diagonal; built in place
    (a 64 x 64 image needs one 64 MB matrix, no temporaries of that size)."""
    b, _, h, w = image.shape
    f = image.flatten(2).transpose(1, 2) / theta_c                          # (B, N, C)
    n2 = f.pow(2).sum(-1)                                                    # (B, N)
    k = f @ f.transpose(1, 2)                                                # (B, N, N)
    k.mul_(-2).add_(n2[:, :, None]).add_(n2[:, None, :]).clamp_(min=0)       # |I_i - I_j|^2 / theta_c^2
    k.mul_(-0.5).exp_()
    k5 = k.view(b, h, w, h, w)                                               # (B, H, W, H, W)
    k5.mul_(gy.view(1, h, 1, h, 1)).mul_(gx.view(1, 1, w, 1, w))             # spatial part: k(i, i) = 1
    if normalize == "symmetric":
        r = k.sum(2).rsqrt()                                                 # (B, N) d_i^-1/2
        k.mul_(r[:, :, None]).mul_(r[:, None, :])
    k.diagonal(dim1=1, dim2=2).zero_()                                       # j != i
    return k


class WindowFilter:
    """A kernel cut to a (2r+1)^2 window, on a grid of stride s: v (B, L, H, W) -> (B, L, H, W).

    s > 1: v is sum-pooled over s x s blocks, filtered on the coarse grid (positions of block
    centres, mean colours of blocks), and bilinearly upsampled; s = 1 is the plain window.
    Without an image the window is separable (two 1-D convolutions). With one, the per-pixel
    weights of every offset are computed once (``F.unfold`` of the image) and each message is a
    sum over offsets of weight x shifted marginals; on a CPU that sum is about 35 times faster than
    unfolding the (B, L, H, W) marginals themselves, and needs no (2r+1)^2 copy of them.
    """

    def __init__(self, theta_xy: float, image: Tensor | None, theta_c: float, size: tuple[int, int],
                 radius: int, stride: int, like: Tensor) -> None:
        self.size, self.s = size, stride
        h, w = size
        self.hc, self.wc = -(-h // stride), -(-w // stride)                  # coarse grid size
        self.r = max(0, min(-(-radius // stride), max(self.hc, self.wc) - 1))  # coarse radius
        d = torch.arange(-self.r, self.r + 1, dtype=like.dtype, device=like.device) * stride
        self.g1 = torch.exp(-0.5 * (d / theta_xy) ** 2)                       # (2r+1,) 1-D spatial weights
        self.weights = None
        if image is not None:
            img = image.to(like.dtype)
            if stride > 1:
                ones = torch.ones_like(img[:, :1])                           # (B, 1, H, W)
                img = self._pool(img) / self._pool(ones).clamp_min(1e-12)    # (B, C, hc, wc) block means
            k = 2 * self.r + 1
            col = F.unfold(img, k, padding=self.r).view(img.shape[0], img.shape[1], k * k, -1)  # (B, C, k*k, n)
            sq = (col - img.flatten(2)[:, :, None, :]).pow(2).sum(1)        # (B, k*k, n) colour distances
            spatial = (self.g1[:, None] * self.g1[None, :]).reshape(1, k * k, 1)  # (1, k*k, 1)
            wts = spatial * torch.exp(-0.5 * sq / theta_c ** 2)             # (B, k*k, n)
            self.weights = wts.view(img.shape[0], k * k, self.hc, self.wc)  # (B, k*k, hc, wc)

    def _pool(self, v: Tensor) -> Tensor:
        """(B, C, H, W) -> block sums (B, C, hc, wc) over s x s blocks (zero padded)."""
        h, w = self.size
        v = F.pad(v, (0, self.wc * self.s - w, 0, self.hc * self.s - h))
        return F.avg_pool2d(v, self.s) * self.s ** 2

    def __call__(self, v: Tensor) -> Tensor:
        b, l, h, w = v.shape
        vc = self._pool(v) if self.s > 1 else v                              # (B, L, hc, wc)
        out = self._separable(vc) if self.weights is None else self._windowed(vc)
        if self.s > 1:
            out = F.interpolate(out, size=(self.hc * self.s, self.wc * self.s), mode="bilinear",
                                align_corners=False)[..., :h, :w]            # (B, L, H, W)
        return out

    def _separable(self, vc: Tensor) -> Tensor:
        """Spatial Gaussian as a row pass then a column pass (depthwise over labels)."""
        l, k = vc.shape[1], self.g1.numel()
        out = F.conv2d(vc, self.g1.view(1, 1, 1, k).expand(l, 1, 1, k), padding=(0, self.r), groups=l)
        return F.conv2d(out, self.g1.view(1, 1, k, 1).expand(l, 1, k, 1), padding=(self.r, 0), groups=l)

    def _windowed(self, vc: Tensor) -> Tensor:
        """sum over window offsets o of weight(i, o) * v(i + o); v is zero outside the image."""
        hc, wc, k = vc.shape[-2], vc.shape[-1], 2 * self.r + 1
        vp = F.pad(vc, (self.r, self.r, self.r, self.r))                    # (B, L, hc+2r, wc+2r)
        out = torch.zeros_like(vc)                                          # (B, L, hc, wc)
        for o in range(k * k):
            dy, dx = divmod(o, k)
            out.addcmul_(vp[:, :, dy:dy + hc, dx:dx + wc], self.weights[:, o:o + 1])  # autograd-safe
        return out


def _gauss_1d(x: Tensor, theta: float) -> Tensor:
    """(n,) coordinates -> (n, n) exp(-(x_i - x_j)^2 / 2 theta^2)."""
    return torch.exp(-0.5 * ((x[:, None] - x[None, :]) / theta) ** 2)


class Kernel:
    """One Gaussian kernel ready for mean-field: Q (B, L, H, W) -> sum_{j != i} k~(i, j) Q_j.

    ``k~`` is the filter's kernel, symmetrically normalised or not (module docstring); the j = i
    term is removed (k(i, i) = 1 before normalisation, 1 / d_i after).
    """

    def __init__(self, filt: Callable[[Tensor], Tensor], normalize: str, like: Tensor) -> None:
        self.filt = filt
        self.scale = None
        self.self_weight: Tensor | float = 1.0
        if normalize == "symmetric":
            b, _, h, w = like.shape
            ones = torch.ones(like.shape[0], 1, h, w, dtype=like.dtype, device=like.device)  # (B, 1, H, W)
            deg = filt(ones).clamp_min(1e-12)                                 # (B or 1, 1, H, W) d_i
            self.scale = deg.rsqrt()                                         # d_i^-1/2
            self.self_weight = 1.0 / deg                                     # k~(i, i)

    def __call__(self, q: Tensor) -> Tensor:
        if self.scale is None:
            return self.filt(q) - q                                          # (B, L, H, W)
        return self.scale * self.filt(self.scale * q) - self.self_weight * q  # (B, L, H, W)


def resolve_method(params: CRFParams, size: tuple[int, int]) -> str:
    """``auto`` -> ``exact`` up to :data:`EXACT_MAX_PIXELS` pixels, else ``fast``."""
    if params.method != "auto":
        return params.method
    return "exact" if size[0] * size[1] <= EXACT_MAX_PIXELS else "fast"


def window_geometry(params: CRFParams, theta: float, size: tuple[int, int], separable: bool) -> tuple[int, int]:
    """(radius in pixels, stride) of one kernel's window for ``fast``.

    The radius is ``params.radius`` or ``ceil(truncate * theta)``. Stride 0 picks the smallest s
    whose work per label, N (2 ceil(r/s) + 1)^q / s^2 (q = 1 twice for the separable spatial
    kernel, q = 2 for the bilateral one), is at most :data:`WORK_PER_LABEL`: full resolution on
    small images, a coarser grid on large ones (530 x 500, theta 3 / 10: s = 2 / 5).
    """
    r = params.radius or math.ceil(params.truncate * theta)
    r = max(1, min(r, max(size) - 1))
    if params.stride:
        return r, params.stride
    n = size[0] * size[1]

    def work(s: int) -> float:
        k = 2 * math.ceil(r / s) + 1
        return n * (2 * k if separable else k * k) / s ** 2

    s = 1
    while work(s) > WORK_PER_LABEL and s < max(size):
        s += 1
    return r, s


def build_kernels(image: Tensor, params: CRFParams, like: Tensor) -> list[Callable[[Tensor], Tensor]]:
    """The spatial and bilateral kernels of one batch: image (B, C, H, W) in [0, 255], ``like`` a
    (B, L, H, W) tensor giving dtype and device. Returns [spatial, bilateral] (weights w_g, w_b)."""
    size = tuple(image.shape[-2:])
    method = resolve_method(params, size)
    kernels: list[Callable[[Tensor], Tensor]] = []
    for theta, img, theta_c in ((params.theta_gamma, None, 1.0), (params.theta_alpha, image, params.theta_beta)):
        if method == "exact":
            kernels.append(DenseKernel(theta, img, theta_c, size, params.normalize, like))
        else:
            r, s = window_geometry(params, theta, size, separable=img is None)
            with torch.no_grad():
                filt = WindowFilter(theta, img, theta_c, size, r, s, like)
                kernels.append(Kernel(filt, params.normalize, like))
    return kernels


# -- mean-field, one stage at a time (K&K Algorithm 1; Zheng et al. 2015, section 4) ---------------
def message_passing(q: Tensor, kernels: Sequence[Callable[[Tensor], Tensor]]) -> Tensor:
    """Q (B, L, H, W) -> (B, M, L, H, W): for each kernel m, sum_{j != i} k^(m)(f_i, f_j) Q_j(l)."""
    return torch.stack([k(q) for k in kernels], dim=1)


def weight_messages(messages: Tensor | Sequence[Tensor], weights: Tensor | Sequence[float]) -> Tensor:
    """M messages ((B, M, L, H, W) or a list of (B, L, H, W)) and M weights -> sum_m w^(m)
    message^(m), (B, L, H, W)."""
    if isinstance(messages, Tensor):
        w = torch.as_tensor(weights, dtype=messages.dtype, device=messages.device)  # (M,)
        return (messages * w.view(1, -1, 1, 1, 1)).sum(1)                      # (B, L, H, W)
    out = messages[0] * weights[0]                                             # (B, L, H, W)
    for m, w in zip(messages[1:], weights[1:]):
        out = out + m * w
    return out


def compatibility_transform(m: Tensor, compat: Tensor | None = None) -> Tensor:
    """(B, L, H, W) -> sum_l' mu(l, l') m(l'), (B, L, H, W).

    ``compat=None`` is Potts, mu(l, l') = [l != l']: the total over labels minus the label's own.
    Otherwise ``compat`` is an (L, L) matrix mu.
    """
    if compat is None:
        return m.sum(1, keepdim=True) - m                                      # (B, L, H, W)
    return torch.einsum("kl,blhw->bkhw", compat.to(m.dtype), m)                # (B, L, H, W)


def local_update(unary: Tensor, pairwise: Tensor) -> Tensor:
    """Energies (B, L, H, W) -> logits -U - P (B, L, H, W)."""
    return -unary - pairwise


def normalise(logits: Tensor, label_mask: Tensor | None = None) -> Tensor:
    """Logits (B, L, H, W) -> marginals Q, a softmax over labels; labels off in ``label_mask``
    (B, L) get Q = 0."""
    if label_mask is not None:
        logits = logits.masked_fill(~label_mask[:, :, None, None], float("-inf"))
    return torch.softmax(logits, dim=1)                                        # (B, L, H, W)


def mean_field_stages(unary: Tensor, kernels: Sequence[Callable[[Tensor], Tensor]],
                      weights: Tensor | Sequence[float], n_iter: int, compat: Tensor | None = None,
                      label_mask: Tensor | None = None) -> Tensor:
    """K&K Algorithm 1 written stage by stage: unary (B, L, H, W) -> marginals Q (B, L, H, W).

    Q starts at softmax(-U); each iteration is message passing, weighting, compatibility
    transform, local update, normalisation. :func:`mean_field` computes the same, faster.
    """
    q = normalise(-unary, label_mask)                                         # (B, L, H, W)
    for _ in range(n_iter):
        messages = message_passing(q, kernels)                               # (B, M, L, H, W)
        pairwise = compatibility_transform(weight_messages(messages, weights), compat)  # (B, L, H, W)
        q = normalise(local_update(unary, pairwise), label_mask)
    return q


def mean_field(unary: Tensor, kernels: Sequence[Callable[[Tensor], Tensor]], weights: Tensor | Sequence[float],
               n_iter: int, compat: Tensor | None = None, label_mask: Tensor | None = None) -> Tensor:
    """:func:`mean_field_stages` without the intermediate copies: unary (B, L, H, W) -> Q.

    Kernels with weight 0 are skipped, and for Potts the compatibility transform is folded into
    the local update: -sum_{l' != l} m(l') = m(l) - sum_l' m(l'), and the last sum is the same for
    every label, so it cancels in the softmax: Q = softmax(m - U). Differentiable in the unary
    (and in tensor weights / compat).
    """
    q = normalise(-unary, label_mask)                                         # (B, L, H, W)
    used = [(k, w) for k, w in zip(kernels, weights) if not (isinstance(w, (int, float)) and w == 0)]
    for _ in range(n_iter):
        if not used:
            break
        m = weight_messages([k(q) for k, _ in used], [w for _, w in used])   # (B, L, H, W)
        if compat is None:
            logits = m - unary                                                # (B, L, H, W)
        else:
            logits = local_update(unary, compatibility_transform(m, compat))
        q = normalise(logits, label_mask)
    return q


# -- the batched tensor-level entry point -----------------------------------------------------------
def _shape(x: Any) -> Any:
    """Shape of a tensor (for messages), else the type's name."""
    return tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__


def _check_inputs(unary: Tensor, image: Tensor, label_mask: Tensor | None) -> None:
    if not isinstance(unary, Tensor) or unary.dim() != 4 or not unary.is_floating_point():
        raise DataError(f"unary must be a float tensor (B, L, H, W), got {_shape(unary)}")
    if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[0] != unary.shape[0] \
            or image.shape[-2:] != unary.shape[-2:]:
        raise DataError(f"image must be (B, C, H, W) = ({unary.shape[0]}, C, {unary.shape[2]}, {unary.shape[3]}) "
                        f"like the unary, got {_shape(image)}")
    if unary.shape[1] < 1 or unary.shape[2] < 1 or unary.shape[3] < 1:
        raise DataError(f"unary must have at least one label and one pixel, got shape {tuple(unary.shape)}")
    if torch.isnan(unary).any() or not torch.isfinite(image).all():
        raise DataError("unary has NaN or image has non-finite values")
    if label_mask is not None and (label_mask.shape != unary.shape[:2] or label_mask.dtype != torch.bool
                                   or not label_mask.any(1).all()):
        raise DataError(f"label_mask must be bool (B, L) = {tuple(unary.shape[:2])} with a label on per image")


def dense_crf(unary: Tensor, image: Tensor, params: CRFParams | None = None, label_mask: Tensor | None = None,
              compat: Tensor | None = None) -> Tensor:
    """Fully connected CRF on a batch: unary (B, L, H, W) energies (-log probabilities), image
    (B, C, H, W) in [0, 255] -> marginals Q (B, L, H, W).

    Runs on the tensors' device, differentiable in ``unary``. ``label_mask`` (B, L) switches off
    padding labels (images with fewer instances in a batch). ``exact`` runs image by image (one
    (N, N) matrix at a time).
    """
    params = (params or CRFParams()).validate()
    _check_inputs(unary, image, label_mask)
    weights = (params.w_g, params.w_b)
    if resolve_method(params, tuple(unary.shape[-2:])) == "exact" and unary.shape[0] > 1:
        return torch.cat([dense_crf(unary[i:i + 1], image[i:i + 1], params,
                                    None if label_mask is None else label_mask[i:i + 1], compat)
                          for i in range(unary.shape[0])])
    kernels = build_kernels(image, params, unary)
    return mean_field(unary, kernels, weights, params.n_iter, compat, label_mask)


class CRFasRNN(nn.Module):
    """The mean-field iterations as a recurrent network with learnable weights (Zheng et al. 2015).

    Unrolls ``params.n_iter`` iterations of :func:`mean_field` with learnable kernel weights
    w_g = softplus(a_g), w_b = softplus(a_b) and a learnable compatibility. Instance ids are
    interchangeable, so an L x L compatibility can only tell apart "same label" (0, the
    reference), "background against an instance" (1: the scale lives in the weights) and "two
    different instances": mu(k, k') = softplus(c) for instances k != k' is the one learnable
    compatibility scalar. At initialisation it is the Potts CRF with ``params``' weights.
    The kernels (thetas) are fixed; they come from ``params`` and the image.
    """

    def __init__(self, params: CRFParams | None = None) -> None:
        super().__init__()
        self.params = (params or CRFParams()).validate()
        inv = lambda w: math.log(math.expm1(max(w, 1e-6)))                   # noqa: E731  softplus^-1
        self.raw_w_g = nn.Parameter(torch.tensor(inv(self.params.w_g)))
        self.raw_w_b = nn.Parameter(torch.tensor(inv(self.params.w_b)))
        self.raw_mu_instances = nn.Parameter(torch.tensor(inv(1.0)))

    def weights(self) -> tuple[Tensor, Tensor]:
        return F.softplus(self.raw_w_g), F.softplus(self.raw_w_b)

    def compatibility(self, n_labels: int) -> Tensor:
        """(L, L): 0 on the diagonal, 1 between background and an instance, softplus(c) between instances."""
        mu = 1 - torch.eye(n_labels, device=self.raw_mu_instances.device)    # (L, L) Potts
        inst = torch.zeros_like(mu)
        inst[1:, 1:] = mu[1:, 1:]
        return mu + inst * (F.softplus(self.raw_mu_instances) - 1)            # (L, L)

    def forward(self, unary: Tensor, image: Tensor, label_mask: Tensor | None = None) -> Tensor:
        """unary (B, L, H, W), image (B, C, H, W) in [0, 255] -> marginals Q (B, L, H, W)."""
        _check_inputs(unary, image, label_mask)
        compat = self.compatibility(unary.shape[1]).to(unary.dtype)
        outs = []
        exact = resolve_method(self.params, tuple(unary.shape[-2:])) == "exact"
        parts = [slice(i, i + 1) for i in range(unary.shape[0])] if exact else [slice(None)]
        for sl in parts:
            kernels = build_kernels(image[sl], self.params, unary[sl])
            outs.append(mean_field(unary[sl], kernels, self.weights(), self.params.n_iter, compat,
                                   None if label_mask is None else label_mask[sl]))
        return torch.cat(outs)


# -- unaries from a Prediction ----------------------------------------------------------------------
def soften(masks: Tensor, temperature: float) -> Tensor:
    """Soft masks (K, H, W) -> sigmoid(logit(m) / T); T = 1 leaves them as they are."""
    if temperature == 1.0:
        return masks
    m = masks.clamp(1e-6, 1 - 1e-6)
    return torch.sigmoid(torch.logit(m) / temperature)


def instance_probabilities(masks: Tensor, scores: Tensor | None = None, mode: str = "sequential",
                           eps: float = 0.05) -> Tensor:
    """Soft masks (K, H, W) of instances in emission order -> label probabilities (K+1, H, W),
    background first, mixed with a uniform ``eps`` (module docstring for ``mode``)."""
    masks = masks.clamp(0, 1)
    if masks.shape[0] == 0:
        return torch.ones(1, *masks.shape[1:], dtype=masks.dtype, device=masks.device)  # background only
    if mode == "sequential":
        free = torch.cumprod(torch.cat([torch.ones_like(masks[:1]), 1 - masks]), 0)  # (K+1, H, W) unclaimed
        p = torch.cat([free[-1:], masks * free[:-1]])                         # (K+1, H, W)
    elif mode == "score":
        s = torch.ones(masks.shape[0]) if scores is None else torch.as_tensor(scores)
        fg = masks * s.to(masks).view(-1, 1, 1)                               # (K, H, W)
        p = torch.cat([torch.prod(1 - masks, 0, keepdim=True), fg])          # (K+1, H, W)
    elif mode == "max":
        bg = 1 - masks.max(0, keepdim=True).values if masks.shape[0] else torch.ones_like(masks[:1])
        p = torch.cat([bg, masks])                                            # (K+1, H, W)
    else:
        raise ConfigError(f"unary must be one of {', '.join(UNARIES)} (got {mode!r})")
    p = p / p.sum(0, keepdim=True).clamp_min(1e-12)
    return (1 - eps) * p + eps / p.shape[0]                                  # (K+1, H, W)


def prediction_probabilities(pred, params: CRFParams) -> Tensor:
    """A :class:`Prediction` -> label probabilities (K+1, H, W) from its kept instances' soft masks."""
    steps = torch.as_tensor(np.asarray(pred.steps, dtype=np.int64))
    masks = soften(pred.masks[steps].float(), params.temperature)             # (K, H, W)
    return instance_probabilities(masks, torch.as_tensor(np.asarray(pred.scores, dtype=np.float32)),
                                  params.unary, params.eps)


def _check_image(image: Tensor, size: tuple[int, int], name: str = "image") -> Tensor:
    """(3, H, W) or (B, 3, H, W) float in [0, 1] -> [0, 255]; one-line error naming ``name``."""
    if not isinstance(image, Tensor) or image.shape[-2:] != size or image.dim() not in (3, 4):
        raise DataError(f"{name} must be ([B,] C, H, W) at the masks' size {size}, got {_shape(image)}")
    if not image.is_floating_point() or not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise DataError(f"{name} must be float in [0, 1] (as the datasets give it)")
    return image.float() * 255.0


def refine_predictions(preds: Sequence, images: Tensor, params: CRFParams | None = None) -> list:
    """Refine a batch: Predictions and their images (B, 3, H, W) in [0, 1] -> new Predictions.

    Labels are the argmax of the CRF marginals (0 background, instance ids in emission order,
    re-sequentialised when an instance vanishes); ``scores``, ``steps`` and ``classes`` keep only the
    surviving instances; ``masks`` and ``conf`` are unchanged. Runs on ``images``' device; labels
    come back on the CPU like the systems' own.
    """
    params = (params or CRFParams()).validate()
    if len(preds) == 0:
        return []
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] != len(preds):
        raise DataError(f"images must be (B, 3, H, W) with B = {len(preds)} predictions, got {_shape(images)}")
    size = tuple(preds[0].masks.shape[-2:])
    img = _check_image(images, size, "images")                               # (B, C, H, W) in [0, 255]
    todo = [i for i, p in enumerate(preds) if len(p.steps) > 0]
    out = list(preds)
    if not todo:
        return out
    probs = [prediction_probabilities(preds[i], params) for i in todo]        # each (K_i+1, H, W)
    lmax = max(p.shape[0] for p in probs)
    unary = torch.full((len(todo), lmax, *size), 1e4, device=images.device)   # (B', L, H, W)
    mask = torch.zeros(len(todo), lmax, dtype=torch.bool, device=images.device)
    for j, p in enumerate(probs):
        unary[j, :p.shape[0]] = -torch.log(p.to(images.device))
        mask[j, :p.shape[0]] = True
    q = dense_crf(unary, img[todo], params, label_mask=mask)                  # (B', L, H, W)
    hard = q.argmax(1).cpu()                                                 # (B', H, W)
    for j, i in enumerate(todo):
        out[i] = _with_labels(preds[i], hard[j], probs[j].shape[0] - 1, params.keep)
    return out


def keep_instances(new: Tensor, old: Tensor, k: int, keep: float) -> Tensor:
    """Give an instance back its original pixels when the CRF left it fewer than ``keep`` times
    as many: label maps (H, W) with ids 0..k -> (H, W). The CRF then moves boundaries but does not
    delete instances that the system found (a Potts prior favours deleting small ones)."""
    if keep <= 0:
        return new
    a0 = torch.bincount(old.flatten(), minlength=k + 1)[:k + 1]               # (k+1,) areas before
    a1 = torch.bincount(new.flatten(), minlength=k + 1)[:k + 1]               # (k+1,) after
    back = (a1 < keep * a0) & (a0 > 0)                                        # (k+1,)
    back[0] = False
    return torch.where(back[old], old, new)                                   # (H, W)


def _with_labels(pred, labels: Tensor, k: int, keep: float = 0.0):
    """The Prediction with a new label map, keeping only instances still present."""
    labels = keep_instances(labels, pred.labels.to(labels.device), k, keep).cpu()   # (H, W) ids 0..k
    present = torch.unique(labels)
    idx = present[present > 0].numpy().astype(np.int64) - 1                  # surviving instances, in order
    labels = relabel_sequential(labels)                                       # ids 1..K' in the same order
    classes = None if pred.classes is None else np.asarray(pred.classes)[idx]
    return pred._replace(labels=labels, scores=np.asarray(pred.scores)[idx],
                         steps=np.asarray(pred.steps)[idx], classes=classes)


def refine_prediction(pred, image: Tensor, params: CRFParams | None = None) -> Tensor:
    """One Prediction and its image (3, H, W) in [0, 1] -> refined label map (H, W) int64."""
    if not isinstance(image, Tensor) or image.dim() != 3:
        raise DataError(f"image must be (3, H, W), got {_shape(image)}")
    return refine_predictions([pred], image[None], params)[0].labels


# -- parameter search on validation scenes ---------------------------------------------------------
DEFAULT_GRID: dict[str, list] = {      # 54 points around the defaults (9 kernel settings)
    "theta_alpha": [2.5, 3.5, 5.0],
    "theta_beta": [12.0, 16.0, 24.0],
    "w_b": [10.0, 20.0, 30.0],
    "temperature": [1.0, 2.0],
}


def grid_points(grid: dict[str, Sequence] | Sequence[CRFParams] | None, base: CRFParams) -> list[CRFParams]:
    """A grid (field -> values, all combinations) or an explicit list -> checked CRFParams."""
    if grid is None:
        grid = DEFAULT_GRID
    if isinstance(grid, dict):
        unknown = sorted(set(grid) - {f.name for f in fields(CRFParams)})
        if unknown:
            raise ConfigError(f"grid: unknown CRF parameter(s) {', '.join(unknown)}")
        keys = list(grid)
        return [CRFParams(**{**base.to_dict(), **dict(zip(keys, vals))}).validate("grid")
                for vals in itertools.product(*(list(grid[k]) for k in keys))]
    return [p.validate("grid") for p in grid]


def search_params(system, dataset, grid: dict[str, Sequence] | Sequence[CRFParams] | None = None,
                  device: torch.device | str = "cpu", max_steps: int = 30,
                  base: CRFParams | None = None, batch_size: int = 16, history: list | None = None,
                  progress: bool = False) -> CRFParams:
    """Choose CRF parameters for ``system`` on ``dataset`` (validation scenes, never the scored ones).

    Every image is predicted once; each grid point refines every prediction and is scored by mean
    SBD. The winner has the highest SBD among the points whose mean |DiC| is no worse than without
    the CRF (among all points when none is). ``history`` (a list) receives one dict per point, the
    first for "no CRF". Filters are built once per image and kernel setting.
    """
    base = base or CRFParams()
    points = grid_points(grid, base)
    if len(dataset) == 0:
        raise DataError("search_params: the dataset is empty")
    system.eval()
    samples = [dataset[i] for i in range(len(dataset))]
    preds, images, gts = [], [], []
    with torch.no_grad():
        for s in range(0, len(samples), batch_size):
            ims = torch.stack([it[0] for it in samples[s:s + batch_size]]).to(device)   # (b, 3, H, W)
            preds += system.predict(ims, max_steps=max_steps)
            images += list(ims)
    gts = [it[1].numpy() for it in samples]

    def score(labels: list[np.ndarray]) -> dict[str, float]:
        per = [image_scores(_fit(lab, g), g) for lab, g in zip(labels, gts)]
        return {"SBD": float(np.mean([p["SBD"] for p in per])),
                "abs_DiC": float(np.mean([p["abs_DiC"] for p in per]))}

    base_score = score([p.labels.numpy() for p in preds])
    rows = [{"params": None, **base_score}]
    refined: dict[int, list] = {j: [None] * len(preds) for j in range(len(points))}
    groups: dict[tuple, list[int]] = {}
    for j, p in enumerate(points):
        groups.setdefault(p.kernel_key(), []).append(j)
    with torch.no_grad():
        for i in tqdm(range(len(preds)), disable=not progress, desc="crf search"):
            for idx in groups.values():
                _refine_group(preds[i], images[i], [points[j] for j in idx], idx, refined, i)
    for j, p in enumerate(points):
        rows.append({"params": p.to_dict(), **score([r.labels.numpy() for r in refined[j]])})
    ok = [r for r in rows[1:] if r["abs_DiC"] <= base_score["abs_DiC"] + 1e-9] or rows[1:]
    best = max(ok, key=lambda r: (r["SBD"], -r["abs_DiC"]))
    if history is not None:
        history.extend(rows)
    return CRFParams.from_dict(best["params"])


def _refine_group(pred, image: Tensor, points: list[CRFParams], idx: list[int], refined: dict, i: int) -> None:
    """Refine one prediction with grid points that share kernels (unaries cached per setting)."""
    if len(pred.steps) == 0:
        for j in idx:
            refined[j][i] = pred
        return
    unaries: dict[tuple, Tensor] = {}
    kernels = None
    for j, p in zip(idx, points):
        key = (p.temperature, p.unary, p.eps)
        if key not in unaries:
            unaries[key] = -torch.log(prediction_probabilities(pred, p).to(image.device))[None]  # (1, L, H, W)
        u = unaries[key]
        if kernels is None:
            kernels = build_kernels(image[None].float() * 255.0, p, u)
        q = mean_field(u, kernels, (p.w_g, p.w_b), p.n_iter)                    # (1, L, H, W)
        refined[j][i] = _with_labels(pred, q.argmax(1)[0].cpu(), u.shape[1] - 1, p.keep)


def _fit(labels: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resize of a label map to the ground truth's size (no-op when equal)."""
    if labels.shape == gt.shape:
        return labels
    return resize_labels(torch.as_tensor(labels), tuple(gt.shape)).numpy()


def save_search(path: str | Path, best: CRFParams, history: list[dict], info: dict[str, Any]) -> Path:
    """Write a search result: ``{"params": best, "search": {...}}`` (:func:`load_params` reads it)."""
    path = Path(path)
    top = sorted(history[1:], key=lambda r: (-r["SBD"], r["abs_DiC"]))[:10]
    doc = {"params": best.to_dict(),
           "search": {**info, "without_crf": {k: history[0][k] for k in ("SBD", "abs_DiC")},
                      "points": len(history) - 1, "best_10": top}}
    atomic_write_text(path, json.dumps(doc, indent=1))
    return path


# -- timings ----------------------------------------------------------------------------------------
def _bench_inputs(h: int, w: int, labels: int, device: str = "cpu") -> tuple[Tensor, Tensor]:
    """A blob scene: unary (1, L, H, W) from noisy one-hot labels, image (1, 3, H, W) in [0, 255]."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    lab = torch.zeros(h, w, dtype=torch.int64)
    for k in range(1, labels):
        cy, cx, r = torch.rand(3, generator=g) * torch.tensor([h, w, 0.25 * min(h, w)])
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < (r + 2) ** 2] = k
    colours = torch.rand(labels, 3, generator=g) * 255
    image = (colours[lab].permute(2, 0, 1) + 20 * torch.randn(3, h, w, generator=g)).clamp(0, 255)
    p = torch.rand(labels, h, w, generator=g) + 0.5 * F.one_hot(lab, labels).permute(2, 0, 1)
    unary = -torch.log(p / p.sum(0, keepdim=True))
    return unary[None].to(device), image[None].to(device)


def _bench_one(method: str, h: int, w: int, labels: int, n_iter: int, threads: int, device: str) -> dict:
    """Time one refinement (best of 3 after a first, cold, run) and its peak memory increase."""
    torch.set_num_threads(threads)
    unary, image = _bench_inputs(h, w, labels, device)
    params = CRFParams(method=method, n_iter=n_iter)
    sync = torch.cuda.synchronize if unary.is_cuda else (lambda: None)
    if unary.is_cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(4):
        t = time.perf_counter()
        dense_crf(unary, image, params)
        sync()
        times.append(time.perf_counter() - t)
    if unary.is_cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024    # KiB -> MiB
    return {"method": method, "size": f"{h}x{w}", "labels": labels, "n_iter": n_iter, "threads": threads,
            "cold_s": round(times[0], 4), "time_s": round(min(times[1:]), 4), "peak_mib": round(peak, 1)}


def benchmark(sizes: Sequence[int] = (16, 32, 48, 64), labels: int = 21, n_iter: int = 5, threads: int = 1,
              large: tuple[int, int] | None = (530, 500), device: str = "cpu",
              print_fn: Callable[[str], None] = print) -> list[dict]:
    """Print and return a table: exact vs fast at ``sizes`` (square), and fast at ``large``.

    Each row runs in a fresh process (so its peak resident memory is its own); time is the best of
    three runs after a cold one, kernel building included; peak is the rise in resident memory
    (CPU) or in allocated memory (CUDA) over the inputs.
    """
    jobs = [(m, s, s) for s in sizes for m in ("exact", "fast")]
    if large:
        jobs.append(("fast", *large))
    rows = []
    print_fn(f"dense CRF, {labels} labels, {n_iter} iterations, {threads} thread(s), {device}")
    print_fn(f"{'size':>9} {'method':>6} {'time s':>8} {'cold s':>8} {'peak MiB':>9}")
    for method, h, w in jobs:
        code = (f"import json, rsis_lite.crf as c; print(json.dumps(c._bench_one({method!r}, {h}, {w}, {labels}, "
                f"{n_iter}, {threads}, {device!r})))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print_fn(f"{h}x{w} {method}: failed ({res.stderr.strip().splitlines()[-1] if res.stderr else '?'})")
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print_fn(f"{row['size']:>9} {method:>6} {row['time_s']:>8.3f} {row['cold_s']:>8.3f} {row['peak_mib']:>9.1f}")
    return rows


if __name__ == "__main__":   # the old entry point: forwards to the one command layer
    from rsis_lite.commands import forward_old_entry_point

    sys.exit(forward_old_entry_point("rsis_lite.crf", {"bench": "crf-bench", "search": "crf-search"}))
