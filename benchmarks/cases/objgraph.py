"""heaptrail.objgraph against objgraph on a heap of 1,000,000 gc objects.

Targets (issue 7): show_most_common_types and show_growth within 1.5x of ``gc.get_objects()``
alone (the floor: on 3.11 every object must be enumerated, and that is the only public way);
find_backref_chain to an object 20 levels below a module global at least 5x faster than
objgraph's. Ratios: the two counting cases against the floor (baseline "gc.get_objects floor"),
the chain case against heaptrail. show_growth collects garbage first (objgraph does too: garbage
is not growth), so its case shows the parts: ``gc.collect()`` alone, ``gc.collect()`` +
``gc.get_objects()`` (the floor of any growth report that counts only live objects), and each
tool's counting part without the collection. On this heap the full collection costs about four
times the floor by itself: it, not the counting, is the limit of show_growth.
"""
import io
import sys
import types

from harness import Case, Tool

N = 250_000  # x4 gc objects each: a tuple, an instance, a dict, a list


class Item:
    pass


class Level:
    def __init__(self, child):
        self.child = child


def make_heap():
    mod = types.ModuleType("bench_objgraph_heap")
    sys.modules[mod.__name__] = mod
    data = []
    for i in range(N):
        lst = [i]
        d = {"l": lst}
        o = Item()
        o.d = d
        data.append((o, d))
    mod.DATA = data
    return {"module": mod.__name__}


def make_deep():
    inp = make_heap()
    mod = sys.modules[inp["module"]]
    node = bytearray(b"needle")
    for depth in range(20):
        kind = depth % 3
        node = Level(node) if kind == 0 else {"key": node} if kind == 1 else [None, node]
    mod.ROOT = node
    return inp


def _target(node):
    while not isinstance(node, bytearray):
        node = node.child if isinstance(node, Level) else node["key"] if isinstance(node, dict) else node[1]
    return node


def floor(inp):
    import gc

    return {"objects": len(gc.get_objects())}


def collect_floor(inp):
    import gc

    gc.collect()
    return {"objects": len(gc.get_objects())}


def collect_alone(inp):
    import gc

    return {"collected": gc.collect()}


def _most_common(module):
    out = io.StringIO()
    module.show_most_common_types(limit=10, file=out)
    return {"top": out.getvalue().split("\n", 1)[0].split()}


def heaptrail_most_common(inp):
    import heaptrail.objgraph

    return _most_common(heaptrail.objgraph)


def objgraph_most_common(inp):
    import objgraph

    return _most_common(objgraph)


def _growth(module):
    out = io.StringIO()
    module.show_growth(limit=10, peak_stats={}, file=out)  # a fresh peak: every type is reported
    return {"top": out.getvalue().split("\n", 1)[0].split()}


def heaptrail_growth(inp):
    import heaptrail.objgraph

    return _growth(heaptrail.objgraph)


def objgraph_growth(inp):
    import objgraph

    return _growth(objgraph)


def heaptrail_growth_count(inp):
    """show_growth's counting part: the same table, without the collection first."""
    import heaptrail.objgraph as hog

    rows = hog._growth_of_live(10, {}, True, None)
    out = io.StringIO()
    width = max(len(name) for name, _, _ in rows)
    for name, n, delta in rows:
        out.write("%-*s%9d %+9d\n" % (width, name, n, delta))
    return {"top": out.getvalue().split("\n", 1)[0].split()}


def objgraph_growth_count(inp):
    """objgraph's show_growth with its gc.collect() made a no-op: its counting part."""
    import gc
    import objgraph

    collect = gc.collect
    gc.collect = lambda *a: 0
    try:
        return _growth(objgraph)
    finally:
        gc.collect = collect


def _chain(module, inp):
    target = _target(sys.modules[inp["module"]].ROOT)
    chain = module.find_backref_chain(target, module.is_proper_module, max_depth=25)
    return {"steps": len(chain) - 1, "from": type(chain[0]).__name__}


def heaptrail_chain(inp):
    import heaptrail.objgraph

    return _chain(heaptrail.objgraph, inp)


def objgraph_chain(inp):
    import objgraph

    return _chain(objgraph, inp)


FLOOR = "gc.get_objects floor"

CASES = [
    Case(
        name="objgraph_most_common_types",
        description="show_most_common_types on a heap of 1,000,000 gc objects; ratio to "
                    "gc.get_objects() alone",
        make_input=make_heap,
        tools=[
            Tool(FLOOR, floor),
            Tool("heaptrail", heaptrail_most_common, ["heaptrail"]),
            Tool("objgraph", objgraph_most_common, ["objgraph"]),
        ],
        baseline=FLOOR,
        repeat=3,
    ),
    Case(
        name="objgraph_show_growth",
        description="show_growth (garbage collection + count) on a heap of 1,000,000 gc objects; "
                    "ratio to gc.get_objects() alone",
        make_input=make_heap,
        tools=[
            Tool(FLOOR, floor),
            Tool("gc.collect alone", collect_alone),
            Tool("gc.collect+get_objects", collect_floor),
            Tool("heaptrail count part", heaptrail_growth_count, ["heaptrail"]),
            Tool("heaptrail", heaptrail_growth, ["heaptrail"]),
            Tool("objgraph count part", objgraph_growth_count, ["objgraph"]),
            Tool("objgraph", objgraph_growth, ["objgraph"]),
        ],
        baseline=FLOOR,
        repeat=3,
    ),
    Case(
        name="objgraph_backref_chain",
        description="find_backref_chain to an object 20 levels below a module global, heap of "
                    "1,000,000 gc objects",
        make_input=make_deep,
        tools=[
            Tool("heaptrail", heaptrail_chain, ["heaptrail"]),
            Tool("objgraph", objgraph_chain, ["objgraph"]),
        ],
        repeat=3,
    ),
]
