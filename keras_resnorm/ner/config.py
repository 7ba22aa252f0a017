"""The NER settings: one schema for the Python API and the command line.

`TrainConfig` (how to train) and `ModelConfig` (what to train) are
dataclasses whose fields each carry their default, their check and their
help text (`setting`). Everything else is made from those fields:

- `validate()` runs every field's check (the shared rules of
  `keras_resnorm._checks`, raising `ConfigError`), then the few rules that
  tie fields together;
- `add_flags(parser)` adds one flag per field (`--d-model` for `d_model`;
  a bool gets `--name/--no-name`; `jit_compile` is `--xla`), so a new field
  is a new flag and the two cannot drift apart;
- `TrainConfig.from_flags(args)` and `TrainConfig.from_argv(argv)` are the
  public way to make a config from flags (the CLI, the benchmarks and the
  tests use them).

```python
from keras_resnorm.ner.config import TrainConfig
config = TrainConfig.from_argv(["--max-minutes", "2", "--norm", "rms"])
```
"""

import argparse
import dataclasses
import functools
import os

from keras_resnorm import placements
from keras_resnorm._checks import (
    check_choice,
    check_int,
    check_non_negative,
    check_positive,
    check_rate,
)
from keras_resnorm.layers._norm_registry import NORMALIZATIONS
from keras_resnorm.ner.context import MODES
from keras_resnorm.ner.data import SCHEMES, SUBSETS, check_encoding
from keras_resnorm.ner.distribute import PRECISIONS, STRATEGIES
from keras_resnorm.ner.errors import ConfigError
from keras_resnorm.ner.tags import SCHEMES as TAG_SCHEMES
from keras_resnorm.ner.training_callbacks import DECAY_HORIZONS

__all__ = [
    "ModelConfig",
    "NON_NEGATIVE",
    "OPTIONAL_POSITIVE_INT",
    "POSITIVE",
    "POSITIVE_INT",
    "RATE",
    "TrainConfig",
    "add_flags",
    "flag_name",
    "setting",
]

def _check(rule, **kwargs):
    """A field check: `rule(name, value, ...)` raising `ConfigError`."""
    return functools.partial(rule, error=ConfigError, **kwargs)


POSITIVE_INT = _check(check_positive, integer=True)
OPTIONAL_POSITIVE_INT = _check(check_positive, integer=True, optional=True)
POSITIVE = _check(check_positive)
NON_NEGATIVE = _check(check_non_negative)
RATE = _check(check_rate, type_error=ConfigError)


def setting(default, help=None, *, check=None, choices=None, flag=None,
            flag_choices=None, from_flag=None):
    """A config field: its default, `check(name, value)`, its `choices`
    (checked, and offered by its flag unless `flag_choices` says otherwise),
    the flag's name when it is not the field's (`flag=False`: no flag), and
    `from_flag(value)`, the fields a flag value stands for when that is more
    than the field itself."""
    return dataclasses.field(default=default, metadata={
        "help": help, "check": check, "choices": choices, "flag": flag,
        "flag_choices": flag_choices or choices, "from_flag": from_flag})


def _placement_fields(value):
    # rezero / layerscale stand for a placement and a branch scale.
    chosen = placements.keyword_arguments(value, error=ConfigError)
    return {"placement": chosen["placement"],
            "branch_scale": chosen.get("branch_scale")}


