"""Graph algorithms of graph.c on graphs with known answers (EdgeGraph: a heap built from
explicit edges), then on real snapshots when the heap walk is there."""
import os
import shutil

import pytest

from heaptrail import HeaptrailError, _core
from heaptrail.graph import EdgeGraph, render_dot

ROOT = _core.OBJ_ROOT
UNREACHABLE = _core.OBJ_UNREACHABLE
FINALIZER = _core.OBJ_FINALIZER


def named_graph(spec, roots, sizes=None, **kw):
    """'R:A,B C:D' -> EdgeGraph with nodes named by letters, in order of first appearance."""
    names = []
    pairs = []
    for part in spec.split():
        src, dsts = part.split(":")
        for name in [src, *dsts.split(",")]:
            if name not in names:
                names.append(name)
        pairs += [(src, d) for d in dsts.split(",")]
    ix = {c: i for i, c in enumerate(names)}
    g = EdgeGraph(len(names), [(ix[s], ix[d]) for s, d in pairs], roots=[ix[r] for r in roots],
                  values=names, sizes=None if sizes is None else [sizes[c] for c in names], **kw)
    return g, ix, names


# The example graph of Lengauer & Tarjan's paper (1979), with its dominators.
LT_EDGES = "R:A,B,C A:D B:A,D,E C:F,G D:L E:H F:I G:I,J H:E,K I:K J:I K:I,R L:H"
LT_IDOM = {"A": "R", "B": "R", "C": "R", "D": "R", "E": "R", "F": "C", "G": "C", "H": "R",
           "I": "R", "J": "G", "K": "R", "L": "D"}


def test_dominators_of_the_lengauer_tarjan_example():
    sizes = {c: 1 << k for k, c in enumerate("RABCDEFGHIJKL")}
    g, ix, names = named_graph(LT_EDGES, roots="R", sizes=sizes)
    assert g.dominator(ix["R"]) is None  # the virtual root
    got = {c: names[g.dominator(ix[c])] for c in LT_IDOM}
    assert got == LT_IDOM
    # retained = own size + what it dominates, computed from the known tree
    assert g.retained_size(ix["C"]) == sizes["C"] + sizes["F"] + sizes["G"] + sizes["J"]
    assert g.retained_size(ix["G"]) == sizes["G"] + sizes["J"]
    assert g.retained_size(ix["D"]) == sizes["D"] + sizes["L"]
    assert g.retained_size(ix["I"]) == sizes["I"]
    assert g.retained_size(ix["R"]) == sum(sizes.values())
    assert sorted(names[i] for i in g.dominated(ix["C"])) == ["C", "F", "G", "J"]
    assert g.dominated(ix["C"])[0] == ix["C"]


def test_diamond_shared_child_counts_in_neither_sibling():
    #   0 -> 1 -> 3,  0 -> 2 -> 3,  1 -> 4 (only 1 holds 4)
    g = EdgeGraph(5, [(0, 1), (0, 2), (1, 3), (2, 3), (1, 4)], roots=[0],
                  sizes=[1, 10, 100, 1000, 10000])
    assert g.retained_size(1) == 10 + 10000
    assert g.retained_size(2) == 100
    assert g.retained_size(3) == 1000
    assert g.dominator(3) == 0
    assert g.retained_size(0) == 11111
    assert sorted(g.dominated(1)) == [1, 4]
    assert g.dominated(2) == [2]


def test_two_roots_sharing_an_object_retain_it_in_neither():
    g = EdgeGraph(3, [(0, 2), (1, 2)], roots=[0, 1], sizes=[1, 2, 4])
    assert g.dominator(2) is None
    assert (g.retained_size(0), g.retained_size(1), g.retained_size(2)) == (1, 2, 4)


