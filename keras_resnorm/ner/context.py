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
  after and before those, until the budget is spent (the context of
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

from keras_resnorm.ner.features import CONTEXT_SEPARATOR

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
    """Other sentences of the document, nearest first, after before
    before."""
    for distance in range(1, len(sentences)):
        for j in (i + distance, i - distance):
            if 0 <= j < len(sentences):
                yield sentences[j]


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
            context += [CONTEXT_SEPARATOR] + list(piece[:room])
        out.append(context)
    return out


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


def split_with_contexts(corpus, split, mode, max_tokens, limit=None):
    """A corpus split as `with_contexts` gives it. Without context the
    sentences keep the corpus's order; with it, `limit` keeps the split's
    first `limit` sentences (as `max_train_sentences` does) and their
    documents are made of those only."""
    sentences = corpus.sentences(split)
    if mode == "none":
        return (sentences[:limit] if limit else sentences), None
    return with_contexts(corpus.documents(split, limit=limit), mode,
                         max_tokens)
