"""Building blocks: ConvLSTM cells, feature extractors, the mask refinement skip and the Gaussian attention
filter bank."""
from rsis_lite.nn.attention import (FilterBank, filter_bank, read_patch, sigma2_from_size, soft_box,
                                    write_patch)
from rsis_lite.nn.convlstm import ConvLSTM, ConvLSTMCell
from rsis_lite.nn.features import ResNetFeatures, SmallCNN, SmallFCN, build_features, coord_channels
from rsis_lite.nn.refine import MaskRefine

__all__ = ["ConvLSTM", "ConvLSTMCell", "SmallCNN", "SmallFCN", "ResNetFeatures", "build_features", "coord_channels",
           "MaskRefine", "FilterBank", "filter_bank", "read_patch", "write_patch", "soft_box", "sigma2_from_size"]
