"""SyntheticLeaves: determinism, the dataset contract, and plausible scenes."""
import numpy as np
import pytest
import torch

from rsis_lite.data.synthetic import SyntheticLeaves, render_scene


def test_same_scene_from_two_fresh_objects_and_any_order():
    a = SyntheticLeaves(20, seed=7)
    b = SyntheticLeaves(20, seed=7)
    forward = [a[i] for i in range(5)]
    backward = [b[i] for i in reversed(range(5))][::-1]
    for (ia, la), (ib, lb) in zip(forward, backward):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    # The pure function with the documented generator gives the same scene.
    img, lab = render_scene(np.random.default_rng([7, 3]), 64)
    np.testing.assert_array_equal(img, a[3][0].permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(lab, a[3][1].numpy())


def test_differs_across_seeds_and_indices():
    a, b = SyntheticLeaves(3, seed=0), SyntheticLeaves(3, seed=1)
    assert not torch.equal(a[0][0], b[0][0])
    assert not torch.equal(a[0][0], a[1][0])


@pytest.mark.parametrize("size", [64, 128])
def test_contract(size):
    ds = SyntheticLeaves(8, size=size, seed=3)
    assert len(ds) == 8 and ds.ids[0] == "scene00000" and list(ds.ids)[-1] == "scene00007"
    for i in range(len(ds)):
        img, lab = ds[i]
        assert img.shape == (3, size, size) and img.dtype == torch.float32
        assert lab.shape == (size, size) and lab.dtype == torch.int64
        assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
        ids = torch.unique(lab).tolist()
        assert ids == list(range(int(lab.max()) + 1))  # gapless 0..K (background present)


def test_non_square_size():
    img, lab = SyntheticLeaves(1, size=(48, 80))[0]
    assert img.shape == (3, 48, 80) and lab.shape == (48, 80)


def test_counts_mostly_within_range_and_visible_areas():
    ds = SyntheticLeaves(100, size=64, seed=11, min_leaves=3, max_leaves=6)
    counts = []
    for i in range(len(ds)):
        _, lab = ds[i]
        k = int(lab.max())
        counts.append(k)
        areas = torch.bincount(lab.flatten())[1:]
        assert int(areas.min()) >= 10  # tiny slivers are removed
    counts = np.array(counts)
    assert counts.max() <= 6
    assert (counts >= 3).mean() >= 0.9  # occlusion may remove a leaf now and then
    assert len(set(counts.tolist())) >= 3  # the count really varies


def test_leaves_are_green_and_soil_is_not():
    img, lab = SyntheticLeaves(1, size=128, seed=5)[0]
    fg = lab > 0
    r, g, b = img
    assert (g[fg] > r[fg]).float().mean() > 0.9
    assert (g[~fg] > r[~fg]).float().mean() < 0.5


def test_transform_is_applied():
    calls = []

    def t(img, lab):
        calls.append(1)
        return img.flip(-1), lab.flip(-1)

    plain, tr = SyntheticLeaves(2, seed=1), SyntheticLeaves(2, seed=1, transform=t)
    assert torch.equal(tr[1][1], plain[1][1].flip(-1)) and calls == [1]
