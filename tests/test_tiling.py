"""Tiled inference: the tile grid, the merge of instances cut by tile borders on cases with known
answers (an object on a corner shared by four tiles, two touching objects on a border, an object
larger than the overlap, a U shape, a bad mask that must not chain objects, a second view that must
not leave a sliver, many random blobs), an oracle system through the predict loop, the
command line; and the DSB2018 score against a brute-force computation."""
import numpy as np
import pytest
import torch

from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.commands import main
from rsis_lite.data.io import read_label
from rsis_lite.metrics import dsb_score
from rsis_lite.systems import StepOut, System
from rsis_lite.tiling import merge_tiles, predict_tiled, tile_boxes, tile_origins


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label maps are the same up to renaming the ids (a bijection, background fixed)."""
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = {(int(x), int(y)) for x, y in zip(a.ravel(), b.ravel())}
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


def oracle_tiles(gt: np.ndarray, tile: int, overlap: int, rng) -> list:
    """Each tile's view of the ground truth, with the tile's own ids in a random order."""
    out = []
    for (y0, x0, y1, x1) in tile_boxes(gt.shape, tile, overlap):
        crop = gt[y0:y1, x0:x1]
        ids = [int(v) for v in np.unique(crop) if v]
        new = np.zeros_like(crop)
        for k, old in enumerate(rng.permutation(ids), start=1):
            new[crop == old] = k
        out.append(((y0, x0, y1, x1), new))
    return out


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (64, 64, 16), (30, 64, 16), (257, 64, 31)])
def test_tiles_cover_the_axis_and_overlap_as_asked(length, tile, overlap):
    starts = tile_origins(length, tile, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered.all() and starts[0] == 0 and min(starts[-1] + tile, length) == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_an_object_on_a_corner_shared_by_four_tiles():
    gt = np.zeros((60, 60), np.int64)
    gt[22:38, 22:38] = 1                       # tiles of 32 with overlap 8 meet around (28..32)
    gt[2:8, 2:8] = 2
    merged = merge_tiles(gt.shape, oracle_tiles(gt, 32, 8, np.random.default_rng(0)))
    assert same_partition(merged, gt) and int(merged.max()) == 2


def test_two_touching_objects_on_a_border_stay_two():
    gt = np.zeros((40, 70), np.int64)
    gt[10:30, 20:36] = 1
    gt[10:30, 36:52] = 2                       # they touch at x = 36, inside the shared strip 32..40
    merged = merge_tiles(gt.shape, oracle_tiles(gt, 40, 8, np.random.default_rng(1)))
    assert same_partition(merged, gt) and int(merged.max()) == 2


def test_an_object_larger_than_the_overlap_spanning_three_tiles():
    gt = np.zeros((30, 100), np.int64)
    gt[5:25, 3:97] = 1                         # 94 px wide; tiles of 40 overlapping by 10
    gt[0:3, 0:3] = 2
    merged = merge_tiles(gt.shape, oracle_tiles(gt, 40, 10, np.random.default_rng(2)))
    assert same_partition(merged, gt) and int(merged.max()) == 2


def test_a_u_shape_entering_an_earlier_tile_twice_is_one_object():
    from scipy import ndimage
    gt = np.zeros((40, 70), np.int64)
    gt[5:35, 44:50] = 1                        # the bottom of the U, in the right tile only ...
    gt[5:10, 25:50] = 1                        # ... and its two arms reach into the left tile
    gt[30:35, 25:50] = 1
    left = ndimage.label(gt[:, :40])[0]        # the left tile sees the two arms as two objects
    right = ndimage.label(gt[:, 30:])[0]       # the right tile sees one U
    assert int(left.max()) == 2 and int(right.max()) == 1
    merged = merge_tiles(gt.shape, [((0, 0, 40, 40), left), ((0, 30, 40, 70), right)])
    assert same_partition(merged, gt)


def test_a_mask_spilling_over_background_does_not_chain_its_neighbours():
    """The right tile draws one mask over three small objects and the background between them (a
    bad prediction); joining it with each object it contains would make the three one object."""
    gt = np.zeros((40, 70), np.int64)
    for k, y in enumerate((4, 16, 28), start=1):
        gt[y:y + 6, 31:38] = k                 # three objects inside the shared strip 30..40
    left = gt[:, :40].copy()
    right = np.zeros((40, 40), np.int64)
    right[:, 0:20] = 1                         # one mask over all of them and the background
    merged = merge_tiles(gt.shape, [((0, 0, 40, 40), left), ((0, 30, 40, 70), right)])
    assert len({int(merged[y + 2, 33]) for y in (4, 16, 28)}) == 3     # still three objects
    assert int(merged.max()) == 4              # plus the bad mask's own unclaimed pixels


def test_a_small_mask_inside_a_large_earlier_one_does_not_join_it():
    left = np.zeros((40, 40), np.int64)
    left[:, 25:40] = 1                          # a large earlier mask over the whole shared strip
    right = np.zeros((40, 40), np.int64)
    right[2:6, 2:6] = 1                        # a small object inside it in the strip, and beyond
    right[2:6, 2:20] = 1
    right[30:34, 0:20] = 2
    merged = merge_tiles((40, 70), [((0, 0, 40, 40), left), ((0, 30, 40, 70), right)])
    assert int(merged.max()) == 3 and merged[3, 45] != merged[3, 35]


def test_a_second_view_over_claimed_pixels_leaves_no_sliver():
    """Step 3: the right tile draws a nucleus that the left tile already placed (larger) as a small
    mask, mostly inside it and a little beyond the strip. It joins nothing (IoU 0.25 in the strip),
    and 100 of its 140 pixels are claimed: it is dropped, not kept as a 40-pixel sliver."""
    left = np.zeros((40, 40), np.int64)
    left[:, 20:40] = 1                         # a large object over the whole shared strip 30..40
    right = np.zeros((40, 40), np.int64)
    right[10:20, 0:14] = 1                     # image columns 30..44: 100 px in the strip, 40 beyond
    right[30:36, 20:30] = 2                    # a nucleus of the right tile only
    merged = merge_tiles((40, 70), [((0, 0, 40, 40), left), ((0, 30, 40, 70), right)])
    assert int(merged.max()) == 2
    assert (merged[10:20, 40:44] == 0).all() and (merged[30:36, 50:60] > 0).all()


def test_many_random_blobs_are_rebuilt_exactly():
    rng = np.random.default_rng(3)
    gt = np.zeros((150, 170), np.int64)
    for k in range(1, 60):
        r0, c0 = rng.integers(0, 140), rng.integers(0, 160)
        gt[r0:r0 + rng.integers(3, 25), c0:c0 + rng.integers(3, 25)] = k   # later blobs cover earlier ones
    from rsis_lite.data.instances import relabel_sequential
    gt = relabel_sequential(torch.as_tensor(gt)).numpy()
    # a blob cut into pieces by later ones is several objects for the merge as for the tiles:
    # compare with the connected pieces of each id
    from scipy import ndimage
    pieces = np.zeros_like(gt)
    n = 0
    for k in range(1, int(gt.max()) + 1):
        comp, m = ndimage.label(gt == k)
        for j in range(1, m + 1):
            n += 1
            pieces[comp == j] = n
    merged = merge_tiles(pieces.shape, oracle_tiles(pieces, 48, 16, rng))
    assert same_partition(merged, pieces)


class Oracle(System):
    """Reads the ids written into the image's first channel (id / 255) and emits one id per step."""

    name = "oracle_stub"

    def __init__(self) -> None:
        super().__init__(None)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def begin(self, images):
        ids = torch.round(images[:, 0] * 255).long()                           # (B, H, W)
        order = [[int(v) for v in torch.unique(m) if v] for m in ids]
        return ids, order, 0

    def emit(self, state):
        ids, order, t = state
        b = ids.shape[0]
        mask = torch.stack([(ids[i] == order[i][t]).float() if t < len(order[i]) else torch.zeros_like(ids[i],
                            dtype=torch.float32) for i in range(b)])
        go = torch.tensor([1.0 if t < len(order[i]) else 0.0 for i in range(b)])
        return StepOut(mask, go, go), (ids, order, t + 1)


