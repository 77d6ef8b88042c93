#!/usr/bin/env python3
"""make bench: heaptrail beside its peers, same inputs, same run.

Each module in benchmarks/cases/ defines CASES, a list of harness.Case. For
every case and every tool, a fresh child interpreter builds the input once
(untimed), runs the tool's function `repeat` times (timed), and reports the
times, the tool's result (a total, a count ...) and its peak RSS. A tool whose
modules are not installed is reported as skipped, never faked.

Output: a table per case (tool, median seconds, ratio to heaptrail, peak RSS,
result) and benchmarks/results/latest.json.

  python benchmarks/run.py                 # every case
  python benchmarks/run.py -k deepsize     # cases whose name contains 'deepsize'
  python benchmarks/run.py --repeat 3
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import load_cases, run_child, summarize  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", dest="pattern", default="", help="only cases whose name contains this")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per tool (default: the case's)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"))
    ap.add_argument("--child", nargs=3, metavar=("CASE", "TOOL", "REPEAT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return run_child(*args.child)

    results = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "note": "medians over the repeats; ratio = tool median / heaptrail median (baseline cases: / baseline)",
        "cases": {},
    }
    # merge with earlier results so `-k` runs update only their cases
    if args.pattern and os.path.exists(args.out):
        try:
            with open(args.out) as f:
                results["cases"] = json.load(f).get("cases", {})
        except (OSError, ValueError):
            pass
    for case in load_cases():
        if args.pattern not in case.name:
            continue
        repeat = args.repeat or case.repeat
        print(f"\n== {case.name}: {case.description}", flush=True)
        rows = []
        for tool in case.tools:
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", case.name, tool.name, str(repeat)],
                capture_output=True, text=True, timeout=case.timeout,
            )
            row = {"tool": tool.name}
            if proc.returncode != 0:
                row["status"] = "error"
                row["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
            else:
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            rows.append(row)
        results["cases"][case.name] = summarize(case, rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"\nwritten: {os.path.relpath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
