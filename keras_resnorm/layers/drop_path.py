import keras
from keras import ops

from keras_resnorm.layers._base import check_rate

__all__ = ["DropPath"]


@keras.saving.register_keras_serializable(package="keras_resnorm")
class DropPath(keras.layers.Layer):
    """Stochastic depth (Huang et al., 2016): drop a whole branch per example.

    During training each example's input is zeroed with probability `rate`
    and the survivors are scaled by `1 / (1 - rate)`, so the expectation is
    unchanged; at inference the layer is the identity. Put it on a residual
    branch: a dropped example then passes through the skip path alone.
    Masks pass through unchanged.

    ```
    y = x * b / (1 - rate),   b ~ Bernoulli(1 - rate), one draw per example
    ```

    Args:
        rate: probability of dropping an example's branch, in `[0, 1)`.
            Defaults to `0.0`.
        seed: optional int seed. Defaults to `None`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor whose first dimension is the batch.
        training: whether to drop. Defaults to `None` (inference).

    Input shape:
        Any, batch first.

    Output shape:
        Same as the input.

    Example:

    >>> import numpy as np
    >>> from keras_resnorm import DropPath
    >>> x = np.ones((4, 3), "float32")
    >>> bool(np.all(np.asarray(DropPath(0.5)(x, training=False)) == 1.0))
    True

    Reference:
        Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic
        Depth", ECCV 2016, https://arxiv.org/abs/1603.09382
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate("rate", rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self.built = True
        # A scalar tensor that stands for `rate` while a scanned stack
        # (`TransformerEncoder(scan=True)`) traces the one block body that
        # serves every depth, each depth with its own rate.
        self._rate_for_call = None

    def call(self, inputs, training=None):
        if not training:
            return inputs
        if self._rate_for_call is not None:
            keep = 1.0 - ops.cast(self._rate_for_call, "float32")
        elif self.rate == 0.0:
            return inputs
        else:
            keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        draw = keras.random.uniform(
            shape, dtype="float32", seed=self.seed_generator
        )
        mask = ops.cast(draw < keep, inputs.dtype)
        return inputs * mask / ops.cast(keep, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
