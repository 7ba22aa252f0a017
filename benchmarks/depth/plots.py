"""The depth study's PNG plots (matplotlib, the `bench` extra)."""

import math

import numpy as np

from benchmarks.depth.study import LOSS_EVERY, PLACEMENTS, final_loss


def plot(runs, out_base):
    """PNG plots; returns their paths (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): "
              "no plots")
        return []
    paths = []
    depths = sorted({r["depth"] for r in runs})
    placements = [p for p in PLACEMENTS if any(r["placement"] == p
                                               for r in runs)]
    for key, title in (("grad_norm_init", "at initialization"),
                       ("grad_norm_last", "at the last step")):
        fig, axes = plt.subplots(1, len(depths), figsize=(4 * len(depths), 3.5),
                                 squeeze=False)
        for ax, depth in zip(axes[0], depths):
            for p in placements:
                chosen = [r for r in runs if r["placement"] == p and
                          r["depth"] == depth and r["warmup"] == "on"
                          and r[key]]
                if chosen:
                    ax.plot(np.median([r[key] for r in chosen], axis=0),
                            label=p)
            ax.set_yscale("log")
            ax.set_title(f"depth {depth}")
            ax.set_xlabel("block")
        axes[0][0].set_ylabel(f"gradient norm {title}")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        path = f"{out_base}-{key.replace('_', '-')}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), squeeze=False)
    for column, warmup in enumerate(("on", "off")):
        for row, (value, title) in enumerate((
                (lambda r: r["dev_entity_f1"], "dev entity F1"),
                (final_loss, "final training loss"))):
            ax = axes[row][column]
            for p in placements:
                means = []
                for d in depths:
                    cell = [value(r) for r in runs if r["placement"] == p
                            and r["depth"] == d and r["warmup"] == warmup]
                    finite = [v for v in cell if math.isfinite(v)]
                    means.append(np.mean(finite) if finite else np.nan)
                ax.plot(depths, means, marker="o", label=p)
            ax.set_xscale("log", base=2)
            ax.set_xticks(depths, [str(d) for d in depths])
            ax.set_title(f"{title}, warm-up {warmup}")
            ax.set_xlabel("depth (blocks)")
    axes[0][1].legend(fontsize=7)
    fig.tight_layout()
    path = f"{out_base}-f1.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)
    deepest = depths[-1]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for p in placements:
        chosen = [r for r in runs if r["placement"] == p and
                  r["depth"] == deepest and r["warmup"] == "off"
                  and r["seed"] == min(x["seed"] for x in runs)]
        for r in chosen:
            ax.plot(np.arange(len(r["loss"])) * LOSS_EVERY, r["loss"],
                    label=p)
    ax.set_yscale("log")
    ax.set_title(f"training loss, depth {deepest}, no warm-up, first seed")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = f"{out_base}-loss.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)
    return paths
