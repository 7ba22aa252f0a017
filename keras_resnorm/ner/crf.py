"""A linear-chain CRF output layer: forward-algorithm loss, Viterbi decoding.

Lafferty et al. 2001, "Conditional Random Fields"; as a tagger head over
neural emission scores, Lample et al. 2016 ("Neural Architectures for Named
Entity Recognition") and Ma & Hovy 2016.

For emission scores `E[t, k]` (the tag logits), transition scores
`A[i, j]` (tag `i` followed by `j`), start scores `s[j]` and end scores
`e[i]`, a tag path `y` of a sentence of length `n` scores

```
score(y) = s[y_0] + sum_{t<n} E[t, y_t] + sum_{0<t<n} A[y_{t-1}, y_t] + e[y_{n-1}]
log p(y | x) = score(y) - log Z,   log Z = logsumexp over all paths of score
```

`log Z` comes from the forward algorithm, the best path from Viterbi and
per-token marginals `p(y_t = k | x)` from forward-backward, each a scan over
time in float32 that leaves padded steps (mask False, after the sentence)
out. Everything is plain TensorFlow ops: it runs eagerly, in `tf.function`,
under XLA and in an exported SavedModel with no `_XlaMustCompile`.
"""

import keras
import tensorflow as tf

from keras_resnorm._checks import check_positive

__all__ = [
    "CRF",
    "CRFLoss",
    "log_likelihood",
    "log_partition",
    "marginals",
    "viterbi_decode",
]


def _time_major(x):
    perm = [1, 0] + list(range(2, x.shape.rank))
    return tf.transpose(x, perm)


def _prepare(emissions, mask, *scores):
    """float32 inputs with two padded steps appended to the time axis.

    The extra steps (mask False) make every scan below run at least once,
    also for a time axis of length 0 or 1 in a graph whose batch size is
    unknown (an empty scan cannot stack its outputs there); the callers
    drop their outputs.
    """
    emissions = tf.cast(emissions, tf.float32)
    if mask is None:
        mask = tf.ones(tf.shape(emissions)[:2], tf.bool)
    mask = tf.cast(mask, tf.bool)
    emissions = tf.pad(emissions, [[0, 0], [0, 2], [0, 0]])
    mask = tf.pad(mask, [[0, 0], [0, 2]], constant_values=False)
    return (emissions, mask) + tuple(tf.cast(v, tf.float32) for v in scores)


def log_likelihood(emissions, tags, transitions, start, end, mask=None):
    """`log p(tags | x)` per sentence, `[batch]` float32.

    Args:
        emissions: `[batch, time, num_tags]` scores.
        tags: `[batch, time]` int gold tags (any value on padding).
        transitions: `[num_tags, num_tags]`, `start`, `end`: `[num_tags]`.
        mask: `[batch, time]` bool or 0/1, True on real tokens, which must
            come first in each row. None: every step is real. A sentence of
            length 0 has log-likelihood 0.
    """
    emissions, mask, transitions, start, end = _prepare(
        emissions, mask, transitions, start, end)
    tags = tf.pad(tf.cast(tags, tf.int32), [[0, 0], [0, 2]])
    num_tags = tf.shape(emissions)[-1]
    maskf = tf.cast(mask, tf.float32)
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)

    # Score of the gold path.
    tags = tf.where(mask, tags, 0)
    emit = tf.gather(emissions, tags, batch_dims=2)
    gold = tf.reduce_sum(emit * maskf, axis=1)
    pair = tf.gather(tf.reshape(transitions, [-1]),
                     tags[:, :-1] * num_tags + tags[:, 1:])
    gold += tf.reduce_sum(pair * maskf[:, 1:], axis=1)
    gold += tf.gather(start, tags[:, 0])
    last = tf.gather(tags, tf.maximum(lengths - 1, 0), batch_dims=1)
    gold += tf.gather(end, last)

    _, log_z = _forward_scores(emissions, transitions, start, end, mask)
    return tf.where(lengths > 0, gold - log_z, 0.0)


