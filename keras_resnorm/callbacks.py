"""TensorBoard diagnostics of the residual stream.

It measures with TensorFlow (a gradient tape, summaries): TensorFlow is
imported when it runs, so `import keras_resnorm` still needs none."""

import keras
import numpy as np

from keras_resnorm import _keras_workarounds
from keras_resnorm.layers._residual_core import ResidualRecording


__all__ = ["ResidualStreamDiagnostics", "residual_wrappers"]


def residual_wrappers(model):
    """Every residual layer inside `model` (`ResidualWrapper`s and
    `HyperConnection`s), in order of construction."""
    return [layer for layer in _keras_workarounds.flatten_layers(model)
            if isinstance(layer, ResidualRecording)]


class ResidualStreamDiagnostics(keras.callbacks.Callback):
    """Log, per residual block, how large the branch is against the stream.

    At the end of every epoch the callback runs one fixed batch eagerly and
    writes to TensorBoard, for each `ResidualWrapper` and `HyperConnection`
    (named by its path):

    - `residual/<name>/branch_to_residual_rms`: RMS(s * F(.)) / RMS(skip),
      the share of the update the branch contributes. Post-norm stacks keep
      it near 1; pre-norm stacks see it fall with depth as the stream grows
      (Xiong et al., 2020), which is the "vanishing update" effect. For a
      hyper-connection, the skip is the combined stream the branch reads
      (`sum_i a_i H_i`) and the branch is `F(N(.))` before it is written
      back. A scanned `TransformerEncoder` runs its blocks in a loop and
      has no wrappers to measure.
    - `residual/<name>/gradient_norm`: the L2 norm of the loss gradient with
      respect to the wrapper's trainable weights (needs `targets`).

    Args:
        inputs: one batch of model inputs.
        targets: optional targets for that batch, for gradient norms.
        sample_weight: optional sample weights for that batch.
        log_dir: TensorBoard directory to write into.
    """

    def __init__(self, inputs, log_dir, targets=None, sample_weight=None):
        super().__init__()
        self.inputs = inputs
        self.targets = targets
        self.sample_weight = sample_weight
        self.log_dir = log_dir
        self._writer = None
        self.last = {}

    def measure(self):
        """Return {name: {"branch_to_residual_rms": r, "gradient_norm": g}}."""
        import tensorflow as tf

        wrappers = residual_wrappers(self.model)
        for w in wrappers:
            w.start_recording()
        try:
            with tf.GradientTape() as tape:
                outputs = self.model(self.inputs, training=False)
                loss = None
                if self.targets is not None:
                    loss = self.model.compute_loss(
                        x=self.inputs, y=self.targets, y_pred=outputs,
                        sample_weight=self.sample_weight, training=False)
            stats = {}
            for w in wrappers:
                skip_rms, branch_rms = w.stop_recording()[-1]
                name = w.path
                stats[name] = {"branch_to_residual_rms": float(
                    branch_rms / np.maximum(skip_rms, 1e-12))}
            if loss is not None:
                variables = [v for w in wrappers for v in w.trainable_weights]
                grads = tape.gradient(loss, variables)
                index = 0
                for w in wrappers:
                    n = len(w.trainable_weights)
                    part = [g for g in grads[index:index + n] if g is not None]
                    index += n
                    stats[w.path]["gradient_norm"] = float(
                        tf.linalg.global_norm(part)) if part else 0.0
        finally:
            for w in wrappers:
                w.stop_recording()
        return stats

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        self.last = self.measure()
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for name, values in self.last.items():
                for key, value in values.items():
                    tf.summary.scalar(f"residual/{name}/{key}", value,
                                      step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
