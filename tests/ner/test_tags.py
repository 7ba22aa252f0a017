"""IOBES inside the model, IOB2 outside: the conversions are exact."""

import random

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from keras_resnorm.ner.tags import (
    iob2_to_iobes,
    model_sentences,
    model_tag_set,
    to_iob2,
)


def _random_iob2(rng, length):
    tags, inside = [], None
    for _ in range(length):
        choice = rng.choice(["O", "B-PER", "B-LOC", "I"])
        if choice == "I" and inside:
            tags.append("I-" + inside)
        elif choice.startswith("B-"):
            inside = choice[2:]
            tags.append(choice)
        else:
            inside = None
            tags.append("O")
    return tags


def test_iobes_maps_back_to_the_same_iob2_and_the_same_mentions():
    rng = random.Random(0)
    for _ in range(500):
        tags = _random_iob2(rng, rng.randint(0, 12))
        iobes = iob2_to_iobes(tags)
        assert [to_iob2(t) for t in iobes] == tags
        assert get_entities(iobes) == get_entities(tags)
        # Every mention ends in E- or is one S- token.
        for kind, start, end in get_entities(tags):
            if start == end:
                assert iobes[start] == "S-" + kind
            else:
                assert iobes[end] == "E-" + kind


@pytest.mark.parametrize("scheme", ["iob2", "iobes"])
def test_the_model_tag_set_covers_the_sentences_it_learns(scheme):
    sentences = [(["EU", "rejects", "Anna", "Kovacs"],
                  ["B-ORG", "O", "B-PER", "I-PER"])]
    tags = model_tag_set(["O", "B-ORG", "B-PER", "I-PER"], scheme)
    learned = model_sentences(sentences, scheme)
    assert {t for _, g in learned for t in g} <= set(tags)
    assert tags[0] == "O" and len(tags) == (4 if scheme == "iob2" else 9)
    assert {to_iob2(t) for t in tags} <= {"O", "B-ORG", "I-ORG", "B-PER",
                                          "I-PER"}
