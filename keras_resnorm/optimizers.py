"""Optimizers that behave the same on one device and under tf.distribute."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_resnorm")
class AdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` that clips gradients after the replica sum.

    Keras 3.15 (TensorFlow backend) clips each replica's share of the
    gradient (`clipnorm`, `global_clipnorm`, `clipvalue`) before the
    all-reduce adds the shares, so under a `tf.distribute` strategy a step
    that clips is not the step one device takes on the whole batch (in our
    NER trainer the weights of a 2-replica run were 2% apart from a
    one-device run after one epoch). This subclass adds the shares first and
    clips the sum, as one device does. Without a strategy it computes what
    `keras.optimizers.AdamW` computes; arguments are the same.

    Example:

    >>> import keras_resnorm
    >>> optimizer = keras_resnorm.optimizers.AdamW(1e-3, clipnorm=1.0)
    >>> optimizer.get_config()["clipnorm"]
    1.0
    """

    def _clip_gradients(self, grads):
        return grads

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        variables = [v.value if isinstance(v, keras.Variable) else v
                     for v in trainable_variables]
        pairs = self._all_reduce_sum_gradients(list(zip(grads, variables)))
        clipped = keras.optimizers.AdamW._clip_gradients(
            self, [g for g, _ in pairs])
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step, self._distribution_strategy,
            list(zip(clipped, variables)), learning_rate)
