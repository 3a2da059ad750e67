"""Instance utilities, checked against brute-force NumPy loops written independently here."""
import numpy as np
import pytest
import torch

from rsis_lite.data.instances import (collate_instances, labels_to_masks, masks_to_labels, pad_masks,
                                      relabel_sequential, sort_by_area)
from rsis_lite.errors import DataError


def random_labels(rng, h=12, w=10, ids=(0, 3, 7, 20)):
    return torch.from_numpy(rng.choice(np.array(ids), size=(h, w)).astype(np.int64))


def brute_relabel(lab: np.ndarray) -> np.ndarray:
    out = np.zeros_like(lab)
    for new, old in enumerate(sorted(set(lab.ravel().tolist()) - {0}), start=1):
        out[lab == old] = new
    return out


def test_relabel_sequential_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(5):
        lab = random_labels(rng)
        np.testing.assert_array_equal(relabel_sequential(lab).numpy(), brute_relabel(lab.numpy()))


def test_labels_masks_round_trip_with_gaps():
    rng = np.random.default_rng(1)
    lab = random_labels(rng, ids=(0, 2, 5, 9))
    masks = labels_to_masks(lab)
    assert masks.dtype == torch.bool and masks.shape == (3, 12, 10)
    # Slice k-1 is exactly the pixels of the k-th smallest original id.
    for k, old in enumerate([2, 5, 9]):
        np.testing.assert_array_equal(masks[k].numpy(), lab.numpy() == old)
    np.testing.assert_array_equal(masks_to_labels(masks).numpy(), brute_relabel(lab.numpy()))


def test_empty_scene():
    lab = torch.zeros(5, 7, dtype=torch.int64)
    masks = labels_to_masks(lab)
    assert masks.shape == (0, 5, 7)
    out = masks_to_labels(masks)
    assert out.shape == (5, 7) and out.dtype == torch.int64 and int(out.abs().sum()) == 0


def test_masks_to_labels_earlier_wins_and_empty_dropped():
    m = torch.zeros(4, 6, 6)
    m[0, :3, :3] = 0.9  # instance 0
    m[1, 2:5, 2:5] = 0.8  # overlaps 0 at (2,2): 0 must keep it
    m[2] = 0.2  # below threshold everywhere: empty, dropped
    m[3, 5, 5] = 1.0
    lab = masks_to_labels(m).numpy()
    # Reference: paint in reverse order so the earliest mask is written last.
    ref = np.zeros((6, 6), dtype=np.int64)
    binary = (m > 0.5).numpy()
    for k in reversed(range(4)):
        ref[binary[k]] = k + 1
    ref = brute_relabel(ref)
    np.testing.assert_array_equal(lab, ref)
    assert lab[2, 2] == 1 and lab.max() == 3  # ids 1..3 without the gap of the empty mask


def test_masks_to_labels_fully_hidden_mask_dropped():
    m = torch.zeros(3, 4, 4, dtype=torch.bool)
    m[0] = True
    m[1, :2] = True  # entirely under mask 0
    m[2] = True
    assert masks_to_labels(m).unique().tolist() == [1]


@pytest.mark.parametrize("descending", [True, False])
def test_sort_by_area_vs_brute_force(descending):
    rng = np.random.default_rng(2)
    lab = torch.zeros(20, 20, dtype=torch.int64)
    # Rectangles of distinct areas at random places; later ones overwrite.
    for i in range(1, 7):
        y, x = rng.integers(0, 15, size=2)
        lab[y:y + rng.integers(1, 6), x:x + rng.integers(1, 6)] = 10 * i
    out = sort_by_area(lab, descending=descending).numpy()
    ref = brute_relabel(lab.numpy())
    areas = {k: int((ref == k).sum()) for k in range(1, ref.max() + 1)}
    got = [int((out == k).sum()) for k in range(1, out.max() + 1)]
    assert got == sorted(areas.values(), reverse=descending)
    # Same partition of pixels: each output instance is exactly one input instance.
    for k in range(1, out.max() + 1):
        assert len(np.unique(ref[out == k])) == 1


