#!/usr/bin/env python3
"""Compares two spush-bench JSON reports (spush-bench --json FILE) case by case.

A case regresses when its median time exceeds the baseline's by more than the tolerance
(default 15%). Only the spush kernels (impl "spush") are compared unless --all is given: the
baselines (CUB, unfused, CPU, memcpy) are references, not the code under test. A case whose
validation against the CPU failed ("check" starting with FAIL) is a failure too.

Prints one row per compared case, worst ratio first, then a summary line. Exit status:
0 no regression, 1 regression or failed check, 2 bad usage or unreadable input.
Standard library only.
"""
import argparse
import json
import sys


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"compare.py: cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        print(f"compare.py: {path} is not a spush-bench report (no 'rows' list)", file=sys.stderr)
        sys.exit(2)
    return data


def rows_by_name(report, include_all):
    out = {}
    for row in report["rows"]:
        if not isinstance(row, dict) or "name" not in row or "median_us" not in row:
            continue
        if include_all or row.get("impl") == "spush":
            out[row["name"]] = row
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="baseline JSON (bench/baselines/...)")
    ap.add_argument("--current", required=True, help="JSON of the run to check")
    ap.add_argument("--tolerance", type=float, default=15.0,
                    help="allowed slowdown in percent (default 15)")
    ap.add_argument("--all", action="store_true", help="compare baseline implementations too")
    args = ap.parse_args()
    if args.tolerance < 0:
        print("compare.py: --tolerance must be >= 0", file=sys.stderr)
        return 2

    base, cur = load(args.baseline), load(args.current)
    if base.get("device") != cur.get("device"):
        print(f"warning: devices differ\n  baseline: {base.get('device')}\n"
              f"  current:  {cur.get('device')}")
    b_rows, c_rows = rows_by_name(base, args.all), rows_by_name(cur, args.all)
    limit = 1.0 + args.tolerance / 100.0

    table, regressions, failures = [], [], []
    for name, c in c_rows.items():
        check = str(c.get("check", "-"))
        if check.startswith("FAIL"):
            failures.append(name)
        b = b_rows.get(name)
        if b is None:
            table.append((0.0, name, None, c["median_us"], "new", check))
            continue
        if b["median_us"] <= 0 or c["median_us"] <= 0:
            table.append((0.0, name, b["median_us"], c["median_us"], "no time", check))
            continue
        ratio = c["median_us"] / b["median_us"]
        status = "REGRESSION" if ratio > limit else ("faster" if ratio < 1.0 / limit else "ok")
        if ratio > limit:
            regressions.append(name)
        table.append((ratio, name, b["median_us"], c["median_us"], status, check))
    missing = sorted(set(b_rows) - set(c_rows))

    table.sort(key=lambda t: -t[0])
    width = max([len(t[1]) for t in table] + [4])
    print(f"{'case':<{width}}  {'base_us':>10}  {'now_us':>10}  {'ratio':>6}  status      check")
    for ratio, name, b_us, c_us, status, check in table:
        b_txt = f"{b_us:10.1f}" if b_us is not None else f"{'-':>10}"
        r_txt = f"{ratio:6.2f}" if ratio > 0 else f"{'-':>6}"
        print(f"{name:<{width}}  {b_txt}  {c_us:10.1f}  {r_txt}  {status:<10}  {check}")
    for name in missing:
        print(f"{name:<{width}}  {'':>10}  {'-':>10}  {'-':>6}  missing")
    print(f"\ncompared {len(table)} cases against {args.baseline} (tolerance {args.tolerance:g}%): "
          f"{len(regressions)} regressions, {len(failures)} failed checks, "
          f"{len(missing)} missing, {sum(1 for t in table if t[4] == 'new')} new")
    return 1 if regressions or failures else 0


if __name__ == "__main__":
    sys.exit(main())
