"""Ren & Zemel's recurrent attention: the filter bank, the soft box, the losses, the schedules,
per-step batch norm, the canvas feeding, inference post-processing, exact resume and the CLI.

Every check compares with an independent computation: explicit sums of the Gaussian formula written
out, ``grid_sample``, hand-computed numbers, brute force over t, label maps written by hand.
"""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsis_lite.commands import main
from rsis_lite.config import get_profile
from rsis_lite.data import SyntheticLeaves, collate_instances
from rsis_lite.data.io import read_label
from rsis_lite.errors import ConfigError, RsisError
from rsis_lite.metrics import image_scores
from rsis_lite.nn.attention import (FilterBank, filter_bank, gaussian_filters, read_patch, sigma2_from_size,
                                    soft_box, write_patch)
from rsis_lite.systems import build, get_system
from rsis_lite.systems.attention import (Attention, AttentionConfig, AttentionTrainConfig, CanvasFeed,
                                         gt_feed_probability, monotone_score_loss, padded_boxes,
                                         scaled_schedule, step_generator)
from rsis_lite.data.instances import sort_masks_by_area
from rsis_lite.nn.stepnorm import StepBatchNorm
from rsis_lite.train import BatchSource, Trainer

torch.set_default_dtype(torch.float32)


def gauss(a: float, mu: float, s2: float) -> float:
    """N(a; mu, s2), written out."""
    return math.exp(-(a - mu) ** 2 / (2 * s2)) / math.sqrt(2 * math.pi * s2)


def centre(ctr: float, size: float, n: int, i: int) -> float:
    """mu_i = ctr + (size + 1) / F * (i - (F - 1) / 2), written out."""
    return ctr + (size + 1) / n * (i - (n - 1) / 2)


def explicit_filters(ctr, size, s2, n, length) -> np.ndarray:
    """(length, F) from scalar loops over the formula."""
    return np.array([[gauss(a, centre(ctr, size, n, i), s2) for i in range(n)] for a in range(length)])


def bank_for(ctr, size, s2, n, shape) -> FilterBank:
    """The same box along both axes (tests take fy from one call and fx from another)."""
    t = lambda v: torch.tensor([[v, v]], dtype=torch.float64)  # noqa: E731
    return filter_bank(t(ctr), t(size), t(s2), n, shape)


# -- the filter bank -------------------------------------------------------------------------------
def test_filters_are_the_gaussian_formula():
    got = gaussian_filters(torch.tensor([3.3, 6.0]), torch.tensor([5.0, 2.5]), torch.tensor([0.7, 1.9]), 4, 11)
    for b, (c, s, v) in enumerate([(3.3, 5.0, 0.7), (6.0, 2.5, 1.9)]):
        assert np.allclose(got[b].numpy(), explicit_filters(c, s, v, 4, 11), rtol=1e-5, atol=1e-7)
    assert float(sigma2_from_size(torch.tensor([12.0]), 4)) == 3.0          # sigma^2 = size / F


def test_read_and_write_are_explicit_sums():
    rng = np.random.default_rng(0)
    h, w, n = 7, 9, 4
    x = rng.normal(size=(2, 3, h, w))
    y = rng.normal(size=(2, 3, n, n))
    ctr = torch.tensor([[3.1, 4.2], [2.0, 6.5]], dtype=torch.float64)
    size = torch.tensor([[4.0, 6.0], [3.0, 2.5]], dtype=torch.float64)
    s2 = torch.tensor([[0.8, 1.5], [0.6, 0.9]], dtype=torch.float64)
    bank = filter_bank(ctr, size, s2, n, (h, w))
    patch = read_patch(torch.as_tensor(x), bank).numpy()
    image = write_patch(torch.as_tensor(y), bank).numpy()
    for b in range(2):
        fy = explicit_filters(*[float(v[b, 0]) for v in (ctr, size, s2)], n, h)
        fx = explicit_filters(*[float(v[b, 1]) for v in (ctr, size, s2)], n, w)
        for c in range(3):
            for i in range(n):
                for j in range(n):   # patch[i, j] = sum_a sum_b F_Y[a, i] X[a, b] F_X[b, j]
                    want = sum(fy[a, i] * x[b, c, a, bb] * fx[bb, j] for a in range(h) for bb in range(w))
                    assert patch[b, c, i, j] == pytest.approx(want, rel=1e-9, abs=1e-12)
            for a in range(h):
                for bb in range(w):  # image[a, b] = sum_i sum_j F_Y[a, i] y[i, j] F_X[b, j]
                    want = sum(fy[a, i] * y[b, c, i, j] * fx[bb, j] for i in range(n) for j in range(n))
                    assert image[b, c, a, bb] == pytest.approx(want, rel=1e-9, abs=1e-12)


