"""Document context: which tokens of its document a sentence is read with.

A tagger built with `document_context` other than `"none"` reads each
sentence as one row: the sentence, then `features.CONTEXT_SEPARATOR` and
up to `context_tokens` tokens taken from the other sentences of the same
document, each piece after a separator of its own. The model's
`MentionPool` lets every token see the encodings of the other occurrences
of its word in the row (`model.py`); nothing after the first separator is
scored (`features.scored_mask`). Context is tokens only: no tag of another
sentence is ever an input, at training or at prediction.

Modes (the rule lives here, for training, evaluation and `Tagger` alike):

- `"neighbours"`: the next sentence, then the previous one, then the ones
  after and before those (empty sentences skipped), until the budget is
  spent (the context of
  Krishnan & Manning 2006's and spaCy's document-level training units).
- `"mentions"`: for each word of the sentence that may be a name (it has
  a letter and is not all lower case, `may_be_name`, and the document
  does not also write it in lower case, as it does "the"), its other
  occurrences in the document, nearest sentences first, each with `span`
  tokens on either side: the non-local evidence of Finkel et al. 2005 and
  Ratinov & Roth 2009 ("Leeds" beside "beat" and "2-1" elsewhere).

A sentence alone, or a document of one sentence, has no context: its row
is the sentence, exactly as a tagger without context reads it.

References: Finkel, Grenager & Manning 2005, "Incorporating Non-local
Information into Information Extraction Systems by Gibbs Sampling", ACL;
Krishnan & Manning 2006, "An Effective Two-Stage Model for Exploiting
Non-Local Dependencies in Named Entity Recognition", ACL; Ratinov & Roth
2009, "Design Challenges and Misconceptions in Named Entity Recognition",
CoNLL.
"""

import re

import tensorflow as tf

from keras_resnorm.ner.features import CONTEXT_SEPARATOR

__all__ = [
    "MODES",
    "SPAN",
    "document_contexts",
    "may_be_name",
    "neighbour_contexts_graph",
    "split_with_contexts",
    "with_contexts",
]

MODES = ("none", "neighbours", "mentions")
SPAN = 3  # tokens on each side of a mention that "mentions" mode copies

_LETTER = re.compile(r"[^\W\d_]")


def may_be_name(token):
    """A token that can be part of a name: it has a letter and is not all
    lower case (a word of a script without case counts)."""
    if not _LETTER.search(token):
        return False
    return token != token.lower() or token.lower() == token.upper()


def _neighbours(sentences, i):
    """The other non-empty sentences of the document, nearest first (counted
    in non-empty sentences), the next before the previous."""
    kept = [k for k, tokens in enumerate(sentences) if tokens]
    before = sum(1 for k in kept if k < i)
    ahead = kept[before + (1 if sentences[i] else 0):]
    behind = kept[:before][::-1]
    for d in range(max(len(ahead), len(behind))):
        for side in (ahead, behind):
            if d < len(side):
                yield sentences[side[d]]


def _common_words(sentences):
    """Lower-cased forms the document itself writes in lower case ("the"
    makes a sentence-initial "The" a common word, not a name)."""
    return {t for tokens in sentences for t in tokens
            if t == t.lower() and t != t.upper()}


def _mentions(sentences, i, span, common):
    """Snippets around the other occurrences of the sentence's name-like
    words (not `common`), nearest sentences first, each occurrence once."""
    wanted = {t.lower() for t in sentences[i]
              if may_be_name(t) and t.lower() not in common}
    if not wanted:
        return
    order = sorted((j for j in range(len(sentences)) if j != i),
                   key=lambda j: (abs(j - i), j < i))
    for j in order:
        tokens = sentences[j]
        taken = -1  # snippets of one sentence do not overlap
        for k, token in enumerate(tokens):
            if k > taken and token.lower() in wanted:
                start, taken = max(k - span, taken + 1), k + span
                yield tokens[start:taken + 1]