def test_pad_and_truncate_and_overflow():
    masks = torch.ones(3, 4, 4, dtype=torch.bool)
    padded, valid = pad_masks(masks, 5)
    assert padded.shape == (5, 4, 4) and valid.tolist() == [True, True, True, False, False]
    assert not padded[3:].any() and padded[:3].all()
    cut, valid = pad_masks(masks, 2, on_overflow="truncate")
    assert cut.shape == (2, 4, 4) and valid.all()
    with pytest.raises(DataError, match="more than the model's maximum of 2") as exc:
        pad_masks(masks, 2)
    assert "truncate" in str(exc.value)


def test_collate_shapes_valid_counts():
    rng = np.random.default_rng(3)
    labs = [random_labels(rng, 8, 8, ids=(0, 4, 6)), torch.zeros(8, 8, dtype=torch.int64),
            random_labels(rng, 8, 8, ids=(0, 1, 2, 3, 9))]
    batch = [(torch.rand(3, 8, 8), lab) for lab in labs]
    out = collate_instances(batch)
    counts = [len(set(lab.unique().tolist()) - {0}) for lab in labs]
    assert out["counts"].tolist() == counts
    assert out["image"].shape == (3, 3, 8, 8)
    assert out["masks"].shape == (3, max(counts), 8, 8) and out["masks"].dtype == torch.float32
    assert out["valid"].tolist() == [[k < c for k in range(max(counts))] for c in counts]
    for b, lab in enumerate(labs):
        ref = brute_relabel(lab.numpy())
        for k in range(max(counts)):
            np.testing.assert_array_equal(out["masks"][b, k].numpy(), (ref == k + 1).astype(np.float32))


def test_collate_all_empty_has_one_step():
    out = collate_instances([(torch.rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.int64))] * 2)
    assert out["masks"].shape == (2, 1, 4, 4) and not out["valid"].any() and out["counts"].tolist() == [0, 0]


def test_collate_size_mismatch():
    batch = [(torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.int64)),
             (torch.rand(3, 6, 8), torch.zeros(6, 8, dtype=torch.int64))]
    with pytest.raises(DataError, match=r"\(6, 8\)"):
        collate_instances(batch)


def _claim_brute_force(masks, threshold, overlap):
    """Pixel by pixel: which of the K soft masks claims it (first above threshold / highest above)."""
    k, h, w = masks.shape
    out = np.zeros((k, h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            v = masks[:, y, x]
            if overlap == "first":
                out[:, y, x] = v > threshold
            elif v.max() > threshold:
                out[int(np.argmax(v)), y, x] = True
    return out


@pytest.mark.parametrize("overlap", ["first", "argmax"])
def test_claim_masks_matches_brute_force(overlap):
    from rsis_lite.data.instances import assemble_labels, claim_masks

    rng = np.random.default_rng(3)
    masks = rng.random((5, 9, 11)).astype(np.float32)
    got = claim_masks(torch.from_numpy(masks), 0.4, overlap)
    assert got.dtype == torch.bool
    np.testing.assert_array_equal(got.numpy(), _claim_brute_force(masks, 0.4, overlap))
    labels, kept = assemble_labels(got, 1)
    if overlap == "argmax":                      # disjoint: every kept mask keeps all its pixels
        assert int(got.sum(0).max()) <= 1
        for j, t in enumerate(kept):
            assert torch.equal(labels == j + 1, got[t])


def test_claim_masks_argmax_gives_a_small_later_mask_its_pixels():
    """A large early mask that bleeds (0.6) over a small later one (0.9): first-wins hides the small
    one, argmax keeps it."""
    from rsis_lite.data.instances import assemble_labels, claim_masks

    big = torch.full((8, 8), 0.6)
    small = torch.zeros(8, 8)
    small[2:5, 2:5] = 0.9
    masks = torch.stack([big, small])
    lab_first, kept_first = assemble_labels(claim_masks(masks, 0.5, "first"), 4)
    lab_arg, kept_arg = assemble_labels(claim_masks(masks, 0.5, "argmax"), 4)
    assert kept_first == [0] and kept_arg == [0, 1]
    assert int((lab_arg == 2).sum()) == 9 and int((lab_arg == 1).sum()) == 64 - 9
    assert claim_masks(torch.zeros(0, 8, 8), 0.5, "argmax").shape == (0, 8, 8)
    with pytest.raises(ValueError, match="overlap"):
        claim_masks(masks, 0.5, "last")