def _grid_sample_at(x: torch.Tensor, mu_y: np.ndarray, mu_x: np.ndarray, mode: str) -> torch.Tensor:
    """x (1, C, H, W) sampled at the grid mu_y x mu_x (pixel coordinates) -> (1, C, F, F)."""
    h, w = x.shape[-2:]
    gy = torch.as_tensor(2 * mu_y / (h - 1) - 1, dtype=x.dtype)
    gx = torch.as_tensor(2 * mu_x / (w - 1) - 1, dtype=x.dtype)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None]   # (1, F, F, 2) as (x, y)
    return F.grid_sample(x, grid, mode=mode, align_corners=True)


def test_read_with_a_tiny_sigma_samples_the_pixels_like_grid_sample():
    """Centres on whole pixels and sigma^2 = 0.01: each filter sees one pixel, weighted by the
    normalisation 1 / sqrt(2 pi sigma^2) per axis."""
    torch.manual_seed(0)
    x = torch.rand(1, 2, 16, 20, dtype=torch.float64)
    n, s2 = 4, 0.01
    ctr_y, size_y, ctr_x, size_x = 6.0, 2 * n - 1.0, 9.5, 3 * n - 1.0     # spacings 2 and 3 pixels
    bank = FilterBank(bank_for(ctr_y, size_y, s2, n, (16, 20)).fy, bank_for(ctr_x, size_x, s2, n, (16, 20)).fx)
    mu_y = np.array([centre(ctr_y, size_y, n, i) for i in range(n)])
    mu_x = np.array([centre(ctr_x, size_x, n, i) for i in range(n)])
    assert np.allclose(mu_y, [3, 5, 7, 9]) and np.allclose(mu_x, [5, 8, 11, 14])
    want = _grid_sample_at(x, mu_y, mu_x, "nearest") / (2 * math.pi * s2)
    assert torch.allclose(read_patch(x, bank), want, rtol=1e-6, atol=1e-9)


def test_read_of_a_smooth_image_is_bilinear_sampling_at_the_centres():
    """sigma = 0.6 px at sub-pixel centres: the Gaussian-weighted sums are the image at mu (up to
    a blur of a few per cent on this smooth image), as bilinear grid_sample gives it."""
    a = torch.arange(24, dtype=torch.float64)
    img = torch.sin(0.3 * a)[:, None] + torch.cos(0.25 * a)[None, :] + 0.02 * a[:, None]   # (24, 24)
    x = torch.stack([img, img.T])[None]                                                # (1, 2, 24, 24)
    n, s2 = 6, 0.36
    ctr, size = (11.3, 12.7), (9.0, 13.0)
    bank = FilterBank(bank_for(ctr[0], size[0], s2, n, (24, 24)).fy, bank_for(ctr[1], size[1], s2, n, (24, 24)).fx)
    mu_y = np.array([centre(ctr[0], size[0], n, i) for i in range(n)])
    mu_x = np.array([centre(ctr[1], size[1], n, i) for i in range(n)])
    want = _grid_sample_at(x, mu_y, mu_x, "bilinear")
    got = read_patch(x, bank)
    assert (got - want).abs().max() < 0.03
    assert (got - want).abs().max() < 0.1 * (want - want.mean()).abs().max()   # far from a constant


