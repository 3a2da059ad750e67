"""The dataset browser of notebook 00 builds on tiny data and every control redraws the right scene."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("ipywidgets")

from rsis_lite.data import InstanceFolder, SyntheticLeaves, write_label  # noqa: E402
from rsis_lite.widgets.browse import VIEWS, dataset_browser, draw_view  # noqa: E402


@pytest.fixture
def folder(tmp_path):
    """Two 24x20 scenes in the images/ + labels/ layout; scene b has ids with gaps {0, 3, 9}."""
    from PIL import Image

    (tmp_path / "images").mkdir()
    a = np.zeros((24, 20), np.int64)
    a[2:10, 2:8], a[12:20, 10:18], a[3:6, 12:18] = 1, 2, 3
    b = np.zeros((24, 20), np.int64)
    b[5:15, 5:15], b[16:22, 1:4] = 3, 9
    for name, lab in (("a", a), ("b", b)):
        rgb = (np.random.default_rng(0).uniform(size=(24, 20, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / "images" / f"{name}.png")
        write_label(tmp_path / "labels" / f"{name}.png", lab)
    return InstanceFolder(tmp_path)


@pytest.fixture
def datasets(folder):
    return {"leaves": SyntheticLeaves(3, size=32), "folder": folder}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def controls(w):
    c = {k.description: k for k in w.kwargs_widgets}
    return c["dataset"], c["scene"], c["view"], c["instance"]


def assert_shows(w, datasets):
    r = w.result
    ds = datasets[r["dataset"]]
    assert torch.equal(r["labels"], ds[r["scene"]][1])
    assert r["id"] == ds.ids[r["scene"]]
    assert r["n_instances"] == int(ds[r["scene"]][1].max())
    if r["view"] == "one instance":
        expected = torch.where(r["labels"] == r["instance"], r["labels"], torch.zeros_like(r["labels"]))
        assert torch.equal(r["shown"], expected)
    else:
        assert torch.equal(r["shown"], r["labels"])


def test_builds_and_draws_first_scene(datasets):
    w = dataset_browser(datasets)
    w.update()  # what the notebook front end does when it displays the widget
    assert w.result["dataset"] == "leaves" and w.result["scene"] == 0 and w.result["view"] == "overlay"
    assert_shows(w, datasets)
    data, scene, view, inst = controls(w)
    assert scene.max == 2 and inst.disabled
    assert inst.max == int(datasets["leaves"][0][1].max())


def test_every_control_redraws_the_expected_scene(datasets):
    w = dataset_browser(datasets)
    data, scene, view, inst = controls(w)

    scene.value = 2
    assert w.result["scene"] == 2
    assert_shows(w, datasets)
    assert inst.max == int(datasets["leaves"][2][1].max())

    for v in VIEWS:
        view.value = v
        assert w.result["view"] == v
        assert_shows(w, datasets)
    assert not inst.disabled

    inst.value = inst.max
    assert w.result["instance"] == inst.max
    assert_shows(w, datasets)
    assert int(w.result["shown"].max()) == inst.max and w.result["shown"].unique().numel() == 2

    # Switching to a smaller dataset clamps the scene slider and redraws a scene of the new one.
    data.value = "folder"
    assert scene.max == 1 and scene.value == 1
    assert w.result["dataset"] == "folder" and w.result["scene"] == 1
    assert_shows(w, datasets)
    # Scene b had ids {3, 9}: the dataset relabels them 1..2, the instance slider follows.
    assert inst.max == 2 and set(w.result["labels"].unique().tolist()) == {0, 1, 2}
    assert w.result["instance"] <= 2

    scene.value = 0
    assert_shows(w, datasets)
    assert inst.max == 3

    view.value = "image"
    assert inst.disabled


def test_draw_view_returns_what_it_drew():
    image = torch.rand(3, 8, 8)
    labels = torch.zeros(8, 8, dtype=torch.int64)
    labels[1:4, 1:4], labels[5:7, 2:8] = 1, 2
    for v in ("image", "instances", "overlay"):
        assert torch.equal(draw_view(image, labels, v), labels)
    one = draw_view(image, labels, "one instance", instance=2)
    assert torch.equal(one, labels * (labels == 2))
    with pytest.raises(ValueError, match="instance must be in 1..2"):
        draw_view(image, labels, "one instance", instance=3)
    with pytest.raises(ValueError, match="view must be one of"):
        draw_view(image, labels, "bogus")
    # An empty scene still draws in every view.
    empty = torch.zeros(8, 8, dtype=torch.int64)
    assert torch.equal(draw_view(image, empty, "one instance", instance=1), empty)


def test_rejects_bad_arguments(datasets):
    with pytest.raises(ValueError, match="at least one"):
        dataset_browser({})
    with pytest.raises(ValueError, match="no scenes"):
        dataset_browser({"none": SyntheticLeaves(0, size=16)})
    with pytest.raises(ValueError, match="view must be one of"):
        dataset_browser(datasets, view="bogus")
