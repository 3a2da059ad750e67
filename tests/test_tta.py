"""Test-time augmentation (rsis_lite.tta): the views, the matching, the fusion and the CLI path.

References: numpy's rot90 for the eight symmetries, brute force over permutations for the Hungarian
matching, averages written out by hand for the fusion, and a model that works pixel by pixel (so it
is exactly equivariant: any view, mapped back, must give back the plain prediction).
"""
import itertools
import json

import numpy as np
import pytest
import torch

from rsis_lite.commands import main
from rsis_lite.data.io import read_label
from rsis_lite.data.registry import load_dataset
from rsis_lite.inference import load_system
from rsis_lite.systems.ris import RIS
from rsis_lite.systems.base import Prediction
from rsis_lite.tta import (VIEWS, cluster_instances, fuse_masks, mask_iou, match_instances, tta_predict, from_view,
                           to_view, vote)
from rsis_lite.checkpoint import shipped_checkpoint

CVPPP_LIKE = shipped_checkpoint("ris", "quick", "cvppp_like")
SHIPPED = {"ris": CVPPP_LIKE, "rsis": shipped_checkpoint("rsis", "quick"),
           "attention": shipped_checkpoint("attention", "quick")}


def test_d8_views_are_the_eight_symmetries_of_a_square():
    x = torch.arange(25.0).reshape(5, 5)                                   # no symmetry of its own
    got = {to_view(x, v).numpy().tobytes() for v in VIEWS["d8"]}
    a = x.numpy()
    want = {np.ascontiguousarray(np.rot90(m, k)).tobytes() for m in (a, a.T) for k in range(4)}
    assert len(got) == 8 and got == want
    assert {to_view(x, v).numpy().tobytes() for v in VIEWS["flip"]} == {
        np.ascontiguousarray(m).tobytes() for m in (a, a[:, ::-1], a[::-1], a[::-1, ::-1])}


def test_from_view_undoes_every_view_on_a_rectangle():
    x = torch.rand(2, 3, 4, 6)                                             # (B, C, H, W), H != W
    for v in VIEWS["d8"]:
        seen = to_view(x, v)
        assert seen.shape[-2:] == ((6, 4) if v[0] else (4, 6))
        assert torch.equal(from_view(seen, v), x), v


def blob_masks(rng, n, h=8, w=9):
    """n random rectangles (n, h, w) with soft values in (0.5, 1]."""
    m = np.zeros((n, h, w), np.float32)
    for k in range(n):
        r0, c0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[k, r0:rng.integers(r0 + 1, h + 1), c0:rng.integers(c0 + 1, w + 1)] = rng.uniform(0.6, 1.0)
    return torch.as_tensor(m)


def test_mask_iou_and_matching_agree_with_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = blob_masks(rng, 4), blob_masks(rng, 5)
        iou = mask_iou(a, b).numpy()
        for k, j in itertools.product(range(4), range(5)):
            sa, sb = a[k].numpy() > 0.5, b[j].numpy() > 0.5
            assert iou[k, j] == pytest.approx((sa & sb).sum() / (sa | sb).sum())
        pairs = match_instances(a, b, min_iou=-1.0)                        # keep every pair
        best = max(sum(iou[k, p[k]] for k in range(4)) for p in itertools.permutations(range(5), 4))
        assert len(pairs) == 4 and len({j for _, j in pairs}) == 4
        assert sum(iou[k, j] for k, j in pairs) == pytest.approx(best)
        kept = match_instances(a, b)                                       # the default floor
        assert all(iou[k, j] > 0.1 for k, j in kept) and set(kept) <= set(pairs)


def test_fuse_masks_averages_matched_instances_by_hand():
    h, w = 6, 8
    A = torch.zeros(h, w); A[0:3, 0:4] = 0.9                               # noqa: E702
    B = torch.zeros(h, w); B[3:6, 4:8] = 0.8                               # noqa: E702
    A2 = torch.zeros(h, w); A2[0:3, 0:3] = 0.7                             # IoU with A 0.75
    B2 = torch.zeros(h, w); B2[4:6, 4:8] = 0.6                             # IoU with B 2/3
    C = torch.zeros(h, w); C[0:2, 6:8] = 1.0                               # meets nothing
    D = torch.zeros(h, w); D[0:3, 3:5] = 0.95                              # IoU with A 3/15 = 0.2
    E = torch.zeros(h, w); E[2:3, 3:8] = 0.9                               # IoU with A 1/16, below 0.1
    ref = torch.stack([A, B])
    fused = fuse_masks(ref, [torch.stack([B2, C, A2]), torch.stack([D]), torch.stack([E])])
    assert torch.allclose(fused[0], (A + A2 + D) / 3)
    assert torch.allclose(fused[1], (B + B2) / 2)
    assert torch.equal(fuse_masks(ref, []), ref) and fuse_masks(ref[:0], [ref]).shape == (0, h, w)


