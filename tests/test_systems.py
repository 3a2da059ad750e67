"""The System protocol and registry, and the shared predict loop driven by a scripted test double.

``StubRIS`` replaces RIS's network by scripted per-step masks and confidences, so the stop rule,
"earlier instances win", the small-step guard and the resizing back to the original size are
checked against label maps written out by hand. ``Blob`` is a fourth system written the way the
extension path says, registered by a test: the built-ins stay and the protocol holds for it.
"""
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rsis_lite.config import get_profile
from rsis_lite.data import SyntheticLeaves, collate_instances
from rsis_lite.errors import ConfigError, RsisError
from rsis_lite.inference import InferenceOptions, inference_cap, predict_dataset
from rsis_lite.matching import matched_soft_iou
from rsis_lite.systems import (ConfigBase, Prediction, StepOut, System, TrainConfig, assemble_labels, build,
                               get_system, names, register)
from rsis_lite.systems import registry
from rsis_lite.systems.base import batch_n_max
from rsis_lite.systems.ris import RIS, RISConfig


class StubRIS(RIS):
    """RIS whose step t emits ``masks[t]`` (B, H, W) in [0, 1] and confidences ``conf[t]`` (B,)."""

    def __init__(self, masks: np.ndarray, conf: np.ndarray) -> None:
        super().__init__(RIS.tiny())
        self.script_masks = torch.as_tensor(masks, dtype=torch.float32)   # (T, B, H, W)
        self.script_conf = torch.as_tensor(conf, dtype=torch.float32)     # (T, B)
        self.calls = 0

    def encode(self, image):
        return None

    def step(self, encoded, states, size):
        t = states or 0
        self.calls += 1
        m = self.script_masks[t].clamp(1e-6, 1 - 1e-6)
        c = self.script_conf[t].clamp(1e-6, 1 - 1e-6)
        return torch.logit(m), torch.logit(c), t + 1


def box(h, w, r0, r1, c0, c1, value=0.9):
    m = np.zeros((h, w), np.float32)
    m[r0:r1, c0:c1] = value
    return m


def run(masks, conf, max_steps=10, **kw) -> list[Prediction]:
    stub = StubRIS(np.asarray(masks), np.asarray(conf))
    t, b = np.asarray(conf).shape
    return stub.predict(torch.zeros(b, 3, *np.asarray(masks).shape[-2:]), max_steps=min(max_steps, t), **kw)


def test_stop_rule_ends_each_image_at_its_first_low_confidence():
    h = w = 8
    m = [[box(h, w, 0, 2, 0, 8), box(h, w, 0, 2, 0, 8)],
         [box(h, w, 2, 4, 0, 8), box(h, w, 2, 4, 0, 8)],
         [box(h, w, 4, 6, 0, 8), box(h, w, 4, 6, 0, 8)],
         [box(h, w, 6, 8, 0, 8), box(h, w, 6, 8, 0, 8)]]
    conf = [[0.9, 0.9], [0.8, 0.3], [0.4, 0.9], [0.9, 0.9]]   # image 0 stops at step 2, image 1 at step 1
    p0, p1 = run(m, conf)
    expect0 = np.zeros((h, w), np.int64)
    expect0[0:2], expect0[2:4] = 1, 2                          # step 3's high confidence comes too late
    expect1 = np.zeros((h, w), np.int64)
    expect1[0:2] = 1
    assert np.array_equal(p0.labels.numpy(), expect0) and np.array_equal(p1.labels.numpy(), expect1)
    assert list(p0.steps) == [0, 1] and list(p1.steps) == [0]
    assert np.allclose(p0.scores, [0.9, 0.8], atol=1e-5) and np.allclose(p1.scores, [0.9], atol=1e-5)
    assert len(p0.conf) == len(p1.conf) == 3                   # the batch ran until both stopped


def test_earlier_instances_win_and_small_steps_are_skipped():
    h = w = 8
    m = [[box(h, w, 0, 4, 0, 4)],                # step 0: a 4x4 square
         [box(h, w, 0, 4, 0, 6)],                # step 1: overlaps it, adds 8 new pixels
         [box(h, w, 0, 5, 0, 4)],                # step 2: adds only 4 ... kept with min_new=4
         [box(h, w, 5, 6, 0, 3)],                # step 3: 3 new pixels -> skipped
         [box(h, w, 6, 8, 0, 8)]]                # step 4: 16 new pixels -> instance 4
    conf = [[0.99]] * 5
    (p,) = run(m, conf, min_new_pixels=4)
    expect = np.zeros((h, w), np.int64)
    expect[0:4, 0:4] = 1
    expect[0:4, 4:6] = 2
    expect[4, 0:4] = 3
    expect[6:8, :] = 4
    assert np.array_equal(p.labels.numpy(), expect)
    assert list(p.steps) == [0, 1, 2, 4]
    (q,) = run(m, conf, min_new_pixels=5)                      # the 4-pixel step is now too small
    assert list(q.steps) == [0, 1, 4] and int(q.labels.max()) == 3


