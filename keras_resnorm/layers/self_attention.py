import keras
from keras import ops

from keras_resnorm.layers._base import check_positive, check_rate

__all__ = ["SelfAttention"]


@keras.saving.register_keras_serializable(package="keras_resnorm")
class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention as a one-input layer (Vaswani et al., 2017).

    An adapter that lets `keras.layers.MultiHeadAttention` sit inside a
    `ResidualWrapper`: it attends from the sequence to itself and turns a
    padding mask into the key mask, so padded positions are never attended
    to (their own outputs are computed like any position's and carry no
    information into real positions). The output has the input's feature
    size.

    ```
    y = MultiHeadAttention(query=x, value=x, key=x)
    ```

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head; `None` means `features // num_heads`,
            which must be at least 1 (a ValueError names both numbers
            otherwise). Defaults to `None`.
        dropout: dropout rate on the attention weights. Defaults to `0.0`.
        use_causal_mask: whether position `i` may only attend to `j <= i`.
            Defaults to `False`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, time, features)` tensor.
        mask: optional `(batch, time)` boolean padding mask.
        training: whether attention dropout is active.

    Input shape:
        `(batch, time, features)`.

    Output shape:
        `(batch, time, features)`.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import SelfAttention
    >>> tuple(SelfAttention(num_heads=2)(np.zeros((1, 5, 8), "float32")).shape)
    (1, 5, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
        https://arxiv.org/abs/1706.03762
    """

    def __init__(self, num_heads, key_dim=None, dropout=0.0,
                 use_causal_mask=False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check_positive("num_heads", num_heads, integer=True)
        if key_dim is not None:
            check_positive("key_dim", key_dim, integer=True)
        self.key_dim = key_dim
        self.dropout = check_rate("dropout", dropout)
        self.use_causal_mask = bool(use_causal_mask)
        self.supports_masking = True
        self.attention = None

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "SelfAttention expects inputs of rank 3 (batch, time, "
                f"features). Received: input_shape={tuple(input_shape)}"
            )
        features = input_shape[-1]
        key_dim = self.key_dim
        if key_dim is None:
            key_dim = features // self.num_heads
            if key_dim == 0:
                # As keras-hub's encoder refuses it: heads of size 0 (ours
                # took 1 without a word).
                raise ValueError(
                    f"num_heads={self.num_heads} leaves key_dim = features "
                    f"// num_heads = 0 for inputs of {features} features: "
                    "pass at most as many heads as features, or key_dim. "
                    f"Received: num_heads={self.num_heads}, "
                    f"features={features}")
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=key_dim, dropout=self.dropout,
            dtype=self.dtype_policy, name="attention",
        )
        self.attention.build(input_shape, input_shape)

    def call(self, inputs, mask=None, training=None):
        # Keras's MultiHeadAttention takes the query mask from the query
        # tensor's Keras mask attribute whatever query_mask says; a copy
        # without the attribute makes the result independent of how the
        # input was made. Padded keys are masked through value_mask.
        query = ops.copy(inputs)
        return self.attention(
            query, query, value_mask=mask, training=training,
            use_causal_mask=self.use_causal_mask,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "dropout": self.dropout,
                "use_causal_mask": self.use_causal_mask,
            }
        )
        return config
