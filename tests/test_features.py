"""Feature extractors: output stride and channels as documented; RIS runs on each (random weights)."""
import pytest
import torch

from rsis_lite.nn import SmallCNN, SmallFCN, build_features, coord_channels
from rsis_lite.systems.ris import RIS, RISConfig


def test_coord_channels_span_minus_one_to_one():
    c = coord_channels(torch.zeros(2, 3, 5, 7))
    assert c.shape == (2, 2, 5, 7)
    assert torch.allclose(c[0, 0, :, 0], torch.linspace(-1, 1, 5)) and torch.allclose(c[0, 1, 0], torch.linspace(-1, 1, 7))


@pytest.mark.parametrize("stride", [1, 2])
def test_small_cnn_is_the_papers_network_at_stride_one(stride):
    net = SmallCNN(channels=30, num_layers=4, stride=stride)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.kernel_size == (3, 3) and c.out_channels == 30 for c in convs)
    assert net(torch.rand(1, 3, 20, 16)).shape == (1, 30, 20 // stride, 16 // stride)


@pytest.mark.parametrize("out_stride", [1, 2, 4, 8])
def test_fcn_output_stride(out_stride):
    net = SmallFCN(width=8, channels=6, out_stride=out_stride, coords=True).eval()
    f = net(torch.rand(2, 3, 64, 48))
    assert f.shape == (2, 6 + 2, 64 // out_stride, 48 // out_stride)


def test_resnet_features_build_offline():
    net = build_features("resnet18", channels=16, out_stride=8, pretrained=False).eval()
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 16 + 2, 8, 8)
    with pytest.raises(ValueError):
        build_features("vgg")


@pytest.mark.parametrize("features, stride", [("small", 2), ("fcn", 4), ("resnet18", 8)])
def test_ris_runs_on_every_backbone(features, stride):
    cfg = RISConfig(features=features, feature_channels=8, stride=stride, dilations=(1, 1, 1, 1), coords=True,
                    hidden_channels=6, lstm_layers=1, conf_pool=2, head_bias_init=None)
    out = RIS(cfg).eval()(torch.rand(2, 3, 64, 64), steps=3)
    assert out.masks.shape == (2, 3, 64, 64) and out.conf_logits.shape == (2, 3)
    assert out.masks.min() >= 0 and out.masks.max() <= 1


def test_paper_head_caps_area_and_sigmoid_head_does_not():
    """At most e^b pixels exceed 0.5 with the Figure-3 head, whatever the scores."""
    torch.manual_seed(0)
    model = RIS(RISConfig(feature_channels=4, hidden_channels=4, lstm_layers=1, conf_pool=2, head_bias_init=3.0))
    h = torch.randn(1, 4, 16, 16) * 5
    masks = torch.sigmoid(model._mask_head(h, (16, 16)))
    assert int((masks > 0.5).sum()) <= int(torch.e ** 3)
    model.config.head = "sigmoid"
    with torch.no_grad():
        model.mask_conv.bias.fill_(100.0)
    assert int((torch.sigmoid(model._mask_head(h, (16, 16))) > 0.5).sum()) == 256
