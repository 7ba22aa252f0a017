"""Python inference API: raw sentences in, entity spans out."""

import re

import keras

from keras_resnorm.ner.evaluate import make_forward, predict_tags

# CoNLL-like tokenization: abbreviations (U.S.), numbers (1,000.5), words
# with inner hyphens, clitics ('s), and any other non-space character alone.
TOKEN_PATTERN = r"(?:[A-Za-z]\.){2,}|\d+(?:[.,:]\d+)*|\w+(?:-\w+)*|'\w+|[^\w\s]"
_TOKEN_RE = re.compile(TOKEN_PATTERN)


def tokenize(text):
    """Split text into `(token, char_start, char_end)` triples.

    >>> [t for t, _, _ in tokenize("EU rejects German call, U.S. says.")]
    ['EU', 'rejects', 'German', 'call', ',', 'U.S.', 'says', '.']
    """
    return [(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


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
        self._forward = make_forward(model)

    @classmethod
    def load(cls, path):
        return cls(keras.saving.load_model(path, safe_mode=True))

    def tag_tokens(self, token_lists):
        return predict_tags(self.model, token_lists, forward=self._forward)

    def predict(self, texts):
        if isinstance(texts, str):
            raise TypeError(
                "texts must be a list of strings, one sentence each. "
                f"Received: texts={texts!r}")
        tokenized = [tokenize(text) for text in texts]
        tags = self.tag_tokens([[t for t, _, _ in toks] for toks in tokenized])
        results = []
        for text, toks, sentence_tags in zip(texts, tokenized, tags):
            spans = []
            for kind, start, end in entity_spans(sentence_tags):
                char_start, char_end = toks[start][1], toks[end - 1][2]
                spans.append({"text": text[char_start:char_end], "type": kind,
                              "start": start, "end": end,
                              "char_start": char_start, "char_end": char_end})
            results.append(spans)
        return results
