"""rsis_lite.widgets.metrics: each perturbation does what it says, the metrics move the right way,
and the widget builds and re-runs its callback when a control changes (headless)."""
import numpy as np
import pytest

from rsis_lite.metrics import image_scores
from rsis_lite.widgets.metrics import (OPERATIONS, align_ids, instance_ids, perturb, perturbation_explorer,
                                       perturbation_gallery, scores_of)


@pytest.fixture
def gt():
    """32x40: two touching rectangles (1, 2), a disc (3), a small square (5; id 4 left out on purpose)."""
    lab = np.zeros((32, 40), dtype=np.int64)
    lab[3:13, 3:11] = 1
    lab[3:13, 11:19] = 2
    yy, xx = np.mgrid[:32, :40]
    lab[(yy - 8) ** 2 + (xx - 30) ** 2 <= 25] = 3
    lab[20:26, 6:12] = 5
    return lab


def area(lab, k):
    return int((lab == k).sum())


def test_none_is_an_exact_copy(gt):
    out = perturb(gt, "none", 1)
    assert np.array_equal(out, gt) and out is not gt
    s = scores_of(out, gt)
    assert s["SBD"] == s["FBD"] == s["MWCov"] == s["MUCov"] == 1.0 and s["DiC"] == 0


def test_drop_removes_the_id_only(gt):
    out = perturb(gt, "drop", 2)
    assert 2 not in instance_ids(out)
    assert instance_ids(out) == [1, 3, 5]
    assert np.array_equal(out[gt != 2], gt[gt != 2]) and (out[gt == 2] == 0).all()
    s = scores_of(out, gt)
    assert s["DiC"] == -1 and s["MUCov"] == pytest.approx(0.75) and s["MWCov"] < 1


def test_split_adds_one_instance_from_the_pixels_of_the_original(gt):
    out = perturb(gt, "split", 3)
    assert len(instance_ids(out)) == len(instance_ids(gt)) + 1
    new = max(instance_ids(out))
    assert new == gt.max() + 1
    assert ((out == 3) | (out == new)).sum() == area(gt, 3)            # same pixels, two ids
    assert abs(area(out, 3) - area(out, new)) <= 1 + area(gt, 3) // 10  # two halves
    assert np.array_equal(out > 0, gt > 0)
    s = scores_of(out, gt)
    assert s["DiC"] == 1 and s["FBD"] == 1.0 and s["SBD"] < 1


def test_merge_joins_the_touching_neighbour(gt):
    out = perturb(gt, "merge", 1)
    assert len(instance_ids(out)) == len(instance_ids(gt)) - 1
    assert 2 not in instance_ids(out) and area(out, 1) == area(gt, 1) + area(gt, 2)
    s = scores_of(out, gt)
    assert s["DiC"] == -1 and s["FBD"] == 1.0 and s["SBD"] < 1 and s["MUCov"] < 1


def test_merge_without_contact_takes_the_nearest(gt):
    out = perturb(gt, "merge", 5)               # 5 touches nothing; 1 is the nearest centroid
    assert 1 not in instance_ids(out) and area(out, 5) == area(gt, 5) + area(gt, 1)


def test_dilate_grows_and_erode_shrinks(gt):
    for r in (1, 2, 3):
        grown = perturb(gt, "dilate", 3, amount=r)
        shrunk = perturb(gt, "erode", 3, amount=r)
        assert area(grown, 3) > area(gt, 3) and (grown[gt == 3] == 3).all()
        assert 0 < area(shrunk, 3) < area(gt, 3) and (gt[shrunk == 3] == 3).all()
        assert instance_ids(grown) == instance_ids(gt) == instance_ids(shrunk)
    assert area(perturb(gt, "dilate", 3, 2), 3) > area(perturb(gt, "dilate", 3, 1), 3)
    assert area(perturb(gt, "erode", 3, 2), 3) < area(perturb(gt, "erode", 3, 1), 3)
    # Erosion never deletes an instance, however large the radius.
    assert area(perturb(gt, "erode", 5, amount=50), 5) == 1
    # Dilating a rectangle into its touching neighbour takes the neighbour's pixels.
    leak = perturb(gt, "dilate", 1, amount=2)
    assert area(leak, 2) < area(gt, 2)