def test_unreachable_objects_hang_from_the_virtual_root():
    # 0 root -> 1; garbage tree 2 -> 3, 2 -> 4; garbage cycle 5 <-> 6 -> 7; 7 -> 1
    edges = [(0, 1), (2, 3), (2, 4), (5, 6), (6, 5), (6, 7), (7, 1)]
    g = EdgeGraph(8, edges, roots=[0], sizes=[1, 2, 4, 8, 16, 32, 64, 128],
                  flags=[0, 0] + [UNREACHABLE] * 6)
    assert g.retained_size(2) == 4 + 8 + 16          # nobody refers to 2: it is an entry
    assert g.dominator(3) == 2
    assert g.retained_size(5) == 32 + 64 + 128       # lowest index of the cycle is its entry
    assert g.dominator(6) == 5
    # garbage referring to a live object does not keep it alive: 0 still retains 1
    assert g.dominator(1) == 0
    assert g.retained_size(0) == 1 + 2
    assert g.retained_size(7) == 128
    path = g.path_to_root(3)
    assert not path.reachable and len(path) == 0
    assert "not reachable from any root" in str(path)


def reach(n, adj, starts, removed=None):
    seen, todo = set(), [s for s in starts if s != removed]
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        todo += [w for w in adj[v] if w != removed]
    return seen


def brute_force_retained(n, edges, roots, sizes):
    """Retained sizes by definition (x dominates v when removing x cuts v off the virtual
    root), with the documented entries for unreachable objects."""
    adj = [[] for _ in range(n)]
    indeg = [0] * n
    for s, d in edges:
        adj[s].append(d)
        indeg[d] += 1
    live = reach(n, adj, roots)
    entries, seen = [], set(live)
    for candidates in ([i for i in range(n) if indeg[i] == 0], range(n)):
        for i in candidates:
            if i not in seen:
                entries.append(i)
                seen |= reach(n, adj, [i])
    # references from garbage into live objects are ignored
    adj = [[d for d in adj[s] if s in live or d not in live] for s in range(n)]
    starts = list(roots) + entries
    everything = reach(n, adj, starts)
    out = []
    for x in range(n):
        kept = reach(n, adj, starts, removed=x)
        out.append(sum(sizes[v] for v in everything - kept))
    return out


def test_dominators_match_the_definition_on_random_graphs():
    import random

    rnd = random.Random(1234)
    for trial in range(150):
        n = rnd.randint(1, 25)
        edges = [(rnd.randrange(n), rnd.randrange(n)) for _ in range(rnd.randint(0, 3 * n))]
        roots = rnd.sample(range(n), rnd.randint(0, min(3, n)))
        sizes = [rnd.randint(1, 1000) for _ in range(n)]
        g = EdgeGraph(n, edges, roots=roots, sizes=sizes)
        want = brute_force_retained(n, edges, roots, sizes)
        got = [g.retained_size(i) for i in range(n)]
        assert got == want, (n, edges, roots)
        # cycles: classes of mutual reachability that hold a reference
        adj = [[d for s2, d in edges if s2 == s] for s in range(n)]
        fwd = [reach(n, adj, adj[v]) for v in range(n)]  # reachable in >= 1 step
        comps = {frozenset(w for w in range(n) if w == v or (w in fwd[v] and v in fwd[w]))
                 for v in range(n) if v in fwd[v]}
        assert {frozenset(c.indexes) for c in g.cycles()} == comps
        totals = [c.total_size for c in g.cycles()]
        assert totals == sorted(totals, reverse=True)