def document_contexts(sentences, mode, max_tokens, span=SPAN):
    """The context tokens of each sentence of one document.

    Args:
        sentences: the document's sentences in order, each a list of token
            strings.
        mode: one of `MODES`.
        max_tokens: most context tokens per sentence, separators included.
        span: tokens on each side of an occurrence (`"mentions"`).

    Returns:
        One list per sentence: `[]` (no context), or tokens that start with
        `CONTEXT_SEPARATOR`, each piece after a separator, at most
        `max_tokens` of them.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: "
                         f"mode={mode!r}")
    common = _common_words(sentences) if mode == "mentions" else set()
    out = []
    for i in range(len(sentences)):
        pieces = (() if mode == "none" else _neighbours(sentences, i)
                  if mode == "neighbours"
                  else _mentions(sentences, i, span, common))
        context = []
        for piece in pieces:
            room = max_tokens - len(context) - 1
            if room < 1:
                break
            if piece:  # an empty sentence adds nothing, not a separator
                context += [CONTEXT_SEPARATOR] + list(piece[:room])
        out.append(context)
    return out


def neighbour_contexts_graph(tokens, documents, max_tokens):
    """`document_contexts(..., "neighbours", max_tokens)` in TensorFlow ops,
    for the TF Serving export's documents signature.

    Args:
        tokens: `RaggedTensor` `[n, None]` of tf.string, the sentences of
            a batch of documents, each document's sentences consecutive
            and in order.
        documents: int `[n]`, the document of each sentence.
        max_tokens: the context budget (a Python int).

    Returns:
        A `RaggedTensor` `[n, None]` of context tokens, equal to the
        Python rule's for every sentence.
    """
    documents = tf.cast(documents, tf.int64)
    # Empty sentences add nothing, so neighbours are counted among the
    # non-empty ones: `kept` lists them, `before` counts those before each
    # sentence.
    nonempty = tokens.row_lengths() > 0
    kept = tf.reshape(tf.where(nonempty), [-1])
    m = tf.size(kept, out_type=tf.int64)
    before = tf.cumsum(tf.cast(nonempty, tf.int64), exclusive=True)
    # Each piece has at least 2 tokens (a separator and a token), so no
    # non-empty sentence farther than this on either side is reached.
    reach = max(1, (max_tokens + 1) // 2)
    after = tf.range(reach, dtype=tf.int64)
    ahead = (before + tf.cast(nonempty, tf.int64))[:, None] + after
    behind = before[:, None] - 1 - after
    compact = tf.reshape(tf.stack([ahead, behind], axis=-1),
                         [-1, 2 * reach])  # next, previous, 2nd next, ...
    inside = (compact >= 0) & (compact < m)
    # Index m of the padded tables is "no sentence" (an empty batch too).
    j = tf.gather(tf.concat([kept, [0]], axis=0),
                  tf.where(inside, compact, m))
    same = inside & tf.equal(
        tf.gather(tf.concat([documents, [-1]], axis=0),
                  tf.where(inside, j, tf.size(documents, out_type=tf.int64))),
        documents[:, None])
    rows = tf.gather(tokens, tf.reshape(tf.where(same, j, 0), [-1]))
    lengths = rows.row_lengths() * tf.cast(tf.reshape(same, [-1]), tf.int64)
    rows = tf.RaggedTensor.from_tensor(rows.to_tensor(default_value=""),
                                       lengths=lengths)
    # A separator before each non-empty piece; empty ones stay empty.
    separator = tf.RaggedTensor.from_row_lengths(
        tf.fill([tf.size(lengths)], CONTEXT_SEPARATOR),
        tf.ones_like(lengths))
    pieces = tf.concat([separator, rows], axis=1)
    pieces = tf.RaggedTensor.from_tensor(
        pieces.to_tensor(default_value=""),
        lengths=tf.where(lengths > 0, lengths + 1, 0))
    # The pieces of a sentence, one after another: the rows of each group
    # of 2 * reach are consecutive in the flat values.
    joined = tf.RaggedTensor.from_row_lengths(
        pieces.flat_values,
        tf.reduce_sum(tf.reshape(pieces.row_lengths(), [-1, 2 * reach]),
                      axis=1))
    cut = joined[:, :max_tokens]
    # A separator with no room for a token after it is dropped. (One
    # column more, so an all-empty batch still has a column to look at.)
    dense = tf.pad(cut.to_tensor(default_value=""), [[0, 0], [0, 1]])
    size = cut.row_lengths()
    last = tf.gather(dense, tf.maximum(size - 1, 0), batch_dims=1)
    size = tf.where((size > 0) & tf.equal(last, CONTEXT_SEPARATOR),
                    size - 1, size)
    return tf.RaggedTensor.from_tensor(dense, lengths=size)


def with_contexts(documents, mode, max_tokens):
    """Documents of `(tokens, tags)` -> `(sentences, contexts)`, flat, in
    document order; `contexts` is None when `mode` is `"none"` (rows are
    the sentences alone)."""
    sentences = [s for document in documents for s in document]
    if mode == "none":
        return sentences, None
    contexts = []
    for document in documents:
        contexts += document_contexts([t for t, _ in document], mode,
                                      max_tokens)
    return sentences, contexts


def split_with_contexts(corpus, split, mode, max_tokens, limit=None,
                        subset="spread"):
    """A corpus split as `with_contexts` gives it. Without context the
    sentences keep the corpus's order; with `limit`, only the sentences
    `Corpus.sentences(split, limit, subset)` keeps (as
    `max_train_sentences` does), and their documents are made of those
    only."""
    if mode == "none":
        return corpus.sentences(split, limit, subset), None
    return with_contexts(corpus.documents(split, limit, subset), mode,
                         max_tokens)
