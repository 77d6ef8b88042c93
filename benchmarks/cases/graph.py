"""Graph views of a snapshot: dominators for the whole heap against the snapshot itself, and
paths to deep objects against objgraph.find_backref_chain.

Targets (issue 3): snapshot+dominators within 2x the snapshot time; path_to_root at least 5x
faster than objgraph. graph_path_one times ONE query including the snapshot it needs (objgraph
needs none: on a narrow chain its 20 gc.get_referrers calls beat one full walk);
graph_path_twenty times one snapshot and 20 queries, the leak hunt objgraph's docs describe.
"""
import sys
import time
import types

from harness import Case, Tool

N_ITEMS = 200_000  # x5 objects each: the instance, its name, a list, a dict, a small str


class Item:
    def __init__(self, i, prev):
        self.name = f"item-{i}"
        self.tags = [f"t{i % 100}"]
        self.meta = {"i": i}
        self.prev = prev  # each item also holds the previous one: the tree is not trivial


def make_heap():
    """About 1,000,000 user objects (instances with __dict__, lists, dicts, strings) held by
    a module global."""
    mod = types.ModuleType("bench_graph_heap")
    sys.modules[mod.__name__] = mod
    items, prev = [], None
    for i in range(N_ITEMS):
        prev = Item(i, prev)
        items.append(prev)
    mod.ITEMS = items
    return {"module": mod.__name__}


def snapshot_only(inp):
    import heaptrail

    snap = heaptrail.snapshot()
    return {"objects": len(snap)}


def snapshot_and_dominators(inp):
    import heaptrail

    snap = heaptrail.snapshot()
    t0 = time.perf_counter()
    top = snap.top_retainers(10)
    return {"objects": len(snap), "dominators_s": round(time.perf_counter() - t0, 4),
            "top_retained": top[0].retained}


class Level:
    def __init__(self, child):
        self.child = child


def make_deep(targets=1):
    """A module global holding `targets` objects each 20 references below it (attributes, dict
    keys, list items in turn), amid a background heap of 150,000 objects. The tools get
    addresses only, so no frame of theirs holds a target."""
    mod = types.ModuleType("bench_graph_deep")
    sys.modules[mod.__name__] = mod
    mod.BACKGROUND = [{"k": [str(i)]} for i in range(50_000)]
    roots = []
    for t in range(targets):
        node = bytearray(b"needle %d" % t)
        for depth in range(20):
            kind = depth % 3
            node = Level(node) if kind == 0 else {"key": node} if kind == 1 else [None, node]
        roots.append(node)
    mod.ROOTS = roots
    return {"module": mod.__name__, "addrs": [id(_target(r)) for r in roots]}


def _target(node):
    while not isinstance(node, bytearray):
        node = node.child if isinstance(node, Level) else node["key"] if isinstance(node, dict) else node[1]
    return node


def heaptrail_paths(inp):
    import heaptrail

    snap = heaptrail.snapshot()
    t0 = time.perf_counter()
    steps = [len(snap.path_to_root(a)) for a in inp["addrs"]]
    return {"paths": len(steps), "steps": max(steps), "paths_s": round(time.perf_counter() - t0, 5)}


def objgraph_paths(inp):
    import objgraph

    steps = []
    for root in sys.modules[inp["module"]].ROOTS:
        chain = objgraph.find_backref_chain(_target(root), objgraph.is_proper_module, max_depth=40)
        steps.append(len(chain) - 1)
    return {"paths": len(steps), "steps": max(steps)}


CASES = [
    Case(
        name="graph_dominators",
        description="dominator tree + retained sizes of a 1,000,000-object heap vs the snapshot",
        make_input=make_heap,
        tools=[
            Tool("snapshot", snapshot_only, ["heaptrail"]),
            Tool("snapshot+dominators", snapshot_and_dominators, ["heaptrail"]),
        ],
        baseline="snapshot",
        repeat=3,
    ),
    Case(
        name="graph_path_one",
        description="one path from a module global to an object 20 levels below it, snapshot "
                    "included, 150,000-object heap",
        make_input=make_deep,
        tools=[
            Tool("heaptrail", heaptrail_paths, ["heaptrail"]),
            Tool("objgraph", objgraph_paths, ["objgraph"]),
        ],
        repeat=3,
    ),
    Case(
        name="graph_path_twenty",
        description="paths to 20 objects 20 levels below a module global: one snapshot, 20 "
                    "queries; 150,000-object heap",
        make_input=lambda: make_deep(20),
        tools=[
            Tool("heaptrail", heaptrail_paths, ["heaptrail"]),
            Tool("objgraph", objgraph_paths, ["objgraph"]),
        ],
        repeat=3,
    ),
]
