"""The ConvLSTM state widget of notebook 01: unroll helper, figures, and every control driven from code."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rsis_lite.nn import ConvLSTM, ConvLSTMCell  # noqa: E402
from rsis_lite.widgets.convlstm import (convlstm_state_widget, plot_states, plot_states_over_time,  # noqa: E402
                                        unroll_states)

pytest.importorskip("ipywidgets")


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 2, kernel_size=3)
    x = torch.rand(1, 3, 8, 8)
    hs, cs = unroll_states(cell, x, steps=4)
    return x[0], cell, hs, cs


def test_unroll_states_matches_the_cell_step_by_step(tiny):
    x, cell, hs, cs = tiny
    assert hs.shape == cs.shape == (4, 2, 8, 8)
    state = None
    with torch.no_grad():
        for t in range(4):
            state = cell(x[None], state)
            torch.testing.assert_close(hs[t], state[0][0])
            torch.testing.assert_close(cs[t], state[1][0])


def test_unroll_states_of_a_stack_returns_the_chosen_layer():
    torch.manual_seed(1)
    stack = ConvLSTM(3, 2, kernel_size=3, num_layers=2)
    x = torch.rand(1, 3, 6, 6)
    top_h, _ = unroll_states(stack, x, steps=3)
    bottom_h, _ = unroll_states(stack, x, steps=3, layer=0)
    with torch.no_grad():
        ref, _ = stack(x, steps=3)                                # (1, T, C, H, W), top layer
    torch.testing.assert_close(top_h, ref[0])
    assert not torch.allclose(bottom_h, top_h)
    with pytest.raises(ValueError):
        unroll_states(stack, x, steps=0)


def test_figures_build_and_reject_bad_steps(tiny):
    x, _, hs, cs = tiny
    fig = plot_states(x, hs, cs, t=2, channel=1, channel_names=["a", "b"])
    assert len(fig.axes) == 3 + 2                                # input, h, c + a colour bar for h and c
    h_max = float(hs[:, 1].abs().max())                          # the h scale is fixed over all steps
    assert fig.axes[1].images[0].get_clim()[1] == pytest.approx(h_max)
    plt.close(fig)
    fig = plot_states_over_time(hs, cs, times=[1, 2, 4], channel=0, channel_name="a")
    assert len(fig.axes) == 6 + 2                                # 2 x 3 maps + one colour bar per row
    h_clims = {ax.images[0].get_clim() for ax in fig.axes[:6] if ax.images and "h" in ax.get_title()}
    assert len(h_clims) == 1                                     # one colour scale for every h_t
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_states(x, hs, cs, t=5)


def test_widget_callback_runs_for_every_control(tiny):
    x, _, hs, cs = tiny
    w = convlstm_state_widget(x, hs, cs)
    t_slider, channel_slider = w.children[:2]
    assert (t_slider.min, t_slider.max, channel_slider.max) == (1, 4, 1)
    assert w.result["t"] == 1 and w.result["channel"] == 0
    t_slider.value = 3
    assert w.result["t"] == 3
    assert w.result["c_max"] == pytest.approx(float(cs[2, 0].max()))
    channel_slider.value = 1
    assert w.result["channel"] == 1
    assert w.result["h_on"] == pytest.approx(float((hs[2, 1] > 0.5).float().mean()))
    plt.close("all")
