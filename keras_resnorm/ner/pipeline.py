"""tf.data pipelines of NER batches: long sentences cut into windows (each
with its document context, when the tagger reads one), length buckets, the
seeded shuffle that lets a run resume exactly, and the featurized training
batches (word dropout included) that `train.py` fits on.
"""

import collections
import random

import tensorflow as tf
from seqeval.metrics.sequence_labeling import get_entities

from keras_resnorm.ner import features as features_lib
from keras_resnorm.ner.features import PAD

__all__ = [
    "BUCKETS",
    "bucket_lengths",
    "epochs_dataset",
    "make_dataset",
    "mention_pool",
    "num_batches",
    "recase_rows",
    "replace_mentions",
    "row_limit",
    "row_spans",
    "rows",
    "training_dataset",
]


BUCKETS = (16, 32, 64, 128, 256, 512)


def bucket_lengths(max_length):
    """Padded lengths of the buckets: a few fixed ones, then `max_length`."""
    return [b for b in BUCKETS if b < max_length] + [max_length]


def row_spans(lengths, max_length, contexts=None):
    """`(sentence, start, end, context)` of each row the model reads, for
    sentences of `lengths` tokens: each of a sentence's windows
    (`features.window_starts`), tokens `start:end`, with that sentence's
    document context (`context.py`; `[]` when `contexts` is None).

    The one rule for rows: training (`rows`) and prediction
    (`evaluate.predict_tags`) both take theirs from here.
    """
    contexts = contexts if contexts is not None else [[]] * len(lengths)
    if len(contexts) != len(lengths):
        raise ValueError(
            "contexts must give one context per sentence. Received: "
            f"{len(contexts)} contexts for {len(lengths)} sentences")
    return [(i, start, min(start + max_length, length), context)
            for i, (length, context) in enumerate(zip(lengths, contexts))
            for start in features_lib.window_starts(length, max_length)]


def rows(sentences, max_length, contexts=None):
    """`(tokens, tags, context)` of each row of `(tokens, tags)`
    sentences (`row_spans`)."""
    spans = row_spans([len(tokens) for tokens, _ in sentences], max_length,
                      contexts)
    return [(sentences[i][0][start:end], sentences[i][1][start:end], context)
            for i, start, end, context in spans]


def row_limit(max_length, contexts=None):
    """The longest row: a window and the longest context."""
    return max_length + max(map(len, contexts or ()), default=0)


