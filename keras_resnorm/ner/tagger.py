"""Python inference API: raw sentences or documents in, entity spans out."""

import tensorflow as tf

from keras_resnorm.ner.context import document_contexts
from keras_resnorm.ner.features import (
    CONTEXT_SEPARATOR,
    UNREADABLE_TOKEN,
    tokenize_text,
)
from keras_resnorm.ner.errors import load_keras_archive
from keras_resnorm.ner.evaluate import make_forward, predict_tags
from keras_resnorm.ner.model import context_settings

__all__ = [
    "ABBREVIATIONS",
    "CLOSING",
    "LINE_BREAKS",
    "SENTENCE_ENDS",
    "Tagger",
    "entity_spans",
    "split_sentences",
    "tokenize",
]


def tokenize(text):
    """Split text into `(token, char_start, char_end)` triples.

    Uses the in-graph tokenizer (`features.tokenize_text`) that the exported
    model uses, so Python and TF Serving see the same tokens.

    >>> [t for t, _, _ in tokenize("EU rejects German call, U.S. says.")]
    ['EU', 'rejects', 'German', 'call', ',', 'U.S.', 'says', '.']
    """
    tokens = tokenize_text(tf.constant([text])).to_list()[0]
    out, cursor = [], 0
    for raw in tokens:
        token = raw.decode("utf-8")
        start = text.index(token, cursor)
        cursor = start + len(token)
        out.append((token, start, cursor))
    return out


# Tokens that end a sentence in raw text (`split_sentences`), unless the
# word before is one of these titles and abbreviations (lower-cased); and
# closing marks that stay with the sentence they directly follow.
SENTENCE_ENDS = frozenset(".!?")
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr gen col lt sgt rev gov sen rep inc co corp "
    "ltd no vs etc jan feb mar apr jun jul aug sep sept oct nov dec".split())
CLOSING = frozenset("\"')]}\u201d\u2019\u00bb")
# Characters that break a line, as `str.splitlines` takes them: \n, \r,
# \v, \f, the file, group and record separators, NEL, and Unicode's line
# (U+2028) and paragraph (U+2029) separators.
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _is_abbreviation(current, following):
    """Whether the `.` just appended to `current` closes an abbreviation
    written right before it. "no." (as in "No. 5") is one only when a digit
    or a lower-case word follows: "The answer was no. Angela left." ends a
    sentence after "no."."""
    if len(current) < 2 or current[-2][2] != current[-1][1]:
        return False
    word = current[-2][0].lower()
    if word not in ABBREVIATIONS:
        return False
    if word == "no" and following is not None:
        first = following[0][:1]
        return first.isdigit() or not first.isupper()
    return True


def split_sentences(text):
    r"""`tokenize(text)` grouped into sentences.

    A sentence ends at a line break (`LINE_BREAKS`: `\n`, `\r`, Unicode's
    line and paragraph separators, ...), or after a `.`, `!` or `?` token
    (with the closing quotes or brackets written right after it) unless
    the `.` closes a title or abbreviation written right before it
    (`ABBREVIATIONS`: "Mr.", "Inc."; "U.S." is one token already; "no."
    only before a digit or a lower-case word). The rule is English-leaning:
    pass a document as a list of sentences to split it yourself. Offsets
    stay those of `text`.

    >>> [[t for t, _, _ in s] for s in split_sentences(
    ...     'Mr. Li met "Anna." She left!\nEU rejects it')]
    [['Mr', '.', 'Li', 'met', '"', 'Anna', '.', '"'], ['She', 'left', '!'], ['EU', 'rejects', 'it']]
    >>> [len(s) for s in split_sentences("It was no. Anna left. See No. 5.")]
    [4, 3, 5]
    """
    sentences, current = [], []
    ended = False
    tokens = tokenize(text)
    for index, token in enumerate(tokens):
        word, start, _ = token
        previous = current[-1] if current else (
            sentences[-1][-1] if sentences else None)
        touching = previous is not None and previous[2] == start
        if ended and word in CLOSING and touching:
            sentences[-1].append(token)
            continue
        if current and LINE_BREAKS.intersection(text[current[-1][2]:start]):
            sentences.append(current)
            current = []
        current.append(token)
        ended = False
        if word in SENTENCE_ENDS:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if not _is_abbreviation(current, following):
                sentences.append(current)
                current, ended = [], True
    if current:
        sentences.append(current)
    return sentences