def test_read_then_write_of_the_full_image_box_is_identity_up_to_blur():
    """The box the untrained model starts with (centre H/2, size H, sigma^2 = size / F, F = H) covers
    the image with one filter per (H + 1) / F pixels. By Poisson summation
    sum_i N(a; mu_i, s^2) N(a'; mu_i, s^2) = N(a - a'; 0, 2 s^2) / spacing, so write(read(X)) is X
    blurred by a Gaussian of variance 2 sigma^2 and scaled by 1 / spacing^2 (the unnormalised
    spacing): a smooth image comes back almost unchanged, a random one blurred."""
    h = n = 32
    a = torch.arange(h, dtype=torch.float64)
    smooth = (torch.sin(0.1 * a + 0.3)[:, None] * torch.cos(0.08 * a)[None, :])[None, None]
    c = torch.tensor([[h / 2.0, h / 2.0]], dtype=torch.float64)
    s = torch.tensor([[float(h), float(h)]], dtype=torch.float64)
    s2 = sigma2_from_size(s, n)
    bank = filter_bank(c, s, s2, n, (h, h))
    spacing = (h + 1) / n
    back = write_patch(read_patch(smooth, bank), bank) * spacing ** 2
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    assert (back - smooth)[inner].abs().max() < 0.03
    noise = torch.randn(1, 1, h, h, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    blurred = write_patch(read_patch(noise, bank), bank) * spacing ** 2
    var = 2 * float(s2[0, 0])
    k = torch.tensor([math.exp(-d * d / (2 * var)) for d in range(-6, 7)], dtype=torch.float64)
    k = k / k.sum()                                                   # a separable Gaussian blur
    expect = F.conv2d(F.conv2d(noise, k.view(1, 1, -1, 1), padding=(6, 0)), k.view(1, 1, 1, -1), padding=(0, 6))
    assert (blurred - expect)[inner].abs().max() < 1e-3
    assert (blurred - noise)[inner].abs().max() > 0.5                 # blurred: not the identity


def test_soft_box_by_hand():
    """F = 2, centre (1.5, 2), size (1, 2), sigma^2 (0.5, 1), gain 12: the filter centres are
    (1, 2) along y and (1.25, 2.75) along x, so by hand
    F_Y 1 at row 1 = (1 + e^-1) / sqrt(pi), F_X 1 at column 2 = 2 e^(-9/32) / sqrt(2 pi)."""
    bank = FilterBank(bank_for(1.5, 1.0, 0.5, 2, (4, 4)).fy, bank_for(2.0, 2.0, 1.0, 2, (4, 4)).fx)
    box = soft_box(bank, torch.tensor([12.0], dtype=torch.float64))[0]
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    fy_row1 = (1 + math.exp(-1)) / math.sqrt(math.pi)
    fx_col2 = 2 * math.exp(-9 / 32) / math.sqrt(2 * math.pi)
    fx_col1 = (math.exp(-1 / 32) + math.exp(-49 / 32)) / math.sqrt(2 * math.pi)
    assert float(box[1, 2]) == pytest.approx(sig(12 * fy_row1 * fx_col2 - 5), rel=1e-9)
    assert float(box[1, 2]) == pytest.approx(0.64048, abs=1e-4)
    assert float(box[1, 1]) == pytest.approx(sig(12 * fy_row1 * fx_col1 - 5), rel=1e-9)
    assert float(box[2, 2]) == pytest.approx(float(box[1, 2]), rel=1e-9)   # rows 1 and 2 are symmetric
    assert float(box[0, 0]) < 0.05                                         # far from the box: sigmoid(~-5)


def test_soft_box_with_a_large_gain_is_the_box():
    h = w = 40
    s = torch.tensor([[20.0, 10.0]])
    bank = filter_bank(torch.tensor([[20.0, 10.0]]), s, sigma2_from_size(s, 16), 16, (h, w))
    box = soft_box(bank, torch.tensor([100.0]))[0]
    assert box[12:28, 7:14].min() > 0.99 and box[:5].max() < 0.01 and box[:, 18:].max() < 0.01


# -- losses and schedules --------------------------------------------------------------------------
def test_monotone_score_loss_is_its_formula_by_brute_force():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, dtype=torch.float64) * 2
    target = (torch.rand(3, 6) > 0.5).double()
    got = monotone_score_loss(logits, target)
    s = torch.sigmoid(logits).tolist()
    total = 0.0
    for b in range(3):
        for t in range(6):
            lo = min(s[b][: t + 1])                                # min over t' <= t
            hi = max(s[b][t:])                                     # max over t' >= t
            total += -target[b, t].item() * math.log(lo) - (1 - target[b, t].item()) * math.log(1 - hi)
    assert float(got) == pytest.approx(total / 18, rel=1e-10)


