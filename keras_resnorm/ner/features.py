"""Token features computed in the graph: the NER token contract in one place.

Every rule that turns raw text or a raw token into model input lives here
and is plain TensorFlow ops, so training, evaluation, the saved tagger and
the TF Serving export apply the same ones:

- `tokenize_text`: raw text into CoNLL-like tokens (the `Tagger`, the CLI
  and the export's text signature);
- `normalize_words`: Unicode lower-casing (UTF-8 aware, so "Éire" and
  "éire" meet) and ASCII digits folded to "0". The vocabulary is built by
  running this same function over the training tokens.
- casing class of the raw token (`CASES`);
- UTF-8 characters (invalid bytes replaced by U+FFFD), truncated;
- hashed token features as spaCy's tok2vec embeds them (Honnibal & Montani,
  spaCy 2/3 "HashEmbed"): the normalized form, its first character, its
  last three characters and the word shape (`Xxxx`, `dd`, runs cut to four),
  each hashed into `hash_buckets` rows, so rare and unseen words still get
  informative embeddings;
- document context (`CONTEXT_SEPARATOR`, `scored_mask`): a row may carry,
  after its sentence, a separator and tokens from elsewhere in the
  document (`context.py` chooses them), which the model reads and never
  scores;
- padding (`PAD`, the empty string) and the long-sentence policy: a
  sentence longer than the model's `max_length` is cut into consecutive
  windows of `max_length` tokens (`window_starts` in Python for training
  and evaluation, `split_windows` / `join_windows` in the graph for the
  export), so no token is dropped.
"""

import keras
import tensorflow as tf

__all__ = [
    "CASES",
    "CONTEXT_SEPARATOR",
    "HASHED",
    "OOV",
    "PAD",
    "SEPARATORS",
    "TOKEN_PATTERN",
    "TokenFeatures",
    "UNREADABLE_TOKEN",
    "hashed_features",
    "hide_words",
    "join_windows",
    "normalize_words",
    "readable_tokens",
    "scored_mask",
    "split_windows",
    "tokenize_text",
    "vocabulary",
    "window_starts",
    "word_shape",
]

PAD = ""
# Casing classes; 0 is padding.
CASES = ("pad", "lower", "upper", "title", "digit", "other")
# The hashed features, in the order of the last axis of `hash_ids`.
HASHED = ("norm", "prefix", "suffix", "shape")


# ------------------------------------------------------------- tokenizing
# What separates tokens, as an RE2 class (TensorFlow's regex ops): every
# Unicode space (\p{Z}: the no-break space, thin and ideographic spaces,
# line and paragraph separators), the ASCII controls \t \n \v \f \r, NEL,
# and the zero-width characters that join nothing (zero-width space, word
# joiner, byte-order mark). Text pasted from a web page or a word processor
# carries these between words.
# The ASCII information separators \x1C-\x1F are whitespace to Python's
# str.split too; one of them marks document context (CONTEXT_SEPARATOR),
# so text can never produce it.
SEPARATORS = (r"[\p{Z}\t\n\x0B\f\r\x1C-\x1F\x{85}\x{200B}\x{2060}"
              r"\x{FEFF}]")
# Word characters: letters, digits and combining marks (so "Cafe" plus
# U+0301 stays one word, as "Café" does), the zero-width (non-)joiners that
# several scripts write inside words, and the underscore.
_WORD = r"[\pL\pN\pM\x{200C}\x{200D}_]"
# CoNLL-like tokens: U.S.-style abbreviations, numbers with separators
# (1,000.5), words with inner hyphens, clitics ('s), then any other
# character alone, with the combining marks that follow it.
TOKEN_PATTERN = (r"((?:[A-Za-z]\.){2,}|\d+(?:[.,:]\d+)*"
                 rf"|{_WORD}+(?:-{_WORD}+)*|'{_WORD}+|\S\pM*)")


