"""Keras layers of keras_resnorm, one public layer per module (each module
named after its layer); the private modules (`_base`, `_fusion`, ...) hold
what several layers share."""

from keras_resnorm.layers._fusion import add_norm, pre_norm_chain
from keras_resnorm.layers._norm_registry import NORMALIZATIONS, normalization
from keras_resnorm.layers._residual_layer import residual_layer
from keras_resnorm.layers._scaling import (
    deepnorm_constants,
    layerscale_init_for_depth,
)
from keras_resnorm.layers.drop_path import DropPath
from keras_resnorm.layers.dynamic_tanh import DynamicTanh
from keras_resnorm.layers.feed_forward import FeedForward
from keras_resnorm.layers.hyper_connection import HyperConnection
from keras_resnorm.layers.layer_normalization import LayerNormalization
from keras_resnorm.layers.residual_wrapper import ResidualWrapper
from keras_resnorm.layers.rms_normalization import RMSNormalization
from keras_resnorm.layers.scale_normalization import ScaleNormalization
from keras_resnorm.layers.self_attention import SelfAttention
from keras_resnorm.layers.transformer_encoder import TransformerEncoder
from keras_resnorm.layers.transformer_encoder_block import (
    TransformerEncoderBlock,
)

__all__ = [
    "DropPath",
    "DynamicTanh",
    "FeedForward",
    "HyperConnection",
    "LayerNormalization",
    "NORMALIZATIONS",
    "RMSNormalization",
    "ResidualWrapper",
    "ScaleNormalization",
    "SelfAttention",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "add_norm",
    "deepnorm_constants",
    "layerscale_init_for_depth",
    "normalization",
    "pre_norm_chain",
    "residual_layer",
]