def test_monotone_score_loss_punishes_a_late_high_score():
    """An off step followed by a confident step costs more than the same off step alone: the max
    over t' >= t sees the future."""
    target = torch.tensor([[1.0, 0.0, 0.0]])
    calm = monotone_score_loss(torch.tensor([[3.0, -3.0, -3.0]]), target)
    late = monotone_score_loss(torch.tensor([[3.0, -3.0, 3.0]]), target)
    assert float(late) > float(calm) + 1.0


def test_scheduled_sampling_probability():
    off, per = 3000, 700
    for step, t, want in [(0, 0, 1.0), (3000, 0, 1.0), (3700, 0, 0.5), (5100, 0, 0.125),
                          (3700, 1, min(1, 0.5 * (1 + math.log(4)))), (5100, 1, 0.125 * (1 + math.log(4))),
                          (5100, 5, min(1, 0.125 * (1 + math.log(16)))), (10000, 8, 0.5 ** 10 * (1 + math.log(25)))]:
        assert gt_feed_probability(step, t, off, per) == pytest.approx(want, rel=1e-12), (step, t)
    assert scaled_schedule(30_000) == (3000, 700.0)                 # the authors' CVPPP schedule
    off, per = scaled_schedule(3000)
    assert off == 300 and per == pytest.approx(70.0)


def test_padded_boxes_by_hand():
    m = torch.zeros(1, 2, 40, 30)
    m[0, 0, 10:20, 5:10] = 1          # 10 rows, 5 columns
    box = padded_boxes(m, 0.2, (1.0, 3.0))
    want = torch.zeros(40, 30)
    want[8:22, 2:13] = 1              # rows padded max(2, 1) = 2, columns max(1, 3) = 3
    assert torch.equal(box[0, 0], want) and box[0, 1].sum() == 0
    m2 = torch.zeros(1, 1, 12, 12)
    m2[0, 0, 0:2, 9:12] = 1
    assert torch.equal(padded_boxes(m2, 0.2, (4.0, 4.0))[0, 0].nonzero().amin(0), torch.tensor([0, 5]))  # clipped


def test_sort_by_area_puts_the_largest_first():
    m = torch.zeros(1, 3, 8, 8)
    m[0, 0, :2, :2] = 1
    m[0, 1, 2:, :] = 1
    sorted_m = sort_masks_by_area(m)
    assert torch.equal(sorted_m[0, 0], m[0, 1]) and torch.equal(sorted_m[0, 1], m[0, 0]) and sorted_m[0, 2].sum() == 0


