"""ConvLSTM against independent references: the gate equations written out, and torch.nn.LSTMCell."""
import pytest
import torch
import torch.nn.functional as F

from rsis_lite.nn import ConvLSTM, ConvLSTMCell


def reference_step(cell: ConvLSTMCell, x, h, c):
    """The RIS equations, gate by gate, with the cell's weights sliced per gate (order i, f, o, g)."""
    C = cell.hidden_channels
    wx, bx, wh = cell.conv_x.weight, cell.conv_x.bias, cell.conv_h.weight
    pad = cell.conv_x.padding
    def gate(k):
        sl = slice(k * C, (k + 1) * C)
        return F.conv2d(x, wx[sl], bx[sl], padding=pad) + F.conv2d(h, wh[sl], None, padding=pad)
    i, f, o, g = torch.sigmoid(gate(0)), torch.sigmoid(gate(1)), torch.sigmoid(gate(2)), torch.tanh(gate(3))
    c_new = f * c + i * g
    return o * torch.tanh(c_new), c_new


def test_cell_matches_explicit_gate_equations():
    torch.manual_seed(0)
    cell = ConvLSTMCell(4, 6, kernel_size=3)
    x = torch.randn(2, 4, 7, 5)
    h, c = torch.randn(2, 6, 7, 5), torch.randn(2, 6, 7, 5)
    h1, c1 = cell(x, (h, c))
    h2, c2 = reference_step(cell, x, h, c)
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(c1, c2)


def test_initial_state_is_zero_and_gate_biases_start_at_one():
    cell = ConvLSTMCell(3, 5, kernel_size=3)
    b = cell.conv_x.bias.detach()
    assert torch.all(b[:15] == 1.0) and torch.all(b[15:] == 0.0)   # i, f, o = 1; g = 0
    assert cell.conv_h.bias is None
    x = torch.randn(1, 3, 4, 4)
    h, c = cell.init_state(x)
    assert h.shape == (1, 5, 4, 4) and not h.any() and not c.any()
    # From a zero state, c_1 = i * g and h_1 = o * tanh(i * g): check against the equations.
    h1, c1 = cell(x)
    h2, c2 = reference_step(cell, x, h, c)
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(c1, c2)


def test_1x1_convlstm_on_1x1_input_equals_torch_lstmcell():
    """A 1x1 ConvLSTM on 1x1 images is an ordinary LSTM; torch orders gates i, f, g, o."""
    torch.manual_seed(1)
    n_in, n_h = 5, 7
    cell = ConvLSTMCell(n_in, n_h, kernel_size=1)
    ref = torch.nn.LSTMCell(n_in, n_h)
    wx = cell.conv_x.weight.detach()[:, :, 0, 0]      # (4H, n_in), our order i, f, o, g
    wh = cell.conv_h.weight.detach()[:, :, 0, 0]
    bx = cell.conv_x.bias.detach()
    perm = torch.cat([torch.arange(0, n_h), torch.arange(n_h, 2 * n_h),       # i, f
                      torch.arange(3 * n_h, 4 * n_h), torch.arange(2 * n_h, 3 * n_h)])  # g, o
    with torch.no_grad():
        ref.weight_ih.copy_(wx[perm])
        ref.weight_hh.copy_(wh[perm])
        ref.bias_ih.copy_(bx[perm])
        ref.bias_hh.zero_()
    x = torch.randn(3, n_in)
    h, c = torch.randn(3, n_h), torch.randn(3, n_h)
    for _ in range(4):  # several steps, feeding the state back
        h_ref, c_ref = ref(x, (h, c))
        h_our, c_our = cell(x[:, :, None, None], (h[:, :, None, None], c[:, :, None, None]))
        torch.testing.assert_close(h_our[:, :, 0, 0], h_ref)
        torch.testing.assert_close(c_our[:, :, 0, 0], c_ref)
        h, c = h_ref, c_ref


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_stack_unrolled_equals_manual_loop(layers):
    torch.manual_seed(2)
    lstm = ConvLSTM(3, [4, 5, 6][:layers], kernel_size=3)
    x = torch.randn(2, 3, 6, 6)
    out, states = lstm(x, steps=4)                 # constant input: conv_x of layer 0 computed once
    assert out.shape == (2, 4, lstm.out_channels, 6, 6)
    st = [(torch.zeros(2, c.hidden_channels, 6, 6), torch.zeros(2, c.hidden_channels, 6, 6)) for c in lstm.cells]
    for t in range(4):
        inp = x
        for k, cell in enumerate(lstm.cells):
            st[k] = reference_step(cell, inp, *st[k])
            inp = st[k][0]
        torch.testing.assert_close(out[:, t], inp)
    # A sequence input of the same frame repeated gives the same result.
    out_seq, _ = lstm(x.unsqueeze(1).expand(-1, 4, -1, -1, -1))
    torch.testing.assert_close(out_seq, out)


def test_even_kernel_is_rejected():
    with pytest.raises(ValueError, match="odd"):
        ConvLSTMCell(3, 3, kernel_size=2)
