import random

import numpy as np
import pytest

from keras_resnorm.ner import data, pipeline

GOOD = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter\tB-PER\nBlackburn\tI-PER\n"


def three(train=GOOD, valid=GOOD, test=GOOD):
    return {"train.txt": train, "valid.txt": valid, "test.txt": test}


def test_parses_spaces_tabs_docstart_and_reads_tags_from_train(conll_dir,
                                                                tmp_path):
    corpus = data.load_conll_dir(conll_dir(three()),
                                 cache_dir=str(tmp_path / "tfds"))
    assert sorted(corpus.sentences("train")) == [
        (["EU", "rejects"], ["B-ORG", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"])]
    assert corpus.tags == ["O", "B-ORG", "B-PER", "I-PER"]


DOCUMENTS = ("-DOCSTART- O\n\nA B-PER\n\nb O\n\nc O\n\n-DOCSTART- O\n"
             "-DOCSTART- O\n\nD B-LOC\n\n-DOCSTART- O\n\ne O\nf O\n")


def test_documents_and_positions_survive_the_tfds_cache(conll_dir, tmp_path):
    assert [d for d, _, _ in data.parse_conll_documents(
        conll_dir({"x.txt": DOCUMENTS}) + "/x.txt")] == [0, 0, 0, 1, 2]
    plain = "A B-PER\n\nb O\n\nc O\n"
    corpus = data.load_conll_dir(conll_dir(three(DOCUMENTS, GOOD, plain)),
                                 cache_dir=str(tmp_path / "tfds"))
    words = [[[t for t in tokens] for tokens, _ in document]
             for document in corpus.documents("train")]
    # Three documents (two -DOCSTART- lines in a row start one), each in
    # file order, whatever order TFDS stored the sentences in.
    assert words == [[["A"], ["b"], ["c"]], [["D"]], [["e", "f"]]]
    assert sorted(corpus.positions["train"]) == [
        (0, 0), (0, 1), (0, 2), (1, 0), (2, 0)]
    assert len(corpus.documents("valid")) == 1
    # Without -DOCSTART- lines: a document per sentence.
    assert sorted(len(d) for d in corpus.documents("test")) == [1, 1, 1]
    bare = data.Corpus({"train": [(["x"], ["O"]), (["y"], ["O"])]}, ["O"],
                       "memory")
    assert bare.documents("train") == [[(["x"], ["O"])], [(["y"], ["O"])]]


def test_iob1_converted_on_request(conll_dir, tmp_path):
    text = "Peter I-PER\nBlackburn I-PER\nin O\nBonn I-LOC\nCologne B-LOC\n"
    corpus = data.load_conll_dir(conll_dir(three(text, text, text)),
                                 scheme="iob1", cache_dir=str(tmp_path / "c"))
    assert corpus.sentences("train")[0][1] == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC"]


@pytest.mark.parametrize("files,message", [
    (three(train="EU B-ORG\nrejects\n"),
     r"train.txt:2: expected a token and a tag .* Received: 'rejects'"),
    (three(valid=b"EU B-ORG\n\xff\xfe B-LOC\n"),
     r"valid.txt:2: invalid UTF-8"),
    (three(test="\n-DOCSTART- O\n\n"), r"test.txt: no sentence found"),
    (three(train="EU ORG\n"), r"train.txt:1: tag must be .* Received: 'ORG'"),
])
def test_malformed_files_name_file_and_line(conll_dir, tmp_path, files,
                                             message):
    with pytest.raises(data.CorpusError, match=message):
        data.load_conll_dir(conll_dir(files), cache_dir=str(tmp_path / "c"))


def test_latin1_files_load_with_encoding(conll_dir, tmp_path):
    # Several public NER corpora ship in ISO-8859-1.
    latin1 = "Jürgen B-PER\nMüller I-PER\nin O\nKöln B-LOC\n".encode(
        "latin-1")
    directory = conll_dir(three(latin1, latin1, latin1))
    with pytest.raises(data.CorpusError) as error:
        data.load_conll_dir(directory, cache_dir=str(tmp_path / "c"))
    assert "train.txt:1: invalid UTF-8" in str(error.value)
    assert "--encoding" in str(error.value)  # says how to fix it
    corpus = data.load_conll_dir(directory, cache_dir=str(tmp_path / "c"),
                                 encoding="latin-1")
    assert corpus.sentences("train") == [
        (["Jürgen", "Müller", "in", "Köln"], ["B-PER", "I-PER", "O", "B-LOC"])]
    with pytest.raises(data.CorpusError, match="encoding must be a text "
                       "encoding Python knows .* Received: encoding='base64'"):
        data.load_conll_dir(directory, encoding="base64")


def test_missing_directory_and_split(conll_dir, tmp_path):
    with pytest.raises(data.CorpusError, match=r"nowhere: data directory not found"):
        data.load_conll_dir(str(tmp_path / "nowhere"))
    files = three()
    del files["valid.txt"]
    with pytest.raises(data.CorpusError, match=r"no file for the 'valid' split"):
        data.load_conll_dir(conll_dir(files), cache_dir=str(tmp_path / "c"))


def test_unseen_test_tag_is_a_warning_naming_tag_split_and_count(
        conll_dir, tmp_path):
    corpus = data.load_conll_dir(
        conll_dir(three(test="Bonn B-LOC\n\nKiel B-LOC\n")),
        cache_dir=str(tmp_path / "c"))
    with pytest.warns(UserWarning, match=r"tag 'B-LOC' occurs in no "
                      r"training sentence \(2 in test\); the model will "
                      r"never predict it"):
        assert data.check_tags(corpus) == {"B-LOC": {"test": 2}}
    assert data.untrained_types(data.unseen_tags(corpus)) == ["LOC"]


def test_edited_files_are_prepared_again(conll_dir, tmp_path):
    cache = str(tmp_path / "c")
    directory = conll_dir(three())
    assert len(data.load_conll_dir(directory, cache_dir=cache)
               .sentences("train")) == 2
    conll_dir({"train.txt": GOOD + "\nBonn B-LOC\n"})
    assert len(data.load_conll_dir(directory, cache_dir=cache)
               .sentences("train")) == 3


def test_env_var_names_the_corpus(conll_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_DATA_DIR, conll_dir(three()))
    corpus = data.find_corpus(cache_dir=str(tmp_path / "c"))
    assert corpus.source == str(tmp_path)


def test_builtin_corpus_when_nothing_found(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    monkeypatch.chdir(tmp_path)  # No ../shared/data/conll2003 from here.
    corpus = data.find_corpus(cache_dir=str(tmp_path / "c"),
                              builtin_dir=str(tmp_path / "b"))
    assert corpus.source == "builtin"
    assert len(corpus.sentences("train")) == 1500
    assert set(corpus.tags) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC",
                                "B-ORG", "I-ORG", "B-MISC", "I-MISC"}
    train = {tuple(t) for t, _ in corpus.sentences("train")}
    test = {tuple(t) for t, _ in corpus.sentences("test")}
    assert len(test - train) > len(test) // 2


def test_long_sentences_are_windowed_not_dropped():
    tokens = [str(i) for i in range(10)]
    pieces = pipeline.rows([(tokens, ["O"] * 10)], 4)
    assert [p[0] for p in pieces] == [tokens[0:4], tokens[4:8], tokens[8:10]]


def test_row_spans_are_each_window_with_its_sentences_context():
    # One rule (pipeline.row_spans): each window of each sentence, with that
    # sentence's context; an empty sentence has no row.
    spans = pipeline.row_spans([0, 5, 3], 4, [["x"], ["y", "z"], []])
    assert spans == [(1, 0, 4, ["y", "z"]), (1, 4, 5, ["y", "z"]),
                     (2, 0, 3, [])]
    with pytest.raises(ValueError, match="2 contexts for 3 sentences"):
        pipeline.row_spans([1, 2, 3], 4, [[], []])


def test_dataset_buckets_pad_and_weights():
    sentences = [(["a"] * n, ["O"] * n) for n in (3, 5, 17, 20, 40, 2, 7, 33)]
    batches = list(pipeline.make_dataset(sentences, ["O"], batch_size=2,
                                     max_length=32))
    shapes = sorted(b[0].shape[1] for b in batches)
    assert set(shapes) <= {16, 32}
    total = sum(int(np.sum(w)) for _, _, w in batches)
    assert total == sum(len(t) for t, _ in sentences)  # 40 -> 32 + 8
    for tokens, tags, weights in batches:
        np.testing.assert_array_equal(weights.numpy() == 0,
                                      tokens.numpy() == b"")
    train = list(pipeline.make_dataset(sentences, ["O"], batch_size=2,
                                   max_length=32, shuffle=True))
    assert all(b[0].shape[0] == 2 for b in train)
    assert len(train) == pipeline.num_batches(sentences, 2, 32)


def test_training_batches_are_full_and_every_row_trains():
    # Five short rows and one long one, batches of 4: the long row's bucket
    # holds fewer rows than a batch. Each bucket's last batch is filled up
    # with empty rows of weight 0, so every row trains every epoch.
    sentences = [([f"s{i}"] * 3, ["O"] * 3) for i in range(5)] + [
        (["long"] * 20, ["B-PER"] + ["I-PER"] * 19)]
    tags = ["O", "B-PER", "I-PER"]
    for epoch in (0, 1):
        train = list(pipeline.make_dataset(sentences, tags, batch_size=4,
                                           max_length=32, shuffle=True,
                                           epoch=epoch))
        assert len(train) == pipeline.num_batches(sentences, 4, 32) == 3
        assert [b[0].shape[0] for b in train] == [4, 4, 4]
        assert sum(int(np.sum(w)) for _, _, w in train) == 5 * 3 + 20
        assert sorted(t.decode() for tokens, _, _ in train
                      for row in tokens.numpy() for t in row[:1] if t) == [
            "long", "s0", "s1", "s2", "s3", "s4"]
        for tokens, tag_ids, weights in train:
            empty = (tokens.numpy() == b"").all(axis=1)
            assert not weights.numpy()[empty].any()
            assert not tag_ids.numpy()[empty].any()
    spec = pipeline.make_dataset(sentences, tags, batch_size=4,
                                 max_length=32, shuffle=True).element_spec
    assert spec[0].shape[0] == 4


def _order(ds):
    return [tuple(t.decode() for t in row if t) for tokens, _, _ in ds
            for row in tokens.numpy()]


def test_shuffle_order_is_a_function_of_seed_and_epoch():
    sentences = [([f"w{i}"] * (1 + i % 5), ["O"] * (1 + i % 5))
                 for i in range(40)]

    def order(seed, epoch):
        return _order(pipeline.make_dataset(sentences, ["O"], 4, 16,
                                        shuffle=True, seed=seed, epoch=epoch))

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4)
    assert order(0, 3) != order(1, 3)
    # Epochs back to back; starting later or skipping batches gives the
    # tail of the same sequence, which is what a resumed run relies on.
    full = list(pipeline.epochs_dataset(sentences, ["O"], 4, 16, 0, 0, 3))
    per_epoch = pipeline.num_batches(sentences, 4, 16)
    assert len(full) == 3 * per_epoch
    assert [int(e) for e, _, _ in full] == sorted(
        [0, 1, 2] * per_epoch)
    assert _order(b for _, _, b in full[per_epoch:2 * per_epoch]) == order(
        0, 1)
    later = list(pipeline.epochs_dataset(sentences, ["O"], 4, 16, 0, 1, 3)
                 .skip(2))
    assert _order(b for _, _, b in later) == _order(
        b for _, _, b in full[per_epoch + 2:])


def test_word_dropout_hides_words_as_a_function_of_seed_and_batch(tmp_path):
    from keras_resnorm.ner import features as features_lib
    from ner_helpers import tiny_config

    sentences = [([f"w{i % 7}", "the", f"x{i}"] * 3, ["O"] * 9)
                 for i in range(40)]
    words, chars = features_lib.vocabulary([t for t, _ in sentences], 1)
    features = features_lib.TokenFeatures(words, chars, 8, hash_buckets=50)
    config = tiny_config(tmp_path, batch_size=4, word_dropout=0.5)
    config.model.hash_buckets = 50

    def batches(skip=0):
        ds = pipeline.training_dataset(sentences, ["O"], features, config,
                                       0, 2, skip)
        return [[f.numpy() for f in feats] for feats, _, _ in ds]

    first = batches()
    assert len(first) == 2 * pipeline.num_batches(sentences, 4, 16)
    blank = features_lib.hashed_features(
        features_lib.PAD, 50).numpy()[0]
    hidden = np.concatenate([b[0].ravel() == features_lib.OOV
                             for b in first])
    real = np.concatenate([b[-1].ravel() for b in first])
    assert 0.4 < hidden[real].mean() < 0.6  # every word is in vocabulary
    norm = np.concatenate([b[3][..., 0].ravel() for b in first])
    assert (norm[hidden & real] == blank).all()
    assert (norm[~hidden & real] != blank).all()
    # The same draws again, and from any batch on (a resumed run).
    again = batches()
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    for a, b in zip(first[3:], batches(skip=3)):
        np.testing.assert_array_equal(a[0], b[0])


def test_case_augmentation_recases_whole_rows_as_a_function_of_seed_and_batch(
        tmp_path):
    import tensorflow as tf

    from keras_resnorm.ner import features as features_lib
    from ner_helpers import tiny_config

    # Unicode-aware, and the padding string stays empty.
    rows = tf.constant([["Éire", "EU", "said", ""]] * 400)
    out = pipeline.recase_rows(rows, 0.6, tf.constant([3, 4], tf.int64))
    out = [[t.decode() for t in row] for row in out.numpy()]
    kinds = [("lower" if row == ["éire", "eu", "said", ""] else
              "upper" if row == ["ÉIRE", "EU", "SAID", ""] else
              "same" if row == ["Éire", "EU", "said", ""] else row)
             for row in out]
    assert set(kinds) == {"lower", "upper", "same"}  # whole rows only
    assert 0.3 < kinds.count("same") / 400 < 0.5
    assert 0.2 < kinds.count("lower") / 400 < 0.4
    assert out == [[t.decode() for t in row] for row in pipeline.recase_rows(
        rows, 0.6, tf.constant([3, 4], tf.int64)).numpy()]
    assert out != [[t.decode() for t in row] for row in pipeline.recase_rows(
        rows, 0.6, tf.constant([5, 4], tf.int64)).numpy()]

    # In the training pipeline: the casing classes change with the rows and
    # the draws are those of an uninterrupted run from any batch on.
    sentences = [([f"Wo{'abcdefg'[i % 7]}", "the", "x" + "abcdefghij"[i % 10]]
                  * 3, ["O"] * 9) for i in range(40)]
    words, chars = features_lib.vocabulary([t for t, _ in sentences], 1)
    features = features_lib.TokenFeatures(words, chars, 8)
    plain = tiny_config(tmp_path, batch_size=4, word_dropout=0.0)
    config = tiny_config(tmp_path, batch_size=4, word_dropout=0.0,
                         case_augmentation=0.6)

    def batches(config, skip=0):
        ds = pipeline.training_dataset(sentences, ["O"], features, config,
                                       0, 2, skip)
        return [[f.numpy() for f in feats] for feats, _, _ in ds]

    first, before = batches(config), batches(plain)
    cases = np.concatenate([b[1].reshape(-1, b[1].shape[-1]) for b in first])
    plain_cases = np.concatenate([b[1].reshape(-1, b[1].shape[-1])
                                  for b in before])
    changed = (cases != plain_cases).any(axis=1)
    assert 0.4 < changed.mean() < 0.8  # a title-cased word in every row
    lowered = (cases == 1) | (cases == 0)
    uppered = (cases == 2) | (cases == 0)
    assert (lowered.all(axis=1) | uppered.all(axis=1))[changed].all()
    for a, b in zip(first[3:], batches(config, skip=3)):
        np.testing.assert_array_equal(a[1], b[1])


def test_bad_scheme():
    with pytest.raises(ValueError, match=r"Received: scheme='bio'"):
        list(data.parse_conll("x", scheme="bio"))


def test_mention_replacement_keeps_tags_and_lengths_and_is_seeded():
    sentences = [
        (["Anna", "met", "Bo", "Li", "in", "Oslo"],
         ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC"]),
        (["Rome", "and", "Kim", "Ode", "."],
         ["B-LOC", "O", "B-PER", "I-PER", "O"]),
        (["Carl", "left", "."], ["B-PER", "O", "O"]),
    ]
    pool = pipeline.mention_pool(sentences)
    assert pool == {("PER", 1): [("Anna",), ("Carl",)],
                    ("PER", 2): [("Bo", "Li"), ("Kim", "Ode")],
                    ("LOC", 1): [("Oslo",), ("Rome",)]}
    tags = ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC"]

    def epoch(seed, epoch, rate=1.0):
        ds = pipeline.make_dataset(sentences, ["O", "B-PER", "I-PER",
                                               "B-LOC"], 1, 16, shuffle=True,
                                   seed=seed, epoch=epoch,
                                   mention_replacement=rate)
        return sorted(tuple(t.decode() for t in toks.numpy()[0] if t)
                      for toks, _, _ in ds)

    swapped = [pipeline.replace_mentions(sentences[0][0], tags, pool, 1.0,
                                         random.Random(i)) for i in range(20)]
    for tokens in swapped:
        assert len(tokens) == 6 and tokens[1] == "met" and tokens[4] == "in"
        assert (tokens[0],) in pool["PER", 1]
        assert tuple(tokens[2:4]) in pool["PER", 2]
        assert (tokens[5],) in pool["LOC", 1]
    assert len({tuple(t) for t in swapped}) > 1
    # The draw is the seed's and the epoch's; other epochs draw others;
    # rate 0 leaves the corpus as it is.
    assert epoch(0, 1) == epoch(0, 1)
    assert len({tuple(epoch(0, e)) for e in range(1, 6)}) > 1
    assert epoch(0, 1, rate=0.0) == sorted(tuple(t) for t, _ in sentences)


def test_a_limited_run_keeps_sentences_spread_over_the_file_in_file_order(
        conll_dir, tmp_path):
    assert data.subset_indices(10, 4) == [0, 2, 5, 7]
    assert data.subset_indices(10, 4, "first") == [0, 1, 2, 3]
    assert data.subset_indices(3, 5) == [0, 1, 2]
    with pytest.raises(ValueError, match="subset must be one of .*"
                                         "Received: subset='random'"):
        data.subset_indices(10, 4, "random")
    # Ten one-token sentences s0..s9 with no -DOCSTART-: TFDS stores them
    # in an order of its own, the subset follows the file's.
    lines = "".join(f"s{i} {'B-PER' if i % 3 == 0 else 'O'}\n\n"
                    for i in range(10))
    corpus = data.load_conll_dir(conll_dir(three(train=lines)),
                                 cache_dir=str(tmp_path / "tfds"))
    assert [t[0] for t, _ in corpus.sentences("train", 4)] == [
        "s0", "s2", "s5", "s7"]
    assert [t[0] for t, _ in corpus.sentences("train", 3, "first")] == [
        "s0", "s1", "s2"]
    assert [[t[0] for t, _ in d] for d in corpus.documents("train", 4)] == [
        ["s0"], ["s2"], ["s5"], ["s7"]]
    assert len(corpus.sentences("train")) == 10
