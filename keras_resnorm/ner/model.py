"""The NER model: raw string tokens in, tag scores out, one functional graph.

```
tokens (string)  ->  TokenFeatures (features.py)  ->  word ids, casing ids,
                     character ids, [hashed feature ids], mask
core:  word embedding | character CNN | casing embedding | [hash embedding]
  ->  Dense(d_model)  [+ PositionEmbedding (keras-nlp)]
  ->  [window-CNN blocks, each in a ResidualWrapper]
  ->  [BiLSTM blocks, each in a ResidualWrapper]
  ->  [TransformerEncoder (keras_resnorm)]
  ->  [MentionPool: the other occurrences of each word in the row, with
       document context (context.py)]
  ->  TagLogits (Dense over the tag set, which it stores)  ->  [CRF]
```

The core is a nested functional model, trained on features the tf.data
pipeline computes; the saved tagger wraps features and core. `decoder`
turns the tag scores into tags (Viterbi with a CRF, argmax without) for
evaluation, `Tagger` and the export alike.

All preprocessing is inside the graph, so a saved model takes raw tokens.
The padding mask ("" tokens) goes to the encoder explicitly: keras-nlp's
PositionEmbedding drops masks.
"""

import keras
import tensorflow as tf

from keras_resnorm import placements
from keras_resnorm.layers import TransformerEncoder, normalization
from keras_resnorm.layers import residual_layer
from keras_resnorm.layers.hyper_connection import (
    collapse_stream,
    expand_stream,
)
from keras_resnorm.ner import crf as crf_lib
from keras_resnorm.ner import features as features_lib
from keras_resnorm.ner.tags import to_iob2

__all__ = [
    "CharEncoder",
    "MentionPool",
    "TagLogits",
    "WindowConv",
    "build_model",
    "context_settings",
    "crf_layer",
    "decoder",
    "loss",
    "max_length",
    "tag_names",
]

# The token contract (normalization, casing, characters, hashed features)
# lives in features.py; re-exported where the package imported them from.
PAD = features_lib.PAD
CASES = features_lib.CASES
TokenFeatures = features_lib.TokenFeatures


@keras.saving.register_keras_serializable(package="keras_resnorm")
class CharEncoder(keras.layers.Layer):
    """Character CNN: embed, convolve (width 3), max-pool over characters."""

    def __init__(self, vocabulary_size, char_dim=32, filters=64, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.char_dim = char_dim
        self.filters = filters
        self.embedding = keras.layers.Embedding(
            vocabulary_size, char_dim, dtype=self.dtype_policy, name="embedding")
        self.conv = keras.layers.Conv1D(filters, 3, padding="same",
                                        activation="relu",
                                        dtype=self.dtype_policy, name="conv")

    def build(self, input_shape):
        self.embedding.build(input_shape)
        self.conv.build((None, input_shape[-1], self.char_dim))

    def call(self, char_ids):
        shape = tf.shape(char_ids)
        flat = tf.reshape(char_ids, [-1, shape[2]])
        h = self.conv(self.embedding(flat))
        present = tf.cast(tf.not_equal(flat, 0), h.dtype)[:, :, None]
        h = tf.reduce_max(h * present, axis=1)
        return tf.reshape(h, [shape[0], shape[1], self.filters])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary_size": self.vocabulary_size,
                       "char_dim": self.char_dim, "filters": self.filters})
        return config


@keras.saving.register_keras_serializable(package="keras_resnorm")
class TagLogits(keras.layers.Dense):
    """Per-token logits over a tag set that the layer stores by name.

    It also stores the window length the tagger was trained for
    (`max_length`), which the Transformer's position table used to carry.
    """

    def __init__(self, tags, max_length=None, **kwargs):
        kwargs.pop("units", None)
        super().__init__(len(tags), **kwargs)
        self.tags = list(tags)
        self.max_length = max_length

    def get_config(self):
        config = super().get_config()
        config["tags"] = self.tags
        config["max_length"] = self.max_length
        return config


