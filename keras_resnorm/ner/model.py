"""The NER model: raw string tokens in, tag logits out, one functional graph.

```
tokens (string)  ->  TokenFeatures  ->  word ids, casing ids, character ids, mask
core:  word embedding | character CNN | casing embedding  ->  Dense(d_model)
  + PositionEmbedding (keras-nlp)  ->  TransformerEncoder (keras_resnorm)
  ->  TagLogits (Dense over the tag set, which it stores)
```

The core is a nested functional model, trained under XLA on features the
tf.data pipeline computes; the saved tagger wraps features and core.

All preprocessing (lower-casing, digit folding, vocabulary lookup with an
out-of-vocabulary bucket, casing classes, UTF-8 character split) is inside
the graph, so a saved model takes raw tokens. The padding mask ("" tokens)
goes to the encoder explicitly: keras-nlp's PositionEmbedding drops masks.
"""

import dataclasses

import keras
import tensorflow as tf

from keras_resnorm.layers import TransformerEncoder

PAD = ""
# Casing classes; 0 is padding.
CASES = ("pad", "lower", "upper", "title", "digit", "other")


@dataclasses.dataclass
class ModelConfig:
    """Architecture of the tagger; every field is a CLI flag."""

    norm: str = "layer"
    placement: str = "pre"
    branch_scale: object = None
    layers: int = 4
    heads: int = 4
    d_model: int = 128
    intermediate_dim: int = 256
    dropout: float = 0.1
    attention_dropout: float = 0.1
    word_dim: int = 100
    char_dim: int = 32
    char_filters: int = 64
    max_chars: int = 16
    max_length: int = 128


@keras.saving.register_keras_serializable(package="keras_resnorm")
class TokenFeatures(keras.layers.Layer):
    """String tokens -> (word ids, casing ids, character ids, mask), in graph.

    Words are lower-cased with digits folded to 0, then looked up in
    `vocabulary` (index 0 padding, 1 out of vocabulary). Characters come
    from a UTF-8 split with invalid bytes replaced by U+FFFD, truncated to
    `max_chars`, and looked up in `characters`. The mask is True on
    real tokens, False on "" padding.
    """

    def __init__(self, vocabulary, characters, max_chars=16, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.characters = list(characters)
        self.max_chars = max_chars
        self.word_lookup = keras.layers.StringLookup(
            vocabulary=self.vocabulary, mask_token=PAD, num_oov_indices=1,
            name="word_lookup")
        self.char_lookup = keras.layers.StringLookup(
            vocabulary=self.characters, mask_token=PAD, num_oov_indices=1,
            name="char_lookup")

    def build(self, input_shape):
        self.word_lookup.build(input_shape)
        self.char_lookup.build(tuple(input_shape) + (self.max_chars,))

    @property
    def word_vocabulary_size(self):
        return len(self.vocabulary) + 2

    @property
    def char_vocabulary_size(self):
        return len(self.characters) + 2

    def call(self, tokens):
        tokens = tf.convert_to_tensor(tokens, tf.string)
        words = tf.strings.regex_replace(tf.strings.lower(tokens), r"[0-9]", "0")
        word_ids = self.word_lookup(words)
        is_pad = tf.equal(tokens, PAD)
        lower = tf.strings.regex_full_match(tokens, r"[^A-Z]*[a-z][^A-Z]*")
        upper = tf.strings.regex_full_match(tokens, r"[^a-z]*[A-Z][^a-z]*")
        title = tf.strings.regex_full_match(tokens, r"[A-Z][^A-Z]*")
        digit = tf.strings.regex_full_match(tokens, r".*[0-9].*")
        case = tf.where(digit, 4, 5)
        case = tf.where(title, 3, case)
        case = tf.where(upper, 2, case)
        case = tf.where(lower, 1, case)
        case_ids = tf.where(is_pad, 0, case)
        chars = tf.strings.unicode_split(tokens, "UTF-8", errors="replace")
        # to_tensor with an explicit shape truncates to max_chars and keeps
        # the batch and time sizes even when they are 0.
        shape = tf.concat([tf.shape(tokens, out_type=tf.int64),
                           [self.max_chars]], axis=0)
        char_ids = self.char_lookup(
            chars.to_tensor(default_value=PAD, shape=shape))
        char_ids = tf.ensure_shape(char_ids, [None, None, self.max_chars])
        return (tf.cast(word_ids, "int32"), tf.cast(case_ids, "int32"),
                tf.cast(char_ids, "int32"), tf.logical_not(is_pad))

    def compute_output_spec(self, tokens):
        shape = tuple(tokens.shape)
        return (keras.KerasTensor(shape, "int32"),
                keras.KerasTensor(shape, "int32"),
                keras.KerasTensor(shape + (self.max_chars,), "int32"),
                keras.KerasTensor(shape, "bool"))

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary": self.vocabulary,
                       "characters": self.characters,
                       "max_chars": self.max_chars})
        return config


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
    """Per-token logits over a tag set that the layer stores by name."""

    def __init__(self, tags, **kwargs):
        kwargs.pop("units", None)
        super().__init__(len(tags), **kwargs)
        self.tags = list(tags)

    def get_config(self):
        config = super().get_config()
        config["tags"] = self.tags
        return config