def tokenize_text(texts):
    """Tokenize a `[batch]` tf.string tensor into a RaggedTensor of tokens.

    Pure TensorFlow ops (regex_replace + whitespace split), so the same
    function runs in Python, in an exported SavedModel and under TF Serving.
    Every token is a substring of the text as sent: separators
    (`SEPARATORS`) are never part of a token, and nothing else is dropped
    or changed, so character offsets point into the caller's text.
    """
    spaced = tf.strings.regex_replace(texts, SEPARATORS, " ")
    spaced = tf.strings.regex_replace(spaced, TOKEN_PATTERN, r" \1 ")
    return tf.strings.split(spaced)


# A row of model input is a sentence (or a window of one), then optionally
# this token and context tokens from the same document: the model reads
# them, and nothing after the first separator is scored, trained on or
# returned. The ASCII record separator, which `tokenize_text` never emits.
CONTEXT_SEPARATOR = "\x1e"
# Why a pre-tokenized token that is empty or holds `CONTEXT_SEPARATOR` is
# refused, by the Tagger and the export's `tag_tokens` alike: the model
# would read it as padding or as the start of context, not as a word.
UNREADABLE_TOKEN = ("is empty or holds the record separator '\\x1e'; the "
                    "model reads those as padding and document context, not "
                    "as words: drop the token or replace it")


def readable_tokens(tokens, lengths):
    """A scalar bool: whether every token of `tokens` `[batch, time]`
    before its row's `lengths` is a word the model can read (not `PAD`,
    no `CONTEXT_SEPARATOR`)."""
    inside = tf.sequence_mask(lengths, tf.shape(tokens)[1])
    unreadable = tf.equal(tokens, PAD) | tf.strings.regex_full_match(
        tokens, r"(?s).*\x1e.*")
    return tf.logical_not(tf.reduce_any(inside & unreadable))


def scored_mask(tokens):
    """True on the tokens of a row that are tagged: real (not `PAD`) and
    before the first `CONTEXT_SEPARATOR`. Without context, `tokens != PAD`.
    """
    tokens = tf.convert_to_tensor(tokens, tf.string)
    context = tf.cumsum(tf.cast(tf.equal(tokens, CONTEXT_SEPARATOR),
                                tf.int32), axis=-1) > 0
    return tf.not_equal(tokens, PAD) & tf.logical_not(context)


def window_starts(length, max_length):
    """Where each window of a sentence of `length` tokens starts.

    >>> list(window_starts(70, 32))
    [0, 32, 64]
    """
    return range(0, length, max_length)