def num_batches(sentences, batch_size, max_length, contexts=None):
    """How many batches a pipeline yields: per length bucket, its rows
    over `batch_size`, rounded up (a training pipeline fills each bucket's
    last batch up to `batch_size` with empty rows; see `make_dataset`)."""
    bounds = bucket_lengths(row_limit(max_length, contexts))
    counts = collections.Counter()
    for tokens, _, context in rows(sentences, max_length, contexts):
        length = len(tokens) + len(context)
        counts[next(b for b in bounds if length <= b)] += 1
    return sum(-(-n // batch_size) for n in counts.values())


def mention_pool(pieces):
    """`{(type, length): [tokens of a mention, ...]}` over `pieces`
    (`(tokens, tags)` with IOB2 tags), each distinct mention once, in
    the order first seen."""
    pool = collections.defaultdict(dict)
    for tokens, tags in pieces:
        for kind, start, end in get_entities(list(tags)):
            mention = tuple(tokens[start:end + 1])
            pool[kind, len(mention)][mention] = None
    return {key: list(mentions) for key, mentions in pool.items()}


def replace_mentions(tokens, tags, pool, rate, rng):
    """Mention replacement (Dai & Adel 2020): each mention of `tags` is
    swapped, with probability `rate`, for a mention of the same type and
    length drawn from `pool` (`mention_pool`). The tags stay as they are,
    and so does the sentence's length (and with it the batch it falls in).
    """
    tokens = list(tokens)
    for kind, start, end in get_entities(list(tags)):
        if rng.random() < rate:
            choices = pool[kind, end + 1 - start]
            tokens[start:end + 1] = choices[rng.randrange(len(choices))]
    return tokens


def make_dataset(sentences, tags, batch_size=32, max_length=128,
                 shuffle=False, seed=0, full_batches=None, epoch=0,
                 prefetch=True, mention_replacement=0.0, contexts=None):
    """A tf.data pipeline of `(tokens, tag_ids, weights)` batches.

    Tokens are `tf.string` padded with "", tag ids int32 padded with 0 and
    weights 1.0 on the tokens that are scored, 0.0 on padding and on
    document context (`contexts`, one token list per sentence, appended to
    each of its windows; see `rows`). Rows are bucketed by
    length and each bucket is padded to its fixed length
    (`bucket_lengths`), so batches carry little padding and XLA compiles
    for a few shapes only. With `full_batches` (the default when
    shuffling, i.e. for training) each bucket's last partial batch is
    filled up to `batch_size` with empty rows (tokens "", weight 0, which
    the loss and the metrics skip), so every batch has the same shape and
    every row trains every epoch, the rows of a bucket smaller than a
    batch included (dropping the remainder instead left those, the longest
    sentences of a small corpus, out of training altogether). Sentences
    longer than `max_length` are split into windows (`row_spans`): no token
    is dropped, and prediction sees the same windows and joins their tags
    back.

    With `shuffle`, the order is a fixed function of `seed` and `epoch`
    (an int or a scalar tensor), the same in every process: a resumed run
    sees the same batches as one that never stopped (`epochs_dataset`).
    So are the mentions that `mention_replacement` > 0 replaces
    (`replace_mentions`, training only).
    """
    if full_batches is None:
        full_batches = shuffle
    index = {tag: i for i, tag in enumerate(tags)}
    pieces = rows(sentences, max_length, contexts)

    pool = mention_pool([(t, g) for t, g, _ in pieces]) \
        if mention_replacement else None

    def generate(epoch):
        order = list(range(len(pieces)))
        if shuffle:
            random.Random(f"{seed}/{int(epoch)}").shuffle(order)
        mentions = random.Random(f"{seed}/{int(epoch)}/mentions")
        for i in order:
            toks, labs, context = pieces[i]
            if pool:
                toks = replace_mentions(toks, labs, pool,
                                        mention_replacement, mentions)
            # Context positions get tag 0 and weight 0: never a target.
            yield (list(toks) + context,
                   [index[t] for t in labs] + [0] * len(context))

    ds = tf.data.Dataset.from_generator(
        generate, args=(tf.cast(epoch, tf.int64),),
        output_signature=(tf.TensorSpec([None], tf.string),
                          tf.TensorSpec([None], tf.int32)),
    )
    bounds = bucket_lengths(row_limit(max_length, contexts))
    ds = ds.bucket_by_sequence_length(
        lambda toks, labs: tf.shape(toks)[0],
        bucket_boundaries=[b + 1 for b in bounds],
        bucket_batch_sizes=[batch_size] * (len(bounds) + 1),
        padded_shapes=([None], [None]),
        padding_values=(PAD, 0),
        pad_to_bucket_boundary=True,
    )
    if full_batches:
        ds = ds.map(lambda toks, labs: _fill_batch(toks, labs, batch_size))
    ds = ds.map(lambda toks, labs: (
        toks, labs, tf.cast(features_lib.scored_mask(toks), tf.float32)))
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def _fill_batch(tokens, tag_ids, batch_size):
    """`(tokens, tag_ids)` with empty rows (tokens "", tag 0) appended up
    to `batch_size` rows, and the batch size made static."""
    missing = batch_size - tf.shape(tokens)[0]
    tokens = tf.pad(tokens, [[0, missing], [0, 0]], constant_values=PAD)
    tag_ids = tf.pad(tag_ids, [[0, missing], [0, 0]])
    return (tf.ensure_shape(tokens, [batch_size, None]),
            tf.ensure_shape(tag_ids, [batch_size, None]))


def recase_rows(tokens, rate, seed):
    """`tokens` (rows of strings) with each row, at probability `rate`,
    all in lower case or all in capitals (half each; Unicode-aware).

    Case augmentation after Mayhew et al. 2019 ("ner and pos when nothing
    is capitalized", EMNLP), who train on a corpus together with its
    lower-cased copy; here a row is recased in place, so an epoch costs
    what it did. The draws are stateless functions of `seed` (a shape-[2]
    int tensor), so a resumed run recases the rows an uninterrupted one
    did. The empty padding string is unchanged by either.
    """
    draw = tf.random.stateless_uniform(
        tf.shape(tokens)[:1], seed + tf.constant([0, 7_919], seed.dtype))
    lower = tf.strings.lower(tokens, encoding="utf-8")
    upper = tf.strings.upper(tokens, encoding="utf-8")
    pick = draw[:, None]
    return tf.where(pick < rate / 2, lower,
                    tf.where(pick < rate, upper, tokens))


def epochs_dataset(sentences, tags, batch_size, max_length, seed,
                   first_epoch, epochs, mention_replacement=0.0,
                   contexts=None):
    """Training batches of epochs `first_epoch .. epochs - 1`, back to back.

    Each element is `(epoch, index_in_epoch, (tokens, tag_ids, weights))`;
    every epoch has `num_batches(...)` batches, shuffled as
    `make_dataset(..., shuffle=True, seed=seed, epoch=epoch)`. Starting at
    `first_epoch` (and `.skip`-ping batches) gives exactly the batches an
    uninterrupted run would see from there.
    """
    @tf.autograph.experimental.do_not_convert
    def one_epoch(epoch):
        ds = make_dataset(sentences, tags, batch_size, max_length,
                          shuffle=True, seed=seed, epoch=epoch,
                          prefetch=False,
                          mention_replacement=mention_replacement,
                          contexts=contexts)
        return ds.enumerate().map(lambda i, batch: (epoch, i, batch))

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)


def training_dataset(sentences, tags, features, config, first_epoch,
                     last_epoch, skip=0, contexts=None):
    """Featurized training batches from `first_epoch` (skipping `skip`),
    with `contexts` (`make_dataset`'s) when the tagger reads document
    context.

    Every random choice is a function of the seed and the batch's position
    (epoch, index): the shuffle order and the replaced mentions
    (`epochs_dataset`), the recased rows (`recase_rows`) and word dropout
    (stateless draws), so the pipeline
    can restart anywhere and yield what an uninterrupted run would have.
    Several workers each build the whole pipeline and keep their share of
    every global batch (auto-shard policy DATA: it is read from a Python
    generator, which FILE sharding cannot split).
    """
    seed = tf.constant(config.seed, tf.int64)

    @tf.autograph.experimental.do_not_convert
    def prepare(epoch, index, batch):
        tokens, tag_ids, weights = batch
        if config.case_augmentation:
            tokens = recase_rows(tokens, config.case_augmentation,
                                 tf.stack([seed, epoch * 1_000_003 + index]))
        feats = list(features(tokens))
        if config.word_dropout:
            # Hide real words at random (features.hide_words: the OOV id
            # and the empty string's hashed form), so the model learns to
            # tag a word it does not know from characters and context.
            mask = feats[-1]
            draw = tf.random.stateless_uniform(
                tf.shape(mask), tf.stack([seed, epoch * 1_000_003 + index]))
            feats = features_lib.hide_words(
                feats, (draw < config.word_dropout) & mask,
                config.model.hash_buckets)
        return tuple(feats), tag_ids, weights

    ds = epochs_dataset(sentences, tags, config.batch_size,
                        config.model.max_length, config.seed, first_epoch,
                        last_epoch, config.mention_replacement, contexts)
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).skip(skip)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
