"""Soft IoU, Hungarian matching and the RIS loss against brute force and hand-derived gradients."""
import itertools

import numpy as np
import pytest
import torch

from rsis_lite.matching import confidence_targets, hungarian_match, pairwise_soft_iou, soft_iou
from rsis_lite.systems.ris import ris_loss


def brute_force_best(iou: np.ndarray, n: int) -> float:
    """Max total IoU over every injective map of the first min(T, n) predictions into n targets."""
    m = min(iou.shape[0], n)
    if m == 0:
        return 0.0
    return max(sum(iou[i, perm[i]] for i in range(m)) for perm in itertools.permutations(range(n), m))


def test_soft_iou_definition_by_hand():
    p = torch.tensor([[0.5, 1.0], [0.0, 0.25]])
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    inter = 0.5 + 1.0
    union = (0.5 + 1.0 + 0.25) + 2.0 - inter
    assert soft_iou(p, y).item() == pytest.approx(inter / union, rel=1e-5)


def test_pairwise_matches_loop():
    torch.manual_seed(0)
    pred, tgt = torch.rand(2, 3, 5, 5), (torch.rand(2, 4, 5, 5) > 0.5).float()
    iou = pairwise_soft_iou(pred, tgt)
    for b in range(2):
        for t in range(3):
            for k in range(4):
                assert iou[b, t, k].item() == pytest.approx(soft_iou(pred[b, t], tgt[b, k]).item(), rel=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_hungarian_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    b, t, k = 3, int(rng.integers(1, 6)), 5
    iou = torch.as_tensor(rng.random((b, t, k)), dtype=torch.float32)
    counts = torch.as_tensor(rng.integers(0, k + 1, size=b))
    asg = hungarian_match(iou, counts)
    for i in range(b):
        n = int(counts[i])
        sel = asg.batch == i
        rows, cols = asg.pred[sel].numpy(), asg.target[sel].numpy()
        assert len(rows) == min(t, n)
        assert set(rows.tolist()) == set(range(min(t, n)))     # only the first min(T, n) steps
        assert len(set(cols.tolist())) == len(cols) and (cols < n).all()  # one-to-one, real targets
        got = iou[i].numpy()[rows, cols].sum()
        assert got == pytest.approx(brute_force_best(iou[i].numpy(), n), abs=1e-5)


def test_confidence_targets_are_positional():
    tg = confidence_targets(torch.tensor([0, 2, 5]), 4)
    assert tg.tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]


def test_loss_value_and_zero_instances():
    torch.manual_seed(3)
    masks = torch.rand(2, 3, 6, 6)
    conf_logits = torch.randn(2, 3)
    tgt = torch.zeros(2, 2, 6, 6)
    tgt[0, 0, :3] = 1
    tgt[0, 1, 3:] = 1
    counts = torch.tensor([2, 0])                     # second image: empty scene
    out = ris_loss(masks, conf_logits, tgt, counts, lam=0.5)
    iou = pairwise_soft_iou(masks, tgt)[0].numpy()
    best = brute_force_best(iou, 2)
    bce = torch.nn.functional.binary_cross_entropy(torch.sigmoid(conf_logits), confidence_targets(counts, 3),
                                                   reduction="sum")
    assert out.mask.item() == pytest.approx(-best / 2, rel=1e-5)
    assert out.confidence.item() == pytest.approx(bce.item() / 2, rel=1e-4)
    assert out.total.item() == pytest.approx(out.mask.item() + 0.5 * out.confidence.item(), rel=1e-5)


def test_autograd_equals_hand_derived_soft_iou_gradient():
    """d(-IoU)/dp = -(y * U - I * (1 - y)) / U^2 with I = sum(p*y), U = sum(p) + sum(y) - I."""
    torch.manual_seed(4)
    p = torch.rand(8, 8, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(8, 8, dtype=torch.float64) > 0.6).double()
    (-soft_iou(p, y, eps=0.0)).backward()
    with torch.no_grad():
        inter = (p * y).sum()
        union = p.sum() + y.sum() - inter
        hand = -(y * union - inter * (1 - y)) / union**2
    torch.testing.assert_close(p.grad, hand)


def test_no_gradient_through_assignment_and_loss_at_chosen_permutation():
    torch.manual_seed(5)
    masks = torch.rand(1, 2, 5, 5, requires_grad=True)
    tgt = (torch.rand(1, 3, 5, 5) > 0.5).float()
    out = ris_loss(masks, torch.zeros(1, 2), tgt, torch.tensor([3]))
    out.mask.backward()
    # Recompute the matched IoU sum at the returned permutation: gradients must agree.
    m2 = masks.detach().clone().requires_grad_(True)
    a = out.assignment
    (-(soft_iou(m2[0, a.pred], tgt[0, a.target]).sum())).backward()
    torch.testing.assert_close(masks.grad, m2.grad)
