#!/usr/bin/env python3
"""Plots spush-train runs: accuracy vs epoch, accuracy vs MB sent per node, per-node accuracy
spread, parameter divergence and, for runs with --skewscout, its decisions.
Usage: plot_run.py DIR [DIR ...] [-o PREFIX]
Writes PREFIX_accuracy.png, PREFIX_accuracy_vs_mb.png, PREFIX_spread.png, PREFIX_divergence.png
and, when a run has SkewScout decisions, PREFIX_skewscout.png (the accuracy loss measured each
epoch against its target, and the knob's value chosen for the next epoch)."""
import argparse
import json
import os
import sys

try:
    import matplotlib
except ImportError:
    # python3-matplotlib installs into the system interpreter; use it when this one lacks it.
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    sys.exit("plot_run.py: matplotlib is missing (apt-get install python3-matplotlib)")

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    rows = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"plot_run.py: {path} line {n}: not JSON ({e})")
    except OSError as e:
        sys.exit(f"plot_run.py: cannot read {path}: {e.strerror}")
    if not rows:
        sys.exit(f"plot_run.py: {path} has no epochs yet")
    label = os.path.basename(os.path.normpath(run_dir))
    cfg_path = os.path.join(run_dir, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            c = json.load(f)
        label += f" ({c.get('algorithm')}, d={c.get('density')}, s={c.get('skew')})"
    return label, rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories (spush-train --out)")
    p.add_argument("-o", "--out", default="spush", help="output file prefix")
    a = p.parse_args()
    runs = [load(r) for r in a.runs]

    def figure(name, xlabel, ylabel, draw):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, rows in runs:
            draw(ax, label, rows)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = f"{a.out}_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        print(path)

    ep = lambda rows: [r["epoch"] for r in rows]  # noqa: E731
    pct = lambda rows, k: [100 * r[k] for r in rows]  # noqa: E731
    figure("accuracy", "epoch", "test accuracy (%)",
           lambda ax, l, r: (ax.plot(ep(r), pct(r, "test_acc_mean"), marker="o", label=l + " mean node"),
                             ax.plot(ep(r), pct(r, "test_acc_avg_model"), ls="--", label=l + " averaged")))
    figure("accuracy_vs_mb", "MB sent per node", "mean node test accuracy (%)",
           lambda ax, l, r: ax.plot([x["mb_per_node"] for x in r], pct(r, "test_acc_mean"), marker="o", label=l))

    def spread(ax, l, r):
        line, = ax.plot(ep(r), pct(r, "test_acc_mean"), label=l)
        ax.fill_between(ep(r), pct(r, "test_acc_min"), pct(r, "test_acc_max"), alpha=0.25,
                        color=line.get_color())
    figure("spread", "epoch", "node test accuracy, min..max (%)", spread)
    figure("divergence", "epoch", "parameter divergence (1/n) sum ||z_i - z_bar||",
           lambda ax, l, r: ax.plot(ep(r), [x["divergence"] for x in r], marker="o", label=l))
    skewscout(runs, a.out)


def skewscout(runs, prefix):
    """Accuracy loss vs target (top) and the knob per epoch (bottom, log scale)."""
    scouted = [(l, [x for x in r if "skewscout" in x]) for l, r in runs]
    scouted = [(l, r) for l, r in scouted if r]
    if not scouted:
        return
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True)
    for label, rows in scouted:
        measured = [x for x in rows if "accuracy_loss" in x["skewscout"]]
        line, = top.plot([x["epoch"] for x in measured],
                         [100 * x["skewscout"]["accuracy_loss"] for x in measured], marker="o",
                         label=label)
        top.axhline(100 * rows[0]["skewscout"]["target"], ls=":", color=line.get_color())
        knob = rows[0]["skewscout"]["knob"]
        bottom.step([0] + [x["epoch"] for x in rows],
                    [rows[0]["skewscout"]["value_before"]] + [x["skewscout"]["value_after"] for x in rows],
                    where="post", marker="o", color=line.get_color(), label=f"{label}: {knob}")
    top.set_ylabel("accuracy loss across partitions (%)\n(dotted: target)")
    bottom.set_ylabel("knob for the next epoch")
    bottom.set_yscale("log")
    bottom.set_xlabel("epoch")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = f"{prefix}_skewscout.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(path)


if __name__ == "__main__":
    main()
