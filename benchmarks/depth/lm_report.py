"""The language-model study's statistics, claims and plots.

Every verdict compares numbers against the study's noise floor: the
largest spread (max - min) of held-out bits per byte over seeds in any
cell that ran more than one seed. A difference smaller than that is
"within noise"; a claim that needs a difference the study cannot show
is "not visible at this scale"; a claim whose cells have not run yet is
"not measured yet"."""

import math

import numpy as np

from benchmarks.depth.lm import CONFIGS
from benchmarks.depth.study import FINAL_STEPS, LOSS_EVERY

HOLDS, FAILS, INVISIBLE, MISSING = ("holds here", "does not hold here",
                                    "not visible at this scale",
                                    "not measured yet")


def cells(runs):
    """`{(config, depth, lr, warmup): [runs over seeds]}`."""
    out = {}
    for r in runs:
        out.setdefault((r["config"], r["depth"], r["lr"], r["warmup"]),
                       []).append(r)
    return out


def _bits(items):
    values = [r["held_out_bits"] if not r["diverged"] else math.inf
              for r in items]
    return values


def noise_floor(runs):
    spreads = [max(v) - min(v) for v in
               (_bits(items) for items in cells(runs).values())
               if len(v) > 1 and all(math.isfinite(x) for x in v)]
    return max(spreads) if spreads else None


