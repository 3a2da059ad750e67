"""The matching widget of notebook 03: fake predictions, the matching figure, every control driven from code."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rsis_lite.matching import hungarian_match, pairwise_soft_iou  # noqa: E402
from rsis_lite.widgets.matching import match, matching_widget, perturb_predictions, plot_matching  # noqa: E402

pytest.importorskip("ipywidgets")


@pytest.fixture
def scene():
    labels = torch.zeros(16, 16, dtype=torch.long)
    labels[1:6, 1:6] = 1
    labels[8:14, 2:7] = 2
    labels[3:12, 9:14] = 3
    masks = torch.stack([labels == k for k in (1, 2, 3)])         # (3, H, W) bool
    image = torch.rand(3, 16, 16)
    return image, masks


def test_zero_noise_gives_the_masks_in_a_shuffled_order(scene):
    _, masks = scene
    pert = perturb_predictions(masks, noise=0.0, seed=3)
    assert pert.preds.shape == (3, 16, 16)
    assert sorted(pert.source.tolist()) == [0, 1, 2]
    for t, k in enumerate(pert.source.tolist()):
        assert torch.equal(pert.preds[t], masks[k].float())
    iou, asg = match(pert.preds, masks)
    assert asg.target.tolist() == pert.source.tolist()            # perfect copies are matched back
    assert torch.allclose(iou[asg.pred, asg.target], torch.ones(3), atol=1e-5)


def test_perturbation_is_seeded_in_range_and_sized_by_num_preds(scene):
    _, masks = scene
    a = perturb_predictions(masks, noise=0.5, seed=1, num_preds=5)
    b = perturb_predictions(masks, noise=0.5, seed=1, num_preds=5)
    assert torch.equal(a.preds, b.preds) and torch.equal(a.source, b.source)
    assert a.preds.shape == (5, 16, 16) and (a.source == -1).sum() == 2
    assert float(a.preds.min()) >= 0.0 and float(a.preds.max()) <= 1.0
    assert perturb_predictions(masks, noise=0.5, seed=1, num_preds=2).preds.shape == (2, 16, 16)
    with pytest.raises(ValueError):
        perturb_predictions(masks, noise=1.5)


def test_match_restricts_to_the_first_min_T_n_steps(scene):
    _, masks = scene
    preds = perturb_predictions(masks, noise=0.3, seed=0, num_preds=5).preds
    iou, asg = match(preds, masks)
    ref = hungarian_match(pairwise_soft_iou(preds[None], masks[None].float()), [3])
    assert sorted(asg.pred.tolist()) == [0, 1, 2]
    assert asg.target.tolist() == ref.target.tolist()
    fig = plot_matching(torch.rand(3, 16, 16), masks, preds, iou, asg)
    assert len(fig.axes) >= 3
    plt.close(fig)
    fig = plot_matching(torch.rand(3, 16, 16), masks, preds[:1])   # computes the matching itself
    plt.close(fig)


def test_widget_callback_runs_for_every_control(scene):
    image, masks = scene
    w = matching_widget(image, masks)
    noise, seed, T = w.children[:3]
    assert T.max == 6 and T.value == 3
    assert len(w.result["pairs"]) == 3
    noise.value = 0.0
    assert w.result["recovered"] == 1.0 and w.result["mean_iou"] == pytest.approx(1.0, abs=1e-5)
    seed.value = 7
    assert w.result["recovered"] == 1.0
    T.value = 2
    assert [p for p, _ in w.result["pairs"]] == [1, 2]
    T.value = 6
    assert len(w.result["pairs"]) == 3
    noise.value = 1.0
    assert 0.0 <= w.result["mean_iou"] < 1.0
    plt.close("all")