def test_the_cap_bounds_the_unroll():
    h = w = 4
    m = [[box(h, w, 0, 1, t % 4, t % 4 + 1)] for t in range(20)]
    conf = [[0.9]] * 20
    stub = StubRIS(np.asarray(m), np.asarray(conf))
    (p,) = stub.predict(torch.zeros(1, 3, h, w), max_steps=7)
    assert stub.calls == 7 and len(p.conf) == 7


def test_predict_dataset_resizes_to_the_original_size():
    class Small:
        """Two 4x6 images that are 8x12 on disk."""
        ids = ["a", "b"]

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(3, 4, 6), torch.zeros(4, 6, dtype=torch.long)

        def original_size(self, i):
            return (8, 12)

    m = [[box(4, 6, 0, 2, 0, 3), box(4, 6, 2, 4, 3, 6)]]
    stub = StubRIS(np.asarray(m + m), np.asarray([[0.9, 0.9], [0.1, 0.1]]))
    (la, sa), (lb, sb) = predict_dataset(stub, Small(), InferenceOptions(max_steps=2))
    small = np.zeros((4, 6), np.int64)
    small[0:2, 0:3] = 1
    assert np.array_equal(la, np.kron(small, np.ones((2, 2), np.int64)))   # nearest upsampling x2
    assert la.shape == lb.shape == (8, 12) and int(lb.max()) == 1
    assert len(sa) == len(sb) == 1


def brute_first_wins(masks: np.ndarray, min_new: int) -> tuple[np.ndarray, list[int]]:
    """Pixel by pixel: step t takes the unclaimed pixels of its mask if there are at least min_new."""
    t_all, h, w = masks.shape
    labels = np.zeros((h, w), np.int64)
    kept = []
    for t in range(t_all):
        new = [(y, x) for y in range(h) for x in range(w) if masks[t, y, x] and labels[y, x] == 0]
        if len(new) >= max(min_new, 1):
            kept.append(t)
            for y, x in new:
                labels[y, x] = len(kept)
    return labels, kept


@pytest.mark.parametrize("min_new", [1, 3, 6])
def test_assemble_labels_matches_a_pixel_loop(min_new):
    """The shared assembly against a loop over pixels: earlier steps win, small steps are dropped."""
    rng = np.random.default_rng(min_new)
    for _ in range(20):
        masks = rng.random((5, 9, 7)) > 0.7
        labels, kept = assemble_labels(torch.as_tensor(masks), min_new_pixels=min_new)
        want, want_kept = brute_first_wins(masks, min_new)
        np.testing.assert_array_equal(labels.numpy(), want)
        assert list(kept) == want_kept


def test_every_system_stops_by_the_same_rule_at_or_above_the_threshold():
    """go >= stop_threshold continues (one meaning for all systems): a confidence of exactly 0.5
    keeps running at threshold 0.5 and stops at 0.51."""
    h = w = 4
    m = [[box(h, w, 0, 2, 0, 4)], [box(h, w, 2, 4, 0, 4)], [box(h, w, 0, 4, 0, 1)]]
    conf = [[0.5], [0.5], [0.2]]
    (p,) = run(m, conf, stop_threshold=0.5)
    assert list(p.steps) == [0, 1]
    (q,) = run(m, conf, stop_threshold=0.51)
    assert list(q.steps) == [] and len(q.conf) == 1
    with pytest.raises(ConfigError, match="unknown post-processing"):
        run(m, conf, conf_threshold=0.5)


def test_inference_cap_comes_from_the_data():
    assert inference_cap(8, 8) == 12                       # quick leaves: what the shipped model used
    assert inference_cap(20, 8) == 24                      # CVPPP A1 (11-20 leaves), model trained on 2-8
    assert inference_cap(5, 20) == 24                      # never fewer than the model was trained on
    assert inference_cap(20) >= 22                         # at least the count + 2


# -- the registry and the protocol ---------------------------------------------------------------
def test_registry():
    assert "ris" in names()
    assert get_system("ris") is RIS
    with pytest.raises(RsisError, match="unknown system"):
        get_system("nope")


def test_building_for_loading_never_downloads():
    cfg = RISConfig(features="resnet18", pretrained=True, feature_channels=8, hidden_channels=4, lstm_layers=1,
                    conf_pool=2, stride=8)
    model = build("ris", cfg.to_dict(), for_loading=True)  # would download ImageNet weights otherwise
    assert model.config.pretrained is False


