"""Keras layers of keras_resnorm, one public layer per module."""

from keras_resnorm.layers.drop_path import DropPath
from keras_resnorm.layers.dynamic_tanh import DynamicTanh
from keras_resnorm.layers.feed_forward import FeedForward
from keras_resnorm.layers.hyper_connection import HyperConnection
from keras_resnorm.layers.layer_normalization import LayerNormalization
from keras_resnorm.layers.normalization import NORMALIZATIONS, normalization
from keras_resnorm.layers.residual_wrapper import (
    ResidualWrapper,
    add_norm,
    deepnorm_constants,
    layerscale_init_for_depth,
    pre_norm_chain,
)
from keras_resnorm.layers.rms_normalization import RMSNormalization
from keras_resnorm.layers.scale_normalization import ScaleNormalization
from keras_resnorm.layers.self_attention import SelfAttention
from keras_resnorm.layers.transformer_block import (
    TransformerEncoder,
    TransformerEncoderBlock,
    residual_layer,
)
