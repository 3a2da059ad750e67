"""RSIS (Salvador et al. 2017): the pyramid, the ConvLSTM ladder, the loss pieces, the stop rule,
the garden scenes with their classes, the class metrics and the CLI round trip with classes.json."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsis_lite.data import JointAugment, collate_instances
from rsis_lite.data.folder import InstanceFolder, resize_pair
from rsis_lite.data.garden import CLASS_NAMES, SyntheticGarden
from rsis_lite.errors import DataError
from rsis_lite.matching import soft_iou
from rsis_lite.metrics import average_precision, average_precision_per_class, class_accuracy
from rsis_lite.nn.features import ResNetPyramid
from rsis_lite.nn.ladder import ConvLSTMLadder
from rsis_lite.systems import build
from rsis_lite.systems.rsis import RSIS, RSISConfig, RSISTrainConfig, rsis_loss, stop_targets, unroll_steps



def tiny(num_classes: int = 1) -> RSIS:
    torch.manual_seed(0)
    return build("rsis", RSISConfig(encoder="resnet18", base=16, num_classes=num_classes)).eval()


# -- shapes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(64, 64), (106, 100), (96, 128)])
def test_pyramid_and_ladder_shapes_at_every_level(size):
    h, w = size
    model = tiny()
    skips = model.encoder(torch.rand(2, 3, h, w))
    expect = []
    for stride in (32, 16, 8, 4, 2):                    # coarsest first; each conv halves, rounding up
        expect.append((math.ceil(h / stride), math.ceil(w / stride)))
    assert [tuple(s.shape[-2:]) for s in skips] == expect
    assert [s.shape[1] for s in skips] == list(model.config.skip_widths) == [16, 16, 8, 4, 2]
    gskips = model.decoder.encode(skips)
    states = model.decoder.step(gskips, model.decoder.init_state(gskips))
    assert [tuple(hh.shape) for hh, _ in states] == [(2, c, *e) for c, e in zip(model.config.hidden_widths, expect)]
    out = model(torch.rand(2, 3, h, w), steps=3)
    assert out.mask_logits.shape == (2, 3, h, w)
    assert out.class_logits.shape == (2, 3, 2) and out.stop_logits.shape == (2, 3)


def test_resnet_pyramid_channels_for_deeper_encoders():
    for arch in ("resnet34", "resnet50"):
        skips = ResNetPyramid(arch, widths=(2, 4, 8, 16, 16))(torch.rand(1, 3, 64, 64))
        assert [s.shape[1] for s in skips] == [16, 16, 8, 4, 2]
    with pytest.raises(ValueError, match="unknown encoder"):
        ResNetPyramid("vgg16")


def test_ladder_split_convolution_equals_one_convolution_over_the_concatenation():
    torch.manual_seed(1)
    ladder = ConvLSTMLadder((6, 4, 3), (5, 4, 2))
    skips = [torch.randn(2, 6, 2, 2), torch.randn(2, 4, 4, 4), torch.randn(2, 3, 8, 8)]
    states = [(torch.randn(2, c, *s.shape[-2:]), torch.randn(2, c, *s.shape[-2:]))
              for c, s in zip((5, 4, 2), skips)]
    got = ladder.step(ladder.encode(skips), states)
    # Reference: the textbook update, one conv over [up(h_below); skip] per level.
    ref, below = [], None
    for k, (cell, s, st) in enumerate(zip(ladder.cells, skips, states)):
        x = s if k == 0 else torch.cat([F.interpolate(below, size=s.shape[-2:], mode="bilinear",
                                                      align_corners=True), s], dim=1)
        hk, ck = cell(x, st)
        ref.append((hk, ck))
        below = hk
    for (h1, c1), (h2, c2) in zip(got, ref):
        torch.testing.assert_close(h1, h2, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c1, c2, atol=1e-5, rtol=1e-5)


def test_each_level_carries_its_own_state_across_steps():
    model = tiny()
    image = torch.rand(1, 3, 64, 64)
    gskips = model.encode(image)
    _, _, _, s1 = model.step(gskips, None, (64, 64))
    m2, _, _, s2 = model.step(gskips, s1, (64, 64))
    m2_fresh, _, _, _ = model.step(gskips, None, (64, 64))
    assert not torch.allclose(m2, m2_fresh)                       # step 2 depends on the carried state
    for (h1, c1), (h2, c2) in zip(s1, s2):
        assert not torch.allclose(c1, c2)                         # every level's cell state moved
    # forward unrolls the same recurrence: its second step equals the hand-carried one.
    out = model(image, steps=2)
    torch.testing.assert_close(out.mask_logits[0, 1], m2[0], atol=1e-5, rtol=1e-5)
    # A level's state is its own: changing level 0's state changes level 4 only through the ladder,
    # and keeping every state but resetting level 4's changes the mask.
    s1_reset = list(s1)
    s1_reset[-1] = tuple(torch.zeros_like(t) for t in s1[-1])
    m_reset, _, _, _ = model.step(gskips, s1_reset, (64, 64))
    assert not torch.allclose(m_reset, m2)


# -- loss pieces ---------------------------------------------------------------------------------------
def test_stop_targets_the_authors_weighting():
    """0.5 x BCE averaged over the steps that carry a loss: 2 + 1, 1 and 4 of them here (8 in all)."""
    target, w = stop_targets(torch.tensor([2, 0, 5]), steps=4)
    assert target.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]
    want = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float32) * (0.5 / 8)
    torch.testing.assert_close(w, want)
    with pytest.raises(ValueError, match="stop_loss"):
        stop_targets(torch.tensor([1]), 2, rule="median")


def test_stop_targets_and_their_balance():
    target, w = stop_targets(torch.tensor([2, 0, 5]), steps=4, rule="balanced")
    assert target.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]
    # Loss only on the real steps and the first step after them: 2 + 0 + 4 positives, 1 + 1 negatives.
    pos = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    neg = torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(w[pos], torch.full((6,), 0.5 / 6))
    torch.testing.assert_close(w[neg], torch.full((2,), 0.5 / 2))
    assert float(w[~(pos | neg)].abs().sum()) == 0.0
    assert float(w[pos].sum()) == pytest.approx(0.5) and float(w[neg].sum()) == pytest.approx(0.5)


def _case(seed: int = 0, b: int = 2, t: int = 4, k: int = 3, hw: int = 8):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, hw, hw, generator=g)
    targets = (torch.rand(b, k, hw, hw, generator=g) > 0.6).float()
    return logits, targets


def test_mask_term_is_the_best_permutation_of_one_minus_soft_iou():
    logits, targets = _case()
    counts = torch.tensor([3, 2])
    out = rsis_loss(logits, torch.zeros(2, 4, 2), torch.zeros(2, 4), targets, counts, None, 0.1, 0.5, heads=False)
    masks = torch.sigmoid(logits)
    brute = []
    for b, n in enumerate(counts.tolist()):
        m = min(4, n)
        best = min(sum(1 - float(soft_iou(masks[b, p], targets[b, q])) for p, q in zip(range(m), perm))
                   for perm in itertools.permutations(range(n), m))
        brute.append((best, m))
    expect = sum(c for c, _ in brute) / sum(m for _, m in brute)  # mean over matched pairs
    assert float(out.mask) == pytest.approx(expect, abs=1e-5)
    assert float(out.total) == pytest.approx(expect, abs=1e-5)   # heads off: the mask term only


def test_class_loss_counts_only_matched_steps():
    logits, targets = _case(3, t=5)
    counts = torch.tensor([2, 3])
    cls_t = torch.tensor([[2, 1, 0], [1, 2, 2]])
    g = torch.Generator().manual_seed(4)
    class_logits = torch.randn(2, 5, 3, generator=g)
    base = rsis_loss(logits, class_logits, torch.zeros(2, 5), targets, counts, cls_t, 1.0, 0.0, heads=True)
    from rsis_lite.matching import hungarian_match, pairwise_soft_iou

    asg = hungarian_match(pairwise_soft_iou(torch.sigmoid(logits), targets), counts)
    matched = set(zip(asg.batch.tolist(), asg.pred.tolist()))
    unmatched = [(b, t) for b in range(2) for t in range(5) if (b, t) not in matched]
    assert unmatched, "the case must have unmatched steps"
    changed = class_logits.clone()
    for b, t in unmatched:
        changed[b, t] = torch.tensor([9.0, -9.0, 9.0])
    same = rsis_loss(logits, changed, torch.zeros(2, 5), targets, counts, cls_t, 1.0, 0.0, heads=True)
    assert float(same.classes) == pytest.approx(float(base.classes), abs=1e-6)
    # The formula written out: mean NLL of the matched steps' target classes.
    nll = [-torch.log_softmax(class_logits[b, t], 0)[cls_t[b, k]] for b, t, k in
           zip(asg.batch.tolist(), asg.pred.tolist(), asg.target.tolist())]
    assert float(base.classes) == pytest.approx(float(torch.stack(nll).mean()), abs=1e-5)
    b, t = next(iter(matched))
    changed[b, t] = torch.tensor([0.0, 20.0, -20.0])
    assert float(rsis_loss(logits, changed, torch.zeros(2, 5), targets, counts, cls_t, 1.0, 0.0,
                           heads=True).classes) != pytest.approx(float(base.classes), abs=1e-3)


def test_heads_switch_on_later_and_the_curriculum_grows_one_step_at_a_time():
    cfg = RSISTrainConfig(heads_on=100, curriculum_start=2, curriculum_every=50)
    assert [unroll_steps(s, 8, cfg) for s in (0, 49, 50, 99, 100, 400, 10_000)] == [2, 2, 3, 3, 4, 9, 9]
    assert unroll_steps(10_000, 3, cfg) == 4                     # never more than one past the fullest scene
    batch = collate_instances([SyntheticGarden(2, seed=1)[i] for i in range(2)])
    with pytest.raises(DataError, match="class id 3 but the model has 1"):
        tiny(1).loss(batch, 100, cfg)
    model = tiny(3)
    cfg.class_weight = cfg.stop_weight = 1.0
    early, logs_early = model.loss(batch, 99, cfg)
    late, logs_late = model.loss(batch, 100, cfg)
    assert early.item() == pytest.approx(logs_early["mask"], abs=1e-6)
    assert late.item() == pytest.approx(logs_late["mask"] + logs_late["class"] + logs_late["stop"], abs=1e-5)


def test_param_groups_put_the_encoder_trunk_at_its_own_rate():
    model = tiny()
    groups = model.param_groups(RSISTrainConfig(lr=1e-3, encoder_lr=1e-6))
    assert [g["lr"] for g in groups] == [1e-6, 1e-3]
    trunk = {id(p) for p in groups[0]["params"]}
    assert id(model.encoder.stem[0].weight) in trunk
    assert id(model.encoder.proj[0][0].weight) not in trunk       # projections train with the decoder
    _, pre = RSIS.recipe("quick", {"kind": "leaves"})
    assert pre.encoder_lr == pre.lr                               # a random encoder needs the decoder's rate


# -- inference -----------------------------------------------------------------------------------------
class _Scripted(RSIS):
    """RSIS whose per-step outputs are scripted: masks, class logits and p(continue)."""

    def __init__(self, masks, cls_logits, go):
        super().__init__(RSISConfig(base=16, num_classes=2))
        self.script = (masks, cls_logits, go)

    def encode(self, image):
        return [image]

    def step(self, gskips, states, size):
        t = 0 if states is None else states + 1
        masks, cls_logits, go = self.script
        return masks[:, t] * 20 - 10, cls_logits[:, t], torch.logit(go[:, t]), t


def test_predict_keeps_steps_while_the_stop_head_says_go_and_scores_class_times_continue():
    h = w = 8
    masks = torch.zeros(1, 4, h, w)
    masks[0, 0, :4] = 1
    masks[0, 1, 4:, :4] = 1
    masks[0, 2, 4:, 4:] = 1
    cls_logits = torch.tensor([[[0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])
    go = torch.tensor([[0.9, 0.6, 0.3, 0.1]])
    model = _Scripted(masks, cls_logits, go)
    p = model.predict(torch.zeros(1, 3, h, w), max_steps=4)[0]
    assert p.labels.max() == 2 and p.classes.tolist() == [1, 2]   # the 0.3 step stops the image
    probs = torch.softmax(cls_logits[0, :2], dim=1)[:, 1:].max(dim=1).values   # p(class) over all C+1
    np.testing.assert_allclose(p.scores, (probs * go[0, :2]).numpy(), rtol=1e-5)
    p2 = model.predict(torch.zeros(1, 3, h, w), max_steps=4, stop_threshold=0.2)[0]
    assert p2.labels.max() == 3 and p2.classes.tolist() == [1, 2, 1]  # the authors' 0.2 keeps it
    assert (p2.labels[:4] == 1).all() and (p2.labels[4:, :4] == 2).all() and (p2.labels[4:, 4:] == 3).all()


# -- garden scenes -------------------------------------------------------------------------------------
def test_garden_scenes_are_deterministic_and_classes_follow_the_instances():
    a, b = SyntheticGarden(20, seed=3), SyntheticGarden(20, seed=3)
    for i in (7, 0, 13):
        ia, la, ca = a[i]
        ib, lb, cb = b[i]
        assert torch.equal(ia, ib) and torch.equal(la, lb) and torch.equal(ca, cb)
        assert int(la.max()) == len(ca) and set(torch.unique(la).tolist()) == set(range(len(ca) + 1))
        assert set(ca.tolist()) <= {1, 2, 3}
    assert not torch.equal(SyntheticGarden(1, seed=4)[0][0], a[0][0])
    assert len(CLASS_NAMES) == 3


def test_garden_classes_differ_in_colour_and_shape():
    ds = SyntheticGarden(60, seed=11)
    colour = {c: [] for c in (1, 2, 3)}
    fill = {c: [] for c in (1, 2, 3)}                              # area / bounding-box area
    for i in range(len(ds)):
        image, labels, classes = ds[i]
        for k, c in enumerate(classes.tolist(), start=1):
            m = labels == k
            if m.sum() < 30:
                continue
            rgb = image[:, m].mean(1)
            colour[c].append(rgb)
            ys, xs = torch.nonzero(m, as_tuple=True)
            fill[c].append(float(m.sum()) / float((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)))
    mean = {c: torch.stack(v).mean(0) for c, v in colour.items()}
    assert mean[1][1] > mean[1][0] + 0.15 and mean[1][1] > mean[1][2] + 0.15      # leaves are green
    spread = {c: float(m.max() - m.min()) for c, m in mean.items()}
    assert spread[3] < 0.12                                                         # stones are grey
    assert float(mean[2].max()) > float(mean[3].max())                               # flowers are brighter
    assert np.mean(fill[3]) > np.mean(fill[1]) + 0.1                                 # stones compact, leaves thin


def test_collate_and_augment_keep_classes_aligned():
    ds = SyntheticGarden(4, seed=2)
    lossless = JointAugment(hflip=True, rot90=True, seed=0)
    lossy = JointAugment(hflip=False, rot90=False, rotation_degrees=60.0, seed=1)
    for i in range(4):
        image, labels, classes = ds[i]
        _, lab2, cls2 = lossless(image, labels, classes)
        # flips and quarter turns move pixels but keep every instance: same ids, areas, classes
        assert cls2.tolist() == classes.tolist()
        assert torch.bincount(lab2.flatten()).tolist() == torch.bincount(labels.flatten()).tolist()
        _, lab3, cls3 = lossy(image, labels, classes)
        assert int(lab3.max()) == len(cls3) <= len(classes)       # corners may cut an instance away
    batch = collate_instances([ds[0], ds[1]])
    n0 = int(batch["counts"][0])
    assert batch["classes"][0, :n0].tolist() == ds[0][2].tolist()
    assert (batch["classes"][0, n0:] == 0).all()
    with pytest.raises(DataError, match="classes"):
        collate_instances([(ds[0][0], ds[0][1], ds[0][2][:-1])])


def test_a_resize_that_erases_an_instance_drops_its_class():
    labels = torch.zeros(20, 20, dtype=torch.long)
    labels[:10] = 1
    labels[15, 15] = 2                                             # one pixel: gone at 5 x 5
    labels[10:, :10] = 3
    image = torch.rand(3, 20, 20)
    _, lab, cls = resize_pair(image, labels, (5, 5), torch.tensor([2, 3, 1]))
    assert int(lab.max()) == 2 and cls.tolist() == [2, 1]


def _write_folder(root: Path, classes: dict) -> None:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    lab = np.zeros((8, 8), np.uint8)
    lab[:4] = 1
    lab[4:, :4] = 3                                               # a gap: ids 1 and 3
    Image.fromarray((np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)).save(root / "images/a.png")
    Image.fromarray(lab).save(root / "labels/a.png")
    (root / "classes.json").write_text(json.dumps(classes))


def test_instance_folder_reads_classes_json_and_names_it_in_errors(tmp_path):
    _write_folder(tmp_path / "ok", {"a": [2, 5, 1]})
    image, labels, classes = InstanceFolder(tmp_path / "ok")[0]
    assert int(labels.max()) == 2 and classes.tolist() == [2, 1]   # ids 1, 3 -> 1, 2 keep their classes
    _write_folder(tmp_path / "short", {"a": [2]})
    with pytest.raises(DataError, match=r"classes\.json.*lists 1 class"):
        InstanceFolder(tmp_path / "short")[0]
    _write_folder(tmp_path / "zero", {"a": [2, 0, 1]})
    with pytest.raises(DataError, match=r"classes\.json: unknown class id 0"):
        InstanceFolder(tmp_path / "zero")
    _write_folder(tmp_path / "missing", {"b": [1]})
    with pytest.raises(DataError, match="no class list"):
        InstanceFolder(tmp_path / "missing")


# -- class metrics -------------------------------------------------------------------------------------
def test_class_accuracy_and_per_class_ap_on_a_hand_case():
    gt = np.zeros((10, 10), np.int64)
    gt[:5, :5], gt[:5, 5:], gt[5:, :5] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[:5, :5], pred[:5, 5:], pred[5:, 5:] = 1, 2, 3             # 3 is a false positive
    gt_cls, pred_cls = [1, 2, 2], [1, 1, 2]
    acc = class_accuracy([(pred, pred_cls)], [(gt, gt_cls)])
    assert acc == {"class_accuracy": 0.5, "matched": 2, "correct": 1}  # pred 2 matched gt 2 with the wrong class
    ap = average_precision_per_class([(pred, [0.9, 0.8, 0.7], pred_cls)], [(gt, gt_cls)])
    # class 1: two detections (0.9 right, 0.8 wrong place for class 1 gt), one gt -> AP 1.0;
    # class 2: one detection (pred 3) on empty ground, two gts -> AP 0.
    ref1 = average_precision([(np.where(np.isin(pred, [1, 2]), pred, 0), [0.9, 0.8, 0.7])], [np.where(gt == 1, 1, 0)])
    ref2 = average_precision([(np.where(pred == 3, 3, 0), [0.9, 0.8, 0.7])], [np.where(gt >= 2, gt, 0)])
    assert ap["per_class"][1] == pytest.approx(ref1) and ap["per_class"][1]["AP"] == pytest.approx(1.0)
    assert ap["per_class"][2] == pytest.approx(ref2) and ap["per_class"][2]["AP"] == 0.0
    assert ap["mean"]["AP"] == pytest.approx(0.5)
    with pytest.raises(DataError, match="only 2 classes"):
        class_accuracy([(pred, [1, 1])], [(gt, gt_cls)])


# -- CLI round trip ------------------------------------------------------------------------------------
def _cli(*args: str) -> int:
    """The command layer in this process (the `python -m rsis_lite` entry has its own tests)."""
    from rsis_lite.commands import main

    return main(list(args))


def test_cli_round_trip_with_classes_json(tmp_path):
    ck = tmp_path / "g.pt"
    r = _cli("train", "--model", "rsis", "--data", "garden", "--steps", "2", "--batch-size", "2", "--out", str(ck))
    assert r == 0
    r = _cli("export", "--data", "garden", "--num", "4", "--seed", "9", "--out", str(tmp_path / "gd"))
    assert r == 0
    gt_cls = json.loads((tmp_path / "gd" / "classes.json").read_text())
    assert sorted(gt_cls) == [f"scene{i:05d}" for i in range(4)]
    r = _cli("predict", "--checkpoint", str(ck), "--data", "folder", "--root", str(tmp_path / "gd"),
             "--out", str(tmp_path / "pred"))
    assert r == 0
    pred_cls = json.loads((tmp_path / "pred" / "classes.json").read_text())
    from rsis_lite.data.io import read_label

    for stem, cls in pred_cls.items():
        assert len(cls) == int(read_label(tmp_path / "pred" / f"{stem}.png").max())
        assert all(1 <= c <= 3 for c in cls)
    r = _cli("evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gd" / "labels"),
             "--json", str(tmp_path / "e.json"))
    assert r == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert "classes" in res and "mAP" in res["classes"] and "AP" in res
    r = _cli("evaluate", "--checkpoint", str(ck), "--data", "garden", "--num", "4", "--seed", "9",
             "--json", str(tmp_path / "c.json"))
    assert r == 0
    res_ck = json.loads((tmp_path / "c.json").read_text())
    # (the folder route reads 8-bit PNGs, this one renders floats: an untrained model may differ)
    assert res_ck["n_images"] == 4 and {"class_accuracy", "mAP", "AP_per_class"} <= set(res_ck["classes"])


def test_a_slim_checkpoint_predicts_like_the_full_one_and_refuses_to_resume(tmp_path):
    from rsis_lite.checkpoint import load_checkpoint, slim_checkpoint
    from rsis_lite.errors import CheckpointError
    from rsis_lite.inference import load_system
    from rsis_lite.train import BatchSource, Trainer

    ds = SyntheticGarden(8, seed=1)
    model = tiny(3).train()
    cfg = RSISTrainConfig(steps=2, batch_size=2, heads_on=0, checkpoint_every=1)
    full = tmp_path / "full.pt"
    Trainer(model, BatchSource(ds, 2), cfg, ckpt_path=full).fit(progress=False)
    slim = tmp_path / "slim.pt"
    sizes = slim_checkpoint(full, slim)
    assert sizes["out_MB"] < 0.6 * sizes["in_MB"]                  # no Adam moments, half-size floats
    ck = load_checkpoint(slim)
    assert ck["optimizer"] is None and ck["slim"] == "float16"
    assert all(v.dtype == torch.float16 for v in ck["state_dict"].values() if v.is_floating_point())
    images = torch.stack([ds[i][0] for i in range(4)])
    a, _ = load_system(full)
    b, _ = load_system(slim)
    for pa, pb in zip(a.predict(images, max_steps=4), b.predict(images, max_steps=4)):
        torch.testing.assert_close(pa.masks, pb.masks, atol=2e-2, rtol=0)   # float16 weights, float32 maths
    with pytest.raises(CheckpointError, match="slim checkpoint.*--init"):
        Trainer(tiny(3), BatchSource(ds, 2), cfg, ckpt_path=slim)
    with pytest.raises(CheckpointError, match="is the input"):
        slim_checkpoint(slim, slim)


@pytest.mark.parametrize("name", ["ris", "attention", "rsis"])
def test_the_sequence_explorer_reads_every_systems_per_step_confidence(name):
    from rsis_lite.systems import get_system
    from rsis_lite.widgets.sequence import _unroll

    torch.manual_seed(0)
    model = build(name, get_system(name).tiny())
    image = torch.rand(3, 32, 32)
    d = _unroll(model, image, max_steps=4, threshold=0.5)
    assert d["masks"].shape == (4, 32, 32) and d["conf"].shape == (4,)
    assert ((0 <= d["conf"]) & (d["conf"] <= 1)).all()
    # the first kept steps' confidences are the prediction's own (the same forward pass, step by step)
    pred = model.predict(image[None], max_steps=4)[0]
    np.testing.assert_allclose(d["conf"][: len(pred.conf)], pred.conf, atol=1e-4)


def test_plot_history_draws_a_key_logged_only_in_a_later_stage():
    import matplotlib

    matplotlib.use("Agg")
    from rsis_lite.viz import plot_history

    history = {"step": [10, 20, 30, 40], "loss": [4.0, 3.0, 2.0, 1.0], "iou": [0.5, 0.6]}   # iou from step 30
    fig = plot_history(history, keys=("loss", "iou"))
    line = fig.axes[1].lines[0]
    assert list(line.get_xdata()) == [30, 40] and list(line.get_ydata()) == [0.5, 0.6]
    fig = plot_history({"step": [10], "loss": [1.0]}, keys=("loss", "iou"))      # not logged yet: empty panel
    assert len(fig.axes[1].lines[0].get_xdata()) == 0
