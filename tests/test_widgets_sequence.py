"""The sequence explorer of notebook 04: builds on a tiny untrained RIS and reacts to both sliders."""
import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets")
import matplotlib.pyplot as plt  # noqa: E402

from rsis_lite.data import SyntheticLeaves  # noqa: E402
from rsis_lite.systems.ris import RIS  # noqa: E402
from rsis_lite.widgets.sequence import running_labels, sequence_explorer  # noqa: E402

MAX_STEPS = 5


@pytest.fixture(scope="module")
def explorer():
    torch.manual_seed(0)
    model = RIS(RIS.tiny())
    ds = SyntheticLeaves(3, 24, seed=1000, min_leaves=2, max_leaves=3)
    return sequence_explorer(model, ds, max_steps=MAX_STEPS), ds


def _controls(w):
    return {c.description: c for c in w.kwargs_widgets}


def test_sliders_cover_scenes_and_steps(explorer):
    w, ds = explorer
    c = _controls(w)
    assert set(c) == {"scene", "step"}
    assert (c["scene"].min, c["scene"].max) == (0, len(ds) - 1)
    assert (c["step"].min, c["step"].max) == (1, MAX_STEPS)


def test_changing_each_slider_reruns_the_callback(explorer):
    w, ds = explorer
    c = _controls(w)
    plt.close("all")
    w.update()                                       # initial draw: scene 0, step 1
    first = w.result
    assert first["scene"] == 0 and first["step"] == 1
    c["step"].value = 3
    assert w.result["step"] == 3 and w.result["scene"] == 0
    c["scene"].value = 2
    r = w.result
    assert r["scene"] == 2 and r["step"] == 3
    assert r["n_true"] == int(ds[2][1].max())
    assert 0.0 <= r["conf"] <= 1.0
    assert 0 <= r["instance"] <= r["n_pred"] and r["kept"] == (r["instance"] > 0)
    assert r["what"] in {f"instance {r['instance']}", "says stop", "after the stop", f"not kept ({r['new_pixels']} new px)"}
    assert 0 <= r["n_so_far"] <= min(r["step"], r["n_pred"])
    c["step"].value = MAX_STEPS                      # past the stop: the model was unrolled this far
    assert w.result["step"] == MAX_STEPS and w.result["n_so_far"] == w.result["n_pred"]


def test_running_labels_keeps_only_earlier_instances():
    labels = np.array([[1, 1, 0], [2, 3, 3]])
    inst = np.array([1, 0, 2, 3])                    # step 2 was not kept
    assert running_labels(labels, inst, 1).tolist() == [[1, 1, 0], [0, 0, 0]]
    assert running_labels(labels, inst, 2).tolist() == [[1, 1, 0], [0, 0, 0]]
    assert running_labels(labels, inst, 3).tolist() == [[1, 1, 0], [2, 0, 0]]
    assert running_labels(labels, inst, 4).tolist() == labels.tolist()