def test_the_predict_loop_of_an_oracle_by_tiles_rebuilds_the_image():
    rng = np.random.default_rng(4)
    gt = np.zeros((90, 130), np.int64)
    for k in range(1, 40):
        r0, c0 = rng.integers(0, 85), rng.integers(0, 125)
        gt[r0:r0 + rng.integers(2, 12), c0:c0 + rng.integers(2, 12)] = k
    from scipy import ndimage
    pieces, n = np.zeros_like(gt), 0
    for k in range(1, int(gt.max()) + 1):
        comp, m = ndimage.label(gt == k)
        for j in range(1, m + 1):
            n += 1
            pieces[comp == j] = n
    assert n < 255
    image = torch.zeros(3, *gt.shape)
    image[0] = torch.from_numpy(pieces).float() / 255
    lab = predict_tiled(Oracle(), image, tile=32, overlap=12, max_steps=60, min_new_pixels=1)
    assert same_partition(lab, pieces)


def brute_dsb(pred: np.ndarray, gt: np.ndarray) -> float:
    p_ids = [k for k in np.unique(pred) if k]
    g_ids = [k for k in np.unique(gt) if k]
    if not p_ids and not g_ids:
        return 1.0
    scores = []
    for t in np.arange(0.5, 0.951, 0.05):
        matched_p, matched_g = set(), set()
        for i in p_ids:
            for j in g_ids:
                a, b = pred == i, gt == j
                if (a & b).sum() / (a | b).sum() > t and i not in matched_p and j not in matched_g:
                    matched_p.add(i)
                    matched_g.add(j)
        tp = len(matched_p)
        scores.append(tp / (tp + len(p_ids) - tp + len(g_ids) - tp))
    return float(np.mean(scores))


