"""CoNLL-style NER corpora through TensorFlow Datasets: where the
sentences come from.

Any CoNLL-style NER corpus loads: one token a line with the token in the
first column and the tag in the last, columns separated by spaces or tabs,
a blank line between sentences, a `-DOCSTART-` line before each document.
The files are read by our parser inside a
`tfds.dataset_builders.ConllDatasetBuilder`, so TFDS prepares and caches
them as it does its own `conll2003` dataset; the tag set is read from the
training split. Each sentence keeps the index of its document
(`Corpus.documents`): a file without `-DOCSTART-` lines is one document per
sentence, as is TFDS's own `conll2003`, which drops them.

Where the corpus comes from (`find_corpus`): `--data-dir` or the
`KERAS_RESNORM_CONLL_DIR` environment variable, else `../shared/data/conll2003`
when present, else TFDS's own `conll2003` download when asked for
(`download=True`), else a small synthetic corpus that this module writes
itself (`write_builtin_corpus`).

The batches a model trains on are made from these sentences in
`pipeline.py`; raw text is tokenized by the token contract (`features.py`).
"""

import codecs
import collections
import dataclasses
import hashlib
import os
import random
import warnings

import tensorflow as tf

from keras_resnorm._checks import check_choice
from keras_resnorm.ner.errors import CorpusError

__all__ = [
    "BUILTIN_NOTE",
    "Corpus",
    "ENV_DATA_DIR",
    "SCHEMES",
    "SPLITS",
    "SPLIT_FILES",
    "SUBSETS",
    "check_encoding",
    "check_tags",
    "default_cache",
    "find_corpus",
    "iob1_to_iob2",
    "load_conll_dir",
    "load_tfds_conll2003",
    "parse_conll",
    "parse_conll_documents",
    "split_path",
    "subset_indices",
    "tag_set",
    "unseen_tags",
    "untrained_types",
    "write_builtin_corpus",
]

SPLITS = ("train", "valid", "test")
# Tag schemes a corpus may use; iob1 is converted to IOB2 on reading.
SCHEMES = ("iob2", "iob1")
# Which sentences a size-limited run trains on (`subset_indices`).
SUBSETS = ("spread", "first")
# File names tried for each split, in order.
SPLIT_FILES = {
    "train": ("train.txt", "eng.train", "train.conll"),
    "valid": ("valid.txt", "dev.txt", "eng.testa", "valid.conll", "dev.conll"),
    "test": ("test.txt", "eng.testb", "test.conll"),
}
ENV_DATA_DIR = "KERAS_RESNORM_CONLL_DIR"


@dataclasses.dataclass
class Corpus:
    """Sentences of each split as `(tokens, tags)` pairs of string lists,
    and for each split where every sentence stands in the files
    (`positions`: `(document, sentence in the document)` pairs aligned
    with the sentences; a split without them is one document per
    sentence)."""

    splits: dict
    tags: list
    source: str
    positions: dict = dataclasses.field(default_factory=dict)

    def sentences(self, split, limit=None, subset="spread"):
        """The split's `(tokens, tags)` sentences (in the order TFDS stored
        them); with `limit`, the `limit` sentences that `subset_indices`
        picks in file order (the subset `max_train_sentences` trains on),
        in file order."""
        sentences = self.splits[split]
        if not limit:
            return sentences
        return [sentences[i] for i in self.kept(split, limit, subset)]

    def kept(self, split, limit, subset="spread"):
        """Indices into `sentences(split)` of the sentences a run limited to
        `limit` keeps, in file order: `subset_indices` applied to the
        split's sentences sorted by their place in the files
        (`positions`; TFDS stores them in an order of its own)."""
        count = len(self.splits[split])
        positions = self.positions.get(split)
        order = (sorted(range(count), key=positions.__getitem__)
                 if positions else range(count))
        return [order[i] for i in subset_indices(count, limit, subset)]

    def documents(self, split, limit=None, subset="spread"):
        """The split's sentences grouped by document, each document's in
        file order: a list of documents, each a list of `(tokens, tags)`.
        With `limit`, only the sentences `sentences(split, limit, subset)`
        keeps."""
        sentences = self.splits[split]
        positions = self.positions.get(split) or [
            (i, 0) for i in range(len(sentences))]
        if limit:
            keep = self.kept(split, limit, subset)
            sentences = [sentences[i] for i in keep]
            positions = [positions[i] for i in keep]
        documents = collections.defaultdict(list)
        for (document, position), sentence in sorted(
                zip(positions, sentences), key=lambda pair: pair[0]):
            documents[document].append(sentence)
        return [documents[d] for d in sorted(documents)]


