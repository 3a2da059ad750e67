"""The from-scratch pieces the notebooks derive, checked against the package without running the notebooks.

Only the imports and the named function definitions of each ``notebooks/NN_name.py`` twin are
executed (no cell bodies), so this is cheap; the notebooks themselves run under nbval.
"""
import ast
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rsis_lite.matching import hungarian_match, soft_iou
from rsis_lite.nn import ConvLSTM, ConvLSTMCell
from rsis_lite.systems.ris import RIS, RISConfig

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def load_functions(stem: str, names: set[str]) -> dict:
    """Exec the top-level imports and the function definitions ``names`` of a notebook twin."""
    path = NB_DIR / f"{stem}.py"
    if not path.exists():
        pytest.skip(f"{path.name} not written yet")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
            or (isinstance(n, ast.FunctionDef) and n.name in names)]
    found = {n.name for n in keep if isinstance(n, ast.FunctionDef)}
    assert found == names, f"{path.name} no longer defines {sorted(names - found)}"
    ns: dict = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), ns)
    return ns


def test_01_gate_by_gate_step_equals_the_package_cell():
    step = load_functions("01_convlstm", {"convlstm_step"})["convlstm_step"]
    torch.manual_seed(0)
    for k in (3, 1, 5):
        cell = ConvLSTMCell(3, 5, kernel_size=k)
        x, h, c = torch.randn(2, 3, 9, 7), torch.randn(2, 5, 9, 7), torch.randn(2, 5, 9, 7)
        with torch.no_grad():
            ours = step(x, h, c, cell.conv_x.weight, cell.conv_x.bias, cell.conv_h.weight, cell.conv_x.padding)
            ref = cell(x, (h, c))
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b)


def test_01_response_width_grows_by_one_kernel_radius_per_step():
    width = load_functions("01_convlstm", {"response_width"})["response_width"]
    torch.manual_seed(0)
    x = torch.zeros(1, 1, 25, 25)
    x[0, 0, 12, 12] = 1.0
    with torch.no_grad():
        hs, _ = ConvLSTM(1, 3, kernel_size=3, num_layers=1)(x, steps=4)
    assert [width(hs[:, t]) for t in range(4)] == [3, 5, 7, 9]


def test_02_fig3_head_equals_the_model_and_obeys_the_area_bound():
    head = load_functions("02_ris_model", {"fig3_head"})["fig3_head"]
    torch.manual_seed(0)
    model = RIS(RISConfig.paper(image_size=(16, 16))).eval()
    image = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = model(image, steps=2)
        hs, _ = model.lstm(model.features(image), steps=2)
        z = model.mask_conv(hs[:, 1])[:, 0]                          # (B, H, W) step 2
        torch.testing.assert_close(head(z, model.head_bias), out.masks[:, 1])
    for b in (0.5, 2.0, 4.0, 6.0):
        z = 3 * torch.randn(4, 32, 32)
        assert ((head(z, b) > 0.5).flatten(1).sum(1) < math.exp(b)).all()


def test_03_brute_force_and_hand_gradient_agree_with_the_package():
    ns = load_functions("03_hungarian_loss", {"brute_force_match", "neg_soft_iou_grad"})
    brute, grad = ns["brute_force_match"], ns["neg_soft_iou_grad"]
    rng = np.random.default_rng(1)
    for _ in range(20):
        t, k = int(rng.integers(1, 6)), 5
        iou = torch.as_tensor(rng.random((1, t, k)), dtype=torch.float32)
        n = int(rng.integers(0, k + 1))
        asg = hungarian_match(iou, [n])
        best, rows, cols = brute(iou[0], n)
        assert asg.pred.tolist() == rows and asg.target.tolist() == cols
        ref = max((sum(float(iou[0, i, c]) for i, c in enumerate(p)) for p in itertools.permutations(range(n), min(t, n))),
                  default=0.0)
        assert best == pytest.approx(ref if min(t, n) else 0.0)
    torch.manual_seed(2)
    p = torch.rand(6, 6, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(6, 6, dtype=torch.float64) > 0.5).double()
    (-soft_iou(p, y, eps=0.0)).backward()
    torch.testing.assert_close(p.grad, grad(p.detach(), y))


def test_08_ladder_step_from_its_definition_equals_the_package_ladder():
    step = load_functions("08_rsis", {"ladder_step"})["ladder_step"]
    from rsis_lite.nn.ladder import ConvLSTMLadder

    torch.manual_seed(0)
    skip_w, hidden_w = (8, 8, 4), (8, 4, 2)
    ladder = ConvLSTMLadder(skip_w, hidden_w, kernel_size=3)
    skips = [torch.randn(2, c, s, s + 1) for c, s in zip(skip_w, (3, 5, 9))]   # odd sizes: up to each skip's size
    ours = [(torch.zeros(2, c, *s.shape[-2:]), torch.zeros(2, c, *s.shape[-2:])) for c, s in zip(hidden_w, skips)]
    with torch.no_grad():
        gskips = ladder.encode(skips)
        theirs = ladder.init_state(gskips)
        for _ in range(3):                                           # the state is carried across steps
            ours, theirs = step(skips, ours, ladder.cells), ladder.step(gskips, theirs)
            for (ha, ca), (hb, cb) in zip(ours, theirs):
                torch.testing.assert_close(ha, hb)
                torch.testing.assert_close(ca, cb)
