"""keras_resnorm: residual connections and normalization layers for Keras 3.

The public API lives here:

>>> from keras_resnorm import ResidualWrapper, RMSNormalization
"""

from keras_resnorm._start_up import quiet_start_up

# TensorFlow loads here; the `keras-resnorm` command keeps its C++
# start-up lines out of its output (see _start_up.py).
with quiet_start_up():
    from keras_resnorm import (
        callbacks,
        distribution,
        ops,
        optimizers,
        placements,
    )
    from keras_resnorm.layers import (
        NORMALIZATIONS,
        DropPath,
        DynamicTanh,
        FeedForward,
        HyperConnection,
        LayerNormalization,
        ResidualWrapper,
        RMSNormalization,
        ScaleNormalization,
        SelfAttention,
        TransformerEncoder,
        TransformerEncoderBlock,
        deepnorm_constants,
        layerscale_init_for_depth,
        normalization,
    )

__version__ = "0.1.0"

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
    "callbacks",
    "deepnorm_constants",
    "distribution",
    "layerscale_init_for_depth",
    "normalization",
    "ops",
    "optimizers",
    "placements",
]
