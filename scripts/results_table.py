#!/usr/bin/env python3
"""Prints Markdown tables of the last epoch of every spush-train run under a directory: one for
the gossip algorithms and one for the centralized algorithms (uplink and downlink in the MV
paper's bit convention, and SkewScout's final knob). With --precision, one table of the gossip
runs by model, algorithm, skew and precision, with the mean time per epoch."""
import json
import os
import sys

args = [a for a in sys.argv[1:] if a != "--precision"]
by_precision = "--precision" in sys.argv[1:]
root = args[0] if args else "runs/results"
gossip, central = [], []
for name in sorted(os.listdir(root)):
    d = os.path.join(root, name)
    if not os.path.isdir(d):
        continue
    try:
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        with open(os.path.join(d, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        m = rows[-1]
    except (OSError, IndexError, ValueError) as e:
        gossip.append(f"| {name} | (incomplete: {e}) |")
        continue
    if "bits_per_param_up_paper" in m:
        # Whole-run bit budgets: dense reference 32 bits per parameter and iteration.
        up = 32 / m["compression_factor_paper"]
        down = 32 / m["compression_factor_down_paper"]
        part = "IID" if c["partition"] == "skew" and c["skew"] == 0 else (
            "exclusive" if c["partition"] == "exclusive" else f"{c['partition']} {c['skew']}")
        knob = ""
        if "skewscout" in m:
            s = m["skewscout"]
            path = [rows[0]["skewscout"]["value_before"]] + [r["skewscout"]["value_after"] for r in rows]
            knob = f"{s['knob']}: " + " → ".join(f"{v:g}" for v in path)
        central.append(
            f"| {name} | {c['algorithm']} | {part} | {c['norm']} "
            f"| {100 * m['test_acc_mean']:.2f}% | {100 * m['test_acc_min']:.2f}..{100 * m['test_acc_max']:.2f}% "
            f"| {up:.4g} | {down:.4g} | {m['compression_factor_paper']:.0f}x / {m['compression_factor_down_paper']:.0f}x "
            f"| {m['mb_per_node']:.2f} | {knob} |")
    elif by_precision:
        secs = sorted(r["epoch_seconds"] for r in rows)
        gossip.append(
            f"| {name} | {c['model']}-{c['norm']} | {c['algorithm']} | {c['skew']} "
            f"| {c.get('precision', 'fp32')} | {100 * m['test_acc_mean']:.2f}% "
            f"| {100 * m['test_acc_min']:.2f}..{100 * m['test_acc_max']:.2f}% "
            f"| {100 * m['test_acc_avg_model']:.2f}% | {secs[len(secs) // 2]:.1f} "
            f"| {m['images_per_sec']:.0f} |")
    else:
        density = c["density"] if c["algorithm"] != "sgp" else 1
        gossip.append(
            f"| {name} | {c['algorithm']} | {density} | {c['skew']} | {c['norm']} "
            f"| {100 * m['test_acc_mean']:.2f}% | {100 * m['test_acc_min']:.2f}..{100 * m['test_acc_max']:.2f}% "
            f"| {100 * m['test_acc_avg_model']:.2f}% | {m['divergence']:.3g} | {m['mb_per_node']:.2f} "
            f"| {m['bytes_per_node_iter']:.0f} ({m['bytes_per_node_iter_paper']:.0f}) "
            f"| {m['compression_factor']:.1f}x |")
if gossip and by_precision:
    print("| run | model | algorithm | skew | precision | mean node acc | min..max "
          "| averaged-model acc | s/epoch (median) | images/s (last epoch) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(gossip))
elif gossip:
    print("| run | algorithm | density | skew | norm | mean node acc | min..max | averaged-model acc "
          "| divergence | MB/node | bytes/node/iter (paper) | compression |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(gossip))
if central:
    if gossip:
        print()
    print("| run | algorithm | partition | norm | mean node acc | min..max | bits/param/iter up "
          "| down | compression up / down (paper) | MB up/node | SkewScout knob per epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(central))
