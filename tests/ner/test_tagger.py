"""`Tagger`: raw text in, spans out; bad input named in a TypeError."""

import unicodedata

import pytest
import tensorflow as tf

from keras_resnorm.ner.tagger import Tagger, tokenize


@pytest.fixture(scope="module")
def tagger(trained_run):
    _, model, _ = trained_run
    return Tagger(model)


@pytest.mark.parametrize("texts, message", [
    ([["EU", "rejects"]], r"texts\[0\] is a list of tokens; predict takes "
     r"raw text.* use Tagger.tag_tokens\(token_lists\)"),
    (None, r"texts must be a list of strings, one sentence each. "
     r"Received: texts=None"),
    (3, r"Received: texts=3"),
    ("EU rejects", r"texts must be a list of strings"),
    (["EU rejects", 7], r"texts\[1\] must be a string. Received: texts\[1\]=7"),
])
def test_predict_names_bad_input(tagger, texts, message):
    with pytest.raises(TypeError, match=message):
        tagger.predict(texts)


@pytest.mark.parametrize("token_lists, message", [
    (["EU rejects German call ."], r"token_lists\[0\] is a string; "
     r"tag_tokens takes lists of tokens. For raw text use Tagger.predict"),
    (None, r"token_lists must be a list of sentences"),
    ([["EU", None]], r"token_lists\[0\]\[1\] must be a string"),
])
def test_tag_tokens_names_bad_input(tagger, token_lists, message):
    with pytest.raises(TypeError, match=message):
        tagger.tag_tokens(token_lists)


def test_any_iterable_of_strings_is_taken(tagger):
    texts = ["Anna Kovacs visited Norvale .", "EU rejects German call ."]
    assert tagger.predict(iter(texts)) == tagger.predict(tuple(texts)) == \
        tagger.predict(texts)
    tokens = [t.split() for t in texts]
    assert tagger.tag_tokens(tuple(tuple(t) for t in tokens)) == \
        tagger.tag_tokens(tokens)


def test_pasted_unicode_text_gets_spans_of_whole_words(tagger):
    texts = ["Anna Kovacs visited Cafe\u0301 Norvale .",
             "Anna\u00a0Kovacs met Ravi\u200bMenon in Port Emery ."]
    for text, spans in zip(texts, tagger.predict(texts)):
        tokens = tokenize(text)
        # No token the model sees is only separators, marks or format
        # characters (the old tokenizer made tokens of U+0301, U+00A0 and
        # U+200B, and a tagger once called the lone accent a PER).
        for token, _, _ in tokens:
            assert not all(unicodedata.category(c)[0] in "ZMC"
                           for c in token), repr(token)
        for span in spans:
            assert text[span["char_start"]:span["char_end"]] == span["text"]
            # Every span starts and ends on a word, never on a lone mark or
            # a separator.
            assert span["char_start"] in {s for _, s, _ in tokens}, span
            assert span["char_end"] in {e for _, _, e in tokens}, span
            assert span["text"] != "\u0301"


def test_documents_give_each_sentence_predict_spans_at_document_offsets(
        tagger):
    sentences = ["Anna Kovacs visited Norvale .", "EU rejects German call .",
                 "Mr. Ravi Menon left Port Emery !"]
    alone = tagger.predict(sentences)
    text = "  ".join(sentences[:2]) + "\n" + sentences[2]
    as_text, as_list = tagger.predict_documents([text, sentences])
    joined = "\n".join(sentences)
    for document, spans in ((text, as_text), (joined, as_list)):
        assert len(spans) == 3  # "Mr." ends no sentence
        for sentence, got, expected in zip(sentences, spans, alone):
            assert [(s["text"], s["type"], s["start"], s["end"])
                    for s in got] == [(s["text"], s["type"], s["start"],
                                       s["end"]) for s in expected]
            offset = document.index(sentence)
            for span, one in zip(got, expected):
                assert span["char_start"] == one["char_start"] + offset
                assert document[span["char_start"]:span["char_end"]] == \
                    span["text"]
    # Empty documents and sentences are fine; bad ones are named.
    assert tagger.predict_documents(["", [], [""]]) == [[], [], [[]]]
    with pytest.raises(TypeError, match=r"documents\[1\]\[0\] must be a "
                       r"string \(one sentence\). Received: "
                       r"documents\[1\]\[0\]=\['EU'\]"):
        tagger.predict_documents(["EU", [["EU"]]])
    with pytest.raises(TypeError, match=r"Received: documents=None"):
        tagger.predict_documents(None)
    with pytest.raises(TypeError, match=r"documents\[0\] must be a string "
                       r"or a list of sentence strings. Received: "
                       r"documents\[0\]=5"):
        tagger.predict_documents([5])


def test_predict_and_tag_tokens_are_documented():
    for method in (Tagger.predict, Tagger.tag_tokens,
                   Tagger.predict_documents):
        assert method.__doc__ and "Raises:" in method.__doc__


def test_the_export_tokenizes_unicode_text_as_the_tagger_does(exported):
    _, path, _ = exported
    serve = tf.saved_model.load(path).signatures["serving_default"]
    texts = ["Cafe\u0301 Paris", "New\u00a0York\u200bCity ."]
    out = serve(text=tf.constant(texts))
    for i, text in enumerate(texts):
        n = int(out["lengths"][i])
        assert [t.decode() for t in out["tokens"][i][:n].numpy()] == [
            t for t, _, _ in tokenize(text)]


@pytest.mark.parametrize("text, sentences", [
    # "no" is an abbreviation only before a digit or a lower-case word.
    ("The answer was no. Angela Merkel left Berlin.",
     [["The", "answer", "was", "no", "."],
      ["Angela", "Merkel", "left", "Berlin", "."]]),
    ("No. Nobody came.", [["No", "."], ["Nobody", "came", "."]]),
    ("See No. 5 and no. 6 today.",
     [["See", "No", ".", "5", "and", "no", ".", "6", "today", "."]]),
    ("Mr. Li met Dr. Anna.", [["Mr", ".", "Li", "met", "Dr", ".", "Anna",
                               "."]]),
    # Unicode's line (U+2028) and paragraph (U+2029) separators, and \r,
    # break lines as \n does.
    ("EU rejects it\u2028Peter Blackburn", [["EU", "rejects", "it"],
                                            ["Peter", "Blackburn"]]),
    ("EU rejects it\u2029Peter Blackburn\rBRUSSELS",
     [["EU", "rejects", "it"], ["Peter", "Blackburn"], ["BRUSSELS"]]),
])
def test_split_sentences(text, sentences):
    from keras_resnorm.ner.tagger import split_sentences

    assert [[t for t, _, _ in s] for s in split_sentences(text)] == sentences