def test_dsb_score_matches_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(15):
        gt = np.zeros((30, 30), np.int64)
        for k in range(1, rng.integers(0, 7)):
            r, c = rng.integers(0, 24, 2)
            gt[r:r + rng.integers(3, 7), c:c + rng.integers(3, 7)] = k
        pred = np.roll(gt, rng.integers(0, 3), axis=1)
        pred[rng.random(pred.shape) < 0.05] = 0
        assert dsb_score(pred, gt) == pytest.approx(brute_dsb(pred, gt))
    assert dsb_score(np.zeros((4, 4), np.int64), np.zeros((4, 4), np.int64)) == 1.0


def test_dsb_score_at_an_iou_equal_to_a_threshold_follows_the_kaggle_kernel():
    """One nucleus of 10 pixels, predicted as 9 of them: IoU exactly 9/10. The DSB2018 evaluation
    kernel thresholds np.arange(0.5, 1.0, 0.05) with IoU > t: a hit at 0.5, 0.55, ..., 0.85 and a
    miss at its 0.9000000000000004 and at 0.95, so 8 hits of 10 thresholds."""
    gt = np.zeros((4, 5), np.int64)
    gt[:2, :] = 1                              # 10 pixels
    pred = gt.copy()
    pred[0, 0] = 0                             # 9 of them
    assert dsb_score(pred, gt) == pytest.approx(8 / 10)


