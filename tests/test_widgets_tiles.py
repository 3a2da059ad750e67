"""rsis_lite.widgets.tiles: the moved grid still covers the image with the asked overlap, the cut
instances are those no single tile holds whole (brute force over pixels), and the widget re-runs
when a slider moves (headless)."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rsis_lite.tiling import tile_boxes  # noqa: E402
from rsis_lite.widgets.tiles import grid_stats, shifted_boxes, tile_grid_explorer, tile_grid_figure  # noqa: E402


@pytest.mark.parametrize("dy,dx", [(0, 0), (5, 0), (0, 17), (23, 11)])
def test_a_moved_grid_covers_the_image_and_keeps_the_overlap(dy, dx):
    shape, tile, overlap = (90, 130), 40, 12
    boxes = shifted_boxes(shape, tile, overlap, dy, dx)
    covered = np.zeros(shape, int)
    for y0, x0, y1, x1 in boxes:
        assert 0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1] and y1 - y0 <= tile and x1 - x0 <= tile
        covered[y0:y1, x0:x1] += 1
    assert (covered >= 1).all()
    # neighbours in a row share at least the overlap (the clipped first tile may be narrower)
    xs = sorted({(x0, x1) for _, x0, _, x1 in boxes})
    assert all(a1 - b0 >= overlap for (a0, a1), (b0, b1) in zip(xs, xs[1:]))
    if (dy, dx) == (0, 0):
        assert boxes == tile_boxes(shape, tile, overlap)


def test_cut_instances_are_those_no_tile_holds_whole():
    rng = np.random.default_rng(0)
    lab = np.zeros((100, 100), np.int64)
    for k in range(1, 30):
        y, x, s = rng.integers(0, 90), rng.integers(0, 90), rng.integers(3, 14)
        lab[y:y + s, x:x + s] = k
    boxes = shifted_boxes(lab.shape, 40, 10, 7, 3)
    stats = grid_stats(lab, boxes)
    ids = [k for k in range(1, 30) if (lab == k).any()]
    brute = [k for k in ids if not any(((lab == k)[y0:y1, x0:x1].sum() == (lab == k).sum())
                                       for y0, x0, y1, x1 in boxes)]
    assert stats["cut"] == brute and stats["n"] == len(ids) and stats["tiles"] == len(boxes)
    assert stats["most"] == max(len({int(v) for v in np.unique(lab[y0:y1, x0:x1]) if v}) for y0, x0, y1, x1 in boxes)
    # an overlap wider than every object leaves nothing cut
    assert grid_stats(lab, shifted_boxes(lab.shape, 60, 20, 0, 0))["cut"] == []


def test_the_figure_and_the_widget_draw():
    lab = np.zeros((64, 80), np.int64)
    lab[28:36, 30:38] = 1                        # on the border of 32-px tiles without overlap
    image = np.zeros((64, 80, 3), np.float32)
    ax = tile_grid_figure(image, lab, 32, 0)
    assert "1 of 1 nuclei cut" in ax.get_title()
    w = tile_grid_explorer(image, lab, tile=32, overlap=0)
    tile, overlap, dy, dx = w.children[:4]
    dy.value, dx.value = 8, 8                     # the grid moves: the square now lies inside a tile
    assert (dy.value, dx.value) == (8, 8) and len(w.children) == 5 and w.result is None
    assert grid_stats(lab, shifted_boxes(lab.shape, 32, 0, 8, 8))["cut"] == []
    assert "0 of 1 nuclei cut" in tile_grid_figure(image, lab, 32, 0, 8, 8).get_title()
