"""The full-resolution mask refinement (rsis_lite/nn/refine.py) and ``train --refine``.

Checked: a model that gains the block computes what it computed before (the last layer starts at
zero); the head adds the block's output to the upsampled logits before the softmax (explicit ops
written out here); the block is local (a 3x3 receptive field per layer); it can fit pixel-level
detail that no stride-2 logit map can (brute force over the coarse map's best case); the CLI adds
it to an --init checkpoint and refuses it where it does not apply.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from rsis_lite.commands import main
from rsis_lite.errors import ConfigError
from rsis_lite.nn import MaskRefine
from rsis_lite.systems.ris import RIS, add_refinement

TRAIN = ["train", "--model", "ris", "--data", "leaves", "--profile", "quick", "--size", "32", "32",
         "--batch-size", "2"]


def _tiny(seed: int = 0) -> RIS:
    torch.manual_seed(seed)
    return RIS(RIS.tiny()).eval()


def _randomise(block: MaskRefine, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


def test_a_grown_model_starts_as_the_original():
    base = _tiny()
    x = torch.rand(2, 3, 24, 20)
    grown = add_refinement(base, 4).eval()
    assert grown.config.refine_channels == 4 and base.config.refine_channels == 0
    with torch.no_grad():
        a, b = base(x, steps=4), grown(x, steps=4)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.conf_logits, b.conf_logits)
    pa, pb = base.predict(x, max_steps=6), grown.predict(x, max_steps=6)
    assert all(torch.equal(torch.as_tensor(p.labels), torch.as_tensor(q.labels)) for p, q in zip(pa, pb))
    assert add_refinement(grown, 4) is grown
    with pytest.raises(ConfigError, match="--refine 4"):
        add_refinement(grown, 8)


def test_the_head_adds_the_correction_before_the_softmax():
    """Logits of a refined RIS = log_softmax(up(conv1x1(h)) + delta) + b, delta written out by hand."""
    model = add_refinement(_tiny(), 3).eval()
    _randomise(model.refine)
    x = torch.rand(1, 3, 16, 18)
    with torch.no_grad():
        out = model(x, steps=2)
        f = model.features(x)
        hs, _ = model.lstm(f, steps=2)
        r = model.refine
        stem = F.relu(F.conv2d(F.relu(F.conv2d(x, r.stem[0].weight, r.stem[0].bias, padding=1)),
                               r.stem[2].weight, r.stem[2].bias, padding=1))          # (1, 3, 16, 18)
        for t in range(2):
            h = hs[:, t]
            coarse = F.interpolate(F.conv2d(h, model.mask_conv.weight, model.mask_conv.bias), size=(16, 18),
                                   mode="bilinear", align_corners=False)
            p = F.interpolate(F.conv2d(h, r.proj.weight, r.proj.bias), size=(16, 18), mode="bilinear",
                              align_corners=False)
            fused = F.relu(F.conv2d(torch.cat([p, stem], 1), r.fuse[0].weight, r.fuse[0].bias, padding=1))
            delta = F.conv2d(fused, r.out.weight, r.out.bias, padding=1)
            z = (coarse + delta).flatten(1)
            want = (F.log_softmax(z, dim=1) + model.head_bias).view(1, 16, 18)
            torch.testing.assert_close(out.mask_logits[:, t], want, rtol=1e-5, atol=1e-5)
    assert delta.abs().max() > 0.1, "the correction is not zero, so the comparison has teeth"


def test_the_correction_is_local():
    """Four 3x3 convolutions at full resolution: one stem pixel reaches at most 4 pixels away."""
    block = MaskRefine(hidden_channels=2, channels=3)
    _randomise(block)
    h = torch.rand(1, 2, 8, 8)
    img = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        base = block(h, block.encode(img))
        img2 = img.clone()
        img2[0, :, 7, 9] += 1.0
        diff = (block(h, block.encode(img2)) - base).abs()[0, 0]
    rows, cols = torch.nonzero(diff > 1e-6, as_tuple=True)
    assert diff[7, 9] > 1e-4
    assert (rows - 7).abs().max() <= 4 and (cols - 9).abs().max() <= 4


def test_it_fits_detail_no_stride_2_map_can():
    """Target: a one-pixel checkerboard drawn in the image. The best stride-2 logit map, bilinearly
    upsampled, gets at most half its pixels right (every 2x2 block holds two of each, brute force
    over the block's best constant); the block learns it from the image."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    target = ((yy + xx) % 2).float()[None, None]                              # (1, 1, 12, 12)
    blocks = target.unfold(2, 2, 2).unfold(3, 2, 2)                          # (1, 1, 6, 6, 2, 2)
    best_coarse = torch.maximum(blocks.mean((-1, -2)), 1 - blocks.mean((-1, -2))).mean()
    assert best_coarse == 0.5
    img = torch.cat([target, torch.rand(1, 2, 12, 12)], 1)                   # the pattern is in channel 0
    block = MaskRefine(hidden_channels=2, channels=4)
    opt = torch.optim.Adam(block.parameters(), lr=0.05)
    h = torch.zeros(1, 2, 6, 6)
    for _ in range(150):
        loss = F.binary_cross_entropy_with_logits(block(h, block.encode(img)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = ((block(h, block.encode(img)) > 0).float() == target).float().mean()
    assert acc > 0.95


def test_train_refine_grows_an_init_checkpoint(tmp_path, capsys):
    src, grown = tmp_path / "src.pt", tmp_path / "grown.pt"
    assert main(TRAIN + ["--steps", "1", "--out", str(src)]) == 0
    assert main(TRAIN + ["--steps", "1", "--init", str(src), "--refine", "4", "--out", str(grown)]) == 0
    a, b = torch.load(src, weights_only=True), torch.load(grown, weights_only=True)
    assert a["model_config"]["refine_channels"] == 0 and b["model_config"]["refine_channels"] == 4
    assert {k for k in b["state_dict"] if k.startswith("refine.")} and set(a["state_dict"]) < set(b["state_dict"])
    assert b["state_dict"]["refine.out.weight"].abs().sum() > 0, "one step moved the zero layer"
    pred = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(grown), "--data", "leaves", "--num", "2", "--size", "32", "32",
                 "--out", str(pred)]) == 0
    assert len(list(pred.glob("*.png"))) == 2
    capsys.readouterr()
    assert main(TRAIN + ["--steps", "1", "--init", str(grown), "--refine", "8", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "--refine 4" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_train_refine_refuses_other_systems_and_zero(tmp_path, capsys):
    args = ["train", "--model", "attention", "--data", "leaves", "--steps", "1", "--refine", "4",
            "--out", str(tmp_path / "a.pt")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--refine" in err and "attention" in err and "Traceback" not in err
    for bad in ("0", "4096"):
        assert main(TRAIN + ["--steps", "1", "--refine", bad, "--out", str(tmp_path / "z.pt")]) == 2
        assert "--refine" in capsys.readouterr().err
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "z.pt").exists()


def test_refine_from_scratch_builds_the_block():
    model = RIS(type(RIS.tiny())(**{**RIS.tiny().__dict__, "refine_channels": 2}))
    n_base = sum(p.numel() for p in RIS(RIS.tiny()).parameters())
    n = sum(p.numel() for p in model.parameters())
    c_h = RIS.tiny().hidden_channels
    extra = (3 * 2 * 9 + 2) + (2 * 2 * 9 + 2) + (c_h * 2 + 2) + (4 * 2 * 9 + 2) + (2 * 9 + 1)
    assert n - n_base == extra
    assert math.isfinite(model(torch.rand(1, 3, 16, 16), steps=2).masks.sum().item())
