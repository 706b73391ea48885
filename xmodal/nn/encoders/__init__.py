"""Encoders by the nature of the data: convolutional (continuous grids and signals), recurrent and Transformer
(sequences, discrete tokens), selective state-space (long sequences), message passing (relations), PointNet
(point sets). Each maps ``(input, mask=None)`` to ``(batch, out_dim)`` and exposes ``out_dim``."""

from xmodal.nn.encoders.cnn import CNN1d, CNN2d, CNN3d, ConvEncoder
from xmodal.nn.encoders.gnn import GNNEncoder, batch_graphs
from xmodal.nn.encoders.pointnet import PointNetEncoder
from xmodal.nn.encoders.rnn import BiGRU, BiLSTM, RNNEncoder
from xmodal.nn.encoders.ssm import SelectiveSSM, SSMEncoder
from xmodal.nn.encoders.transformer import TokenEmbedding, TransformerEncoder

__all__ = [
    "BiGRU",
    "BiLSTM",
    "CNN1d",
    "CNN2d",
    "CNN3d",
    "ConvEncoder",
    "GNNEncoder",
    "PointNetEncoder",
    "RNNEncoder",
    "SSMEncoder",
    "SelectiveSSM",
    "TokenEmbedding",
    "TransformerEncoder",
    "batch_graphs",
]