def split_windows(tokens, max_length):
    """`[batch, width]` tokens -> `([batch * n, size], n)` windows.

    The graph form of `window_starts`: windows of `size = min(width,
    max_length)` tokens (at least 1), each row padded with `PAD` to `n`
    whole windows, `n = max(1, ceil(width / size))`. A batch no wider than
    `max_length` is one window as it is, not padded to `max_length`: the
    tagger's work (the CRF's Viterbi steps among it) follows the batch's
    length. An empty batch or sentence still has a defined, all-padding
    result.
    """
    batch, width = tf.shape(tokens)[0], tf.shape(tokens)[1]
    size = tf.maximum(1, tf.minimum(width, max_length))
    n = tf.maximum(1, (width + size - 1) // size)
    padded = tf.pad(tokens, [[0, 0], [0, n * size - width]],
                    constant_values=PAD)
    return tf.reshape(padded, [batch * n, size]), n


def join_windows(values, batch, n, width):
    """Undo `split_windows` on per-token `values` `[batch * n, max_length]`."""
    return tf.reshape(values, [batch, n * tf.shape(values)[1]])[:, :width]


def normalize_words(tokens):
    """Lower-case (Unicode) and fold ASCII digits to 0: the vocabulary key."""
    lowered = tf.strings.lower(tokens, encoding="utf-8")
    return tf.strings.regex_replace(lowered, r"[0-9]", "0")


def word_shape(tokens):
    """`Xxxxx`-style shapes: upper X, lower x, digit d, runs cut to four."""
    shape = tf.strings.regex_replace(tokens, r"\p{Lu}", "X")
    shape = tf.strings.regex_replace(shape, r"\p{Ll}|\p{Lo}|\p{Lt}|\p{Lm}",
                                     "x")
    shape = tf.strings.regex_replace(shape, r"\pN", "d")
    for c in "Xxd":
        shape = tf.strings.regex_replace(shape, c * 5 + "+", c * 4)
    return shape


def hashed_features(tokens, buckets):
    """`[..., 4]` int64 ids: each of `HASHED` hashed into its own range."""
    words = normalize_words(tokens)
    parts = (words,
             tf.strings.regex_replace(words, r"(?s)^(.).*$", r"\1"),
             tf.strings.regex_replace(words, r"(?s)^.*?(.{0,3})$", r"\1"),
             word_shape(tokens))
    ids = [tf.strings.to_hash_bucket_fast(p, buckets) + i * buckets
           for i, p in enumerate(parts)]
    return tf.stack(ids, axis=-1)


OOV = 1  # the word id of out-of-vocabulary words (0 is padding)


def hide_words(features, hidden, hash_buckets):
    """Features with the identity of the `hidden` tokens taken away.

    `features` is `TokenFeatures`' output as a list; where the bool tensor
    `hidden` is True the word id becomes `OOV` and, with hashed features,
    the hashed normalized form becomes the empty string's (the row a
    training word shares with every other hidden word, so a rare word
    cannot be memorized through its hash either). Casing, characters,
    prefix, suffix and shape stay: what the model can still tag a new word
    from. The training pipeline's word dropout applies it.
    """
    out = list(features)
    out[0] = tf.where(hidden, OOV, out[0])
    if hash_buckets:
        hash_ids = out[3]
        norm = tf.cast(tf.strings.to_hash_bucket_fast(PAD, hash_buckets),
                       hash_ids.dtype)
        column = tf.range(len(HASHED)) == HASHED.index("norm")
        out[3] = tf.where(hidden[..., None] & column, norm, hash_ids)
    return out


def vocabulary(token_lists, min_count):
    """Normalized words seen `min_count` times or more, and all characters.

    The words go through `normalize_words`, the graph's own rule.
    """
    flat = [token for tokens in token_lists for token in tokens]
    if not flat:
        return [], []
    words, _, counts = tf.unique_with_counts(
        normalize_words(tf.constant(flat)))
    words = sorted(w.decode("utf-8") for w, n in zip(words.numpy(),
                                                      counts.numpy())
                   if n >= min_count)
    return words, sorted(set("".join(flat)))


@keras.saving.register_keras_serializable(package="keras_resnorm")
class TokenFeatures(keras.layers.Layer):
    """String tokens -> model inputs, in the graph.

    Returns `(word_ids, case_ids, char_ids, mask)`, with `hash_ids` before
    the mask when `hash_buckets` > 0. Words go through `normalize_words`,
    then `vocabulary` (index 0 padding, 1 out of vocabulary). Characters
    come from a UTF-8 split with invalid bytes replaced by U+FFFD,
    truncated to `max_chars`, and looked up in `characters`. The mask is
    True on real tokens, False on "" padding.
    """

    def __init__(self, vocabulary, characters, max_chars=16, hash_buckets=0,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.characters = list(characters)
        self.max_chars = max_chars
        self.hash_buckets = hash_buckets
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
        word_ids = self.word_lookup(normalize_words(tokens))
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
        out = [tf.cast(word_ids, "int32"), tf.cast(case_ids, "int32"),
               tf.cast(char_ids, "int32")]
        if self.hash_buckets:
            hashed = hashed_features(tokens, self.hash_buckets)
            out.append(tf.cast(tf.ensure_shape(
                hashed, [None, None, len(HASHED)]), "int32"))
        return tuple(out) + (tf.logical_not(is_pad),)

    def compute_output_spec(self, tokens):
        shape = tuple(tokens.shape)
        out = [keras.KerasTensor(shape, "int32"),
               keras.KerasTensor(shape, "int32"),
               keras.KerasTensor(shape + (self.max_chars,), "int32")]
        if self.hash_buckets:
            out.append(keras.KerasTensor(shape + (len(HASHED),), "int32"))
        return tuple(out) + (keras.KerasTensor(shape, "bool"),)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary": self.vocabulary,
                       "characters": self.characters,
                       "max_chars": self.max_chars,
                       "hash_buckets": self.hash_buckets})
        return config