@keras.saving.register_keras_serializable(package="keras_resnorm")
class WindowConv(keras.layers.Layer):
    """A token and its `window` neighbours on each side, convolved: the
    branch of the tagger's window-CNN blocks (Collobert et al. 2011's
    window approach; spaCy's tok2vec encodes with such windows).

    ```
    y_t = activation(W [x_{t-w}; ...; x_t; ...; x_{t+w}] + b)
    ```

    Padded positions (mask False) are zeroed before the convolution, so a
    token's output does not depend on how far its batch was padded (nor on
    the padding's values), and the mask passes through unchanged.

    Args:
        units: output width. The tagger uses `d_model`.
        window: neighbours on each side. Defaults to 1.
        activation: Keras activation. Defaults to `"gelu"`.

    Input shape: `(batch, time, features)`, with an optional bool mask
    `(batch, time)`. Output shape: `(batch, time, units)`.

    Reference: Collobert et al. 2011, "Natural Language Processing (Almost)
    from Scratch", JMLR 12.
    """

    def __init__(self, units, window=1, activation="gelu", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.window = window
        self.activation = activation
        self.supports_masking = True
        self.conv = keras.layers.Conv1D(
            units, 2 * window + 1, padding="same", activation=activation,
            dtype=self.dtype_policy, name="conv")

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, inputs, mask=None):
        if mask is not None:
            inputs = inputs * tf.cast(mask, inputs.dtype)[..., None]
        return self.conv(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "window": self.window,
                       "activation": self.activation})
        return config


@keras.saving.register_keras_serializable(package="keras_resnorm")
class MentionPool(keras.layers.Layer):
    """Each token's mean encoding over the other occurrences of its word
    in the row, and whether there is one: the document-level signal of a
    tagger that reads its sentences with document context (`context.py`).

    ```
    m_ij = [key_i = key_j] * e_i * e_j * [i != j]
    y_i  = [ sum_j m_ij h_j / max(1, sum_j m_ij) ;  [sum_j m_ij > 0] ]
    ```

    `key` is the hashed normalized form of the token (the `"norm"` column
    of `hash_ids`, `features.HASHED`) and `e` is True on
    real tokens that may be part of a name (title case, all caps, or a
    casing class of its own, as a word of a caseless script has). The
    tagger adds `Dense(LayerNorm(y))` to its stream, so a word reads how
    it is used elsewhere in its document ("Leeds" next to "beat" and
    "2-1"), as in Krishnan & Manning 2006's second stage, but learned end
    to end and without any tag as input.

    The layer also stores how the tagger builds its rows (`context`, a
    mode of `context.MODES`, and `context_tokens`), which `Tagger` and
    the evaluation read back from a saved model.

    Call arguments: `inputs` `(batch, time, features)`, `hash_ids` int
    `(batch, time, len(HASHED))`, `case_ids` int `(batch, time)`, `mask`
    bool `(batch, time)`. Output
    shape: `(batch, time, features + 1)`.

    Reference: Krishnan & Manning 2006, "An Effective Two-Stage Model for
    Exploiting Non-Local Dependencies in Named Entity Recognition", ACL.
    """

    # The casing classes of `features.CASES` that may start a name.
    NAME_CASES = (CASES.index("upper"), CASES.index("title"),
                  CASES.index("other"))

    def __init__(self, context="mentions", context_tokens=64, **kwargs):
        super().__init__(**kwargs)
        self.context = context
        self.context_tokens = context_tokens
        self.supports_masking = True

    def call(self, inputs, hash_ids, case_ids, mask):
        keys = hash_ids[..., features_lib.HASHED.index("norm")]
        eligible = tf.cast(mask, tf.bool) & tf.reduce_any(
            tf.equal(case_ids[..., None],
                     tf.constant(self.NAME_CASES, case_ids.dtype)), axis=-1)
        same = tf.equal(keys[:, :, None], keys[:, None, :])
        same &= eligible[:, :, None] & eligible[:, None, :]
        time = tf.shape(keys)[1]
        same &= tf.logical_not(tf.eye(time, dtype=tf.bool))[None]
        weights = tf.cast(same, inputs.dtype)
        count = tf.reduce_sum(weights, axis=-1, keepdims=True)
        pooled = tf.matmul(weights, inputs) / tf.maximum(count, 1.0)
        return tf.concat([pooled, tf.minimum(count, 1.0)], axis=-1)

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return tuple(input_shape[:-1]) + (input_shape[-1] + 1,)

    def get_config(self):
        config = super().get_config()
        config.update({"context": self.context,
                       "context_tokens": self.context_tokens})
        return config