# -- the model -------------------------------------------------------------------------------------
def tiny_model(seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return build("attention", Attention.tiny())


def scenes(n: int = 2, size: int = 24, seed: int = 1):
    ds = SyntheticLeaves(n, size=size, seed=seed, min_leaves=2, max_leaves=3)
    return collate_instances([ds[i] for i in range(n)])


def test_batch_norm_statistics_are_separate_per_step():
    bn = StepBatchNorm(3, steps=2)
    bn.train()
    g = torch.Generator().manual_seed(0)
    bn(torch.randn(8, 3, 5, 5, generator=g), 0)                       # step 0: mean 0, var 1
    bn(torch.randn(8, 3, 5, 5, generator=g) * 3 + 5, 1)               # step 1: mean 5, var 9
    m0, m1 = bn.norms[0].running_mean.clone(), bn.norms[1].running_mean.clone()
    assert torch.allclose(m0, torch.zeros(3), atol=0.05) and torch.allclose(m1, torch.full((3,), 0.5), atol=0.05)
    bn(torch.full((4, 3, 2, 2), 7.0), 5)                              # past the last set: reuses step 1's
    assert torch.allclose(bn.norms[1].running_mean, 0.9 * m1 + 0.7) and torch.equal(bn.norms[0].running_mean, m0)
    # in the system: the box CNN's first BN, fed images of different statistics at steps 0 and 1
    model = tiny_model()
    model.train()
    x = torch.rand(4, 4, 24, 24)
    model.box_net.features(x, 0)
    model.box_net.features(x * 10 + 3, 1)
    norms = model.box_net.cnn.norms[0].norms
    assert not torch.allclose(norms[0].running_mean, norms[1].running_mean, rtol=0.5)
    assert torch.equal(norms[2].running_mean, torch.zeros_like(norms[2].running_mean))   # untouched


def test_lstm_restarts_every_step_and_the_canvas_is_the_only_memory():
    """Step t of an unroll equals a fresh step on the canvas that step saw; the canvas carries no gradient."""
    model = tiny_model().eval()
    image = scenes()["image"]
    with torch.no_grad():
        out = model(image, steps=3)
        for t in range(3):
            alone = model.step(image, out.canvas[:, t], t)
            assert torch.allclose(alone.mask, out.masks[:, t], atol=1e-6)
            assert torch.allclose(alone.score_logit, out.score_logits[:, t], atol=1e-6)
        assert torch.allclose(out.canvas[:, 2], torch.maximum(out.masks[:, 0], out.masks[:, 1]))
    model.train()
    out = model(image, steps=3)
    assert not out.canvas.requires_grad and out.masks.requires_grad
    first = model.step(image, torch.zeros(2, 24, 24), 0).mask          # gradient stopped at the canvas
    second = model.step(image, first, 1).mask
    assert torch.autograd.grad(second.sum(), first, allow_unused=True)[0] is None
    assert model.box_net.lstm.bias_ih[8:16].eq(1).all()                 # forget-gate bias 1 (8 units)


def test_ground_truth_feeding_never_picks_an_instance_twice():
    """With p_gt = 1 the canvas receives each real instance exactly once, noisy (y * (1 - U(0, 0.3))),
    then nothing more (box stage) or the prediction (full stage)."""
    model = tiny_model()
    batch = scenes(2)
    counts = batch["counts"]
    gt = sort_masks_by_area(batch["masks"])
    valid = torch.arange(gt.shape[1])[None] < counts[:, None]
    boxes = padded_boxes(gt, 0.2, (1.0, 1.0))
    steps = int(counts.max()) + 2
    for with_mask in (False, True):
        feed = CanvasFeed(gt, valid, boxes, [1.0] * steps, 0.3, step_generator(0, 7))
        out = model.unroll(batch["image"], steps, feed=feed, with_mask=with_mask)
        for b in range(2):
            n = int(counts[b])
            assert out.fed_gt[b].tolist() == [True] * n + [False] * (steps - n)
            final = out.canvas[b, n]                          # the canvas after n feeds
            inst = gt[b, :n].sum(0) > 0
            assert final[inst].min() >= 0.7 - 1e-6 and final[inst].max() <= 1.0
            if not with_mask:                                 # only ground truth, then nothing more
                assert final[~inst].max() == 0
                assert all(torch.equal(out.canvas[b, t], final) for t in range(n, steps))


def test_training_randomness_is_a_function_of_seed_and_step():
    model = tiny_model()
    batch = scenes(2)
    _, cfg = Attention.recipe("quick", {"max_instances": 3}, steps=100)
    cfg.ss_offset, cfg.ss_period = 0, 5.0               # mixed feeding: the random draws matter
    step = cfg.box_steps + 5
    a, la = model.loss(batch, step, cfg)
    torch.rand(100)                                     # the global RNG does not enter
    b, lb = model.loss(batch, step, cfg)
    assert torch.equal(a, b) and la == lb
    draw = lambda seed, k: torch.rand(4, generator=step_generator(seed, k))  # noqa: E731
    assert torch.equal(draw(0, 5), draw(0, 5))
    assert not torch.equal(draw(0, 5), draw(0, 6)) and not torch.equal(draw(0, 5), draw(1, 5))


def test_box_stage_trains_only_the_box_network():
    model = tiny_model()
    batch = scenes(2)
    _, cfg = Attention.recipe("quick", {"max_instances": 3}, steps=10)
    total, logs = model.loss(batch, 0, cfg)
    assert logs["stage"] == 0 and logs["fed_gt"] > 0
    total.backward()
    assert all(p.grad is None for p in model.seg_net.parameters()) and model.score_fc.weight.grad is None
    assert model.box_net.head.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    total, logs = model.loss(batch, cfg.steps - 1, cfg)
    assert logs["stage"] == 1 and {"mask", "score", "box"} <= set(logs)
    total.backward()
    assert model.score_fc.weight.grad.abs().sum() > 0
    assert model.seg_net.down.convs[0].weight.grad.abs().sum() > 0


class ScriptedAttention(Attention):
    """Attention whose step t emits ``masks[t]`` (B, H, W) and scores ``scores[t]`` (B,)."""

    def __init__(self, masks, scores) -> None:
        super().__init__(Attention.tiny())
        self.script_masks = torch.as_tensor(np.asarray(masks), dtype=torch.float32)
        self.script_scores = torch.as_tensor(np.asarray(scores), dtype=torch.float32)
        self.calls = 0

    def step(self, image, canvas, t, with_mask=True):
        self.calls += 1
        s = self.script_scores[t].clamp(1e-6, 1 - 1e-6)
        return super().step(image, canvas, t)._replace(mask=self.script_masks[t], score_logit=torch.logit(s))


def test_predict_multiplies_by_score_takes_the_argmax_and_thresholds():
    h, w = 4, 6
    m0 = np.zeros((h, w), np.float32)
    m0[:, :3] = 0.6                    # x 0.9 = 0.54
    m0[:, 3] = 0.32                    # x 0.9 = 0.288 < 0.3: dropped where nothing else is there
    m1 = np.zeros((h, w), np.float32)
    m1[:2, 2:] = 0.65                  # x 0.7 = 0.455: loses column 2 to step 0 (0.54), owns columns 3-5
    m1[3, 5] = 0.4                     # x 0.7 = 0.28: dropped
    m2 = np.ones((h, w), np.float32)   # score 0.4: the stop
    m3 = np.ones((h, w), np.float32)   # after the stop: never used
    model = ScriptedAttention([[m0], [m1], [m2], [m3]], [[0.9], [0.7], [0.4], [0.99]])
    (p,) = model.predict(torch.zeros(1, 3, h, w), max_steps=4, min_new_pixels=1)
    want = np.zeros((h, w), np.int64)
    want[:, :3] = 1
    want[:2, 3:] = 2
    assert np.array_equal(p.labels.numpy(), want)
    assert list(p.steps) == [0, 1] and np.allclose(p.scores, [0.9, 0.7], atol=1e-5)
    assert model.calls == 3 and len(p.conf) == 3 and p.masks.shape == (3, h, w)


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="filters"):
        Attention(AttentionConfig(filters=10, patch_pools=(2, 2), patch_depths=(4, 4)))
    with pytest.raises(ConfigError, match="deconv"):
        Attention(AttentionConfig(deconv_depths=(4, 2), deconv_ups=(4, 2)))
    with pytest.raises(ConfigError, match="ss_period"):
        AttentionTrainConfig(ss_period=0)
    with pytest.raises(RsisError, match="cannot build"):
        build("attention", {**Attention.tiny().to_dict(), "filters": 7})
    with pytest.raises(RsisError, match=r"\(B, 3, H, W\)"):
        tiny_model().predict(torch.zeros(1, 4, 8, 8), max_steps=2)


