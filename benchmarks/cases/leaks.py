"""Leak check cost: heaptrail.leaks.check of a 10-run loop over a 1,000,000-object heap, against
the same 10 runs of the loop alone.

Target (issue 7): the check under 10x the time of the loop itself. The loop reads every item of
a heap of about 1,000,000 objects (200,000 instances, each with a str, a list, a dict and an
int) and leaks one small record per run into a module-level list, so the check has one real
leak to report. The check runs warmup=0, runs=10: the same 10 calls as the loop alone, under the
tracer (which alone about doubles this loop: it allocates two ints per item), plus: at the start
a young collection, the free lists emptied and a counting pass that records every object; after
each run a young collection and a count of the gc-tracked objects (at runs 5 and 10 also of the
untracked ones); at the end one heap snapshot (paths, dominators, retained sizes) and the report.
"""
import sys
import types

from harness import Case, Tool

N_ITEMS = 200_000


class Item:
    def __init__(self, i):
        self.name = f"item-{i}"
        self.tags = [i % 7]
        self.meta = {"i": i}
        self.n = i + 1000


def make_heap():
    mod = types.ModuleType("bench_leaks_heap")
    sys.modules[mod.__name__] = mod
    mod.ITEMS = [Item(i) for i in range(N_ITEMS)]
    mod.LOG = []
    return {"module": mod.__name__}


def _work(mod):
    total = 0
    for it in mod.ITEMS:
        total += len(it.name) + it.tags[0] + it.meta["i"]
    mod.LOG.append({"total": total})  # the leak: one dict per run
    return total


def loop_alone(inp):
    mod = sys.modules[inp["module"]]
    for _ in range(10):
        _work(mod)
    return {"runs": 10}


def leaks_check(inp):
    from heaptrail import leaks

    mod = sys.modules[inp["module"]]
    report = leaks.check(lambda: _work(mod), runs=10, warmup=0)
    top = report.kinds[0] if report.kinds else None
    return {"kinds": len(report.kinds), "top": top.kind if top else None,
            "per_run": top.count_per_iteration if top else 0,
            "path": top.samples[0]["path"] if top else None}


CASES = [
    Case(
        name="leaks_check",
        description="heaptrail.leaks.check of a 10-run loop over a 1,000,000-object heap vs the "
                    "loop alone",
        make_input=make_heap,
        tools=[
            Tool("loop alone", loop_alone),
            Tool("leaks.check", leaks_check, ["heaptrail"]),
        ],
        baseline="loop alone",
        repeat=3,
    ),
]