def _encoder_block(config, layer, index, name):
    """`layer` (a window convolution or a BiLSTM) in a ResidualWrapper (or,
    for the hyper placements, a HyperConnection): the wrappers take any
    layer. `index` counts the blocks before the Transformer ones."""
    return residual_layer(
        layer, config.placement, layer_index=index,
        expansion=config.expansion, norm=config.norm,
        branch_scale=config.branch_scale, dropout=config.dropout,
        # DeepNorm and LayerScale constants come from the stack's depth.
        depth=config.conv_layers + config.recurrent_layers + config.layers,
        projection="auto", name=name)


def _encoder_blocks(config):
    """The window-CNN blocks, then the BiLSTM blocks."""
    blocks = []
    for i in range(config.conv_layers):
        conv = WindowConv(config.d_model, config.conv_window,
                          name=f"window_conv_{i}")
        blocks.append(_encoder_block(config, conv, len(blocks), f"conv_{i}"))
    for i in range(config.recurrent_layers):
        lstm = keras.layers.LSTM(config.d_model // 2, return_sequences=True)
        bilstm = keras.layers.Bidirectional(lstm, name=f"bilstm_{i}")
        blocks.append(_encoder_block(config, bilstm, len(blocks),
                                     f"recurrent_{i}"))
    return blocks


def build_model(config, vocabulary, characters, tags):
    """The tagger: raw tokens -> TokenFeatures -> the trainable core.

    Returns `(tagger, features, core)`. `core` takes the feature tensors
    (`features(tokens)`, in order) and is what `fit` trains (string ops do
    not compile under XLA); the tf.data pipeline applies `features` to each
    batch. `tagger` chains the two and shares their weights, so saving it
    saves the trained model with its preprocessing. The tagger outputs tag
    scores; `decoder(tagger)` turns them into tags.
    """
    import keras_nlp

    features = TokenFeatures(vocabulary, characters, config.max_chars,
                             hash_buckets=config.hash_buckets,
                             name="token_features")
    word_ids = keras.Input((None,), dtype="int32", name="word_ids")
    case_ids = keras.Input((None,), dtype="int32", name="case_ids")
    char_ids = keras.Input((None, config.max_chars), dtype="int32",
                           name="char_ids")
    mask = keras.Input((None,), dtype="bool", name="mask")
    inputs = [word_ids, case_ids, char_ids]
    parts = [
        keras.layers.Embedding(features.word_vocabulary_size, config.word_dim,
                               name="word_embedding")(word_ids),
        CharEncoder(features.char_vocabulary_size, config.char_dim,
                    config.char_filters, name="char_encoder")(char_ids),
        keras.layers.Embedding(len(CASES), 8, name="case_embedding")(case_ids),
    ]
    if config.hash_buckets:
        hash_ids = keras.Input((None, len(features_lib.HASHED)),
                               dtype="int32", name="hash_ids")
        inputs.append(hash_ids)
        hashed = keras.layers.Embedding(
            len(features_lib.HASHED) * config.hash_buckets, config.hash_dim,
            name="hash_embedding")(hash_ids)
        parts.append(keras.layers.Reshape(
            (-1, len(features_lib.HASHED) * config.hash_dim),
            name="hash_features")(hashed))
    inputs.append(mask)
    h = keras.layers.Concatenate(name="features")(parts)
    h = keras.layers.Dense(config.d_model, name="input_projection")(h)
    if config.layers:
        # A row is a window and, with document context, its context.
        rows = config.max_length + (config.context_tokens
                                    if config.document_context != "none"
                                    else 0)
        positions = keras_nlp.layers.PositionEmbedding(
            rows, name="position_embedding")(h)
        h = keras.layers.Add(name="add_positions")([h, positions])
    h = keras.layers.Dropout(config.dropout, name="input_dropout")(h)
    blocks = _encoder_blocks(config)
    hyper = placements.widens_stream(config.placement)
    if hyper and blocks:
        # The blocks share one widened stream, averaged after them.
        h = expand_stream(h, config.expansion)
    for block in blocks:
        h = block(h, mask=mask)
    if hyper and blocks:
        h = normalization(config.norm, name="recurrent_norm")(
            collapse_stream(h))
    if config.layers:
        h = TransformerEncoder(
            num_layers=config.layers, num_heads=config.heads,
            intermediate_dim=config.intermediate_dim, norm=config.norm,
            placement=config.placement, branch_scale=config.branch_scale,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            intermediate_dropout=config.dropout,
            expansion=config.expansion, name="encoder",
        )(h, mask=mask)
    elif blocks and placements.is_pre_norm(config.placement):
        # A pre-norm stack ends with a norm (TransformerEncoder adds its own).
        h = normalization(config.norm, name="final_norm")(h)
    if config.document_context != "none":
        pooled = MentionPool(config.document_context, config.context_tokens,
                             name="mention_pool")(h, hash_ids, case_ids,
                                                  mask)
        pooled = normalization(config.norm, name="mention_norm")(pooled)
        pooled = keras.layers.Dense(config.d_model, activation="gelu",
                                    name="mention_projection")(pooled)
        pooled = keras.layers.Dropout(config.dropout,
                                      name="mention_dropout")(pooled)
        h = keras.layers.Add(name="add_mentions")([h, pooled])
    logits = TagLogits(tags, max_length=config.max_length, dtype="float32",
                       name="tag_logits")(h)
    if config.crf:
        logits = crf_lib.CRF(len(tags), name="crf")(logits)
    core = keras.Model(inputs, logits, name="ner_core")

    tokens = keras.Input((None,), dtype="string", name="tokens")
    tagger = keras.Model(tokens, core(list(features(tokens))),
                         name="ner_tagger")
    return tagger, features, core


def crf_layer(model):
    """The tagger's CRF layer, or None when it tags by argmax."""
    core = _core(model) if _is_tagger(model) else model
    try:
        return core.get_layer("crf")
    except ValueError:
        return None


def decoder(model, confidence=True):
    """tokens `[batch, time]` ("" padded) -> (tag ids, confidence).

    The one inference rule for evaluation, `Tagger` and the TF Serving
    export: Viterbi path and marginal probability with a CRF, argmax and
    softmax probability without. With `confidence=False` the confidence is
    None and a CRF skips the forward-backward pass of the marginals: the
    same tag ids, a first call (tracing included) about half as long and
    later calls a little faster (`results/ner-decode-conll2003.md`).
    """
    crf = crf_layer(model)

    def decode(tokens):
        scores = model(tokens, training=False)
        if crf is not None:
            mask = features_lib.scored_mask(tokens)
            if not confidence:
                return crf.path(scores, mask=mask), None
            return crf.decode(scores, mask=mask)
        probs = tf.nn.softmax(scores, axis=-1)
        ids = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return ids, tf.reduce_max(probs, axis=-1) if confidence else None
    return decode


def loss(model):
    """The training loss for a core: CRF likelihood or cross-entropy."""
    crf = crf_layer(model)
    if crf is not None:
        return crf_lib.CRFLoss(crf)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _is_tagger(model):
    return any(layer.name == "ner_core" for layer in model.layers)


def _core(model):
    return model.get_layer("ner_core")


def tag_names(model):
    """The IOB2 name of each of a tagger's output tags, in output order
    (a model that learns IOBES repeats names: `tags.to_iob2`)."""
    return [to_iob2(t) for t in _core(model).get_layer("tag_logits").tags]


def max_length(model):
    return _core(model).get_layer("tag_logits").max_length


def context_settings(model):
    """`(mode, context_tokens)` of a tagger: how its rows are built
    (`context.py`); `("none", 0)` for a tagger without document context."""
    try:
        pool = _core(model).get_layer("mention_pool")
    except ValueError:
        return "none", 0
    return pool.context, pool.context_tokens
