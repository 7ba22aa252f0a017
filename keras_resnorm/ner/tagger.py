"""Python inference API: raw sentences in, entity spans out."""

import tensorflow as tf

from keras_resnorm.ner.features import tokenize_text
from keras_resnorm.ner.errors import load_keras_archive
from keras_resnorm.ner.evaluate import make_forward, predict_tags


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
        """Load a saved `.keras` tagger; `ModelFileError` in one line when
        the file is missing, corrupt or not a Keras model archive."""
        return cls(load_keras_archive(path))

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
