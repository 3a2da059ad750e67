"""``python -m rsis_lite evaluate`` on folders of PNGs, checked against the metrics called directly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsis_lite.commands import main
from rsis_lite.errors import DataError
from rsis_lite.evaluation import evaluate_folders, format_table
from rsis_lite.metrics import image_scores


def _write(path: Path, labels: np.ndarray) -> None:
    """8-bit 'L' PNG written with Pillow directly, independent of the package's writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def _scene(rng: np.random.Generator, shape=(20, 26), n=4) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.int64)
    for k in range(1, n + 1):
        y, x = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
        lab[y:y + rng.integers(3, 9), x:x + rng.integers(3, 9)] = k * 3      # ids with gaps
    return lab


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    gts, preds = {}, {}
    for i in range(4):
        name = f"img{i}.png"
        gts[name] = _scene(rng)
        preds[name] = np.where(rng.random(gts[name].shape) < 0.85, gts[name], 0)
        _write(tmp_path / "gt" / name, gts[name])
        if i != 2:                                  # img2 has no prediction
            _write(tmp_path / "pred" / name, preds[name])
    _write(tmp_path / "pred" / "extra.png", gts["img0.png"])    # no gt: must be ignored
    return tmp_path, gts, preds


def test_cli_json_matches_direct_metrics(folders, capsys):
    tmp, gts, preds = folders
    out = tmp / "res" / "scores.json"
    rc = main(["evaluate", "--pred", str(tmp / "pred"), "--gt", str(tmp / "gt"), "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert sorted(res["per_image"]) == sorted(gts)            # extra.png not scored
    assert res["missing"] == ["img2.png"]
    expected = {}
    for name, gt in gts.items():
        pred = preds[name] if name != "img2.png" else np.zeros_like(gt)   # missing = empty
        expected[name] = image_scores(pred, gt)
        for k, v in expected[name].items():
            assert res["per_image"][name][k] == pytest.approx(v, abs=1e-12), (name, k)
    assert res["per_image"]["img2.png"]["SBD"] == 0.0
    assert res["per_image"]["img2.png"]["DiC"] == -(len(np.unique(gts["img2.png"])) - 1)
    for k in ("SBD", "FBD", "DiC", "abs_DiC", "MWCov", "MUCov"):
        vals = np.array([expected[n][k] for n in expected], dtype=float)
        assert res["mean"][k] == pytest.approx(vals.mean(), abs=1e-12)
        assert res["std"][k] == pytest.approx(vals.std(), abs=1e-12)
    captured = capsys.readouterr()
    assert "img2.png" in captured.err and "missing" in captured.err
    assert "mean (std)" in captured.out
    # the table prints SBD x100 with one decimal
    assert f"{100 * res['mean']['SBD']:.1f} ({100 * res['std']['SBD']:.1f})" in captured.out


def test_missing_gt_folder_exit_code_and_message(tmp_path, capsys):
    gt = tmp_path / "no_such_gt"
    rc = main(["evaluate", "--pred", str(tmp_path), "--gt", str(gt)])
    assert rc == 2
    assert str(gt) in capsys.readouterr().err


def test_empty_gt_folder_and_size_mismatch(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    with pytest.raises(DataError, match="gt"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    _write(tmp_path / "gt" / "a.png", np.ones((4, 5)))
    _write(tmp_path / "pred" / "a.png", np.ones((5, 4)))
    with pytest.raises(DataError) as e:
        evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    assert str(tmp_path / "gt" / "a.png") in str(e.value) and str(tmp_path / "pred" / "a.png") in str(e.value)


def test_usage_errors(tmp_path, capsys):
    assert main(["evaluate"]) == 2
    assert "--pred" in capsys.readouterr().err
    assert main(["evaluate", "--gt", str(tmp_path)]) == 2
    assert "--pred" in capsys.readouterr().err


def test_format_table_values():
    res = {"mean": {"SBD": 0.7061, "FBD": 0.9, "DiC": -0.5, "abs_DiC": 1.25, "MWCov": 0.5, "MUCov": 0.25},
           "std": {"SBD": 0.112, "FBD": 0.0, "DiC": 1.0, "abs_DiC": 1.1, "MWCov": 0.0, "MUCov": 0.0},
           "per_image": {"x.png": {"SBD": 0.5, "FBD": 1.0, "DiC": 2, "abs_DiC": 2, "MWCov": 0.125, "MUCov": 1.0}},
           "n_images": 1}
    t = format_table(res)
    assert "70.6 (11.2)" in t and "1.25 (1.10)" in t and "-0.50 (1.00)" in t
    assert "x.png" in t and "12.5" in t and "2.00" in t
    assert "x.png" not in format_table(res, per_image=False)


def test_the_relative_count_error_against_counts_by_hand():
    """Three images: 4 true, 3 found (|DiC|/n = 1/4); 2 true, 4 found (2/2); no true instance and
    one found (left out: nothing to divide by). Mean 0.625, median 0.625."""
    from rsis_lite.evaluation import evaluate_pairs

    def squares(n, side=40):
        lab = np.zeros((side, side), np.int64)
        for k in range(n):
            lab[2 + 9 * k:8 + 9 * k, 2:8] = k + 1
        return lab

    preds, gts = [squares(3), squares(4), squares(1)], [squares(4), squares(2), squares(0)]
    r = evaluate_pairs(["a", "b", "c"], preds, gts)
    assert r["rel_abs_DiC"] == pytest.approx((1 / 4 + 2 / 2) / 2)
    assert r["rel_abs_DiC_median"] == pytest.approx(0.625)
    assert evaluate_pairs(["c"], [squares(1)], [squares(0)])["rel_abs_DiC"] is None
