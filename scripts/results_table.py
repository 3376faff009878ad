#!/usr/bin/env python3
"""Prints a Markdown table of the last epoch of every spush-train run under a directory."""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "runs/results"
print("| run | algorithm | density | skew | norm | mean node acc | min..max | averaged-model acc "
      "| divergence | MB/node | bytes/node/iter (paper) | compression |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in sorted(os.listdir(root)):
    d = os.path.join(root, name)
    try:
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        with open(os.path.join(d, "metrics.jsonl")) as f:
            m = [json.loads(line) for line in f if line.strip()][-1]
    except (OSError, IndexError, ValueError) as e:
        print(f"| {name} | (incomplete: {e}) |")
        continue
    density = c["density"] if c["algorithm"] != "sgp" else 1
    print(f"| {name} | {c['algorithm']} | {density} | {c['skew']} | {c['norm']} "
          f"| {100 * m['test_acc_mean']:.2f}% | {100 * m['test_acc_min']:.2f}..{100 * m['test_acc_max']:.2f}% "
          f"| {100 * m['test_acc_avg_model']:.2f}% | {m['divergence']:.3g} | {m['mb_per_node']:.2f} "
          f"| {m['bytes_per_node_iter']:.0f} ({m['bytes_per_node_iter_paper']:.0f}) "
          f"| {m['compression_factor']:.1f}x |")