def test_long_chain_has_no_recursion():
    n = 1_000_000
    h = _core._graph_chain(n)
    assert _core.graph_retained(h, 0) == n
    assert _core.graph_retained(h, n // 2) == n - n // 2
    assert _core.graph_idom(h, n - 1) == n - 2
    assert _core.graph_cycles(h) == []
    path = _core.graph_path(h, n - 1)
    assert len(path) == n and path[0] == (None, 0) and path[-1] == ("[0]", n - 1)
    assert len(_core.graph_dominated(h, n - 10)) == 10


def test_long_cycle_is_one_component():
    n = 200_000
    g = EdgeGraph(n, [(i, (i + 1) % n) for i in range(n)], roots=[0])
    (cycle,) = g.cycles()
    assert len(cycle) == n and cycle.total_size == n
    assert g.retained_size(1) == n - 1  # the chain 1 -> 2 -> ... hangs from 1


def test_strongly_connected_components():
    # {0,1,2} a triangle (size 3), {3,4} (size 300, 4 has a finalizer), {5} self-loop garbage,
    # 6 alone (no cycle), 7 -> 7? no: 7 just points into the triangle
    edges = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 3), (5, 5), (7, 0)]
    flags = [0, 0, 0, 0, FINALIZER, UNREACHABLE, 0, 0]
    g = EdgeGraph(8, edges, roots=[0, 7], sizes=[1, 1, 1, 100, 200, 7, 1000, 1], flags=flags)
    cycles = g.cycles()
    assert [sorted(c.indexes) for c in cycles] == [[3, 4], [5], [0, 1, 2]]
    assert [c.total_size for c in cycles] == [300, 7, 3]
    assert [c.has_finalizers for c in cycles] == [True, False, False]
    assert [c.garbage for c in cycles] == [False, True, False]
    assert [c.uncollectable for c in cycles] == [False, False, False]
    assert [sorted(c.indexes) for c in g.cycles(garbage=True)] == [[5]]
    assert str(cycles[0]).startswith("cycle of 2 objects, 300 B [has finalizers]")


def test_referrers_and_referents_carry_labels():
    g = EdgeGraph(4, [(0, 1, "['a']"), (0, 2, ".attr"), (1, 2, 3), (2, 3, None), (3, 2, "type")],
                  roots=[0])
    assert g.referents(0) == [("['a']", 1), (".attr", 2)]
    assert g.referrers(2) == [(".attr", 0), ("[3]", 1), ("type", 3)]
    assert g.referrers(0) == []
    assert g.referents(2) == [(None, 3)]


def cache_graph(extra_edges=(), extra_roots=()):
    """module app.cache -> __dict__ -> ['CACHE'] -> ['user:42'] -> [3] -> <Session>"""
    values = ["app.cache", None, None, None, "Session", "frame", "other"]
    flags = [_core.OBJ_MODULE, 0, 0, 0, 0, 0, 0]
    edges = [(0, 1, "__dict__"), (1, 2, "['CACHE']"), (2, 3, "['user:42']"), (3, 4, 3)]
    edges += list(extra_edges)
    return EdgeGraph(7, edges, roots=[0, *extra_roots], values=values,
                     flags=flags)


def test_path_to_root_prints_the_access_chain():
    g = cache_graph()
    path = g.path_to_root(4)
    assert [s.index for s in path.steps] == [0, 1, 2, 3, 4]
    assert [s.label for s in path.steps] == [None, "__dict__", "['CACHE']", "['user:42']", "[3]"]
    assert str(path) == "<app.cache 0> -> .CACHE -> ['user:42'] -> [3] -> <Session 4>"
    assert len(path) == 4
    assert str(g.path_to_root(0)) == "<app.cache 0> (a root)"


def test_path_prefers_module_roots_on_ties_and_shorter_paths_first():
    # a plain root 6 reaching the dict 2 in two hops, as the module does
    g = cache_graph(extra_edges=[(6, 5, "x"), (5, 2, "['y']")], extra_roots=[6])
    assert g.path_to_root(4).steps[0].index == 0
    # a frame root at the same distance loses to the module too, but beats a plain root
    flags = [_core.OBJ_MODULE] + [0] * 4 + [_core.OBJ_FRAME, 0]
    g = EdgeGraph(7, [(6, 3, ".a"), (5, 3, ".b"), (3, 4, 0)], roots=[5, 6], flags=flags)
    assert g.path_to_root(4).steps[0].index == 5
    # a plain root one hop from the list: shorter, so it wins over the module
    g = cache_graph(extra_edges=[(6, 3, ".held")], extra_roots=[6])
    assert str(g.path_to_root(4)) == "<other 6> -> .held -> [3] -> <Session 4>"


