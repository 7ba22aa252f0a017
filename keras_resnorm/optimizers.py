"""Optimizers that behave the same on one device and under tf.distribute."""

import keras

from keras_resnorm import _keras_workarounds

__all__ = ["AdamW"]


@keras.saving.register_keras_serializable(package="keras_resnorm")
class AdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` that clips gradients after the replica sum.

    Keras 3.15 (TensorFlow backend) clips each replica's share of the
    gradient (`clipnorm`, `global_clipnorm`, `clipvalue`) before the
    all-reduce adds the shares, so under a `tf.distribute` strategy a step
    that clips is not the step one device takes on the whole batch
    (`tests/test_optimizers.py` shows the difference). This subclass adds
    the shares first and clips the sum, as one device does. Without a
    strategy, and on Keras's other backends, it computes what
    `keras.optimizers.AdamW` computes; arguments are the same.

    Example:

    >>> import keras_resnorm
    >>> optimizer = keras_resnorm.optimizers.AdamW(1e-3, clipnorm=1.0)
    >>> optimizer.get_config()["clipnorm"]
    1.0
    """

    # keras_resnorm/_keras_workarounds.py, item 5: on the TensorFlow
    # backend the replica shares are summed before clipping; other
    # backends clip as keras.optimizers.AdamW does.
    def _clip_gradients(self, grads):
        if keras.backend.backend() == "tensorflow":
            return grads  # clipped after the sum, below
        return super()._clip_gradients(grads)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if keras.backend.backend() != "tensorflow":
            return super()._backend_update_step(grads, trainable_variables,
                                                learning_rate)
        _keras_workarounds.sum_then_clip_update_step(
            self, grads, trainable_variables, learning_rate,
            clip=lambda g: keras.optimizers.AdamW._clip_gradients(self, g))
