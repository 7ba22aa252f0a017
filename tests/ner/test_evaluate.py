import pytest

from keras_resnorm.ner.evaluate import entity_scores
from keras_resnorm.ner.tagger import entity_spans, tokenize


def test_entity_scores_against_hand_counted_spans():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
    # True: PER[0,2) LOC[3,4) ORG[0,1) MISC[2,4); predicted: PER[0,1) wrong
    # boundary, the other three right. 3 of 4 predicted, 3 of 4 true.
    scores = entity_scores(true, pred)
    assert scores["precision"] == pytest.approx(0.75)
    assert scores["recall"] == pytest.approx(0.75)
    assert scores["f1"] == pytest.approx(0.75)
    assert scores["per_type"]["PER"]["f1"] == 0.0
    assert scores["per_type"]["LOC"]["f1"] == 1.0


def test_o_tags_do_not_inflate_entity_f1():
    true = [["O"] * 9 + ["B-PER"]]
    pred = [["O"] * 10]
    assert entity_scores(true, pred)["f1"] == 0.0  # 90% token accuracy


def test_entity_spans_and_tokenize():
    assert entity_spans(["B-ORG", "O", "B-MISC", "I-MISC", "B-LOC"]) == [
        ("ORG", 0, 1), ("MISC", 2, 4), ("LOC", 4, 5)]
    text = "Peter Blackburn's 1,000.5 U.S. e-mails"
    assert tokenize(text) == [("Peter", 0, 5), ("Blackburn", 6, 15),
                              ("'s", 15, 17), ("1,000.5", 18, 25),
                              ("U.S.", 26, 30), ("e-mails", 31, 38)]
