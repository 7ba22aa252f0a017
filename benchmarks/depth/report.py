"""The depth study's statistics and claims: per-cell summaries (mean and
seed range), and each literature claim with a verdict that one seed never
decides."""

import math

import numpy as np

from benchmarks.depth.study import final_loss


def summarize(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["placement"], r["depth"], r["warmup"]),
                          []).append(r)
    rows = []
    for (placement, depth, warmup), items in sorted(groups.items()):
        f1 = [r["dev_entity_f1"] for r in items]
        rows.append({
            "placement": placement, "depth": depth, "warmup": warmup,
            "seeds": len(items),
            "dev F1 mean": float(np.mean(f1)),
            "dev F1 range": f"{min(f1):.2f}-{max(f1):.2f}",
            "final loss": _fmt(_stat(items, final_loss), 3),
            "diverged": sum(r["diverged"] for r in items),
            "step ms": float(np.median([r["step_ms"] for r in items])),
            "trace s": float(np.median([r["trace_s"] for r in items])),
            "parameters": items[0]["parameters"],
            "stream KiB": items[0]["stream_bytes_per_block"] / 1024,
            "grad at init, last/first quarter": _quarter_ratio(items),
        })
    return rows


def _cell(runs, placement, depth, warmup):
    return [r for r in runs if r["placement"] == placement
            and r["depth"] == depth and r["warmup"] == warmup]


def _stat(items, value):
    values = [value(r) for r in items]
    return (float(np.mean(values)), min(values), max(values), len(values)) \
        if values else None


def _compare(a, b, higher_is_better=True, margin=0.0):
    """'better' / 'worse' when the seed ranges of a and b do not overlap
    and lie more than `margin` apart; a single seed never decides."""
    if a is None or b is None:
        return "missing"
    if a[3] < 2 or b[3] < 2:
        return "overlap"
    if a[1] - b[2] > margin:
        return "better" if higher_is_better else "worse"
    if b[1] - a[2] > margin:
        return "worse" if higher_is_better else "better"
    return "overlap"


# Dev F1 ranges must lie this far apart to decide: a point or two of F1 is
# seed noise at this scale, and 1.2 against 0.0 says nothing.
F1_MARGIN = 2.0


VERDICTS = {"better": "confirmed", "worse": "contradicted",
            "overlap": "cannot tell", "missing": "cannot tell (missing)"}

# (source, claim, a, a's warm-up, b, b's warm-up): "a trains better than b".
PAIR_CLAIMS = [
    ("Xiong et al. 2020", "without warm-up, Pre-LN trains better than "
     "Post-LN", "pre", "off", "post", "off"),
    ("Xiong et al. 2020", "Post-LN needs warm-up (trains better with it)",
     "post", "on", "post", "off"),
    ("Wang et al. 2022 (DeepNet)", "DeepNorm trains deep post-norm stacks "
     "better than Post-LN", "deepnorm", "off", "post", "off"),
    ("Bachlechner et al. 2020 (ReZero)", "ReZero trains deep stacks better "
     "than Pre-LN", "rezero", "off", "pre", "off"),
    ("Touvron et al. 2021 (CaiT)", "LayerScale helps deep stacks over "
     "plain Pre-LN", "layerscale", "on", "pre", "on"),
    ("Kim et al. 2025 (Peri-LN)", "Peri-LN (sandwich) trains deep stacks "
     "better than Pre-LN", "sandwich", "on", "pre", "on"),
    ("Zhu et al. 2024 (Hyper-Connections)", "hyper-connections beat Pre-LN "
     "residuals", "hyper", "on", "pre", "on"),
    ("Xie et al. 2025 (mHC)", "mHC trains better than HC", "mhc", "on",
     "hyper", "on"),
    ("the article", "residual connections keep deep stacks trainable",
     "pre", "on", "noresidual", "on"),
]


# (source, claim, placement, its label): "the placement's gradient at
# initialization leans toward the last blocks more than Pre-LN's does".
GRADIENT_CLAIMS = [
    ("Xiong et al. 2020", "at initialization Post-LN's gradient grows toward "
     "the last block, Pre-LN's does not", "post", "post"),
    ("the article", "without residual connections the gradient vanishes "
     "toward the first block", "noresidual", "no residual"),
]


def _fmt(stat, digits=2):
    if stat is None:
        return "missing"
    mean, low, high, _ = stat
    if not math.isfinite(mean):
        return "diverged" if low == high else (
            f"diverged in some seeds ({low:.{digits}f}-{high:.{digits}f})")
    return f"{mean:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _quarter_ratio(items):
    """Median over runs of the gradient norm at initialization of the last
    quarter of blocks over the first quarter's (medians within each),
    leaving out block 0: it takes the raw embeddings (std about 0.03), and
    in post-norm and no-residual stacks its gradient is 10-100x every other
    block's, which would decide any ratio it is part of. None without a
    block besides block 0."""
    def ratio(profile):
        profile = profile[1:]
        q = max(1, len(profile) // 4)
        return float(np.median(profile[-q:])
                     / max(np.median(profile[:q]), 1e-30))

    values = [ratio(r["grad_norm_init"]) for r in items
              if r["grad_norm_init"] and len(r["grad_norm_init"]) > 1]
    return float(np.median(values)) if values else None


def _grad_ratio(runs, placement, depth):
    """`_quarter_ratio` of a placement at a depth; warm-up cannot change the
    first step's gradient, so runs with and without it count."""
    return _quarter_ratio([r for r in runs if r["placement"] == placement
                           and r["depth"] == depth])


def claims(runs):
    """Each claim at each depth: what was measured (dev entity F1 and the
    final training loss, mean and seed range) and a verdict for each:
    confirmed / contradicted when the seed ranges do not overlap, 'cannot
    tell' otherwise (one seed never decides). Gradient claims (`kind`
    "gradient") compare the median last/first block gradient ratio at
    initialization: a factor of 2 decides."""
    out = []
    seeds = len({r["seed"] for r in runs})
    for depth in sorted({r["depth"] for r in runs}):
        for source, text, a, wa, b, wb in PAIR_CLAIMS:
            ca, cb = _cell(runs, a, depth, wa), _cell(runs, b, depth, wb)
            fa, fb = (_stat(c, lambda r: r["dev_entity_f1"])
                      for c in (ca, cb))
            la, lb = (_stat(c, final_loss) for c in (ca, cb))
            out.append({
                "source": source, "claim": text, "depth": depth,
                "kind": "training",
                "compared": f"{a} (warm-up {wa}) vs {b} (warm-up {wb})",
                "dev F1": f"{_fmt(fa)} vs {_fmt(fb)}",
                "by F1": VERDICTS[_compare(fa, fb, margin=F1_MARGIN)],
                "final loss": f"{_fmt(la, 3)} vs {_fmt(lb, 3)}",
                "by loss": VERDICTS[_compare(la, lb, higher_is_better=False)],
                "seeds": seeds})
        pre = _grad_ratio(runs, "pre", depth)
        for source, text, placement, label in GRADIENT_CLAIMS:
            ratio = _grad_ratio(runs, placement, depth)
            if ratio is None or pre is None:
                continue
            out.append({
                "source": source, "depth": depth, "claim": text,
                "kind": "gradient",
                "measured": f"gradient norm at init, last quarter of blocks "
                            f"over first (block 0 left out): {label} "
                            f"{ratio:.3g}, pre {pre:.3g}",
                "verdict": "confirmed" if ratio > 2 * pre else
                           "contradicted" if ratio < pre else "cannot tell",
                "seeds": seeds})
    return out
