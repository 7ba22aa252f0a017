import keras

from keras_resnorm.layers._base import check_positive, check_rate

__all__ = ["FeedForward"]


@keras.saving.register_keras_serializable(package="keras_resnorm")
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward network (Vaswani et al., 2017).

    ```
    y = W2 dropout(act(W1 x + b1)) + b2
    ```

    Args:
        intermediate_dim: width of the hidden layer.
        activation: activation of the hidden layer. Defaults to `"gelu"`.
        dropout: dropout rate after the activation. Defaults to `0.0`.
        output_dim: output width; `None` keeps the input's. Defaults to
            `None`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, ..., features)` tensor.
        training: whether dropout is active.

    Input shape:
        `(batch, ..., features)`.

    Output shape:
        `(batch, ..., output_dim or features)`.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import FeedForward
    >>> tuple(FeedForward(32)(np.zeros((2, 5, 8), "float32")).shape)
    (2, 5, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
        https://arxiv.org/abs/1706.03762
    """

    def __init__(self, intermediate_dim, activation="gelu", dropout=0.0,
                 output_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim = check_positive(
            "intermediate_dim", intermediate_dim, integer=True
        )
        if output_dim is not None:
            check_positive("output_dim", output_dim, integer=True)
        self.activation = keras.activations.get(activation)
        self.dropout = check_rate("dropout", dropout)
        self.output_dim = output_dim
        self.supports_masking = True
        self.hidden = keras.layers.Dense(
            intermediate_dim, activation=self.activation,
            dtype=self.dtype_policy, name="hidden",
        )
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )
        self.output_dense = None

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.output_dense = keras.layers.Dense(
            self.output_dim or input_shape[-1], dtype=self.dtype_policy,
            name="output",
        )
        self.output_dense.build(
            tuple(input_shape[:-1]) + (self.intermediate_dim,)
        )

    def call(self, inputs, training=None):
        h = self.dropout_layer(self.hidden(inputs), training=training)
        return self.output_dense(h)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim or input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "output_dim": self.output_dim,
            }
        )
        return config
