"""The benchmark harness: cases, tools, child runs, ratios.

A Case has a name, a description, make_input() (built once per child, not
timed) and tools. A Tool has a name, the modules it needs (missing -> the
tool is skipped), and fn(input) -> result, timed on each repeat. The result is
printed beside the times so totals of different tools can be compared.

`baseline` names the tool the ratios are taken against (default "heaptrail":
ratio = tool / heaptrail, so a peer 30x slower shows 30.0). Tracer cases use
"none" (no profiler) as the baseline, so each ratio is an overhead.
"""
import gc
import glob
import importlib
import importlib.util
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Tool:
    name: str
    fn: Callable[[Any], Any]
    requires: Sequence[str] = ()


@dataclass
class Case:
    name: str
    description: str
    make_input: Callable[[], Any]
    tools: Sequence[Tool]
    repeat: int = 5
    baseline: str = "heaptrail"
    timeout: float = 900
    # optional: called with the child's input after the timed runs; returns
    # extra figures to record (e.g. bytes per event)
    extra: Callable[[Any], dict] = None
    meta: dict = field(default_factory=dict)


def load_cases():
    cases = []
    for path in sorted(glob.glob(os.path.join(HERE, "cases", "*.py"))):
        mod = _import(path)
        cases.extend(getattr(mod, "CASES", []))
    return cases


def _import(path):
    name = "bench_case_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def missing_modules(tool):
    return [m for m in tool.requires if importlib.util.find_spec(m) is None]


def run_child(case_name, tool_name, repeat):
    case = next(c for c in load_cases() if c.name == case_name)
    tool = next(t for t in case.tools if t.name == tool_name)
    missing = missing_modules(tool)
    if missing:
        print(json.dumps({"status": "skipped", "reason": "not installed: " + ", ".join(missing)}))
        return 0
    inp = case.make_input()
    times = []
    result = None
    for _ in range(int(repeat)):
        gc.collect()
        t0 = time.perf_counter()
        result = tool.fn(inp)
        times.append(time.perf_counter() - t0)
    out = {
        "status": "ok",
        "times": times,
        "median": statistics.median(times),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "result": result if isinstance(result, (int, float, str, dict, list, type(None))) else repr(result),
    }
    if case.extra is not None:
        out["extra"] = case.extra(inp)
    sys.stdout.flush()
    print(json.dumps(out))
    return 0


def _fmt_result(r):
    if isinstance(r, dict):
        return " ".join(f"{k}={v}" for k, v in r.items())
    return "" if r is None else str(r)


def summarize(case, rows):
    base = next((r for r in rows if r["tool"] == case.baseline and r.get("status") == "ok"), None)
    print(f"{'tool':<28} {'median s':>10} {'ratio':>8} {'peak RSS':>10}  result")
    for r in rows:
        if r.get("status") != "ok":
            print(f"{r['tool']:<28} {r.get('status'):>10}  {r.get('reason') or r.get('error', '')}")
            continue
        if base is not None and base["median"] > 0:
            r["ratio"] = r["median"] / base["median"]
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "-"
        print(f"{r['tool']:<28} {r['median']:>10.4f} {ratio:>8} {r['peak_rss_kib'] / 1024:>8.1f}MB  "
              f"{_fmt_result(r.get('result'))}")
        if r.get("extra"):
            print(f"{'':<28} {_fmt_result(r['extra'])}")
    return {"description": case.description, "baseline": case.baseline, "rows": rows}