def check_protocol(name: str) -> None:
    """Recipe, configs, loss, optimiser groups and the predict loop of a registered system."""
    cls = get_system(name)
    model_cfg, train_cfg = cls.recipe(get_profile("quick"), {"kind": "leaves", "max_instances": 8})
    assert isinstance(model_cfg, cls.Config) and isinstance(train_cfg, cls.TrainConfig)
    assert cls.Config.from_dict(model_cfg.to_dict()) == model_cfg
    assert cls.TrainConfig.from_dict(train_cfg.to_dict()) == train_cfg
    torch.manual_seed(0)
    system = build(name, cls.tiny())
    ds = SyntheticLeaves(2, size=24, seed=1, min_leaves=2, max_leaves=3)
    batch = collate_instances([ds[0], ds[1]])
    total, logs = system.loss(batch, train_cfg.steps - 1, train_cfg)
    assert total.dim() == 0 and torch.isfinite(total) and "loss" in logs
    total.backward()
    grouped = [p for g in system.param_groups(train_cfg) for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(system.parameters()))
    preds = system.predict(batch["image"], max_steps=4)
    assert len(preds) == 2 and all(p.labels.shape == (24, 24) for p in preds)
    assert all(len(p.scores) == int(p.labels.max()) == len(p.steps) for p in preds)
    assert cls.title and cls.stop_rule and system.post.overlap in ("first", "argmax")


@pytest.mark.parametrize("name", names())
def test_every_system_follows_the_protocol(name):
    check_protocol(name)


# -- a fourth system, added as the extension path says --------------------------------------------
@dataclass
class BlobConfig(ConfigBase):
    width: int = 2


class Blob(System):
    """One 1x1 conv mask repeated every step; the stop probability falls by one logit per step."""

    name = "blob_stub"
    title = "Blob (a test double)"
    stop_rule = "sigmoid(b - t)"
    Config = BlobConfig
    TrainConfig = TrainConfig

    def __init__(self, config: BlobConfig | None = None) -> None:
        super().__init__(config or BlobConfig())
        self.conv = nn.Conv2d(3, self.config.width, 1)
        self.head = nn.Conv2d(self.config.width, 1, 1)
        self.b = nn.Parameter(torch.tensor(2.0))

    @classmethod
    def recipe(cls, profile, data=None, steps=None, batch_size=None, lr=None, time_budget_min=None):
        return BlobConfig(), TrainConfig(steps=steps or 10, batch_size=batch_size or 2)

    @classmethod
    def tiny(cls):
        return BlobConfig()

    def _mask(self, images):
        return torch.sigmoid(self.head(torch.relu(self.conv(images))))[:, 0]     # (B, H, W)

    def loss(self, batch, step, cfg):
        steps = batch_n_max(batch) + 1
        masks = self._mask(batch["image"])[:, None].expand(-1, steps, -1, -1)  # (B, T, H, W)
        matched = matched_soft_iou(masks, batch["masks"], batch["counts"]).matched
        go = self.b - torch.arange(steps, dtype=torch.float32)                   # (T,)
        target = (torch.arange(steps)[None] < batch["counts"][:, None]).float()   # (B, T)
        total = -matched.mean() + F.binary_cross_entropy_with_logits(go.expand_as(target), target)
        return total, {"loss": total.item()}

    def begin(self, images):
        return self._mask(images), 0

    def emit(self, state):
        mask, t = state
        go = torch.sigmoid(self.b - t).expand(mask.shape[0])                    # (B,)
        return StepOut(mask, go, go), (mask, t + 1)


def test_registering_a_fourth_system_keeps_the_built_ins_and_the_protocol_holds():
    before = names()
    try:
        assert register(Blob) is Blob
        assert names() == before + ["blob_stub"] and get_system("blob_stub") is Blob
        for builtin in ("ris", "attention", "rsis"):
            assert builtin in names()
        check_protocol("blob_stub")
        (p,) = build("blob_stub", {}).predict(torch.rand(1, 3, 8, 8), max_steps=10)
        assert len(p.conf) == 4          # sigmoid(2 - t) >= 0.5 for t = 0, 1, 2; step 3 is where it stops
        assert list(p.steps) == [0]      # steps 1 and 2 repeat step 0's mask: nothing new to claim
    finally:
        registry._REGISTRY.pop("blob_stub", None)
    assert names() == before


def test_a_system_without_a_name_is_refused():
    class Nameless(Blob):
        name = ""

    with pytest.raises(ConfigError, match="no registry name"):
        register(Nameless)