def _forward_scores(emissions, transitions, start, end, mask):
    """alpha_t for every step, time-major `[time, batch, num_tags]`, and
    log Z `[batch]`."""
    first = start[None, :] + emissions[:, 0]

    def step(alpha, inputs):
        emit, real = inputs
        nxt = tf.reduce_logsumexp(alpha[:, :, None] + transitions[None],
                                  axis=1) + emit
        return tf.where(real[:, None], nxt, alpha)

    rest = tf.scan(step, (_time_major(emissions)[1:], _time_major(mask)[1:]),
                   initializer=first)
    alphas = tf.concat([first[None], rest], axis=0)
    return alphas, tf.reduce_logsumexp(alphas[-1] + end[None, :], axis=1)


def log_partition(emissions, transitions, start, end, mask=None):
    """`log Z` per sentence (forward algorithm), `[batch]` float32."""
    emissions, mask, transitions, start, end = _prepare(
        emissions, mask, transitions, start, end)
    return _forward_scores(emissions, transitions, start, end, mask)[1]


def marginals(emissions, transitions, start, end, mask=None):
    """`p(y_t = k | x)`, `[batch, time, num_tags]` float32 (0 on padding).

    Each token's row is normalized by its own sum, `softmax(alpha_t +
    beta_t)`, rather than by `log Z` from the forward pass: in exact
    arithmetic the two agree, but in float32 the forward and backward
    scans round differently and the error grows with the sentence's
    length (`exp(alpha + beta - log Z)` reached 1.002). So every
    probability is at most 1 and each token's sum to 1 within float32
    rounding."""
    width = tf.shape(emissions)[1]
    emissions, mask, transitions, start, end = _prepare(
        emissions, mask, transitions, start, end)
    alphas, _ = _forward_scores(emissions, transitions, start, end, mask)
    # beta_t[i] = log sum over the rest of the path after tag i at step t;
    # padded steps carry the end scores back unchanged.
    emit_tm = _time_major(emissions)
    mask_tm = _time_major(mask)
    last = tf.broadcast_to(end[None, :], tf.shape(emissions[:, 0]))

    def step(beta, inputs):
        emit_next, real_next = inputs
        prev = tf.reduce_logsumexp(
            transitions[None] + (emit_next + beta)[:, None, :], axis=2)
        return tf.where(real_next[:, None], prev, beta)

    betas = tf.scan(step, (emit_tm[1:], mask_tm[1:]), initializer=last,
                    reverse=True)
    betas = tf.concat([betas, last[None]], axis=0)
    probs = _time_major(tf.nn.softmax(alphas + betas, axis=-1))
    return (probs * tf.cast(mask, tf.float32)[:, :, None])[:, :width]


def viterbi_decode(emissions, transitions, start, end, mask=None):
    """Best tag path `[batch, time]` int32 and its score `[batch]`.

    Padded steps repeat the last real tag; callers mask them.
    """
    width = tf.shape(emissions)[1]
    emissions, mask, transitions, start, end = _prepare(
        emissions, mask, transitions, start, end)
    num_tags = tf.shape(emissions)[-1]
    first = start[None, :] + emissions[:, 0]
    stay = tf.broadcast_to(tf.range(num_tags)[None, :],
                           tf.shape(emissions[:, 0], out_type=tf.int32))

    def step(carry, inputs):
        delta, _ = carry
        emit, real = inputs
        scores = delta[:, :, None] + transitions[None]
        best = tf.reduce_max(scores, axis=1) + emit
        pointer = tf.argmax(scores, axis=1, output_type=tf.int32)
        return (tf.where(real[:, None], best, delta),
                tf.where(real[:, None], pointer, stay))

    deltas, pointers = tf.scan(
        step, (_time_major(emissions)[1:], _time_major(mask)[1:]),
        initializer=(first, stay))
    final = tf.concat([first[None], deltas], axis=0)[-1] + end[None, :]
    best_last = tf.argmax(final, axis=1, output_type=tf.int32)
    score = tf.reduce_max(final, axis=1)

    def back(tag, pointer):
        return tf.gather(pointer, tag, batch_dims=1)

    earlier = tf.scan(back, pointers, initializer=best_last, reverse=True)
    path = tf.concat([earlier, best_last[None]], axis=0)
    return _time_major(path)[:, :width], score