def _boxes(h: int = 6, w: int = 8) -> dict[str, torch.Tensor]:
    """Soft rectangles (H, W) for the fusion tests; the IoUs are written beside them."""
    out = {k: torch.zeros(h, w) for k in "A A2 B B2 C C2 S".split()}
    out["A"][0:3, 0:4] = 0.9
    out["A2"][0:3, 0:3] = 0.7                                              # IoU with A 0.75
    out["B"][3:6, 4:8] = 0.8
    out["B2"][4:6, 4:8] = 0.6                                              # IoU with B 2/3
    out["C"][0:2, 6:8] = 1.0                                               # meets A and B nowhere
    out["C2"][0:3, 6:8] = 0.8                                              # IoU with C 2/3
    out["S"][4:6, 0:2] = 0.9                                               # meets nothing
    return out


def test_cluster_instances_gathers_the_views_by_hand():
    m = _boxes()
    views = [torch.stack([m["A"], m["B"]]), torch.stack([m["B2"], m["C"]]), torch.stack([m["C2"], m["A2"]])]
    scores = [np.array([0.9, 0.8]), np.array([0.6, 0.7]), np.array([0.5, 0.4])]
    classes = [np.array([1, 2]), np.array([2, 3]), np.array([1, 1])]
    got = cluster_instances(views, scores, classes)
    assert [c.ref for c in got] == [0, 1, None]                            # C opened a cluster in view 1
    assert torch.allclose(got[0].total, m["A"] + m["A2"]) and got[0].scores == [0.9, 0.4]
    assert torch.allclose(got[1].total, m["B"] + m["B2"]) and got[1].scores == [0.8, 0.6]
    assert torch.allclose(got[2].mean(), (m["C"] + m["C2"]) / 2) and got[2].scores == [0.7, 0.5]
    assert [c.classes for c in got] == [[1, 1], [2, 2], [3, 1]] and [c.size for c in got] == [2, 2, 2]
    assert cluster_instances([views[0][:0], views[1]], [np.zeros(0), scores[1]])[0].ref is None


def _pred(masks: torch.Tensor, scores) -> Prediction:
    """A prediction whose steps are its masks in order (labels are rebuilt by ``vote``)."""
    k = masks.shape[0]
    return Prediction(torch.zeros(masks.shape[-2:], dtype=torch.long), np.asarray(scores, np.float32), masks,
                      np.asarray(scores, np.float32), np.arange(k, dtype=np.int64))


def test_vote_keeps_the_count_and_swaps_a_spurious_instance_for_one_the_views_agree_on():
    """The identity view finds A and a spurious S; five of seven other views find A and C, two find
    A alone. Vote: two instances, A (8 views) and C (5 views) in that order; S (1 view) is dropped."""
    m = _boxes()
    system = PixelRIS().eval()
    ref = _pred(torch.stack([m["A"], m["S"]]), [0.9, 0.6])
    others = [torch.stack([m["A2"], m["C"]])] * 5 + [torch.stack([m["A"]])] * 2
    preds = [_pred(o, [0.8, 0.7][: o.shape[0]]) for o in others]
    got = vote(system, ref, preds, others, overlap="argmax")
    mean_a = (m["A"] + 5 * m["A2"] + 2 * m["A"]) / 8
    want = torch.zeros(6, 8, dtype=torch.long)
    want[mean_a > 0.5] = 1
    want[m["C"] > 0.5] = 2
    assert torch.equal(got.labels, want)
    assert np.array_equal(got.steps, [0, 2]) and got.masks.shape == (3, 6, 8)     # C: a new slot after the 2 steps
    assert torch.allclose(got.masks[0], mean_a) and torch.allclose(got.masks[2], m["C"])
    assert torch.equal(got.masks[1], m["S"])                               # the dropped step's mask is untouched
    assert got.scores == pytest.approx([(0.9 + 7 * 0.8) / 8, 0.7])
    avg = system.relabel(ref, fuse_masks(ref.masks, others), overlap="argmax")
    assert set(np.unique(avg.labels.numpy())) == {0, 1, 2} and (avg.labels == 2).sum() == (m["S"] > 0.5).sum()


