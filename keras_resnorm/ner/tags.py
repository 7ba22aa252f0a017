"""The tags a tagger learns, and the IOB2 tags it reads and writes.

Corpora are read as IOB2 (`data.py` converts IOB1 when parsing), scores
are computed on IOB2, and a tagger's outputs (`Tagger.predict`, the
SavedModel's `tags`) are IOB2. Inside, a model may learn IOBES instead
(`ModelConfig.model_tags`; Ratinov & Roth 2009 call it BILOU): a mention
of one token is `S-` and the last token of a longer one is `E-`, so the
tag of every token says whether the mention ends there.

```
IOB2   B-PER I-PER O B-LOC
IOBES  B-PER E-PER O S-LOC
```

Going back is a map of single tags (`S-` is `B-`, `E-` is `I-`), so a
model's output table holds the IOB2 name of each of its tags
(`model.tag_names`) and no decoding step changes.
"""

__all__ = [
    "SCHEMES",
    "iob2_to_iobes",
    "model_sentences",
    "model_tag_set",
    "to_iob2",
]

SCHEMES = ("iob2", "iobes")


def iob2_to_iobes(tags):
    """The IOBES tags of one sentence's IOB2 tags.

    >>> iob2_to_iobes(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"])
    ['B-PER', 'E-PER', 'O', 'S-LOC', 'B-LOC', 'E-LOC']
    """
    out = []
    for i, tag in enumerate(tags):
        following = tags[i + 1] if i + 1 < len(tags) else "O"
        continues = following == "I-" + tag[2:]
        if tag.startswith("B-") and not continues:
            tag = "S-" + tag[2:]
        elif tag.startswith("I-") and not continues:
            tag = "E-" + tag[2:]
        out.append(tag)
    return out


def to_iob2(tag):
    """The IOB2 name of one tag of either scheme.

    >>> [to_iob2(t) for t in ["S-LOC", "E-PER", "B-ORG", "I-ORG", "O"]]
    ['B-LOC', 'I-PER', 'B-ORG', 'I-ORG', 'O']
    """
    if tag.startswith("S-"):
        return "B-" + tag[2:]
    if tag.startswith("E-"):
        return "I-" + tag[2:]
    return tag


def model_tag_set(tags, scheme):
    """The tags a model of `scheme` learns, from a corpus's IOB2 tag set:
    `tags` itself for IOB2; for IOBES, `O` and `B-`, `I-`, `E-`, `S-` of
    each entity type, in the order the types first appear in `tags`.

    >>> model_tag_set(["O", "B-LOC", "I-LOC"], "iobes")
    ['O', 'B-LOC', 'I-LOC', 'E-LOC', 'S-LOC']
    """
    if scheme == "iob2":
        return list(tags)
    kinds = list(dict.fromkeys(t[2:] for t in tags if t != "O"))
    return ["O"] + [f"{prefix}-{kind}" for kind in kinds
                    for prefix in ("B", "I", "E", "S")]


def model_sentences(sentences, scheme):
    """`(tokens, tags)` pairs with the tags a model of `scheme` learns."""
    if scheme == "iob2":
        return sentences
    return [(tokens, iob2_to_iobes(list(tags))) for tokens, tags in sentences]