@keras.saving.register_keras_serializable(package="keras_resnorm")
class CRF(keras.layers.Layer):
    """Linear-chain CRF head (Lafferty et al. 2001; Lample et al. 2016).

    Holds the transition, start and end scores (float32, initialized to 0,
    so the untrained CRF decodes like a softmax argmax). Called on emission
    scores it returns them unchanged; `CRFLoss` trains the scores, and
    `decode` returns the Viterbi path and each chosen tag's marginal
    probability (`path`: the Viterbi tag ids alone). The mask is passed
    through.

    Args:
        num_tags: size of the tag set.
    """

    def __init__(self, num_tags, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_tags = check_positive("num_tags", num_tags, integer=True)
        self.supports_masking = True

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.num_tags:
            raise ValueError(
                f"CRF expects emissions with num_tags={self.num_tags} "
                f"scores per token. Received: input_shape={input_shape}")
        k = self.num_tags
        self.transitions = self.add_weight(
            shape=(k, k), initializer="zeros", name="transitions",
            autocast=False)
        self.start = self.add_weight(shape=(k,), initializer="zeros",
                                     name="start", autocast=False)
        self.end = self.add_weight(shape=(k,), initializer="zeros",
                                   name="end", autocast=False)

    def call(self, emissions):
        return emissions

    def compute_output_shape(self, input_shape):
        return input_shape

    def scores(self):
        return self.transitions, self.start, self.end

    def log_likelihood(self, emissions, tags, mask=None):
        return log_likelihood(emissions, tags, *self.scores(), mask=mask)

    def path(self, emissions, mask=None):
        """The Viterbi tag ids `[batch, time]` int32 alone (`decode`
        without the marginals' forward-backward pass)."""
        return viterbi_decode(emissions, *self.scores(), mask=mask)[0]

    def decode(self, emissions, mask=None):
        """`(tag ids [batch, time] int32, confidence [batch, time] float32)`.

        Confidence is the marginal probability of the Viterbi tag.
        """
        path = self.path(emissions, mask=mask)
        probs = marginals(emissions, *self.scores(), mask=mask)
        return path, tf.gather(probs, path, batch_dims=2)

    def get_config(self):
        config = super().get_config()
        config["num_tags"] = self.num_tags
        return config


@keras.saving.register_keras_serializable(package="keras_resnorm")
class CRFLoss(keras.losses.Loss):
    """Negative CRF log-likelihood per real token, for `compile(loss=...)`.

    `sample_weight` (1 on real tokens, 0 on padding, as the NER pipeline
    gives it) is the mask. The sum over sentences of `-log p(y | x)` is
    divided by the number of real tokens, so the loss is on the scale of a
    per-token cross-entropy.

    A loss restored from a saved model's compile configuration has no CRF
    layer; pass the layer again (`CRFLoss(crf)`) to train.
    """

    def __init__(self, crf=None, name="crf_loss", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name)
        self.crf = crf

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.crf is None:
            raise ValueError(
                "CRFLoss needs the model's CRF layer: compile with "
                "loss=CRFLoss(model.get_layer('crf')). Received: crf=None")
        mask = None if sample_weight is None else sample_weight > 0
        ll = self.crf.log_likelihood(y_pred, y_true, mask=mask)
        if mask is None:
            tokens = tf.cast(tf.size(y_true), tf.float32)
        else:
            tokens = tf.reduce_sum(tf.cast(mask, tf.float32))
        # Under a tf.distribute strategy each replica sees part of the
        # global batch and Keras sums the replicas' gradients (its own
        # losses divide by the replica count first). Divided by the global
        # token count, this replica's loss is its share of the global batch
        # loss, so the sum is the single-device loss; dividing by each
        # replica's own count would weight tokens unequally.
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            tokens = context.all_reduce(tf.distribute.ReduceOp.SUM, tokens)
        return -tf.reduce_sum(ll) / tf.maximum(tokens, 1.0)

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def get_config(self):
        return {"name": self.name}