class PixelRIS(RIS):
    """RIS whose step t is a function of each pixel alone: mask t is high where the image's red value
    lies in band t of 4, confidence 0.9 for 4 steps then 0.1. Such a model is exactly equivariant."""

    def __init__(self, instances: int = 4) -> None:
        super().__init__(RIS.tiny())
        self.instances = instances

    def encode(self, image):
        return image

    def step(self, encoded, states, size):
        t = states or 0
        red = encoded[:, 0]                                                # (B, H, W)
        inside = (red >= t / 4) & (red < (t + 1) / 4)                      # (B, H, W)
        logits = torch.where(inside, 3.0, -3.0) + 0.5 * red                # (B, H, W)
        conf = torch.full((encoded.shape[0],), 2.0 if t < self.instances else -2.0)  # (B,)
        return logits, conf, t + 1


def test_tta_of_an_equivariant_model_is_its_plain_prediction():
    system = PixelRIS().eval()
    images = torch.rand(3, 3, 12, 10)                                      # (B, 3, H, W), not square
    plain = system.predict(images, max_steps=8)
    seen = system.predict(to_view(images, VIEWS["d8"][5]), max_steps=8)    # a transposed view as such
    assert seen[0].labels.shape == (10, 12) and not torch.equal(seen[0].labels.T, plain[0].labels)
    for tta, fuse in itertools.product(("flip", "d8"), ("average", "vote")):
        fused = tta_predict(system, images, tta, max_steps=8, fuse=fuse)
        for p, f in zip(plain, fused):
            assert len(p.steps) == 4
            assert torch.equal(f.labels, p.labels) and np.array_equal(f.steps, p.steps)
            assert torch.allclose(f.masks, p.masks)
    for fuse in ("average", "vote"):
        empty = tta_predict(PixelRIS(instances=0).eval(), images, "d8", max_steps=8, fuse=fuse)   # nothing in any view
        assert all(int(p.labels.max()) == 0 and len(p.steps) == 0 == len(p.scores) for p in empty)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_relabel_with_unchanged_masks_is_predict(name):
    """The shared re-assembly follows each system's own rules (the attention system weights by score)."""
    system, _ = load_system(SHIPPED[name])
    ds = load_dataset("leaves", size=(64, 64) if name != "ris" else (106, 100), seed=31, num=3)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    for overlap in ("first", "argmax"):
        for p in system.predict(images, max_steps=12, overlap=overlap):
            assert len(p.steps) >= 2
            again = system.relabel(p, p.masks[torch.as_tensor(p.steps)], overlap=overlap)
            if overlap == "first":                                          # argmax may hand a skipped step's
                assert torch.equal(again.labels, p.labels)                  # few pixels to a neighbour
            assert np.array_equal(again.steps, p.steps) and np.array_equal(again.scores, p.scores)
            assert (again.labels != p.labels).float().mean() < 0.01


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_system_runs_d8_on_a_rectangle(name):
    system, _ = load_system(SHIPPED[name])
    images = load_dataset("leaves", size=(56, 48), seed=5, num=2)
    images = torch.stack([images[i][0] for i in range(2)])                 # (2, 3, 56, 48)
    plain = system.predict(images, max_steps=10)
    for p, f in zip(plain, tta_predict(system, images, "d8", max_steps=10)):
        assert f.labels.shape == (56, 48) and f.masks.shape == p.masks.shape
        assert set(f.steps) <= set(p.steps) and int(f.labels.max()) == len(f.steps)
        if f.classes is not None:
            assert len(f.classes) == len(f.steps)
    for p, f in zip(plain, tta_predict(system, images, "d8", max_steps=10, fuse="vote")):
        assert f.labels.shape == (56, 48) and f.masks.shape[1:] == p.masks.shape[1:]
        assert len(f.steps) <= len(p.steps) and int(f.labels.max()) == len(f.steps) == len(f.scores)
        assert (f.steps < f.masks.shape[0]).all() and len(f.conf) == f.masks.shape[0]
        assert (f.classes is None) == (p.classes is None) and (f.classes is None or len(f.classes) == len(f.steps))