def test_predict_by_tiles_from_the_command_line(tmp_path, monkeypatch):
    import rsis_lite.inference as inf

    calls = []
    real = inf.predict_tiled
    monkeypatch.setattr(inf, "predict_tiled", lambda system, image, *a, **k:
                        calls.append(tuple(image.shape)) or real(system, image, *a, **k))
    data = tmp_path / "D"
    assert main(["export", "--data", "leaves", "--size", "150", "130", "--num", "1", "--out", str(data)]) == 0
    out = tmp_path / "P"
    assert main(["predict", "--checkpoint", str(shipped_checkpoint("ris", "quick")), "--data", "folder",
                 "--root", str(data), "--tile", "64", "--tile-overlap", "16", "--out", str(out)]) == 0
    lab = read_label(out / "scene00000.png")
    assert tuple(lab.shape) == (150, 130) and int(lab.max()) >= 1
    assert calls == [(3, 150, 130)]                                      # the whole image, at its own size
    assert main(["predict", "--checkpoint", str(shipped_checkpoint("ris", "quick")), "--data", "folder",
                 "--root", str(data), "--tile", "64", "--tile-overlap", "64", "--out", str(tmp_path / "x")]) == 2
    # evaluate by tiles reports the seams: compare its counts with a pixel-by-pixel count
    import json

    from rsis_lite.data.io import read_label as _read
    from rsis_lite.tiling import seam_splits
    js = tmp_path / "e.json"
    assert main(["evaluate", "--checkpoint", str(shipped_checkpoint("ris", "quick")), "--data", "folder",
                 "--root", str(data), "--tile", "64", "--tile-overlap", "16", "--json", str(js)]) == 0
    seams = json.loads(js.read_text())["seams"]
    gt = _read(data / "labels" / "scene00000.png").numpy()
    assert seams == seam_splits(lab.numpy(), gt, 64, 16) and seams["instances"] == int(gt.max())


def test_seam_splits_against_a_count_by_hand():
    """Tiles of 40 overlapping by 10 on a 40 x 70 image: the border region is x = 30..40. True
    instances: 1 crosses it (cut), 2 lies left of it, 3 lies inside the strip (whole in both tiles).
    The prediction splits 1 at the seam and 2 in the middle, and keeps 3 whole."""
    gt = np.zeros((40, 70), np.int64)
    gt[5:15, 20:50] = 1
    gt[20:30, 2:22] = 2
    gt[30:36, 31:38] = 3
    pred = np.zeros_like(gt)
    pred[5:15, 20:35] = 1
    pred[5:15, 35:50] = 2                     # instance 1 in two halves
    pred[20:30, 2:12] = 3
    pred[20:30, 12:22] = 4                    # instance 2 in two halves
    pred[30:36, 31:38] = 5
    pred[30:36, 31:32] = 6                    # a sliver of 3: under a fifth of it, not a split
    from rsis_lite.tiling import cut_instances, seam_splits, split_instances
    assert cut_instances(gt, tile_boxes(gt.shape, 40, 10)) == [1]
    assert split_instances(pred, gt) == [1, 2]
    assert seam_splits(pred, gt, 40, 10) == {"instances": 3, "cut": 1, "split_at_seam": 1, "split_elsewhere": 1}


def test_the_grid_of_a_resized_image_in_the_images_pixels():
    """An 80 x 140 image resized by 0.5 is 40 x 70, cut into tiles of 40 overlapping by 10: origins
    x = 0, 30 there, so x = 0..80 and 60..140 here (the strip x = 60..80). Instance 1 crosses the
    strip (cut), instances 2 and 3 lie in one tile each; at scale 1 the grid of 40-px tiles on the
    full image (x origins 0, 30, 60, 90, 100) cuts 2 (x = 45..75) as well."""
    from rsis_lite.tiling import cut_instances, scaled_tile_boxes, seam_splits

    assert scaled_tile_boxes((80, 140), 40, 10, 0.5) == [(0, 0, 80, 80), (0, 60, 80, 140)]
    assert scaled_tile_boxes((80, 140), 40, 10) == tile_boxes((80, 140), 40, 10)
    gt = np.zeros((80, 140), np.int64)
    gt[10:30, 40:100] = 1
    gt[40:55, 45:75] = 2
    gt[60:72, 62:76] = 3
    assert cut_instances(gt, scaled_tile_boxes(gt.shape, 40, 10, 0.5)) == [1]
    assert cut_instances(gt, tile_boxes(gt.shape, 40, 10)) == [1, 2]
    pred = gt.copy()
    pred[10:30, 70:100] = 4                               # instance 1 in two halves
    assert seam_splits(pred, gt, 40, 10, scale=0.5) == {"instances": 3, "cut": 1, "split_at_seam": 1,
                                                        "split_elsewhere": 0}
