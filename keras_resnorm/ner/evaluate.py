"""Tag sentences with a trained model and score them with seqeval.

The headline number is entity-level micro F1 (a predicted entity counts only
when its type and both boundaries match), computed by seqeval as conlleval
does. Token-level accuracy and the per-tag token report, which count the `O`
tag, are given beside it and labelled as token-level.
"""

import numpy as np
import tensorflow as tf

from keras_resnorm.ner.features import PAD
from keras_resnorm.ner.model import decoder, max_length, tag_names
from keras_resnorm.ner.pipeline import row_spans

__all__ = [
    "entity_scores",
    "evaluate",
    "make_forward",
    "predict_tags",
]


def predict_tags(model, token_lists, batch_size=64, forward=None,
                 contexts=None):
    """Tags for each token list; long sentences go through in windows.

    Args:
        model: a tagger built by `build_model`.
        token_lists: list of lists of token strings.
        batch_size: sentences per forward pass.
        forward: optional compiled `make_forward(model)` (default: one
            without confidences, which the tags do not need).
        contexts: optional document context of each token list
            (`context.py`), appended to each of its windows; only the
            window's own tokens are tagged.

    Returns:
        A list of tag lists, one tag per input token.
    """
    tags = tag_names(model)
    limit = max_length(model)
    forward = forward or make_forward(model, confidence=False)
    spans = row_spans([len(tokens) for tokens in token_lists], limit,
                      contexts)
    rows = [list(token_lists[i][start:end]) + context
            for i, start, end, context in spans]
    order = sorted(range(len(rows)), key=lambda k: len(rows[k]))
    out = [["O"] * len(tokens) for tokens in token_lists]
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        batch = np.full((len(chunk), max(len(rows[k]) for k in chunk)), PAD,
                        dtype=object)
        for row, k in enumerate(chunk):
            batch[row, : len(rows[k])] = rows[k]
        ids = np.asarray(forward(tf.constant(batch.astype(str)))[0])
        for row, k in enumerate(chunk):
            i, start, end, _ = spans[k]
            out[i][start:end] = [tags[t] for t in ids[row, : end - start]]
    return out


def make_forward(model, confidence=True):
    """tokens -> (tag ids, confidence) as a tf.function (`model.decoder`;
    confidence None with `confidence=False`) that retraces little across
    lengths."""
    return tf.function(decoder(model, confidence), reduce_retracing=True)


def entity_scores(true_tags, pred_tags):
    """Entity-level precision, recall and F1 (micro) and per type, seqeval."""
    from seqeval.metrics import classification_report

    report = classification_report(true_tags, pred_tags, output_dict=True,
                                   zero_division=0)
    micro = report["micro avg"]
    per_type = {k: {"precision": v["precision"], "recall": v["recall"],
                    "f1": v["f1-score"], "support": int(v["support"])}
                for k, v in report.items() if "avg" not in k}
    return {"precision": micro["precision"], "recall": micro["recall"],
            "f1": micro["f1-score"], "support": int(micro["support"]),
            "per_type": per_type}


def evaluate(model, sentences, batch_size=64, forward=None, contexts=None):
    """Score `model` on `(tokens, tags)` sentences (read with `contexts`,
    `predict_tags`', when given).

    Returns a dict with `entity` (micro precision/recall/F1 and per type,
    the standard metric), `token_accuracy` (all tokens, `O` included), and
    `report` (printable text: seqeval's entity report, then the token-level
    per-tag report, labelled).
    """
    from seqeval.metrics import classification_report
    from sklearn.metrics import classification_report as token_report

    tokens = [t for t, _ in sentences]
    true_tags = [g for _, g in sentences]
    pred_tags = predict_tags(model, tokens, batch_size, forward, contexts)
    flat_true = [t for tags in true_tags for t in tags]
    flat_pred = [t for tags in pred_tags for t in tags]
    accuracy = float(np.mean(np.array(flat_true) == np.array(flat_pred)))
    labels = list(dict.fromkeys(tag_names(model)))
    text = (
        "Entity-level scores (seqeval, conlleval-compatible; the standard "
        "metric):\n"
        + classification_report(true_tags, pred_tags, digits=4,
                                zero_division=0)
        + "\nToken-level report (every token, the O tag included; NOT the "
        "standard NER metric):\n"
        + token_report(flat_true, flat_pred, labels=labels, digits=4,
                       zero_division=0)
    )
    return {"entity": entity_scores(true_tags, pred_tags),
            "token_accuracy": accuracy, "report": text,
            "predictions": pred_tags}