def test_top_retainers_and_kind_filter():
    # objects 0,1 are type objects ("dict", "Session"); 2 root dict holds 3 and 4 sessions
    edges = [(2, 3, "['a']"), (2, 4, "['b']"), (3, 5), (4, 6)]
    g = EdgeGraph(7, edges, roots=[2], sizes=[0, 0, 50, 10, 20, 300, 1],
                  types=[None, None, 0, 1, 1, 0, 0], values=["dict", "Session"] + [None] * 5)
    top = g.top_retainers(3)
    assert [(r.index, r.kind, r.retained, r.size) for r in top] == [
        (2, "dict", 381, 50), (3, "Session", 310, 10), (5, "dict", 300, 300)]
    assert top[0].address == 0x10000 + 16 * 2
    assert [r.index for r in g.top_retainers(5, kind="Session")] == [3, 4]
    assert g.top_retainers(5, kind="nothing") == []
    assert len(g.top_retainers(100)) == 7
    assert "Retained" in str(top) and "381 B" in str(top)
    with pytest.raises(HeaptrailError):
        g.top_retainers(-1)


def test_to_dot_refs_and_backrefs():
    g = EdgeGraph(5, [(0, 1, "['k\"q']"), (1, 2, 0), (2, 3, ".x"), (3, 4, ".y")], roots=[0],
                  sizes=[10, 20, 30, 40, 50], values=["root", None, None, None, None])
    dot = g.to_dot(1, depth=2)
    assert dot.startswith("digraph heaptrail {")
    assert "o1 -> o2 [label=\"[0]\"];" in dot and "o2 -> o3 [label=\".x\"];" in dot
    assert "o3 -> o4" not in dot and "o4 [" not in dot  # beyond depth 2
    assert "o0 [" not in dot                              # refs go forward only
    assert "20 B" in dot
    back = g.to_dot(1, direction="backrefs", depth=5)
    assert "o0 -> o1 [label=\"['k\\\"q']\"];" in back     # quote escaped, edge points forward
    assert "o2 [" not in back and "rankdir=BT" in back
    small = g.to_dot(0, depth=10, max_nodes=2)
    assert small.count("[label=\"?") == 2 and "left out (max_nodes=2)" in small
    # one object held a thousand times: edges are capped at 8 per drawn node
    many = EdgeGraph(2, [(0, 1, k) for k in range(1000)], roots=[0])
    dot = many.to_dot(0, max_nodes=10)
    assert dot.count(" -> ") == 80 and "// 920 references left out (max_nodes=10)" in dot
    with pytest.raises(HeaptrailError, match="direction"):
        g.to_dot(0, direction="sideways")
    with pytest.raises(HeaptrailError, match="max_nodes"):
        g.to_dot(0, max_nodes=0)


def test_bad_arguments_give_clear_errors():
    g = EdgeGraph(2, [(0, 1)], roots=[0])
    with pytest.raises(HeaptrailError, match="out of range"):
        _core.graph_retained(g._h, 2)
    with pytest.raises(HeaptrailError):
        g.path_to_root(5)
    with pytest.raises(TypeError):
        _core.graph_referrers(object(), 0)
    with pytest.raises(ValueError):
        EdgeGraph(2, [(0, 2)])


def test_counts_past_a_c_integer_are_clamped_not_overflowed():
    """top_retainers(10**30) and to_dot(depth=10**30) raised OverflowError (a traceback
    through heaptrail retainers --top 99999999999999999999)."""
    g = EdgeGraph(3, [(0, 1), (1, 2)], roots=[0])
    assert [r.index for r in g.top_retainers(10 ** 30)] == [0, 1, 2]
    with pytest.raises(HeaptrailError, match="n must be >= 0"):
        g.top_retainers(-10 ** 30)
    with pytest.raises(HeaptrailError, match="depth must be between 0 and 1000"):
        g.to_dot(0, depth=10 ** 30)
    with pytest.raises(HeaptrailError, match="max_nodes must be between 1 and 100000"):
        g.to_dot(0, max_nodes=-10 ** 30)