def subset_indices(total, limit, subset="spread"):
    """Which `limit` of `total` sentences in file order a size-limited run
    trains on, ascending. `"spread"`: evenly spaced over the file (the
    `i * total // limit`-th for each i), so the subset samples every part
    of a file sorted by source, date or topic; `"first"`: the first
    `limit`. The same for every seed, so seeds differ in training alone.

    >>> subset_indices(10, 4), subset_indices(10, 4, "first")
    ([0, 2, 5, 7], [0, 1, 2, 3])
    """
    check_choice("subset", subset, SUBSETS)
    if not limit or limit >= total:
        return list(range(total))
    if subset == "first":
        return list(range(limit))
    return [i * total // limit for i in range(limit)]


# ----------------------------------------------------------------- parsing
def iob1_to_iob2(tags):
    """Convert IOB1 tags (I- may start an entity) to IOB2 (B- always starts).

    >>> iob1_to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"])
    ['B-PER', 'I-PER', 'O', 'B-LOC', 'B-LOC', 'B-ORG']
    """
    out = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-"):
            kind = tag[2:]
            if previous == "O" or previous[2:] != kind:
                tag = "B-" + kind
        out.append(tag)
        previous = tag
    return out


def check_encoding(encoding, error=ValueError):
    """`encoding` in Python's canonical spelling ("latin-1" -> "iso8859-1"),
    when Python knows it as a text encoding."""
    try:
        # str.encode refuses unknown names and codecs that are not text
        # encodings (base64, rot13) with a LookupError.
        "a".encode(encoding)
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise error(
            "encoding must be a text encoding Python knows (for example "
            f"'utf-8', 'latin-1', 'cp1252'). Received: encoding={encoding!r}"
        ) from None
    return name


def parse_conll(path, scheme="iob2", encoding="utf-8"):
    """Yield `(tokens, tags)` for each sentence of a CoNLL-style file
    (`parse_conll_documents` says which document each is in).
    """
    for _, tokens, tags in parse_conll_documents(path, scheme, encoding):
        yield tokens, tags


def parse_conll_documents(path, scheme="iob2", encoding="utf-8"):
    """Yield `(document, tokens, tags)` for each sentence of a CoNLL-style
    file: `document` counts from 0 and grows at each `-DOCSTART-` line that
    follows a sentence; in a file with no such line, every sentence is a
    document of its own.

    `encoding` is the files' text encoding (several public NER corpora ship
    in ISO-8859-1: `encoding="latin-1"`, `--encoding latin-1`).

    Raises:
        CorpusError: naming the file and line, for a missing file, bytes
            that are not `encoding` (the message says how to pass another),
            a line without a tag column, or a file with no sentence.
    """
    check_choice("scheme", scheme, SCHEMES)
    codec = check_encoding(encoding)
    if not tf.io.gfile.exists(path):
        raise CorpusError(f"{path}: file not found")
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    tokens, tags = [], []
    count = 0
    documents = b"-DOCSTART-" in raw
    document, started_at = 0, 0  # started_at: `count` at its -DOCSTART-

    def flush():
        nonlocal tokens, tags, count, document
        if tokens:
            count += 1
            yield (document, tokens,
                   iob1_to_iob2(tags) if scheme == "iob1" else tags)
            if not documents:
                document += 1
        tokens, tags = [], []

    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        try:
            line = line_bytes.decode(codec)
        except UnicodeDecodeError as error:
            name = "UTF-8" if codec == "utf-8" else codec
            raise CorpusError(
                f"{path}:{number}: invalid {name} ({error.reason} at byte "
                f"{error.start}); if the files use another encoding, pass "
                "it: --encoding (encoding=), e.g. --encoding latin-1"
            ) from None
        line = line.rstrip("\r")
        columns = line.split()
        if columns and columns[0] == "-DOCSTART-":
            yield from flush()
            if count > started_at:
                document, started_at = document + 1, count
            continue
        if not columns:
            yield from flush()
            continue
        if len(columns) < 2:
            raise CorpusError(
                f"{path}:{number}: expected a token and a tag separated by "
                f"spaces or tabs. Received: {line!r}"
            )
        tag = columns[-1]
        if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
            raise CorpusError(
                f"{path}:{number}: tag must be 'O' or start with 'B-'/'I-'. "
                f"Received: {tag!r}"
            )
        tokens.append(columns[0])
        tags.append(tag)
    yield from flush()
    if count == 0:
        raise CorpusError(f"{path}: no sentence found (empty split)")


def split_path(data_dir, split):
    for name in SPLIT_FILES[split]:
        path = os.path.join(data_dir, name)
        if tf.io.gfile.exists(path):
            return path
    raise CorpusError(
        f"{data_dir}: no file for the {split!r} split (looked for "
        f"{', '.join(SPLIT_FILES[split])})"
    )


# -------------------------------------------------------------------- TFDS
def _builder_class():
    """The TFDS builder class, made on first use (TFDS imports slowly)."""
    import tensorflow_datasets as tfds

    class ConllNer(tfds.dataset_builders.ConllDatasetBuilder,
                   skip_registration=True):
        """A CoNLL-style NER corpus from a local directory."""

        VERSION = tfds.core.Version("1.1.0")
        RELEASE_NOTES = {"1.0.0": "Token and NER tag columns.",
                         "1.1.0": "Each sentence's document and its "
                                  "position in it."}

        def __init__(self, *, source_dir, scheme, encoding, **kwargs):
            self._source_dir = source_dir
            self._scheme = scheme
            self._encoding = encoding
            self._paths = {s: split_path(source_dir, s) for s in SPLITS}
            # The config name fingerprints the files (and how they are
            # read), so edited data is prepared again instead of read from
            # a stale cache.
            digest = hashlib.sha1(scheme.encode())
            if encoding != "utf-8":  # UTF-8 keeps its earlier cache names
                digest.update(encoding.encode())
            for split in SPLITS:
                stat = os.stat(self._paths[split])
                digest.update(
                    f"{os.path.abspath(self._paths[split])}:{stat.st_size}:"
                    f"{stat.st_mtime_ns}".encode()
                )
            config = tfds.dataset_builders.ConllBuilderConfig(
                name="c" + digest.hexdigest()[:12],
                separator=" ",
                ordered_features=collections.OrderedDict(
                    tokens=tfds.features.Sequence(tfds.features.Text()),
                    tags=tfds.features.Sequence(tfds.features.Text()),
                    document=tfds.features.Scalar(tf.int32),
                    position=tfds.features.Scalar(tf.int32),
                ),
            )
            super().__init__(config=config, **kwargs)

        # TFDS prints "Downloading and preparing dataset Unknown size" and
        # "... downloaded and prepared" for every builder; nothing is
        # downloaded here, so say what happens instead.
        def _log_download_bytes(self):
            print(f"preparing the corpus in {self._source_dir} for TFDS "
                  f"(cache: {self.data_dir})")

        def _log_download_done(self):
            print(f"corpus prepared; later runs read it from {self.data_dir}")

        def _info(self):
            return self.create_dataset_info(
                supervised_keys=("tokens", "tags"),
                homepage="https://aclanthology.org/W03-0419",
            )

        def _split_generators(self, dl_manager):
            del dl_manager  # Local files only.
            return {
                split: self._generate_examples(self._paths[split])
                for split in SPLITS
            }

        def _generate_examples(self, filepaths):
            # TFDS stores examples in the order of their keys' hashes; the
            # document and position say where each sentence stood.
            previous, position = None, 0
            for index, (document, tokens, tags) in enumerate(
                parse_conll_documents(filepaths, self._scheme,
                                      self._encoding)
            ):
                position = position + 1 if document == previous else 0
                previous = document
                yield index, {"tokens": tokens, "tags": tags,
                              "document": document, "position": position}

    return ConllNer


def _read_split(builder, split):
    """The split's sentences and their `(document, position)` pairs."""
    import tensorflow_datasets as tfds

    sentences, positions = [], []
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
        sentences.append(([t.decode() for t in example["tokens"]],
                          [t.decode() for t in example["tags"]]))
        positions.append((int(example["document"]),
                          int(example["position"])))
    return sentences, positions


def load_conll_dir(data_dir, scheme="iob2", cache_dir=None,
                   encoding="utf-8"):
    """Load a local CoNLL-style corpus through TFDS; see the module doc.
    `encoding` is the files' text encoding (see `parse_conll`)."""
    encoding = check_encoding(encoding, error=CorpusError)
    if not tf.io.gfile.isdir(data_dir):
        raise CorpusError(f"{data_dir}: data directory not found")

    def make():
        return _builder_class()(source_dir=data_dir, scheme=scheme,
                                encoding=encoding,
                                data_dir=cache_dir or default_cache())

    builder = make()
    try:
        builder.download_and_prepare()
    except FileExistsError:
        # Another process (a second worker on this machine, sharing the
        # cache) prepared the same version first; read that one.
        builder = make()
        builder.download_and_prepare()
    read = {split: _read_split(builder, split) for split in SPLITS}
    splits = {split: sentences for split, (sentences, _) in read.items()}
    return Corpus(splits, tag_set(splits["train"]), os.path.abspath(data_dir),
                  {split: positions for split, (_, positions) in read.items()})


def load_tfds_conll2003(cache_dir=None):
    """TFDS's own `conll2003` dataset (downloads when the machine is online)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("conll2003", data_dir=cache_dir or default_cache())
    builder.download_and_prepare()
    names = builder.info.features["ner"].feature.names
    splits = {}
    for ours, theirs in (("train", "train"), ("valid", "dev"), ("test", "test")):
        splits[ours] = [
            ([t.decode() for t in ex["tokens"]], [names[i] for i in ex["ner"]])
            for ex in tfds.as_numpy(builder.as_dataset(split=theirs))
        ]
    return Corpus(splits, tag_set(splits["train"]), "tfds:conll2003")


def default_cache():
    return os.environ.get(
        "KERAS_RESNORM_CACHE",
        os.path.join(os.path.expanduser("~"), ".cache", "keras_resnorm", "tfds"),
    )


def tag_set(sentences):
    """Tags seen in `sentences`, 'O' first, then sorted by type and B/I."""
    seen = {tag for _, tags in sentences for tag in tags}
    seen.discard("O")
    return ["O"] + sorted(seen, key=lambda t: (t[2:], t[:2]))


# --------------------------------------------------------- built-in corpus
_PEOPLE = ["Anna Kovacs", "Ravi Menon", "Li Wei", "Sofia Brandt", "Tomas Ortega",
           "Maria Lindqvist", "John Okafor", "Yuki Tanaka", "Pierre Dubois",
           "Elena Petrova", "Kwame Mensah", "Olga Ivanova", "Hassan Ali",
           "Grace Mwangi", "Lucas Silva", "Ingrid Berg"]
_PLACES = ["Norvale", "Port Emery", "Kestrel Bay", "Lower Ashby", "Marenta",
           "Dunhollow", "Valcrest", "Oslin", "New Tarrow", "Brightwater",
           "Calder Falls", "Essenmoor"]
_ORGS = ["Halden Motors", "Corvid Bank", "Northline Rail", "Apex Mining",
         "Tidewater Energy", "Bluefin Foods", "Quarry Labs", "Meridian Air",
         "Stonegate Insurance", "Lumen Telecom"]
_MISC = ["Norvalian", "Marentan", "Oslinese", "Valcrestian", "Dunhollow Cup",
         "Tarrow Open", "Essen Prize"]
_TEMPLATES = [
    "{PER} visited {LOC} on Monday .",
    "{ORG} said profits rose in {LOC} .",
    "Shares of {ORG} fell after {PER} resigned .",
    "The {MISC} government backed {ORG} .",
    "{PER} won the {MISC} in {LOC} .",
    "{PER} , a spokesman for {ORG} , declined to comment .",
    "Police in {LOC} arrested two {MISC} men .",
    "{ORG} will open a plant near {LOC} next year .",
    "{PER} met {PER} in {LOC} .",
    "Talks between {ORG} and {ORG} ended without a deal .",
    "Rain delayed the {MISC} match in {LOC} .",
    "{PER} joined {ORG} from {ORG} .",
    "Exports from {LOC} to {LOC} grew 4 percent .",
    "The {MISC} team beat {LOC} 3-1 .",
]


def write_builtin_corpus(directory, sentences=(1500, 300, 300), seed=0):
    """Write a small synthetic CoNLL corpus (made here, no outside data).

    Template sentences with invented people, places, organizations and
    miscellaneous names; each split draws different entity combinations,
    so the test split is not a copy of the training one. Returns
    `directory`.
    """
    rng = random.Random(seed)
    pools = {"PER": _PEOPLE, "LOC": _PLACES, "ORG": _ORGS, "MISC": _MISC}
    tf.io.gfile.makedirs(directory)
    for split, count in zip(SPLITS, sentences):
        lines = ["-DOCSTART- O", ""]
        for _ in range(count):
            template = rng.choice(_TEMPLATES)
            for piece in template.split():
                if piece.startswith("{") and piece.endswith("}"):
                    kind = piece[1:-1]
                    words = rng.choice(pools[kind]).split()
                    for i, word in enumerate(words):
                        lines.append(f"{word} {'B' if i == 0 else 'I'}-{kind}")
                else:
                    lines.append(f"{piece} O")
            lines.append("")
        with tf.io.gfile.GFile(os.path.join(directory, f"{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return directory


def find_corpus(data_dir=None, download=False, cache_dir=None, scheme="iob2",
                builtin_dir=None, encoding="utf-8"):
    """Load the first corpus found, in the order the module doc gives;
    `encoding` applies to a corpus directory (`data_dir`, the environment
    variable's, or the shared one)."""
    data_dir = data_dir or os.environ.get(ENV_DATA_DIR)
    if data_dir:
        return load_conll_dir(data_dir, scheme, cache_dir, encoding)
    shared = os.path.join(os.getcwd(), os.pardir, "shared", "data", "conll2003")
    if os.path.isdir(shared):
        return load_conll_dir(os.path.normpath(shared), scheme, cache_dir,
                              encoding)
    if download:
        return load_tfds_conll2003(cache_dir)
    directory = builtin_dir or os.path.join(default_cache(), "builtin_corpus")
    corpus = load_conll_dir(write_builtin_corpus(directory), "iob2", cache_dir)
    corpus.source = "builtin"
    return corpus


# Said where a run on the built-in corpus starts and beside its scores.
BUILTIN_NOTE = (
    "the built-in corpus is generated for a smoke test: its scores mean "
    "nothing, and a tagger trained on it tags real text badly. For the real "
    "demo, give it CoNLL-2003: --download (online, through TensorFlow "
    f"Datasets), --data-dir DIR, or the {ENV_DATA_DIR} variable")


def check_tags(corpus):
    """Tags of the valid and test splits that the train split lacks:
    `{tag: {split: count}}`, each named in a warning.

    spaCy and Flair train on such data too: the model never predicts a
    type it was not trained on, so its valid and test mentions count as
    misses (the scores say which types were never trained). Tags that are
    not of the scheme at all were refused when the files were read."""
    unseen = unseen_tags(corpus)
    for tag, counts in sorted(unseen.items()):
        where = ", ".join(f"{n} in {split}" for split, n in counts.items())
        warnings.warn(
            f"{corpus.source}: tag {tag!r} occurs in no training sentence "
            f"({where}); the model will never predict it, and those "
            "mentions count as misses", UserWarning, stacklevel=2)
    return unseen


def unseen_tags(corpus):
    """`{tag: {split: count}}` of the valid and test tags that the train
    split lacks (`check_tags` without the warnings)."""
    known = set(corpus.tags)
    unseen = {}
    for split in ("valid", "test"):
        for _, tags in corpus.splits[split]:
            for tag in tags:
                if tag not in known:
                    counts = unseen.setdefault(tag, {})
                    counts[split] = counts.get(split, 0) + 1
    return unseen


def untrained_types(unseen):
    """The entity types of `check_tags`'s tags, sorted (`B-MISC` ->
    `MISC`)."""
    return sorted({tag.split("-", 1)[-1] for tag in unseen})
