"""Building blocks: ConvLSTM cells and feature extractors."""
from rsis_lite.nn.convlstm import ConvLSTM, ConvLSTMCell
from rsis_lite.nn.features import ResNetFeatures, SmallCNN, SmallFCN, build_features, coord_channels

__all__ = ["ConvLSTM", "ConvLSTMCell", "SmallCNN", "SmallFCN", "ResNetFeatures", "build_features", "coord_channels"]