class _Schema:
    """Validation from the fields' metadata, shared by both configs."""

    def validate(self):
        """Raise `ConfigError` naming the first field that cannot work."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            choices = field.metadata.get("choices")
            if field.type is bool:
                choices = (True, False)
            if choices is not None:
                check_choice(field.name, value, choices, error=ConfigError)
            if field.metadata.get("check") is not None:
                field.metadata["check"](field.name, value)
            if isinstance(value, _Schema):
                value.validate()
        self._validate_together()

    def _validate_together(self):
        pass


@dataclasses.dataclass
class ModelConfig(_Schema):
    """Architecture of the tagger; every field has a flag (`--d-model` for
    `d_model`) except `branch_scale`, which `--placement rezero` /
    `layerscale` set.

    `conv_layers` window-CNN blocks, then `recurrent_layers` BiLSTM blocks
    (each inside a `ResidualWrapper`), then `layers` Transformer blocks;
    any may be 0. `hash_buckets`
    > 0 adds the hashed token features of `features.py`, each embedded in
    `hash_dim` dimensions. `crf` puts a linear-chain CRF on the tag scores.
    """

    norm: str = setting("layer", "the norm of every residual block",
                        choices=tuple(NORMALIZATIONS))
    placement: str = setting(
        "pre", flag_choices=placements.cli_choices(),
        from_flag=_placement_fields,
        check=lambda name, value: placements.canonical(value,
                                                       error=ConfigError),
        help="rezero = no norm + ReZero; layerscale = pre-norm + LayerScale; "
             "hyper / mhc = hyper-connections / mHC over --expansion streams")
    branch_scale: object = setting(None, flag=False)
    layers: int = setting(0, "Transformer blocks",
                          check=_check(check_int, minimum=0))
    heads: int = setting(4, "attention heads of the Transformer blocks",
                         check=POSITIVE_INT)
    d_model: int = setting(256, "width of the residual stream",
                           check=POSITIVE_INT)
    intermediate_dim: int = setting(256, "feed-forward width of the "
                                    "Transformer blocks", check=POSITIVE_INT)
    dropout: float = setting(0.3, "dropout on the embeddings and branches",
                             check=RATE)
    attention_dropout: float = setting(
        None, "default: the --dropout value", check=RATE)
    word_dim: int = setting(100, "word embedding size", check=POSITIVE_INT)
    char_dim: int = setting(32, "character embedding size",
                            check=POSITIVE_INT)
    char_filters: int = setting(64, "filters of the character CNN",
                                check=POSITIVE_INT)
    max_chars: int = setting(16, "characters per word the character CNN "
                             "sees", check=POSITIVE_INT)
    max_length: int = setting(128, "tokens per window; longer sentences are "
                              "cut into windows, none dropped",
                              check=POSITIVE_INT)
    conv_layers: int = setting(
        4, "window-CNN blocks (each in a ResidualWrapper) before the BiLSTM "
           "blocks", check=_check(check_int, minimum=0))
    conv_window: int = setting(1, "neighbours on each side that a window-CNN "
                               "block sees", check=POSITIVE_INT)
    recurrent_layers: int = setting(
        0, "BiLSTM blocks (each in a ResidualWrapper) before the Transformer "
           "blocks", check=_check(check_int, minimum=0))
    hash_buckets: int = setting(
        5000, "rows per hashed token feature (normalized form, prefix, "
              "suffix, shape); 0: off", check=_check(check_int, minimum=0))
    hash_dim: int = setting(32, "embedding size of each hashed feature")
    crf: bool = setting(True, "linear-chain CRF output (Viterbi decoding)")
    model_tags: str = setting(
        "iobes", "the tags the model learns: iobes also marks single-token "
                 "(S-) and last (E-) mention tokens (tags.py); the tagger "
                 "outputs IOB2 either way", choices=TAG_SCHEMES)
    document_context: str = setting(
        "none", "read each sentence with tokens of its document: the "
                "neighbouring sentences, or the other mentions of its "
                "name-like words (context.py)", choices=MODES)
    context_tokens: int = setting(64, "most document-context tokens per "
                                  "sentence", check=POSITIVE_INT)
    expansion: int = setting(4, "residual streams of --placement hyper/mhc",
                             check=POSITIVE_INT)

    def __post_init__(self):
        if self.attention_dropout is None:
            self.attention_dropout = self.dropout

    def _validate_together(self):
        if self.hash_buckets and (isinstance(self.hash_dim, bool)
                                  or not isinstance(self.hash_dim, int)
                                  or self.hash_dim < 1):
            raise ConfigError(
                "hash_dim must be a positive int when hash_buckets > 0. "
                f"Received: hash_dim={self.hash_dim!r}")
        if self.document_context != "none" and not self.hash_buckets:
            raise ConfigError(
                "document_context needs hashed features (it matches words "
                "by their hashed normalized form). Received: "
                f"document_context={self.document_context!r}, "
                f"hash_buckets={self.hash_buckets}")
        if self.layers and self.d_model % self.heads:
            raise ConfigError(
                "d_model must be divisible by heads when layers > 0. "
                f"Received: d_model={self.d_model}, heads={self.heads}")


@dataclasses.dataclass
class TrainConfig(_Schema):
    """Everything a training run needs; every field has a flag of the same
    name (`--run-dir` for `run_dir`; `--xla` for `jit_compile`), and so
    has every field of `model`."""

    run_dir: str = setting(os.path.join("runs", "ner"), "where the run "
                           "writes everything; the same command resumes it")
    data_dir: str = setting(
        None, "CoNLL-style corpus directory (else $KERAS_RESNORM_CONLL_DIR, "
              "../shared/data/conll2003, --download, or the built-in corpus)")
    download: bool = setting(False, "let TFDS download conll2003 when no "
                             "corpus directory is found")
    scheme: str = setting("iob2", "tag scheme of the files; iob1 is "
                          "converted", choices=SCHEMES)
    encoding: str = setting(
        "utf-8", "text encoding of the corpus files (several public NER "
                 "corpora are latin-1)",
        check=lambda name, value: check_encoding(value, error=ConfigError))
    cache_dir: str = setting(None, "TFDS cache directory")
    epochs: int = setting(30, "most epochs to train", check=POSITIVE_INT)
    batch_size: int = setting(32, "sentences (windows) per batch",
                              check=POSITIVE_INT)
    learning_rate: float = setting(1e-3, "peak AdamW learning rate (cosine "
                                   "decay after the warm-up, see "
                                   "--decay-over)", check=POSITIVE)
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay",
                                  check=NON_NEGATIVE)
    warmup_epochs: float = setting(1.0, "linear learning-rate warm-up length",
                                   check=NON_NEGATIVE)
    decay_over: str = setting(
        "budget", "what the cosine decay spans: --epochs, or --max-minutes "
                  "when that ends the run first (budget; the rate then "
                  "depends on the machine's speed)", choices=DECAY_HORIZONS)
    min_count: int = setting(2, "training words seen fewer times get the "
                             "out-of-vocabulary id",
                             check=_check(check_int, minimum=1))
    word_dropout: float = setting(
        0.1, "probability of hiding a training word's identity (the "
             "out-of-vocabulary id and the hashed normalized form's row)",
        check=RATE)
    mention_replacement: float = setting(
        0.0, "probability of replacing each training mention by another "
             "of the same type and length (a new one every epoch)",
        check=RATE)
    case_augmentation: float = setting(
        0.0, "probability of showing a training sentence all in lower case "
             "or all in capitals (half each), so that casing is a hint, not "
             "the whole evidence (text in capitals, lower-case tweets)",
        check=RATE)
    ema_momentum: float = setting(
        0.99, "momentum of the moving average of the weights that are "
              "evaluated, kept and exported (bias-corrected; 0: the "
              "training weights)",
        check=RATE)
    patience: int = setting(6, "stop after this many dev evaluations "
                            "without a F1 gain",
                            check=_check(check_int, minimum=0))
    eval_interval: float = setting(
        1.0, "evaluate dev at the first epoch end after training has seen "
             "N times the dev set's tokens since the previous evaluation, "
             "and when training ends (0: after every epoch); where dev "
             "outweighs an epoch (small corpora) this leaves more of a "
             "budget to training",
        check=NON_NEGATIVE)
    eval_steps: int = setting(
        0, "evaluate dev at the first epoch end at least N batches after "
           "the previous evaluation, and when training ends (0: see "
           "--eval-interval; N > 0 replaces it)",
        check=_check(check_int, minimum=0))
    max_minutes: float = setting(None, "wall-clock training budget",
                                 check=_check(check_positive, optional=True))
    max_train_sentences: int = setting(None, "train on N training "
                                       "sentences only (which ones: "
                                       "--train-subset)",
                                       check=OPTIONAL_POSITIVE_INT)
    train_subset: str = setting(
        "spread", "the sentences --max-train-sentences keeps: spread evenly "
                  "over the training file (every part of a file sorted by "
                  "source or topic), or the first N", choices=SUBSETS)
    seed: int = setting(0, "seed of the weights, the shuffle and dropout",
                        check=_check(check_int, minimum=0, below=2 ** 32))
    jit_compile: bool = setting(
        True, "XLA-compile the training step (jit_compile=True): each "
              "bucket length compiles once, about half a minute in all on "
              "a 2-core CPU, where the tagger then trained twice as fast; "
              "--no-xla trains without", flag="--xla")
    overwrite: bool = setting(False, "replace a finished run in --run-dir")
    # How to run: a resumed run takes these from the new call, not from the
    # saved configuration (see RUNTIME).
    strategy: str = setting(
        "default", "default: one device; mirrored: all local GPUs (or "
                   "--cpu-devices); multiworker: the cluster in TF_CONFIG, "
                   "one process per machine", choices=STRATEGIES)
    cpu_devices: int = setting(None, "split the CPU into this many logical "
                               "devices (to try --strategy mirrored without "
                               "GPUs)", check=OPTIONAL_POSITIVE_INT)
    cluster_timeout: float = setting(60.0, "seconds to wait for the "
                                     "TF_CONFIG workers", check=POSITIVE)
    # What to train, saved with the run like the fields above.
    precision: str = setting(
        "float32", "Keras dtype policy; norms keep float32 statistics, the "
                   "tag logits stay float32", choices=PRECISIONS)
    deterministic: bool = setting(False, "deterministic ops, so a resumed run "
                                  "ends with the weights of an uninterrupted "
                                  "one")
    backup_steps: int = setting(None, "also back up every N batches "
                                "(default: at epoch ends only)",
                                check=OPTIONAL_POSITIVE_INT)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)

    def _validate_together(self):
        if self.mention_replacement and self.model.document_context != "none":
            raise ConfigError(
                "mention_replacement cannot be combined with "
                "document_context yet (the context would still name the "
                "replaced mention). Received: mention_replacement="
                f"{self.mention_replacement}, document_context="
                f"{self.model.document_context!r}")

    RUNTIME = ("strategy", "cpu_devices", "cluster_timeout", "overwrite",
               "max_minutes", "cache_dir")

    @classmethod
    def from_dict(cls, values):
        """The config `dataclasses.asdict` gave (a run's `config.json`)."""
        values = dict(values)
        values["model"] = ModelConfig(**values.get("model", {}))
        return cls(**values)

    @classmethod
    def from_flags(cls, args, defaults=None):
        """The config of parsed flags (`add_flags`'s); fields without a flag
        in `args` keep `defaults`' values (default: the dataclass's)."""
        defaults = defaults or cls()
        given = vars(args)

        def values(config):
            out = {}
            for field in _flag_fields(config):
                if field.name not in given:
                    continue
                value = given[field.name]
                convert = field.metadata.get("from_flag")
                out.update(convert(value) if convert else {field.name: value})
            return out

        # attention_dropout=None (no flag given) follows dropout again.
        model = dataclasses.replace(defaults.model, **values(defaults.model))
        return dataclasses.replace(defaults, model=model, **values(defaults))

    @classmethod
    def from_argv(cls, argv, defaults=None):
        """The config that the flags in `argv` (`["--epochs", "3"]`) give;
        a bad flag exits with argparse's usage message."""
        parser = argparse.ArgumentParser(prog="TrainConfig")
        add_flags(parser, defaults)
        return cls.from_flags(parser.parse_args(argv), defaults)


def _flag_fields(config):
    return [f for f in dataclasses.fields(config)
            if f.metadata.get("flag") is not False and f.name != "model"]


def flag_name(field):
    """`--d-model` for `d_model`, unless the field names its own flag."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def add_flags(parser, defaults=None, names=None):
    """Add a flag for every field of `TrainConfig` and its `ModelConfig`
    (only `names`, when given), defaulting to `defaults`' values."""
    defaults = defaults or TrainConfig()
    for config in (defaults, defaults.model):
        for field in _flag_fields(config):
            if names is not None and field.name not in names:
                continue
            default = getattr(config, field.name)
            if field.name == "attention_dropout":
                default = None  # follows --dropout unless given
            help_text = field.metadata.get("help")
            kwargs = {"default": default, "dest": field.name,
                      "help": (f"{help_text} " if help_text else "")
                      + ("" if default is None else "(default: %(default)s)")}
            if field.type is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = field.type
                kwargs["choices"] = field.metadata.get("flag_choices")
            parser.add_argument(flag_name(field), **kwargs)
    return parser