def _as_list(name, value, what):
    """`value` as a list: any iterable but a string, bytes or a dict (a
    tuple, a pandas Series, a generator) is taken; anything else is a
    TypeError naming `name`."""
    if not isinstance(value, (str, bytes, dict)):
        try:
            return list(value)
        except TypeError:
            pass
    raise TypeError(f"{name} must be {what}. Received: {name}={value!r}")


def entity_spans(tags):
    """IOB2 tags -> list of `(type, start, end)` with `end` exclusive."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, start, end + 1) for kind, start, end in get_entities(tags)]


class Tagger:
    """Tag raw sentences with a trained tagger model.

    Example:

        tagger = Tagger.load("runs/ner/best.keras")
        tagger.predict(["EU rejects German call to boycott British lamb ."])
        # [[{'text': 'EU', 'type': 'ORG', 'start': 0, 'end': 1,
        #    'char_start': 0, 'char_end': 2}, ...]]

    Token offsets `start`/`end` index the tokens `tokenize` gives (`end`
    exclusive); `char_start`/`char_end` index the input string.
    """

    def __init__(self, model):
        self.model = model
        # Tags only: the confidences are the export's (`export.py`).
        self._forward = make_forward(model, confidence=False)

    @classmethod
    def load(cls, path):
        """Load a saved `.keras` tagger; `ModelFileError` in one line when
        the file is missing, corrupt or not a Keras model archive."""
        return cls(load_keras_archive(path))

    def tag_tokens(self, token_lists):
        """IOB2 tags of pre-tokenized sentences.

        Args:
            token_lists: a list of sentences, each a list of token strings
                (`[["EU", "rejects", "German", "call"]]`). For raw text, use
                `predict`.

        Returns:
            A list with one list of tags per sentence, one tag per token
            (`[["B-ORG", "O", "B-MISC", "O"]]`). A sentence longer than the
            model's `max_length` is tagged window by window, every token
            scored.

        Raises:
            TypeError: naming the argument when `token_lists` is not a list
                of lists of strings (a list of raw strings points to
                `predict`).
            ValueError: naming the token when one is empty or holds the
                ASCII record separator `"\\x1e"`: the model reads the first
                as padding and the second as the start of document context,
                so neither can be tagged as a word (the export's
                `tag_tokens` signature refuses them too). Other control
                characters are read as any unknown character.
        """
        token_lists = _as_list(
            "token_lists", token_lists,
            "a list of sentences, each a list of token strings")
        for i, tokens in enumerate(token_lists):
            if isinstance(tokens, str):
                raise TypeError(
                    f"token_lists[{i}] is a string; tag_tokens takes lists "
                    "of tokens. For raw text use Tagger.predict(texts). "
                    f"Received: token_lists[{i}]={tokens!r}")
            tokens = token_lists[i] = _as_list(f"token_lists[{i}]", tokens,
                                               "a list of token strings")
            for j, token in enumerate(tokens):
                if not isinstance(token, str):
                    raise TypeError(
                        f"token_lists[{i}][{j}] must be a string. "
                        f"Received: token_lists[{i}][{j}]={token!r}")
                if not token or CONTEXT_SEPARATOR in token:
                    raise ValueError(
                        f"token_lists[{i}][{j}] {UNREADABLE_TOKEN}. "
                        f"Received: token_lists[{i}][{j}]={token!r}")
        return predict_tags(self.model, token_lists, forward=self._forward)

    def predict(self, texts):
        """Entity spans of raw sentences.

        Each text is tokenized by the tokenizer the exported model runs in
        its graph (`tokenize`: Unicode spaces and zero-width separators
        split tokens, combining marks stay with their letter), then tagged.

        Args:
            texts: a list of strings, one sentence each
                (`["EU rejects German call to boycott British lamb ."]`).
                For pre-tokenized input, use `tag_tokens`.

        Returns:
            A list with one list of spans per text. A span is a dict:
            `text` (the entity as it appears in the input), `type` (`PER`,
            `ORG`, ...), `start`/`end` (token offsets, `end` exclusive) and
            `char_start`/`char_end` (character offsets into the text as
            given, so `text[char_start:char_end] == span["text"]`).

        Raises:
            TypeError: naming the argument when `texts` is not a list of
                strings (a single string, `None`, a number, or token lists,
                which point to `tag_tokens`).
        """
        texts = _as_list("texts", texts, "a list of strings, one sentence "
                         "each")
        for i, text in enumerate(texts):
            if isinstance(text, (list, tuple)):
                raise TypeError(
                    f"texts[{i}] is a list of tokens; predict takes raw "
                    "text, one string a sentence. For pre-tokenized input "
                    "use Tagger.tag_tokens(token_lists). Received: "
                    f"texts[{i}]={text!r}")
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a string. Received: "
                                f"texts[{i}]={text!r}")
        tokenized = [tokenize(text) for text in texts]
        tags = self.tag_tokens([[t for t, _, _ in toks] for toks in tokenized])
        return [_spans(text, toks, sentence_tags)
                for text, toks, sentence_tags in zip(texts, tokenized, tags)]

    def predict_documents(self, documents):
        """Entity spans of documents, sentence by sentence.

        Args:
            documents: a list of documents, each either raw text, which
                `split_sentences` splits (line breaks, `.`, `!`, `?`), or
                a list of sentence strings (`[["EU rejects German call .",
                "Peter Blackburn"]]`), read as the sentences joined by
                line breaks.

        Returns:
            One list per document, of one list of spans per sentence. The
            spans are `predict`'s, with `start`/`end` counting the
            sentence's tokens and `char_start`/`char_end` offsets into the
            document's text (for a list of sentences, the sentences joined
            by one line break each). A tagger trained with
            `document_context` reads each sentence with tokens of the rest
            of its document (`context.py`); others tag each sentence on
            its own, as `predict` does.

        Raises:
            TypeError: naming the argument when `documents` is not a list
                of documents, or a document is neither a string nor a list
                of strings.
        """
        documents = _as_list("documents", documents, "a list of documents, "
                             "each a string or a list of sentence strings")
        parsed = []  # (document text, sentences of (token, start, end))
        for i, document in enumerate(documents):
            if isinstance(document, str):
                parsed.append((document, split_sentences(document)))
                continue
            sentences = _as_list(f"documents[{i}]", document,
                                 "a string or a list of sentence strings")
            groups, offset = [], 0
            for j, sentence in enumerate(sentences):
                if not isinstance(sentence, str):
                    raise TypeError(
                        f"documents[{i}][{j}] must be a string (one "
                        f"sentence). Received: documents[{i}][{j}]="
                        f"{sentence!r}")
                groups.append([(t, a + offset, b + offset)
                               for t, a, b in tokenize(sentence)])
                offset += len(sentence) + 1
            parsed.append(("\n".join(sentences), groups))
        # A tagger with document context reads each sentence with tokens
        # of the rest of its document (context.py); others read it alone.
        mode, budget = context_settings(self.model)
        token_lists, contexts = [], []
        for _, groups in parsed:
            tokens = [[t for t, _, _ in sentence] for sentence in groups]
            token_lists += tokens
            contexts += document_contexts(tokens, mode, budget)
        tags = iter(predict_tags(self.model, token_lists,
                                 forward=self._forward, contexts=contexts))
        return [[_spans(text, sentence, next(tags)) for sentence in groups]
                for text, groups in parsed]


def _spans(text, tokens, tags):
    """Span dicts of one sentence's IOB2 `tags` over `tokens`
    (`(token, char_start, char_end)` into `text`)."""
    spans = []
    for kind, start, end in entity_spans(tags):
        char_start, char_end = tokens[start][1], tokens[end - 1][2]
        spans.append({"text": text[char_start:char_end], "type": kind,
                      "start": start, "end": end,
                      "char_start": char_start, "char_end": char_end})
    return spans