def test_recipes():
    quick_model, quick = Attention.recipe(get_profile("quick"), {"kind": "leaves", "max_instances": 8})
    assert quick_model.filters == 24 and quick_model.bn_steps == 9 and quick.box_steps < quick.steps
    assert quick.clip_value == 1.0 and quick.clip_norm is None and quick.weight_decay == 5e-5
    full_model, full = Attention.recipe(get_profile("full"), {"kind": "cvppp", "max_instances": 20})
    assert full_model == AttentionConfig() and full_model.bn_steps == 21
    assert (full.steps, full.box_steps, full.ss_offset, full.ss_period, full.batch_size) == (90_000, 60_000, 3000,
                                                                                           700.0, 5)
    _, short = Attention.recipe("quick", {}, steps=99)
    assert short.box_steps == 33 and (short.ss_offset, short.ss_period) == scaled_schedule(66)
    assert (quick.steps, quick.box_steps, quick.ss_offset, quick.ss_period) == (13_500, 4500, 900, 210.0)


# -- training: exact resume in both stages, the command line ---------------------------------------
def tiny_trainer(path, steps=6):
    torch.manual_seed(0)
    ds = SyntheticLeaves(1000, size=24, seed=3, min_leaves=2, max_leaves=3)
    cfg = AttentionTrainConfig(steps=steps, batch_size=2, box_steps=3, ss_offset=0, ss_period=1.0,
                               checkpoint_every=1, eval_every=0, log_every=1)
    return Trainer(build("attention", Attention.tiny()), BatchSource(ds, 2, seed=0), cfg, ckpt_path=path)