def build_model(config, vocabulary, characters, tags):
    """The tagger: raw tokens -> TokenFeatures -> the trainable core.

    Returns `(tagger, features, core)`. `core` takes the four feature
    tensors and is what `fit` trains under XLA (string ops do not compile);
    the tf.data pipeline applies `features` to each batch. `tagger` chains
    the two and shares their weights, so saving it saves the trained model
    with its preprocessing.
    """
    import keras_nlp

    features = TokenFeatures(vocabulary, characters, config.max_chars,
                             name="token_features")
    word_ids = keras.Input((None,), dtype="int32", name="word_ids")
    case_ids = keras.Input((None,), dtype="int32", name="case_ids")
    char_ids = keras.Input((None, config.max_chars), dtype="int32",
                           name="char_ids")
    mask = keras.Input((None,), dtype="bool", name="mask")
    words = keras.layers.Embedding(features.word_vocabulary_size,
                                   config.word_dim,
                                   name="word_embedding")(word_ids)
    chars = CharEncoder(features.char_vocabulary_size, config.char_dim,
                        config.char_filters, name="char_encoder")(char_ids)
    cases = keras.layers.Embedding(len(CASES), 8,
                                   name="case_embedding")(case_ids)
    h = keras.layers.Concatenate(name="features")([words, chars, cases])
    h = keras.layers.Dense(config.d_model, name="input_projection")(h)
    positions = keras_nlp.layers.PositionEmbedding(
        config.max_length, name="position_embedding")(h)
    h = keras.layers.Add(name="add_positions")([h, positions])
    h = keras.layers.Dropout(config.dropout, name="input_dropout")(h)
    h = TransformerEncoder(
        num_layers=config.layers, num_heads=config.heads,
        intermediate_dim=config.intermediate_dim, norm=config.norm,
        placement=config.placement, branch_scale=config.branch_scale,
        dropout=config.dropout, attention_dropout=config.attention_dropout,
        intermediate_dropout=config.dropout, name="encoder",
    )(h, mask=mask)
    logits = TagLogits(tags, dtype="float32", name="tag_logits")(h)
    core = keras.Model([word_ids, case_ids, char_ids, mask], logits,
                       name="ner_core")

    tokens = keras.Input((None,), dtype="string", name="tokens")
    tagger = keras.Model(tokens, core(list(features(tokens))),
                         name="ner_tagger")
    return tagger, features, core


def _core(model):
    return model.get_layer("ner_core")


def tag_names(model):
    """The tag set a tagger model was built with."""
    return _core(model).get_layer("tag_logits").tags


def max_length(model):
    return _core(model).get_layer("position_embedding").sequence_length
