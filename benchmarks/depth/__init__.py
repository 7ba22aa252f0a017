"""Depth study: what each residual placement does as the encoder gets deep.

    python -m benchmarks.depth --data-dir ../shared/data/conll2003
    python -m benchmarks.depth --from-json benchmarks/results/depth.json
    python -m benchmarks.depth --from-json A.json B.json --name depth

Trains the same small Transformer tagger (word embeddings, `depth`
encoder blocks, a tag layer) on a CoNLL-2003 subset for a fixed number of
steps, for every placement, depth, warm-up setting and seed, and records per
run: the gradient norm of each block's parameters at initialization and at
the last step (as Xiong et al. 2020 plot them), the training loss curve,
whether it diverged (a non-finite loss, or a loss above 3x the first one),
dev entity F1 (seqeval) after the fixed steps, the median step time, the
parameter count and the residual-stream size (HC and mHC carry `n` copies;
computed from the shapes, not measured). Deepest depth first, one
(placement, depth) at a time, in one process; nothing else should run.

Writes `benchmarks/results/depth.{json,md}` (rewritten after every run, so
a crash loses one run, and `--resume` runs only the missing ones), PNG
plots (matplotlib, the `bench` extra) and TensorBoard logs (`--logdir`).
`--from-json FILE...` redoes the tables, claims and plots from a study's
JSON without training, or merges several.
"""

from benchmarks.depth.cli import main, parse_args
from benchmarks.depth.report import claims, summarize
from benchmarks.depth.study import (
    LOSS_EVERY,
    PLACEMENTS,
    Cell,
    build,
    final_loss,
    load,
    run,
)

# The modules, one concern each: study (data, model, a run), report
# (statistics and claims), plots, results (files, resume, merge), cli.
__all__ = ["Cell", "LOSS_EVERY", "PLACEMENTS", "build", "claims",
           "final_loss", "load", "main", "parse_args", "run", "summarize"]