@pytest.fixture(scope="module")
def rosettes(tmp_path_factory):
    """Two CVPPP-shaped scenes (106 x 100, 11-20 leaves) for the end-to-end check of the shipped file."""
    folder = tmp_path_factory.mktemp("rosettes") / "s"
    assert main(["export", "--data", "leaves", "--style", "rosette", "--size", "106", "100", "--leaves", "11", "20",
                 "--seed", "77", "--num", "2", "--out", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def leaves(tmp_path_factory):
    """Two 64 x 64 synthetic scenes for the shipped leaves checkpoint."""
    folder = tmp_path_factory.mktemp("leaves") / "s"
    assert main(["export", "--data", "leaves", "--seed", "4242", "--num", "2", "--out", str(folder)]) == 0
    return folder


def hand_flip_average(system, image: torch.Tensor, max_steps: int) -> np.ndarray:
    """--tta flip --overlap argmax written out for one image (3, H, W): predict the four flips with
    the plain system, flip each view's kept masks back (numpy), match them to the plain view's by
    scipy's Hungarian on the IoU of the masks > 0.5, average pairs above IoU 0.1, then give each
    pixel to the highest averaged mask above 0.5 and drop instances of fewer than 4 pixels."""
    from scipy.optimize import linear_sum_assignment

    kept = []
    for axes in ((), (-1,), (-2,), (-2, -1)):
        view = image.flip(axes) if axes else image
        p = system.predict(view[None], max_steps=max_steps, overlap="argmax")[0]
        m = p.masks[torch.as_tensor(p.steps)].numpy()                         # (K_v, H, W) in the view
        kept.append(np.flip(m, [a % 3 for a in axes]) if axes else m)        # back in the image's frame
    ref = kept[0]
    total, count = ref.astype(np.float64).copy(), np.ones(len(ref))
    for other in kept[1:]:
        iou = np.array([[((a > 0.5) & (b > 0.5)).sum() / max(((a > 0.5) | (b > 0.5)).sum(), 1) for b in other]
                        for a in ref]).reshape(len(ref), len(other))
        for k, j in zip(*linear_sum_assignment(-iou)):
            if iou[k, j] > 0.1:
                total[k] += other[j]
                count[k] += 1
    fused = (total / count[:, None, None]).astype(np.float32)                 # (K, H, W)
    labels = np.zeros(image.shape[-2:], np.int64)
    if len(fused):
        owner, best = fused.argmax(0), fused.max(0)
        k_new = 0
        for k in range(len(fused)):
            mine = (owner == k) & (best > 0.5)
            if mine.sum() >= 4:
                k_new += 1
                labels[mine] = k_new
    return labels


def test_predict_tta_flip_equals_the_fusion_written_out(leaves, tmp_path):
    """predict --tta flip --overlap argmax writes the label maps of the fusion composed by hand from
    plain predictions; evaluate --checkpoint --tta scores the same maps as evaluate of the PNGs."""
    ckpt = shipped_checkpoint("ris", "quick")
    out, plain_out = tmp_path / "tta", tmp_path / "plain"
    common = ["--checkpoint", str(ckpt), "--data", "folder", "--root", str(leaves), "--overlap", "argmax"]
    assert main(["predict", *common, "--tta", "flip", "--out", str(out)]) == 0
    assert main(["predict", *common, "--out", str(plain_out)]) == 0
    system, _ = load_system(ckpt)
    ds = load_dataset("folder", root=leaves, split="all", size=(64, 64))
    changed = 0
    for i in range(len(ds)):
        name = f"{ds.ids[i]}.png"
        got = read_label(out / name).numpy()
        np.testing.assert_array_equal(got, hand_flip_average(system, ds[i][0], max_steps=12))
        changed += not np.array_equal(got, read_label(plain_out / name).numpy())
    assert changed >= 1                                                    # the views do change the masks
    js = tmp_path / "e.json"
    assert main(["evaluate", *common, "--tta", "flip", "--json", str(js)]) == 0
    assert main(["evaluate", "--pred", str(out), "--gt", str(leaves / "labels"), "--json", str(tmp_path / "f.json")]) == 0
    a, b = (json.loads(p.read_text())["mean"] for p in (js, tmp_path / "f.json"))
    assert a["SBD"] == pytest.approx(b["SBD"]) and a["abs_DiC"] == pytest.approx(b["abs_DiC"])


def test_shipped_cvppp_like_file_end_to_end_with_the_vote(rosettes, tmp_path):
    """The shipped CVPPP-shaped file through predict --tta d8 --tta-fuse vote --overlap argmax: the
    labels are the vote (rsis_lite.tta.vote, tested on hand-built views above) of the eight plain
    predictions composed here, each keeps the plain view's count up to dropped slivers, and
    evaluate --checkpoint scores the same maps as evaluate of the PNGs."""
    common = ["--checkpoint", str(CVPPP_LIKE), "--data", "folder", "--root", str(rosettes), "--overlap", "argmax",
              "--tta", "d8"]
    out = tmp_path / "vote"
    assert main(["predict", *common, "--tta-fuse", "vote", "--out", str(out)]) == 0
    system, _ = load_system(CVPPP_LIKE)
    ds = load_dataset("folder", root=rosettes, split="all", size=(106, 100))
    images = torch.stack([ds[i][0] for i in range(len(ds))])               # (2, 3, 106, 100)
    views = VIEWS["d8"]
    per_view = [system.predict(to_view(images, v), max_steps=24, overlap="argmax") for v in views]
    for i in range(len(ds)):
        ref, others = per_view[0][i], [p[i] for p in per_view[1:]]
        back = [from_view(p.masks[torch.as_tensor(p.steps)], v) for p, v in zip(others, views[1:])]
        want = vote(system, ref, others, back, overlap="argmax")
        lab = read_label(out / f"{ds.ids[i]}.png").numpy()
        np.testing.assert_array_equal(lab, want.labels.numpy())
        assert int(lab.max()) <= len(ref.steps) and int(lab.max()) >= 11 - 3   # a plant of 11-20 leaves
    js = tmp_path / "e.json"
    assert main(["evaluate", *common, "--tta-fuse", "vote", "--json", str(js)]) == 0
    assert main(["evaluate", "--pred", str(out), "--gt", str(rosettes / "labels"), "--json", str(tmp_path / "f.json")]) == 0
    a, b = (json.loads(p.read_text())["mean"] for p in (js, tmp_path / "f.json"))
    assert a["SBD"] == pytest.approx(b["SBD"]) and a["abs_DiC"] == pytest.approx(b["abs_DiC"]) and a["SBD"] > 0.6


def test_tta_refusals_are_one_line(rosettes, tmp_path, capsys):
    code = main(["predict", "--checkpoint", str(CVPPP_LIKE), "--data", "folder", "--root", str(rosettes),
                 "--tta", "d4", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code != 0 and not (tmp_path / "x").exists() and "--tta" in err and "d8" in err and "Traceback" not in err
    code = main(["evaluate", "--pred", str(rosettes / "labels"), "--gt", str(rosettes / "labels"), "--tta", "d8"])
    err = capsys.readouterr().err
    assert code != 0 and "--tta needs --checkpoint" in err and "Traceback" not in err
    code = main(["predict", "--checkpoint", str(CVPPP_LIKE), "--data", "folder", "--root", str(rosettes),
                 "--tta-fuse", "vote", "--out", str(tmp_path / "y")])
    err = capsys.readouterr().err
    assert code != 0 and not (tmp_path / "y").exists() and "--tta-fuse needs --tta" in err and "Traceback" not in err
    code = main(["evaluate", "--pred", str(rosettes / "labels"), "--gt", str(rosettes / "labels"), "--tta-fuse", "vote"])
    err = capsys.readouterr().err
    assert code != 0 and "--tta-fuse needs --checkpoint" in err and "Traceback" not in err
    code = main(["predict", "--checkpoint", str(CVPPP_LIKE), "--data", "folder", "--root", str(rosettes),
                 "--tta", "d8", "--tta-fuse", "majority", "--out", str(tmp_path / "z")])
    err = capsys.readouterr().err
    assert code != 0 and "--tta-fuse" in err and "vote" in err and "Traceback" not in err