def smoothed(run):
    """The training loss (bits), recorded as means of LOSS_EVERY steps,
    smoothed over FINAL_STEPS steps."""
    loss = np.asarray(run["loss"], float)
    width = max(1, FINAL_STEPS // LOSS_EVERY)
    return np.convolve(loss, np.ones(width) / width, mode="valid")


def steps_to(run, target):
    """The first step at which the smoothed loss is at most `target`."""
    if run["diverged"]:
        return None
    curve = smoothed(run)
    hit = np.nonzero(curve <= target)[0]
    width = max(1, FINAL_STEPS // LOSS_EVERY)
    return int((hit[0] + width) * LOSS_EVERY) if len(hit) else None


def last_tenth_gain(run):
    """How much the training loss fell from the run's second-to-last tenth
    to its last (the means over each, in bits): the calibration's measure
    of a flattened curve. At least 10 recorded points are needed."""
    loss = np.asarray(run["loss"], float)
    if run["diverged"] or len(loss) < 10:
        return None
    tenth = len(loss) // 10
    return float(loss[-2 * tenth:-tenth].mean() - loss[-tenth:].mean())


def summarize(runs, base_lr):
    """One row per cell, the grid (base learning rate, warm-up on) first."""
    rows = []
    pre = {(r["depth"], r["lr"], r["warmup"], r["seed"]): r for r in runs
           if r["config"] == "pre"}
    for (config, depth, lr, warmup), items in sorted(
            cells(runs).items(),
            key=lambda kv: (kv[0][2] != base_lr or kv[0][3] != "on",
                            kv[0][1], list(CONFIGS).index(kv[0][0]),
                            kv[0][2], kv[0][3])):
        bits = _bits(items)
        finite = [b for b in bits if math.isfinite(b)]
        reach = []
        for r in items:
            ref = pre.get((depth, lr, warmup, r["seed"]))
            if ref is not None and not ref["diverged"]:
                reach.append(steps_to(r, ref["final_loss"]))
        ends = sorted({r["end"] for r in items})
        rows.append({
            "config": config, "depth": depth, "lr": lr, "warmup": warmup,
            "seeds": len(items),
            "held-out bits/byte": (float(np.mean(finite)) if finite
                                   else math.inf),
            "range": (f"{min(finite):.3f}-{max(finite):.3f}"
                      if len(finite) > 1 else ""),
            "end": "/".join(f"{e} {sum(r['end'] == e for r in items)}"
                            if len(items) > 1 else e for e in ends),
            "steps to Pre-LN's final loss": (
                "" if not reach else
                "/".join("never" if s is None else str(s) for s in reach)),
            "last-tenth gain": _mean([last_tenth_gain(r) for r in items]),
            "step ms": float(np.median([r["step_ms"] for r in items])),
            "tokens/s": float(np.median([r["tokens_per_s"]
                                         for r in items])),
            "trace s": float(np.median([r["trace_s"] for r in items])),
            "parameters": items[0]["parameters"],
        })
    return rows


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else ""


# ------------------------------------------------------------------ claims
def _cell(runs, config, depth, lr, warmup="on"):
    return [r for r in runs if r["config"] == config and r["depth"] == depth
            and r["lr"] == lr and r["warmup"] == warmup]


def _score(items):
    """Mean held-out bits over seeds; inf when any seed diverged."""
    if not items:
        return None
    bits = _bits(items)
    return float(np.mean(bits)) if all(map(math.isfinite, bits)) \
        else math.inf


def _trains(items, unigram):
    """Every seed converged (finite, below the byte-frequency model)."""
    return bool(items) and all(r["end"] == "converged" for r in items)


def _fmt(value):
    if value is None:
        return "-"
    if value == math.inf:
        return "diverged"
    return f"{value:.3f}"


def claims(runs, settings, unigram):
    """Each literature claim, the paper's setup, our measurement, the noise
    floor and a verdict."""
    noise = noise_floor(runs)
    floor = noise if noise is not None else 0.05
    base, depths = settings["learning_rate"], sorted(settings["depths"])
    sweep_depth, rates = settings["sweep_depth"], sorted(settings["sweep_lrs"])
    deep = [d for d in depths if _cell(runs, "pre", d, base)]
    deepest = max(deep) if deep else None
    shallow = min(depths)
    table = []

    def add(source, claim, setup, ours, verdict):
        table.append({"source": source, "claim": claim, "paper's setup":
                      setup, "ours": ours, "noise floor": (
                          f"{noise:.3f}" if noise is not None else
                          "unknown (one seed; 0.05 assumed)"),
                      "verdict": verdict})

    # 1. Xiong et al. 2020: warm-up.
    parts, needs, spared, seen = [], [], [], False
    for lr in rates:
        post_on = _score(_cell(runs, "post", sweep_depth, lr, "on"))
        post_off = _score(_cell(runs, "post", sweep_depth, lr, "off"))
        pre_on = _score(_cell(runs, "pre", sweep_depth, lr, "on"))
        pre_off = _score(_cell(runs, "pre", sweep_depth, lr, "off"))
        if None in (post_on, post_off, pre_on, pre_off):
            continue
        seen = True
        parts.append(f"lr {lr:g}: post {_fmt(post_on)}/{_fmt(post_off)}, "
                     f"pre {_fmt(pre_on)}/{_fmt(pre_off)}")
        needs.append(post_off - post_on > floor)
        spared.append(not pre_off - pre_on > floor)
    verdict = MISSING
    if seen:
        if any(n and s for n, s in zip(needs, spared)):
            verdict = HOLDS
        elif not any(needs):
            verdict = (FAILS if all(spared) else INVISIBLE)
        else:
            verdict = INVISIBLE
    add("Xiong et al. 2020", "Post-LN needs learning-rate warm-up; Pre-LN "
        "trains as well without it",
        "BERT/Transformer, 6-12 layers, Adam, warm-up on and off (Fig. 2-3)",
        f"depth {sweep_depth}, held-out bits with/without warm-up: "
        + "; ".join(parts) if parts else "-", verdict)

    # 2. Xiong et al. 2020: Pre-LN converges faster.
    parts, faster, slower = [], 0, 0
    for d in deep:
        pre, post = _cell(runs, "pre", d, base), _cell(runs, "post", d, base)
        if not pre or not post or pre[0]["diverged"]:
            continue
        if post[0]["diverged"]:
            parts.append(f"depth {d}: post diverged")
            faster += 1
            continue
        target = max(pre[0]["final_loss"], post[0]["final_loss"])
        a, b = steps_to(pre[0], target), steps_to(post[0], target)
        parts.append(f"depth {d}: pre {a}, post {b} steps")
        if a is not None and b is not None:
            faster += a < 0.8 * b
            slower += b < 0.8 * a
    add("Xiong et al. 2020", "Pre-LN converges faster than Post-LN",
        "Transformer on IWSLT/WMT, BERT pre-training (Fig. 3-4)",
        ("steps to the worse of the two final training losses (warm-up "
         "on): " + "; ".join(parts)) if parts else "-",
        MISSING if not parts else HOLDS if faster and not slower
        else FAILS if slower and not faster else INVISIBLE)

    # 3-4. Liu et al. 2020 (Admin): Post-LN fails as depth grows; better
    # when it trains.
    parts, fails_deep, trains_shallow = [], False, False
    better, worse = 0, 0
    for d in deep:
        pre, post = _cell(runs, "pre", d, base), _cell(runs, "post", d, base)
        if not post:
            continue
        ps, qs = _score(pre), _score(post)
        parts.append(f"depth {d}: post {_fmt(qs)} ({post[0]['end']}), "
                     f"pre {_fmt(ps)} ({pre[0]['end']})")
        if _trains(pre, unigram) and not _trains(post, unigram):
            fails_deep = fails_deep or d > shallow
        if _trains(post, unigram):
            trains_shallow = True
            better += ps - qs > floor
            worse += qs - ps > floor
    add("Liu et al. 2020 (Admin)", "Post-LN diverges or stalls as depth "
        "grows where Pre-LN trains",
        "Transformer on WMT'14 En-De, 6 to 18 encoder/decoder layers "
        "(Fig. 1, Table 1)", "; ".join(parts) or "-",
        MISSING if not parts else HOLDS if fails_deep else
        FAILS if len(parts) == len(depths) else INVISIBLE)
    add("Liu et al. 2020 (Admin)", "Post-LN ends better than Pre-LN where "
        "it trains", "the same (Table 1: 6-layer and 18-layer BLEU)",
        "; ".join(parts) or "-",
        MISSING if not trains_shallow else HOLDS if better and not worse
        else FAILS if worse and not better else INVISIBLE)

    # 5. Wang et al. 2022 (DeepNet).
    parts, ok, post_fail = [], True, False
    for d in deep:
        dn, post = _cell(runs, "deepnorm", d, base), _cell(runs, "post", d,
                                                          base)
        if not dn:
            continue
        parts.append(f"depth {d}: deepnorm {_fmt(_score(dn))} "
                     f"({dn[0]['end']}), post {_fmt(_score(post))}")
        ok = ok and _trains(dn, unigram)
        post_fail = post_fail or (post and not _trains(post, unigram))
    add("Wang et al. 2022 (DeepNet)", "DeepNorm keeps Post-LN trainable at "
        "depths where plain Post-LN fails",
        "encoder-decoder Transformers up to 1,000 layers on WMT-17/OPUS "
        "(Fig. 1, 6)", "; ".join(parts) or "-",
        MISSING if not parts else
        (HOLDS if ok else FAILS) if post_fail else
        (INVISIBLE if ok else FAILS))

    # 6. Kim et al. 2025 (Peri-LN): a wider range of stable learning rates.
    def stable(config):
        good = []
        for lr in rates:
            s = _score(_cell(runs, config, sweep_depth, lr))
            if s is not None and math.isfinite(s) and s < unigram - 0.1:
                good.append(lr)
        return good

    widths = {c: stable(c) for c in ("sandwich", "pre", "post")}
    have = all(any(_cell(runs, c, sweep_depth, lr) for lr in rates)
               for c in widths)
    add("Kim et al. 2025 (Peri-LN)", "Peri-LN (sandwich) trains over a "
        "wider range of learning rates than Pre-LN and Post-LN",
        "decoder-only LMs 400M-3.2B, learning-rate sweeps (Fig. 1, 5)",
        "; ".join(f"{c}: trains at {len(v)} of {len(rates)} rates "
                  f"({', '.join(f'{x:g}' for x in v) or 'none'})"
                  for c, v in widths.items()) if have else "-",
        MISSING if not have else
        HOLDS if len(widths["sandwich"]) > max(len(widths["pre"]),
                                              len(widths["post"]))
        else INVISIBLE if len(widths["sandwich"]) == len(rates) else FAILS)

    # 7. Kim et al. 2025: hidden-state variance does not grow with depth.
    def growth(config, d):
        items = _cell(runs, config, d, base)
        if not items or not items[0]["rms_last"]:
            return None
        rms = items[0]["rms_last"]
        return rms[-1] / max(rms[0], 1e-12)

    g_sand = growth("sandwich", deepest) if deepest else None
    g_pre = growth("pre", deepest) if deepest else None
    add("Kim et al. 2025 (Peri-LN)", "Hidden-state RMS does not grow with "
        "depth under Peri-LN, where it does under Pre-LN",
        "the same (Fig. 3: hidden-state variance per layer)",
        (f"depth {deepest}, residual-stream RMS after the last layer over "
         f"the first, at the end: sandwich {g_sand:.2f}x, pre "
         f"{g_pre:.2f}x") if None not in (g_sand, g_pre) else "-",
        MISSING if None in (g_sand, g_pre) else
        HOLDS if g_sand < 2 and g_pre > 2 * g_sand else
        FAILS if g_sand >= 2 else INVISIBLE)

    # 8. Sun et al. 2025 / Li et al. 2024: Pre-LN's deep layers matter
    # little.
    def contribution(config, d):
        items = _cell(runs, config, d, base)
        if not items or not items[0]["skip_delta"]:
            return None
        delta = np.asarray(items[0]["skip_delta"])
        q = max(1, d // 4)
        # Block 0 reads the raw embeddings; its removal measures that.
        return float(np.median(delta[1:1 + q])), float(
            np.median(delta[-q:]))

    pre_c = contribution("pre", deepest) if deepest else None
    post_c = contribution("post", deepest) if deepest else None
    ours = "-"
    verdict = MISSING
    if pre_c:
        ours = (f"depth {deepest}, median loss rise (bits) when one layer "
                f"is skipped: pre first quarter {pre_c[0]:.3f}, last "
                f"quarter {pre_c[1]:.3f}")
        if post_c:
            ours += (f"; post {post_c[0]:.3f} / {post_c[1]:.3f}")
        verdict = (HOLDS if pre_c[1] < 0.5 * pre_c[0] else
                   FAILS if pre_c[1] >= pre_c[0] else INVISIBLE)
    add("Sun et al. 2025; Li et al. 2024 (Mix-LN)", "Pre-LN's deep layers "
        "contribute little: skipping one barely changes the loss",
        "Llama-family LMs 130M-70B, layer pruning (Sun Fig. 1; Li Fig. 1)",
        ours, verdict)

    # 9-10. ReZero, LayerScale: faster or deeper training.
    for config, source, setup in (
            ("rezero", "Bachlechner et al. 2020 (ReZero)",
             "12-128-layer Transformers on enwiki8 (Table 2, Fig. 4)"),
            ("layerscale", "Touvron et al. 2021 (LayerScale)",
             "CaiT image Transformers up to 36 layers (Fig. 2, Table 1)")):
        parts, wins, losses_ = [], 0, 0
        for d in deep:
            a, p = _score(_cell(runs, config, d, base)), _score(
                _cell(runs, "pre", d, base))
            if a is None:
                continue
            parts.append(f"depth {d}: {config} {_fmt(a)}, pre {_fmt(p)}")
            wins += p - a > floor
            losses_ += a - p > floor
        add(source, f"A residual scale that starts small ({config}) trains "
            "deep stacks faster or better than Pre-LN", setup,
            "held-out bits: " + "; ".join(parts) if parts else "-",
            MISSING if not parts else HOLDS if wins and not losses_
            else FAILS if losses_ and not wins else INVISIBLE)

    # 11. Zhu et al. 2024 / Xie et al. 2025: HC amplifies, mHC near 1.
    def gain(config):
        items = _cell(runs, config, deepest, base) if deepest else []
        if not items or "composite_gain_forward" not in items[0]:
            return None
        return max(items[0]["composite_gain_forward"],
                   items[0]["composite_gain_backward"])

    hc, mhc = gain("hyper"), gain("mhc")
    add("Zhu et al. 2024; Xie et al. 2025 (mHC)", "HC's stream mixing can "
        "amplify the signal without bound; mHC keeps its gain near 1",
        "27B MoE LMs, composite mixing gain over layers (mHC Fig. 3, 7)",
        (f"depth {deepest}, largest composite gain at the end: HC "
         f"{hc:.3g}, mHC {mhc:.3g}") if None not in (hc, mhc) else "-",
        MISSING if None in (hc, mhc) else
        HOLDS if hc > 2 and mhc < 1.5 else
        FAILS if mhc >= 1.5 else INVISIBLE)

    # 12. Zhu et al. 2025 (DyT) matches LayerNorm.
    parts, apart = [], 0
    for d in deep:
        a, p = _score(_cell(runs, "pre-dyt", d, base)), _score(
            _cell(runs, "pre", d, base))
        if a is None:
            continue
        parts.append(f"depth {d}: DyT {_fmt(a)}, LN {_fmt(p)}")
        apart += abs(a - p) > floor
    add("Zhu et al. 2025 (DyT)", "Dynamic Tanh matches LayerNorm (at "
        "Pre-LN)", "ViT, LLaMA 7B-70B, DiT (Tables 1-6)",
        "held-out bits: " + "; ".join(parts) if parts else "-",
        MISSING if not parts else FAILS if apart else HOLDS)

    # 13. Wortsman et al. 2023: small models show instabilities when the
    # learning rate is swept.
    parts, unstable = [], []
    for config in CONFIGS:
        items = [(lr, _score(_cell(runs, config, sweep_depth, lr)))
                 for lr in rates]
        items = [(lr, s) for lr, s in items if s is not None]
        if len(items) < 2:
            continue
        # A rate fails when the run diverged or stalled above the rate
        # this config does best at (a low rate that has not got far in the
        # steps given is slow, not unstable).
        best = min(items, key=lambda p: p[1])[0]
        bad = [lr for lr, s in items if lr > best and (
            not math.isfinite(s) or s >= unigram - 0.1)]
        if bad:
            unstable.append(config)
            parts.append(f"{config} fails at {', '.join(f'{x:g}' for x in bad)}")
    swept = bool(rates) and any(
        len(_cell(runs, c, sweep_depth, rates[-1])) for c in CONFIGS)
    add("Wortsman et al. 2023", "Small models show the instabilities of "
        "large ones when the learning rate is swept high",
        "decoder-only LMs 9M-1.2B, lr 1e-4 to 3e-1 (Fig. 1)",
        ("; ".join(parts) or "every swept config trains at every rate")
        if swept else "-",
        MISSING if not swept else HOLDS if unstable else INVISIBLE)
    return table


def peers(runs, base_lr):
    """Ours against keras-hub's TransformerDecoder stack at each depth:
    held-out bits and training tokens per second, measured in the same
    invocation."""
    rows = []
    for ours, hub in (("pre", "hub-pre"), ("post", "hub-post")):
        for d in sorted({r["depth"] for r in runs}):
            a, b = _cell(runs, ours, d, base_lr), _cell(runs, hub, d, base_lr)
            if not a or not b:
                continue
            ta = float(np.median([r["tokens_per_s"] for r in a]))
            tb = float(np.median([r["tokens_per_s"] for r in b]))
            rows.append({
                "depth": d, "ours": ours, "keras-hub": hub,
                "ours bits/byte": _fmt(_score(a)),
                "keras-hub bits/byte": _fmt(_score(b)),
                "ours tokens/s": ta, "keras-hub tokens/s": tb,
                "speed ratio": ta / tb,
                "ours params": a[0]["parameters"],
                "keras-hub params": b[0]["parameters"],
                "same invocation": a[0].get("invocation") ==
                b[0].get("invocation"),
            })
    return rows


# ------------------------------------------------------------------- plots
def plot(runs, settings, out_base):
    """Loss curves, final bits against learning rate, and per-layer
    contribution and RMS; returns the PNG paths (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): "
              "no plots")
        return []
    base = settings["learning_rate"]
    depths = sorted({r["depth"] for r in runs})
    configs = [c for c in CONFIGS if any(r["config"] == c for r in runs)]
    colors = {c: plt.cm.tab20(i / max(1, len(CONFIGS) - 1))
              for i, c in enumerate(CONFIGS)}
    paths = []

    def save(fig, suffix):
        path = f"{out_base}-{suffix}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)

    fig, axes = plt.subplots(1, len(depths), figsize=(4.5 * len(depths), 3.8),
                             squeeze=False)
    for ax, d in zip(axes[0], depths):
        for c in configs:
            items = [r for r in _cell(runs, c, d, base) if r["seed"] ==
                     min(x["seed"] for x in _cell(runs, c, d, base))]
            if items:
                curve = smoothed(items[0])
                ax.plot(LOSS_EVERY * (np.arange(len(curve)) + FINAL_STEPS //
                                      LOSS_EVERY), curve, color=colors[c],
                        label=c, lw=1)
        ax.set_title(f"depth {d}")
        ax.set_xlabel("step")
        ax.set_ylim(1.5, 6)
    axes[0][0].set_ylabel("training bits/byte (smoothed)")
    axes[0][-1].legend(fontsize=6)
    save(fig, "loss")

    rates = sorted(settings["sweep_lrs"])
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for c in configs:
        for warmup, style in (("on", "-"), ("off", "--")):
            points = [(lr, _score(_cell(runs, c, settings["sweep_depth"], lr,
                                        warmup))) for lr in rates]
            points = [(lr, s if math.isfinite(s) else 8.0)
                      for lr, s in points if s is not None]
            if len(points) > 1:
                ax.plot(*zip(*points), style, marker="o", color=colors[c],
                        label=f"{c}{'' if warmup == 'on' else ' (no warm-up)'}",
                        lw=1, ms=3)
                drawn = True
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("held-out bits/byte (8 = diverged)")
    ax.set_title(f"depth {settings['sweep_depth']}")
    if drawn:
        ax.legend(fontsize=6)
    save(fig, "lr")

    for key, label in (("skip_delta", "loss rise when skipped (bits)"),
                       ("rms_last", "residual-stream RMS at the end")):
        fig, axes = plt.subplots(1, len(depths),
                                 figsize=(4.5 * len(depths), 3.8),
                                 squeeze=False)
        for ax, d in zip(axes[0], depths):
            for c in configs:
                items = [r for r in _cell(runs, c, d, base) if r.get(key)]
                if items:
                    ax.plot(items[0][key], color=colors[c], label=c, lw=1)
            ax.set_yscale("symlog" if key == "skip_delta" else "log",
                          **({"linthresh": 1e-3} if key == "skip_delta"
                             else {}))
            ax.set_title(f"depth {d}")
            ax.set_xlabel("layer")
        axes[0][0].set_ylabel(label)
        axes[0][-1].legend(fontsize=6)
        save(fig, "skip" if key == "skip_delta" else "rms")
    return paths