def test_add_fp_adds_instances_off_the_ground_truth(gt):
    for n in (1, 3):
        out = perturb(gt, "add_fp", amount=n, seed=0)
        new = [k for k in instance_ids(out) if k not in instance_ids(gt)]
        assert len(new) == n and min(new) > gt.max()
        assert np.array_equal(out[gt > 0], gt[gt > 0])      # the gt's pixels are untouched
        assert all((gt[out == k] == 0).all() for k in new)  # no false positive overlaps the gt
    assert np.array_equal(perturb(gt, "add_fp", amount=2, seed=4), perturb(gt, "add_fp", amount=2, seed=4))


def test_metric_directions(gt):
    base = scores_of(gt, gt)
    dropped = scores_of(perturb(gt, "drop", 3), gt)
    assert dropped["MUCov"] < base["MUCov"] and dropped["MWCov"] < base["MWCov"]
    fp = scores_of(perturb(gt, "add_fp", amount=4), gt)
    assert fp["MWCov"] == base["MWCov"] and fp["MUCov"] == base["MUCov"]    # coverage is blind to FPs
    assert fp["DiC"] == 4 > base["DiC"] and fp["SBD"] < base["SBD"] and fp["FBD"] < base["FBD"]
    merged = scores_of(perturb(gt, "merge", 1), gt)
    assert merged["FBD"] == 1.0 and merged["SBD"] < 1 and merged["MWCov"] < 1
    eroded = scores_of(perturb(gt, "erode", 3, 2), gt)
    assert eroded["DiC"] == 0 and eroded["SBD"] < 1 and eroded["FBD"] < 1
    assert scores_of(gt, gt) == {k: image_scores(gt, gt)[k] for k in base}


def test_bad_arguments(gt):
    with pytest.raises(ValueError):
        perturb(gt, "explode", 1)
    with pytest.raises(ValueError):
        perturb(gt, "drop", 4)                  # id 4 is not in the map
    with pytest.raises(ValueError):
        perturb(gt.astype(float), "none")


def test_align_ids_gives_matched_predictions_the_gt_colour(gt):
    pred = np.zeros_like(gt)
    pred[gt == 1] = 7
    pred[gt == 3] = 2
    pred[30:32, 0:2] = 4                        # matches nothing
    out = align_ids(pred, gt)
    assert (out[gt == 1] == 1).all() and (out[gt == 3] == 3).all()
    assert set(np.unique(out[30:32, 0:2])) == {6}
    assert np.array_equal(out > 0, pred > 0)


def test_widget_builds_and_reacts_to_every_control(gt):
    pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = perturbation_explorer(gt)
    instance, op, amount = w.children[:3]
    assert list(instance.options) == [1, 2, 3, 5]
    assert {v for _, v in op.options} == set(OPERATIONS)
    w.update()
    assert w.result["SBD"] == 1.0 and w.result["DiC"] == 0
    op.value = "drop"
    assert w.result["DiC"] == -1
    instance.value = 5
    assert w.result["MUCov"] == pytest.approx(0.75)
    op.value = "add_fp"
    amount.value = 3
    assert w.result["DiC"] == 3 and w.result["MWCov"] == 1.0
    op.value = "dilate"
    before = w.result["SBD"]
    amount.value = 1
    assert w.result["SBD"] > before
    plt.close("all")


def test_gallery_scores_every_case(gt):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [("none", None, 0), ("drop", 3, 0), ("split", 1, 0), ("add_fp", None, 2)]
    fig, rows = perturbation_gallery(gt, cases, ncols=2)
    assert [r["DiC"] for r in rows] == [0, -1, 1, 2]
    assert rows[0]["SBD"] == 1.0 and len(fig.axes) == 4
    plt.close(fig)