def test_resume_is_exact_in_both_stages(tmp_path):
    a = tiny_trainer(tmp_path / "a.pt").fit(progress=False)
    assert a.history["stage"] == [0, 0, 0, 1, 1, 1] and 0 < np.mean(a.history["fed_gt"][3:]) < 1
    b = tiny_trainer(tmp_path / "b.pt")
    b.fit(steps=2, progress=False)                        # interrupted in the box stage
    c = tiny_trainer(tmp_path / "b.pt")
    assert c.step == 2
    c.fit(steps=5, progress=False)                        # interrupted again in the full stage
    d = tiny_trainer(tmp_path / "b.pt")
    assert d.step == 5
    d.fit(progress=False)
    assert d.step == a.step == 6
    for (k, va), vd in zip(a.system.state_dict().items(), d.system.state_dict().values()):
        assert torch.equal(va, vd), k
    assert a.history["loss"] == d.history["loss"] and a.history["fed_gt"] == d.history["fed_gt"]


def test_cli_train_predict_evaluate(tmp_path):
    ckpt = tmp_path / "att.pt"
    train = ["train", "--model", "attention", "--data", "leaves", "--profile", "quick", "--size", "32", "32",
             "--steps", "3", "--batch-size", "2", "--precision", "fp32", "--out", str(ckpt)]
    assert main(train) == 0
    ck = torch.load(ckpt, weights_only=True)
    assert ck["system"] == "attention" and ck["step"] == 3
    model_cfg, cfg = get_system("attention").recipe(get_profile("quick"), ck["data"], steps=3, batch_size=2)
    assert ck["model_config"] == model_cfg.to_dict() and ck["train_config"]["box_steps"] == cfg.box_steps == 1
    assert 0 < ck["history"]["stage"][-1] < 1              # both stages ran (the mean over the 3 steps)
    folder = tmp_path / "scenes"
    assert main(["export", "--data", "leaves", "--seed", "4242", "--num", "3", "--out", str(folder)]) == 0
    pred = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(folder),
                 "--out", str(pred)]) == 0
    gts = sorted((folder / "labels").glob("*.png"))
    assert sorted(p.name for p in pred.glob("*.png")) == [p.name for p in gts]
    scores = json.loads((pred / "scores.json").read_text())
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(folder / "labels"), "--json", str(out_json)]) == 0
    res = json.loads(out_json.read_text())
    for p in gts:
        lab = read_label(pred / p.name).numpy()
        assert lab.shape == (64, 64) and len(scores[p.name]) == int(lab.max())   # back at the scenes' size
        assert res["per_image"][p.name]["SBD"] == pytest.approx(image_scores(lab, read_label(p).numpy())["SBD"])


def test_paper_config_is_the_authors_seven_layer_decoder():
    """AttentionConfig.paper(): run_cvppp.sh's patch decoder (32, 32, 16, 16, 8, 8, 1) maps the 6 x 6
    bottleneck of a 48 x 48 patch back to 48 x 48."""
    from rsis_lite.systems.attention import SegNet

    cfg = AttentionConfig.paper()
    assert cfg.deconv_depths == (32, 32, 16, 16, 8, 8, 1) and cfg.filters == 48 and cfg.bn_steps == 21
    bott, y = SegNet(cfg).eval()(torch.rand(1, 4, 48, 48), 0)
    assert tuple(bott.shape) == (1, 32, 6, 6) and tuple(y.shape) == (1, 1, 48, 48)