def test_empty_graph():
    g = EdgeGraph(0, [])
    assert g.cycles() == [] and g.top_retainers(5) == []


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_render_svg_and_png(tmp_path):
    g = EdgeGraph(3, [(0, 1, ".a"), (1, 2, 0)], roots=[0], values=["root", None, None])
    svg = g.render(0, tmp_path / "g.svg")
    with open(svg, encoding="utf-8") as f:
        text = f.read()
    assert "<svg" in text and ".a" in text
    png = g.render(0, tmp_path / "g.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_render_without_graphviz_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on this PATH
    g = EdgeGraph(2, [(0, 1)], roots=[0])
    with pytest.raises(HeaptrailError, match="apt-get install graphviz"):
        g.render(0, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()
    g.render(0, tmp_path / "g.dot")  # text needs no Graphviz
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    with pytest.raises(HeaptrailError, match="file name"):
        render_dot("digraph {}", tmp_path / "g.jpg")



def test_render_when_dot_does_not_finish_is_a_clear_error(tmp_path, monkeypatch):
    """A dot that runs past the time limit (a huge graph) gave a TimeoutExpired traceback."""
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(HeaptrailError, match=r"dot did not finish .*g\.svg.* within 0\.2 s: draw fewer"):
        render_dot("digraph { a -> b }", tmp_path / "g.svg", timeout=0.2)


# ---- on real snapshots ------------------------------------------------------------------------

LEAKY_APP = '''
class Session:
    def __init__(self, user):
        self.user = user

CACHE = {}
'''


def make_module(name, source=LEAKY_APP):
    """A real module in sys.modules; the test keeps only addresses, never the objects, so that
    no frame local is a nearer root than the module."""
    import sys
    import types

    mod = types.ModuleType(name)
    exec(source, mod.__dict__)
    sys.modules[name] = mod
    return mod


@pytest.fixture
def module_name(request):
    import sys

    name = "ht_graph_" + request.node.name
    yield name
    sys.modules.pop(name, None)


def leak_sessions(name):
    mod = make_module(name)
    mod.CACHE["user:42"] = [mod.Session(i) for i in range(5)]
    return id(mod.CACHE["user:42"][3])


def test_real_path_to_root_of_a_cached_session(module_name):
    import heaptrail

    addr = leak_sessions(module_name)
    snap = heaptrail.snapshot()
    path = snap.path_to_root(addr)
    assert str(path) == (f"module {module_name} -> .CACHE -> ['user:42'] -> [3] "
                         f"-> <Session 0x{addr:x}>")
    assert path.steps[-1].index == snap._index(addr)
    the_list = snap._record(path.steps[-2].index)
    assert the_list.type == "list" and the_list.len == 5
    assert ("[3]", the_list) in snap.referrers(addr)
    assert ("[3]", snap.record(addr)) in snap.referents(the_list.address)


def test_real_path_from_a_gc_root_says_so():
    """A root held from C (here sys.modules, which the interpreter holds) read as a bare
    `<dict 0x..>`, a chain from nowhere; it now says it is a gc root."""
    import sys

    import heaptrail

    snap = heaptrail.snapshot()
    assert str(snap.path_to_root(sys.modules)) == f"gc root <dict 0x{id(sys.modules):x}> (a root)"
    assert str(snap.path_to_root(sys)) == "module sys (a root)"


RUNNING_APP = LEAKY_APP + '''
import heaptrail

CACHE["user:42"] = [Session(i) for i in range(5)]
SNAP = heaptrail.snapshot()
'''


def test_real_path_starts_at_the_module_when_its_globals_are_in_use(module_name):
    """While the module's own code runs (as __main__'s does), its globals are held from outside
    the walked graph (the running frame, the caller of exec): the module's __dict__ is then a
    root itself, one reference nearer than the module. The path still starts at the module and
    reads .CACHE, not "dict of module ... -> .CACHE"."""
    from heaptrail.heap import ROOT

    import sys
    import types

    mod = types.ModuleType(module_name)
    sys.modules[module_name] = mod  # as an import does, before the module's code runs
    exec(RUNNING_APP, mod.__dict__)
    snap = mod.SNAP
    del mod.SNAP
    addr = id(mod.CACHE["user:42"][3])
    d = snap._index(mod.__dict__)
    assert snap._h.record(d)[5] & ROOT
    path = snap.path_to_root(addr)
    assert str(path) == (f"module {module_name} -> .CACHE -> ['user:42'] -> [3] "
                         f"-> <Session 0x{addr:x}>")
    del mod, snap
    # the same while the module is not in sys.modules yet (nor a root): still read from it
    mod = make_module(module_name + "_2", RUNNING_APP)
    snap = mod.SNAP
    del mod.SNAP
    addr = id(mod.CACHE["user:42"][3])
    d = snap._index(mod.__dict__)
    path = snap.path_to_root(addr)
    assert str(path) == (f"module {module_name}_2 -> .CACHE -> ['user:42'] -> [3] "
                         f"-> <Session 0x{addr:x}>")
    sys.modules.pop(module_name + "_2", None)
    assert [(s.label, s.index) for s in path.steps[:2]] == [(None, snap._index(mod)), ("__dict__", d)]
    assert path.steps[1].text == f"dict of module {module_name}_2"
    assert len(path) == 4  # references: module -> dict -> CACHE -> list -> Session


def test_top_retainers_list_a_module_once(module_name):
    """A module's __dict__, dominated by the module, is not a second row beside it; asked for by
    kind it is there, named after its module."""
    import heaptrail

    mod = make_module(module_name, "BIG = None\n")
    mod.BIG = bytearray(30_000_000)
    snap = heaptrail.snapshot()
    d = snap._index(mod.__dict__)
    top = snap.top_retainers(10)
    assert top[0].text == f"module {module_name}" and top[0].kind == "module"
    assert top[0].retained >= 30_000_000
    assert d not in [r.index for r in top]
    (row,) = snap.top_retainers(1, kind="dict")
    assert row.index == d and row.text == f"dict of module {module_name}"
    assert row.retained == top[0].retained - snap.record(mod).size


def build_holders(name):
    """module.TOP = [left, right]; left and right each hold their own bytearrays and both hold
    SHARED, also a global: the shared child counts in neither sibling."""
    import sys

    mod = make_module(name, "TOP = None\nSHARED = None\n")
    mod.SHARED = bytearray(5000)
    left = [bytearray(1000 + i) for i in range(10)] + [mod.SHARED]
    right = [bytearray(3000 + i) for i in range(3)] + [mod.SHARED]
    mod.TOP = [left, right]
    own = {
        "left": [sys.getsizeof(left)] + [sys.getsizeof(b) for b in left[:-1]],
        "right": [sys.getsizeof(right)] + [sys.getsizeof(b) for b in right[:-1]],
    }
    addrs = {"top": id(mod.TOP), "left": id(left), "right": id(right), "shared": id(mod.SHARED),
             "left_items": {id(b) for b in left[:-1]} | {id(left)}}
    return addrs, own, sys.getsizeof(mod.TOP), sys.getsizeof(mod.SHARED)


def test_real_retained_sizes_of_siblings_sharing_a_child(module_name):
    import heaptrail

    addrs, own, top_size, shared_size = build_holders(module_name)
    snap = heaptrail.snapshot()
    assert snap.retained_size(addrs["left"]) == sum(own["left"])
    assert snap.retained_size(addrs["right"]) == sum(own["right"])
    assert snap.retained_size(addrs["shared"]) == shared_size
    # the shared bytearray is also a module global, so TOP does not hold it either
    assert snap.retained_size(addrs["top"]) == top_size + sum(own["left"]) + sum(own["right"])
    assert {r.address for r in snap.dominated(addrs["left"])} == addrs["left_items"]
    assert snap.dominated(addrs["left"])[0].address == addrs["left"]
    assert snap.dominator(addrs["left"]).address == addrs["top"]
    top = snap.top_retainers(5, kind="list")
    assert len(top) == 5 and all(r.kind == "list" for r in top)
    assert top == sorted(top, key=lambda r: -r.retained)


def test_real_top_retainers_kind_takes_the_short_type_name(module_name):
    """kind='Session' finds app.Session, as query's type == 'Session' does (it found nothing)."""
    import heaptrail

    leak_sessions(module_name)
    mod = __import__(module_name)
    want = {id(s) for s in mod.CACHE["user:42"]}
    snap = heaptrail.snapshot()
    full = snap.top_retainers(1000, kind=f"{module_name}.Session")
    short = snap.top_retainers(1000, kind="Session")
    assert {r.address for r in full} == want
    assert want <= {r.address for r in short}
    assert all(r.kind.rsplit(".", 1)[-1] == "Session" for r in short)
    assert snap.top_retainers(5, kind="ession") == []


CYCLES = '''
class Node:
    pass

class Finalized:
    def __del__(self):
        pass

def make(cls):
    a, b = cls(), cls()
    a.other, b.other = b, a
    return id(a), id(b)
'''


def test_real_garbage_cycles_with_and_without_del(module_name):
    import gc

    import heaptrail

    mod = make_module(module_name, CYCLES)
    gc.collect()
    gc.disable()
    try:
        plain = mod.make(mod.Node)
        fin = mod.make(mod.Finalized)
        snap = heaptrail.snapshot(gc_first=False)
    finally:
        gc.enable()
        gc.collect()
    garbage = snap.cycles(garbage=True)

    def cycle_of(addr):
        (c,) = [c for c in garbage if snap._index(addr) in c.indexes]
        return c

    c_plain, c_fin = cycle_of(plain[0]), cycle_of(fin[0])
    assert snap._index(plain[1]) in c_plain.indexes and snap._index(fin[1]) in c_fin.indexes
    assert c_plain is not c_fin and len(c_plain) <= 4 and len(c_fin) <= 4  # two objects (+ dicts)
    assert (c_plain.has_finalizers, c_plain.uncollectable, c_plain.garbage) == (False, False, True)
    # since Python 3.4 (PEP 442) __del__ does not make a cycle uncollectable
    assert (c_fin.has_finalizers, c_fin.uncollectable, c_fin.garbage) == (True, False, True)
    assert c_plain.total_size == sum(r.size for r in c_plain.members)
    assert not snap.path_to_root(plain[0]).reachable
    # garbage hangs from the virtual root: the cycle's entry retains the whole cycle
    assert max(snap.retained_size(plain[0]), snap.retained_size(plain[1])) >= c_plain.total_size


def test_real_to_dot_backrefs_shows_the_module(module_name):
    import heaptrail

    addr = leak_sessions(module_name)
    snap = heaptrail.snapshot()
    dot = snap.to_dot(addr, direction="backrefs", depth=4)
    assert '[label=".CACHE"]' in dot and "[label=\"['user:42']\"]" in dot
    assert f"of module {module_name[:30]}" in dot and f"0x{addr:x}" in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_render_real_snapshot_with_awkward_strings(module_name, tmp_path):
    import heaptrail

    mod = make_module(module_name, "")
    mod.ODD = {'quote"s': "back\\slash", "new\nline": "tab\t", "ünï\u2603": b"\x00\xff", 7: "x" * 500}
    addr = id(mod.ODD)
    snap = heaptrail.snapshot()
    out = snap.render(addr, tmp_path / "odd.svg", depth=2)
    with open(out, encoding="utf-8") as f:
        svg = f.read()
    assert "<svg" in svg and f"0x{addr:x}" in svg
    out = snap.render(addr, tmp_path / "odd_back.svg", direction="backrefs", depth=3)
    with open(out, encoding="utf-8") as f:
        assert f"of module {module_name[:30]}" in f.read()
