"""A correctness review of the snapshot's views (retained sizes, dominators, paths, labels,
cycles, queries, DOT, files) against answers computed independently here: by reference counts
and gc.get_referents for what an object retains, by a breadth-first search in Python over the
snapshot's edges for shortest paths and components, and by evaluating queries in Python over
every record."""
import collections
import dataclasses
import functools
import gc
import sys
import types
import weakref

import pytest

import heaptrail
from heaptrail import HeaptrailError
from heaptrail.heap import DICT, FRAME, MODULE, ROOT, TYPE, VIEW

IMMORTAL = 1 << 29  # 3.12+: immortal objects' refcounts are far above this; never freed


def brute_dominated(x):
    """ids of the objects x dominates, from refcounts alone: the largest set D of objects reachable
    from x (gc.get_referents), x in D, such that every reference to a member other than x comes
    from a member of D. That is what would be freed if x went away, found without the snapshot."""
    objs, index = [x], {id(x): 0}
    k = 0
    while k < len(objs):
        o = objs[k]
        k += 1
        if isinstance(o, types.ModuleType):
            continue  # a module is never held by the shapes below alone
        for r in gc.get_referents(o):
            if id(r) not in index and sys.getrefcount(r) < IMMORTAL:
                index[id(r)] = len(objs)
                objs.append(r)
    o = r = None
    objs.append(object())  # a probe only objs holds: its count is this function's own share
    counts = []
    for o in objs:
        counts.append(sys.getrefcount(o))
    o = None
    own = counts.pop()
    objs.pop()
    inner = [{} for _ in objs]
    for s, o in enumerate(objs):
        if not isinstance(o, types.ModuleType):
            for r in gc.get_referents(o):
                j = index.get(id(r))
                if j is not None:
                    inner[s][j] = inner[s].get(j, 0) + 1
    o = r = None
    refs = [c - own for c in counts]
    keep = set(range(len(objs)))
    changed = True
    while changed:
        changed = False
        got = [0] * len(objs)
        for s in keep:
            for j, c in inner[s].items():
                got[j] += c
        for j in list(keep):
            if j != 0 and refs[j] > got[j]:
                keep.discard(j)
                changed = True
    out = {id(objs[j]) for j in keep}
    del objs[:]
    return out


class Slotted:
    __slots__ = ("a", "b")


@dataclasses.dataclass(slots=True)
class SlotData:
    first: object
    second: object


Pair = collections.namedtuple("Pair", "a b")


class Holder:
    def __init__(self):
        self.buf = bytearray(6000)
        self.more = {"z": bytearray(905)}

    def method(self):
        return self.buf


class Target:
    pass


def make_shapes():
    """{name: object} of shapes whose retained sets have known answers."""
    shared = bytearray(500)

    def make_closure():
        data = bytearray(3000)

        def f():
            return data
        return f

    class WithClassAttr:
        cache = [bytearray(4000)]

    def with_default(x, memo={"k": bytearray(5000)}):
        return memo

    def gen():
        local = bytearray(7000)
        yield 1
        yield local

    suspended = gen()
    next(suspended)

    def callback_of(payload):
        def cb(ref):
            return payload
        return cb

    s = Slotted()
    s.a, s.b = bytearray(900), [bytearray(901)]
    target = Target()
    wvd = weakref.WeakValueDictionary()
    alive = [Target() for _ in range(3)]
    for k, v in enumerate(alive):
        wvd[k] = v
    return {
        "chain": [[[bytearray(100)]]],
        "diamond": {"a": [shared, bytearray(10)], "b": [shared, bytearray(20)]},
        "closure": make_closure(),
        "class attribute": WithClassAttr,
        "default argument": with_default,
        "bound method": Holder().method,
        "generator frame": suspended,
        "weakref callback": weakref.ref(target, callback_of(bytearray(8000))),
        "weak values": wvd,
        "slots": s,
        "dataclass slots": SlotData(bytearray(902), [1.5]),
        "namedtuple": Pair(bytearray(903), [2.5]),
        "inline attributes": Holder(),
        "deque": collections.deque([bytearray(906), bytearray(907)]),
        "OrderedDict": collections.OrderedDict(a=bytearray(908)),
        "defaultdict": collections.defaultdict(list, a=[bytearray(909)]),
        "partial": functools.partial(print, bytearray(912), k=[bytearray(913)]),
    }, (target, alive)


def test_dominated_sets_match_refcount_brute_force():
    """For every shape, dominated(x) is exactly what refcounts say x alone holds, and
    retained_size(x) the sum of their sizes (sys.getsizeof, __sizeof__ for bytearrays' buffers)."""
    shapes, alive = make_shapes()
    snap = heaptrail.snapshot()
    for name, x in shapes.items():
        got = {r.address for r in snap.dominated(x)}
        want = brute_dominated(x)
        assert got == want, (name, [snap.record(a) for a in got ^ want])
        assert snap.retained_size(x) == sum(snap.record(a).size for a in want), name
    # weak references retain nothing: the weakly held objects are held by `alive` only
    assert not {id(t) for t in alive[1]} & {r.address for r in snap.dominated(shapes["weak values"])}
    assert id(alive[0]) not in {r.address for r in snap.dominated(shapes["weakref callback"])}
    # known answers, by size: the bytearrays each shape alone holds are in its retained size
    held = {"closure": 3000, "class attribute": 4000, "default argument": 5000,
            "bound method": 6000 + 905, "generator frame": 7000, "weakref callback": 8000}
    for name, nbytes in held.items():
        assert snap.retained_size(shapes[name]) > nbytes, name
    # the shared bytearray of the diamond is in neither branch, but in the dict holding both
    d = shapes["diamond"]
    assert id(d["a"][0]) not in {r.address for r in snap.dominated(d["a"])}
    assert snap.dominator(d["a"][0]).address == id(d)


def test_object_held_by_a_global_and_a_frame_local_has_no_single_dominator():
    mod = types.ModuleType("ht_review_global_local")
    mod.G = [bytearray(910)]
    local = mod.G[0]
    snap = heaptrail.snapshot()
    assert snap.retained_size(mod.G) == sys.getsizeof(mod.G)
    assert snap.dominator(local) is None or snap.dominator(local).address != id(mod.G)
    del local
    snap = heaptrail.snapshot()
    assert snap.retained_size(mod.G) == sys.getsizeof(mod.G) + sys.getsizeof(mod.G[0])


# ---- paths -----------------------------------------------------------------------------------

PATHS_APP = '''
import collections, dataclasses

class Slot:
    __slots__ = ("a", "b")

@dataclasses.dataclass(slots=True)
class DC:
    first: object
    second: object

class Plain:
    def __init__(self):
        self.attr = None

def make():
    captured = ["closure-held"]
    def inner():
        return captured
    return inner

def gen():
    gen_local = ["gen-local"]
    yield 1
    yield gen_local

class K:
    klass_attr = ["class-held"]

def defaults(x, memo=["default-held"]):
    return memo

def kwdefaults(*, kw=["kwdefault-held"]):
    return kw
'''


@pytest.fixture
def paths_module():
    name = "ht_review_paths"
    mod = types.ModuleType(name)
    exec(PATHS_APP, mod.__dict__)
    sys.modules[name] = mod
    yield mod
    sys.modules.pop(name, None)


def bfs_distances(snap):
    """Forward breadth-first distances from every root, in Python over snap's edges."""
    n = snap.objects
    edges = [snap._h.edges(i) for i in range(n)]
    flags = [snap._h.record(i)[5] for i in range(n)]
    dist = [-1] * n
    frontier = [i for i in range(n) if flags[i] & ROOT]
    for i in frontier:
        dist[i] = 0
    while frontier:
        nxt = []
        for u in frontier:
            for d, _ in edges[u]:
                if dist[d] < 0:
                    dist[d] = dist[u] + 1
                    nxt.append(d)
        frontier = nxt
    return dist, edges, flags


def test_paths_are_shortest_real_edges_with_the_right_labels(paths_module):
    mod = paths_module
    s = mod.Slot()
    s.b = ["slot-b"]
    mod.S = s
    mod.D = mod.DC(None, ["dc-second"])
    mod.F = mod.make()
    mod.G = mod.gen()
    next(mod.G)
    p = mod.Plain()
    p.attr = ["inline-attr"]
    mod.P = p
    mod.KEYS = {1: ["int-key"], (1, "a"): ["tuple-key"], "it's": ["quote-key"],
                "new\nline": ["nl-key"], "ünï☃": ["nonascii-key"], 'dq"x': ["dq-key"],
                "back\\slash": ["bs-key"], -5: ["neg-key"], 2.5: ["float-key"], None: ["none-key"]}
    mod.NEST = {"outer": {7: {("t",): ["nested"]}}}
    mod.BM = mod.Plain().__init__
    mod.PART = functools.partial(print, ["partial-arg"], kw=["partial-kw"])
    mod.OD = collections.OrderedDict(od=["od-val"])
    want = {
        "slot-b": (mod.S.b, ".S -> .b"),
        "dc-second": (mod.D.second, ".D -> .second"),
        "closure-held": (mod.F.__closure__[0].cell_contents, ".F -> __closure__ -> [0] -> captured"),
        "gen-local": (None, ".G -> gen_local"),
        "class-held": (mod.K.klass_attr, ".K -> .klass_attr"),
        "default-held": (mod.defaults.__defaults__[0], ".defaults -> __defaults__ -> [0]"),
        "kwdefault-held": (mod.kwdefaults.__kwdefaults__["kw"], ".kwdefaults -> __kwdefaults__ -> ['kw']"),
        "inline-attr": (mod.P.attr, ".P -> .attr"),
        "int-key": (mod.KEYS[1], ".KEYS -> [1]"),
        "tuple-key": (mod.KEYS[1, "a"], ".KEYS -> [<tuple>]"),
        "quote-key": (mod.KEYS["it's"], ".KEYS -> ['it\\'s']"),
        "nl-key": (mod.KEYS["new\nline"], ".KEYS -> ['new\\x0aline']"),
        "nonascii-key": (mod.KEYS["ünï☃"], ".KEYS -> ['ünï☃']"),
        "dq-key": (mod.KEYS['dq"x'], ".KEYS -> ['dq\"x']"),
        "bs-key": (mod.KEYS["back\\slash"], ".KEYS -> ['back\\\\slash']"),
        "neg-key": (mod.KEYS[-5], ".KEYS -> [-5]"),
        "float-key": (mod.KEYS[2.5], ".KEYS -> [2.5]"),
        "none-key": (mod.KEYS[None], ".KEYS -> [None]"),
        "nested": (mod.NEST["outer"][7][("t",)], ".NEST -> ['outer'] -> [7] -> [<tuple>]"),
        "bound-self": (mod.BM.__self__.attr, ".BM -> __self__ -> .attr"),
        "partial-arg": (mod.PART.args[0], ".PART -> .args -> [0]"),
        "partial-kw": (mod.PART.keywords["kw"], ".PART -> .keywords -> ['kw']"),
        "od-val": (mod.OD["od"], ".OD -> ['od']"),
    }
    mod.BM.__self__.attr = ["bound-self"]
    want["bound-self"] = (mod.BM.__self__.attr, want["bound-self"][1])
    want["gen-local"] = (mod.G.gi_frame.f_locals["gen_local"], want["gen-local"][1])
    addrs = {k: (id(v), text) for k, (v, text) in want.items()}
    del s, p, want
    snap = heaptrail.snapshot()
    dist, edges, flags = bfs_distances(snap)
    for key, (addr, text) in addrs.items():
        path = snap.path_to_root(addr)
        i = snap._index(addr)
        assert str(path) == f"module {mod.__name__} -> {text} -> <list 0x{addr:x}>", key
        # module -> __dict__ -> ... : the module's dict is no root here, so exactly shortest
        assert len(path) == dist[i], key
        for a, b in zip(path.steps, path.steps[1:]):
            labels = [f"[{lab}]" if isinstance(lab, int) else lab for d, lab in edges[a.index]
                      if d == b.index]
            assert b.label in labels, (key, a, b, labels)


def test_non_identifier_attribute_names_read_as_keys(paths_module):
    """A namespace key that is no identifier read ".weird key" / ".a.b" (no such access exists,
    and a newline in it broke the one-line path): it now reads as the dict's key."""
    mod = paths_module
    mod.__dict__["weird key"] = ["module key"]
    obj = mod.Plain()
    obj.__dict__  # materialized: attributes are the dict's entries
    setattr(obj, "a.b", ["dotted"])
    setattr(obj, "two\nlines", ["newline"])
    obj.attr = ["plain"]
    mod.OBJ = obj
    addrs = {"weird": id(mod.__dict__["weird key"]), "dotted": id(getattr(obj, "a.b")),
             "newline": id(getattr(obj, "two\nlines")), "plain": id(obj.attr)}
    del obj
    snap = heaptrail.snapshot()
    text = {k: str(snap.path_to_root(a)) for k, a in addrs.items()}
    name = mod.__name__
    assert text["weird"] == f"module {name} -> __dict__ -> ['weird key'] -> <list 0x{addrs['weird']:x}>"
    assert text["dotted"].startswith(f"module {name} -> .OBJ -> ")
    assert text["dotted"].endswith(f"['a.b'] -> <list 0x{addrs['dotted']:x}>")
    assert "['two\\x0alines']" in text["newline"] and "\n" not in text["newline"]
    assert ("['a.b']", snap.record(mod.OBJ.__dict__)) in snap.referrers(addrs["dotted"])
    # identifiers keep the attribute form
    assert text["plain"] == f"module {name} -> .OBJ -> .attr -> <list 0x{addrs['plain']:x}>"


def test_attributes_of_an_instance_whose_dict_was_made_keep_their_names(paths_module):
    """3.13 keeps an instance's attributes inline after its __dict__ is made (vars(), pickling,
    copy): the instance's own references to them were unlabeled, so the shortest path read
    ".OBJ -> <list>", losing the attribute's name."""
    mod = paths_module
    obj = mod.Plain()
    vars(obj)
    obj.attr = ["after vars()"]
    obj.late = ["set from outside, after vars()"]
    mod.OBJ = obj
    addrs = (id(obj.attr), id(obj.late))
    del obj
    snap = heaptrail.snapshot()
    for addr, attr in zip(addrs, ("attr", "late")):
        assert str(snap.path_to_root(addr)) == (f"module {mod.__name__} -> .OBJ -> .{attr} -> "
                                                f"<list 0x{addr:x}>")
        assert (f".{attr}", snap.record(mod.OBJ.__dict__)) in snap.referrers(addr)


# ---- queries ---------------------------------------------------------------------------------

def test_query_numbers_with_leading_zeros_are_decimal():
    """'size == 0100' meant 64 (C's octal, through strtoll base 0) and 'size == 08' was refused:
    the grammar says decimal or 0x hex."""
    snap = heaptrail.snapshot()
    assert snap.query("size == 0100") == snap.query("size == 100") != []
    assert snap.query("size == 0064 and len >= 0") == snap.query("size == 64 and len >= 0")
    assert snap.query("size == 08") == snap.query("size == 8")
    assert snap.query("size == -010 or size == 0x40") == snap.query("size == 64")
    with pytest.raises(HeaptrailError, match="expected a value .* at position 8"):
        snap.query("size == 0b11")


NAMED_KINDS = {"function", "builtin_function_or_method", "builtin_method", "code", "generator",
               "coroutine", "async_generator"}


def test_query_matches_python_over_every_record():
    """Every field and operator, and/or/not precedence and parentheses: the objects a query finds
    are exactly those a Python evaluation of the same condition over every record finds."""
    keep = [Holder() for _ in range(7)]
    texts = ["it's a \"test\"", "back\\slash", "ünïcode ☃ text", "x" * 70]
    snap = heaptrail.snapshot()
    n = snap.objects
    recs = [snap._h.record(i) for i in range(n)]
    referrers = [0] * n
    for i in range(n):
        if not recs[i][5] & VIEW:  # a 3.13 view dict's entries are its owner's references
            for d, _ in snap._h.edges(i):
                referrers[d] += 1

    def field(i, f):
        address, tname, size, length, value, flags, owner, module, ti = recs[i]
        if f in ("value", "name"):  # a class's, function's, code's ... text is a name, not a value
            if tname == "frame":  # by design its function's name is both
                return value
            named = flags & (TYPE | MODULE) or module is not None or tname in NAMED_KINDS
            return value if bool(named) == (f == "name") else None
        if f == "module":
            m = None if flags & FRAME else module
            return recs[ti][7] if m is None and ti >= 0 else m
        return {"type": tname, "size": size, "len": length, "address": address,
                "referrers": referrers[i]}[f]

    def cmp(f, op, lit):
        def test(i):
            v = field(i, f)
            if isinstance(lit, int):
                if v is None:
                    return False
                return {"==": v == lit, "!=": v != lit, "<": v < lit, "<=": v <= lit, ">": v > lit,
                        ">=": v >= lit}[op]
            if op in ("==", "!="):
                names = [] if v is None else [v]
                if v is not None and (f == "type" or f == "name" and not recs[i][5] & MODULE):
                    names.append(v.rsplit(".", 1)[-1])
                return (lit in names) == (op == "==")
            return v is not None and (v.startswith(lit) if op == "startswith" else lit in v)
        return test

    A = lambda *fs: lambda i: all(f(i) for f in fs)  # noqa: E731
    O = lambda *fs: lambda i: any(f(i) for f in fs)  # noqa: E731
    N = lambda f: lambda i: not f(i)  # noqa: E731
    cases = [
        ("type == 'Holder'", cmp("type", "==", "Holder")),
        (f"type == '{__name__}.Holder'", cmp("type", "==", f"{__name__}.Holder")),
        ("type != 'Holder' and type startswith 'test_'", A(cmp("type", "!=", "Holder"), cmp("type", "startswith", "test_"))),
        ("type contains 'olde'", cmp("type", "contains", "olde")),
        ("size > 100 and size <= 200 or len == 3",
         O(A(cmp("size", ">", 100), cmp("size", "<=", 200)), cmp("len", "==", 3))),
        ("len == 3 or size > 100 and size <= 200",
         O(cmp("len", "==", 3), A(cmp("size", ">", 100), cmp("size", "<=", 200)))),
        ("(len == 3 or size > 100) and size <= 200",
         A(O(cmp("len", "==", 3), cmp("size", ">", 100)), cmp("size", "<=", 200))),
        ("not len < 5 and type == 'list'", A(N(cmp("len", "<", 5)), cmp("type", "==", "list"))),
        ("not (len < 5 or type != 'list')", N(O(cmp("len", "<", 5), cmp("type", "!=", "list")))),
        ("len != 5 and type == 'Holder'", A(cmp("len", "!=", 5), cmp("type", "==", "Holder"))),
        ("value == 'it\\'s a \"test\"'", cmp("value", "==", "it's a \"test\"")),
        ('value == "back\\\\slash"', cmp("value", "==", "back\\slash")),
        ("value startswith 'ünïcode'", cmp("value", "startswith", "ünïcode")),
        ("value contains '☃'", cmp("value", "contains", "☃")),
        ("value != 'x' and type == 'str' and len >= 70", A(cmp("value", "!=", "x"), cmp("type", "==", "str"), cmp("len", ">=", 70))),
        ("name == '__init__'", cmp("name", "==", "__init__")),
        ("name startswith 'Holder'", cmp("name", "startswith", "Holder")),
        ("name != 'method' and type == 'function' and module == 'builtins'",
         A(cmp("name", "!=", "method"), cmp("type", "==", "function"), cmp("module", "==", "builtins"))),
        (f"module == '{__name__}'", cmp("module", "==", __name__)),
        ("module startswith 'collections' and size >= 1000", A(cmp("module", "startswith", "collections"), cmp("size", ">=", 1000))),
        ("referrers == 0", cmp("referrers", "==", 0)),
        ("referrers >= 50 and referrers < 0x60", A(cmp("referrers", ">=", 50), cmp("referrers", "<", 0x60))),
        ("address == 0x%x" % id(keep[2]), cmp("address", "==", id(keep[2]))),
        ("address != %d and type = 'Holder'" % id(keep[2]), A(cmp("address", "!=", id(keep[2])), cmp("type", "==", "Holder"))),
        ("len >= -1 and len < 0", cmp("len", "<", 0)),
        ("not not len > 1000", cmp("len", ">", 1000)),
    ]
    for expr, test in cases:
        got = {r.address for r in snap.query(expr)}
        want = {recs[i][0] for i in range(n) if test(i)}
        assert got == want, expr
    assert len({r.address for r in snap.query("type == 'Holder'")}) == 7
    assert len(snap.query("value == 'it\\'s a \"test\"'")) >= 1 and len(texts) == 4


# ---- cycles ----------------------------------------------------------------------------------

class Node:
    pass


class Finalized:
    def __del__(self):
        pass


def strongly_connected(n, adj):
    """Tarjan's components, iteratively, in Python: a list of lists of nodes."""
    index, low, onstack = [-1] * n, [0] * n, [False] * n
    stack, out, counter = [], [], 0
    for s in range(n):
        if index[s] >= 0:
            continue
        work = [(s, 0)]
        while work:
            v, p = work[-1]
            if p == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                onstack[v] = True
            if p < len(adj[v]):
                work[-1] = (v, p + 1)
                w = adj[v][p]
                if index[w] < 0:
                    work.append((w, 0))
                elif onstack[w]:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    onstack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def test_cycles_are_exactly_the_strongly_connected_components():
    """Without gc_first: a garbage ring of 5, a garbage ring of 3 with __del__, a garbage list
    holding itself and a live pair. Every cycle graph.c reports is a component Python's Tarjan
    finds over the same edges and the reverse; each ring is exactly its members."""
    gc.collect()
    gc.disable()
    try:
        ring = [Node() for _ in range(5)]
        for a, b in zip(ring, ring[1:] + ring[:1]):
            a.next = b
        fins = [Finalized() for _ in range(3)]
        for a, b in zip(fins, fins[1:] + fins[:1]):
            a.next = b
        selfish = []
        selfish.append(selfish)
        live = [Node(), Node()]
        live[0].peer, live[1].peer = live[1], live[0]
        groups = {"ring": {id(x) for x in ring}, "fin": {id(x) for x in fins},
                  "self": {id(selfish)}, "live": {id(x) for x in live}}
        del ring, fins, selfish, a, b
        snap = heaptrail.snapshot(gc_first=False)
    finally:
        gc.enable()
        gc.collect()
    n = snap.objects
    adj = [[d for d, _ in snap._h.edges(i)] for i in range(n)]
    want = {frozenset(c) for c in strongly_connected(n, adj) if len(c) > 1 or c[0] in adj[c[0]]}
    cycles = snap.cycles()
    assert {frozenset(c.indexes) for c in cycles} == want
    assert [c.total_size for c in cycles] == sorted((c.total_size for c in cycles), reverse=True)
    expect = {"ring": (True, False), "fin": (True, True), "self": (True, False), "live": (False, False)}
    for name, ids in groups.items():
        members = {snap._index(a) for a in ids}
        (c,) = [c for c in cycles if members & set(c.indexes)]
        assert set(c.indexes) == members, name
        assert (c.garbage, c.has_finalizers) == expect[name], name
        assert c.uncollectable is False  # PEP 442: __del__ no longer blocks collection
        assert c.total_size == sum(snap._h.record(i)[2] for i in members)
    assert {frozenset(c.indexes) for c in snap.cycles(garbage=True)} == {
        frozenset(c.indexes) for c in cycles if c.garbage}
    # a garbage ring hangs from its lowest-numbered member, which retains the whole ring
    ring = sorted(snap._index(a) for a in groups["ring"])
    assert snap.retained_size(snap._record(ring[0]).address) == sum(snap._h.record(i)[2] for i in ring)
    assert {r.address for r in snap.dominated(snap._record(ring[0]).address)} == groups["ring"]
    assert not snap.path_to_root(snap._record(ring[0]).address).reachable


# ---- Graphviz --------------------------------------------------------------------------------

def test_to_dot_of_a_known_dict_counts_and_escapes():
    """Depth 1 from a dict of five awkward keys: the dict, its 5 keys and 5 values are the
    nodes; its 10 references the edges (keys unlabeled, values by key); every DOT string is
    closed (quotes and backslashes escaped, no raw newline)."""
    import re

    d = {"a'q": [1], 'k"': [2], "new\nline": [3], "<b>": [4], "back\\": [5]}
    snap = heaptrail.snapshot()
    dot = snap.to_dot(d, depth=1)
    nodes = re.findall(r"^  o(\d+) \[label=\"((?:[^\"\\]|\\.)*)\"", dot, re.M)
    edges = re.findall(r"^  o(\d+) -> o(\d+)(?: \[label=\"((?:[^\"\\]|\\.)*)\"\])?;$", dot, re.M)
    ix = {int(i) for i, _ in nodes}
    want = {snap._index(d)} | {snap._index(k) for k in d} | {snap._index(v) for v in d.values()}
    assert ix == want and len(nodes) == 11
    assert len(edges) == 10 and all(int(a) == snap._index(d) for a, _, _ in edges)
    labels = sorted(lab for _, _, lab in edges if lab)
    assert labels == sorted(["['a\\\\'q']", "['k\\\"']", "['new\\\\x0aline']", "['<b>']",
                             "['back\\\\\\\\']"])
    assert dot.count("\n") == len(dot.splitlines()) and all(
        ln.startswith(("digraph", "  ", "}")) for ln in dot.splitlines())
    # the keys' values are escaped in the nodes as well
    text = dict(nodes)
    key = next(k for k in d if k == 'k"')
    assert '\\nk\\"\\n' in text[str(snap._index(key))]
    key = next(k for k in d if k.startswith("new"))
    assert "new?line" in text[str(snap._index(key))]
    back = snap.to_dot(d["<b>"], direction="backrefs", depth=1)
    assert f"o{snap._index(d)} -> o{snap._index(d['<b>'])} [label=\"['<b>']\"];" in back


# ---- summaries, diffs, files -----------------------------------------------------------------

class Grown:
    def __init__(self, k):
        self.k = [k]


def test_diff_by_owner_and_module_counts_exactly_the_added():
    held = []
    older = heaptrail.snapshot()
    for k in range(17):
        g = Grown(k)
        vars(g)  # its dict made: one "dict of Grown" more each
        held.append(g)
    del g
    newer = heaptrail.snapshot()
    owner = {r.kind: r for r in newer.diff(older, by="owner")}
    row = owner[f"dict of {__name__}.Grown"]
    assert (row.count_delta, row.added, row.removed, row.count) == (17, 17, 0, 17)
    assert row.size_delta == sum(sys.getsizeof(vars(g)) for g in held)
    row = owner[f"{__name__}.Grown"]
    assert (row.count_delta, row.added, row.count) == (17, 17, 17)
    mine = {r.kind: r for r in newer.diff(older, by="module")}[__name__]
    assert mine.added >= 17 and mine.count == sum(1 for o in gc.get_objects()
                                                   if type(o).__module__ == __name__)


def every_view(snap, addrs):
    """Every answer the views give about the objects at addrs, as plain data."""
    out = {"summary": [list(snap.summary(by=b)) for b in ("type", "owner", "module")],
           "top": [tuple(r) for r in snap.top_retainers(50)],
           "top_lists": [tuple(r) for r in snap.top_retainers(20, kind="list")],
           "cycles": [(c.indexes, c.total_size, c.has_finalizers, c.uncollectable, c.garbage,
                       str(c)) for c in snap.cycles()],
           "query": snap.query("retained > 5000 and referrers >= 1 and type != 'module'"),
           "query_names": snap.query("name == 'method' or value contains 'awkward'")}
    for name, a in addrs.items():
        idom = snap.dominator(a)
        out[name] = (snap.record(a), snap.retained_size(a), snap.dominated(a),
                     None if idom is None else idom.address, str(snap.path_to_root(a)),
                     [(s.label, s.index, s.text) for s in snap.path_to_root(a).steps],
                     snap.referrers(a), snap.referents(a),
                     snap.to_dot(a, depth=2), snap.to_dot(a, direction="backrefs", depth=2))
    return out


def test_save_and_load_keep_every_answer(tmp_path):
    shapes, alive = make_shapes()
    shapes["awkward"] = {"awkward 'key'\n": [bytearray(64)], 7: ("awkward value ☃",)}
    gc.collect()
    gc.disable()
    try:
        garbage = [Finalized(), Node()]
        garbage[0].peer, garbage[1].peer = garbage[1], garbage[0]
        addrs = {name: id(x) for name, x in shapes.items()}
        addrs["garbage"] = id(garbage[0])
        del garbage
        snap = heaptrail.snapshot(gc_first=False)
    finally:
        gc.enable()
        gc.collect()
    before = every_view(snap, addrs)
    snap.save(tmp_path / "all.htsnap")
    back = heaptrail.load(tmp_path / "all.htsnap")
    after = every_view(back, addrs)
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == before[key], key
    assert any(c[4] for c in before["cycles"])  # the garbage pair is there, flagged, in both
    assert before["garbage"][4].endswith("is not reachable from any root "
                                         "(garbage, or held only by unreachable objects)")


def test_one_object_in_two_of_many_slots_gets_both_names():
    """Past 64 label candidates (a class of 70 slots) the labels came from a table of the first
    candidate per object: a list in slots a3 and a50 was referred to as ".a3" twice."""
    ns = {}
    exec("class Wide:\n    __slots__ = tuple(f'a{k}' for k in range(70))\n", ns)
    w = ns["Wide"]()
    for k in range(70):
        setattr(w, f"a{k}", [k])
    shared = ["shared"]
    w.a3 = w.a50 = w.a69 = shared
    snap = heaptrail.snapshot()
    assert sorted(lab for lab, r in snap.referrers(shared) if r.address == id(w)) == [".a3", ".a50", ".a69"]
    assert dict((lab, r.address) for lab, r in snap.referents(w))[".a68"] == id(w.a68)
    assert len(snap.referents(w)) == 71  # 70 slots and the class


def test_referrers_counts_references_not_view_entries():
    """3.13: an instance whose __dict__ was made still holds its attributes inline, and the dict's
    entries are edges that name them without holding a reference: query's referrers counted 2
    for an attribute held once (3.11 and 3.12 said 1)."""
    mod = types.ModuleType("ht_review_referrers")
    obj = Holder()
    vars(obj)
    obj.attr = ["held once"]
    mod.OBJ = obj
    d = {"k": ["held once too"]}
    mod.D = d
    addrs = (id(obj.attr), id(d["k"]))
    assert [sys.getrefcount(mod.OBJ.attr), sys.getrefcount(mod.D["k"])] == [2, 2]  # one + the call's
    del obj, d
    snap = heaptrail.snapshot()
    for a in addrs:
        assert [r.address for r in snap.query(f"address == {a} and referrers == 1")] == [a]
    # the view's entries still name the attribute (and the dict is the instance's)
    assert (".attr", snap.record(mod.OBJ.__dict__)) in snap.referrers(addrs[0])
    assert snap.dominator(addrs[0]).address in (id(mod.OBJ), id(mod.OBJ.__dict__))


class BigClassAttribute:
    blob = bytearray(300_000)


def test_a_class_namespace_is_described_by_its_class():
    """A class's __dict__ read "dict of type" (a top_retainers row, a path's step), where a
    module's reads "dict of module NAME" and the DOT node "of <the class>"."""
    (namespace,) = gc.get_referents(BigClassAttribute.__dict__)  # the dict behind the proxy
    snap = heaptrail.snapshot()
    text = f"dict of class {__name__}.BigClassAttribute"
    assert snap._describe(snap._index(namespace)) == text
    rows = snap.top_retainers(1000, kind="dict")
    (row,) = [r for r in rows if r.address == id(namespace)]
    assert row.text == text and row.retained >= 300_000
    assert str(snap.path_to_root(namespace)).endswith(f"-> {text}")
    assert f"of {__name__}.BigClassAttribute" in snap.to_dot(namespace, depth=0)


class Items(list):
    pass


class Record(tuple):
    __slots__ = ()


def test_items_of_list_and_tuple_subclasses_read_by_index(paths_module):
    """A namedtuple's, a list subclass's, a struct sequence's items were unlabeled references: a
    path through a namedtuple read ".N -> <list>", the step lost; they now read [k] as an exact
    list's or tuple's, checked item by item against the objects themselves."""
    import os

    mod = paths_module
    mod.N = Pair(["first"], ["second"])
    mod.L = Items([["item"] for _ in range(100)])
    mod.L.append(mod.L[3])  # one object at [3] and [100]
    mod.T = Record((["r0"], ["r1"]))
    mod.ST = os.stat(".")
    addr = id(mod.N.b)
    snap = heaptrail.snapshot()
    assert str(snap.path_to_root(addr)) == f"module {mod.__name__} -> .N -> [1] -> <list 0x{addr:x}>"
    for seq in (mod.N, mod.L, mod.T, mod.ST):
        labeled = [(lab, r.address) for lab, r in snap.referents(seq) if lab and lab.startswith("[")]
        assert sorted(int(lab[1:-1]) for lab, _ in labeled) == list(range(len(seq))), type(seq)
        assert all(a == id(seq[int(lab[1:-1])]) for lab, a in labeled), type(seq)
    assert sorted(lab for lab, r in snap.referrers(mod.L[3]) if r.address == id(mod.L)) == ["[100]", "[3]"]


def test_top_retainers_are_the_largest_retained_sizes():
    """Rows are the n largest retained sizes, an owned __dict__ its owner dominates left out (the
    owner's row stands for both); the retained sizes of the objects no single object dominates
    add up to the whole heap, and each object's retained size is its dominated objects' sizes."""
    from heaptrail import _core

    keep = [bytearray(2_000_000 + k) for k in range(3)]
    snap = heaptrail.snapshot()
    n = snap.objects
    h = snap._h
    retained = [_core.graph_retained(h, i) for i in range(n)]
    idom = [_core.graph_idom(h, i) for i in range(n)]
    recs = [h.record(i) for i in range(n)]
    assert sum(retained[i] for i in range(n) if idom[i] is None) == snap.total_size
    shown = [i for i in range(n) if not (recs[i][5] & DICT and recs[i][6] >= 0 and idom[i] == recs[i][6])]
    want = sorted((retained[i] for i in shown), reverse=True)[:40]
    top = snap.top_retainers(40)
    assert [r.retained for r in top] == want
    assert all(r.retained == retained[r.index] and r.size == recs[r.index][2] for r in top)
    mine = snap.top_retainers(3, kind="bytearray")
    assert sorted(r.address for r in mine) == sorted(id(b) for b in keep)
    for r in top[:10] + mine:
        assert r.retained == sum(x.size for x in snap.dominated(r.address))


STORED_ERROR_APP = '''
def work():
    big_local = bytearray(100_000)
    captured = ["a cell variable"]
    def use():
        return captured
    raise ValueError("boom", ["an argument"])

def fail():
    try:
        work()
    except ValueError as e:
        raise KeyError("outer") from e

try:
    fail()
except KeyError as e:
    ERR = e
'''


def test_a_stored_exception_names_its_traceback_frames_and_their_locals(paths_module):
    """The classic leak: an exception kept in a global holds its traceback, its frames and their
    locals. The path read "-> .ERR -> <traceback ..> -> <traceback ..> -> frame work ->
    <bytearray ..>": no label said which traceback link, nor which local of the finished frame."""
    mod = paths_module
    exec(STORED_ERROR_APP, mod.__dict__)
    inner = mod.ERR.__cause__
    tb = inner.__traceback__
    while tb.tb_frame.f_code.co_name != "work":
        tb = tb.tb_next
    frame = tb.tb_frame
    blob = frame.f_locals["big_local"]
    addrs = {"blob": id(blob), "arg": id(inner.args[1]), "frame": id(frame), "err": id(mod.ERR),
             "inner": id(inner), "tb": id(inner.__traceback__)}
    del inner, tb, frame, blob
    snap = heaptrail.snapshot()
    path = str(snap.path_to_root(addrs["blob"]))
    assert path.startswith(f"module {mod.__name__} -> .ERR -> ")
    assert path.endswith(f"-> tb_frame -> big_local -> <bytearray 0x{addrs['blob']:x}>")
    assert "<traceback" not in path and "frame work" not in path
    # raise ... from e: the inner exception is both the cause and the context, equally near
    assert str(snap.path_to_root(addrs["arg"])) in (
        f"module {mod.__name__} -> .ERR -> {via} -> args -> [1] -> <list 0x{addrs['arg']:x}>"
        for via in ("__cause__", "__context__"))
    err = dict((lab, r.address) for lab, r in snap.referents(addrs["err"]))
    assert err["__cause__"] == err["__context__"] == addrs["inner"]
    assert dict((lab, r.address) for lab, r in snap.referents(addrs["inner"]))["__traceback__"] == addrs["tb"]
    frame = dict((lab, r) for lab, r in snap.referents(addrs["frame"]))
    assert frame["big_local"].address == addrs["blob"]
    assert frame["captured"].type == "cell"  # the finished frame holds the cell itself
    assert frame["use"].type == "function"


def test_query_value_is_data_and_name_is_names():
    """value == 'append' found builtin methods and value contains 'x' code objects, frames and
    generators (their text is a name); name == '2' found enum members (int values)."""
    import signal

    def suspended_gen_7e2():
        yield 1

    g = suspended_gen_7e2()
    next(g)
    text = "suspended_gen_7e2"
    snap = heaptrail.snapshot()
    found = {r.type for r in snap.query("value == 'suspended_gen_7e2'")}
    assert found == {"str"}
    assert {r.type for r in snap.query("name == 'suspended_gen_7e2'")} >= {"function", "code", "generator"}
    assert "str" not in {r.type for r in snap.query("name == 'suspended_gen_7e2'")}
    assert {r.type for r in snap.query("value == 'append'")} <= {"str"}
    appends = {r.type for r in snap.query("name == 'append'")}
    assert "builtin_function_or_method" in appends and appends <= NAMED_KINDS
    sig = snap.query(f"address == {id(signal.SIGINT)}")[0]
    assert sig.value == str(int(signal.SIGINT))
    assert snap.query(f"address == {id(signal.SIGINT)} and value == '{int(signal.SIGINT)}'") == [sig]
    assert snap.query(f"address == {id(signal.SIGINT)} and name == '{int(signal.SIGINT)}'") == []
    assert len(text) == 17


def test_a_cycle_through_a_legacy_tp_del_is_uncollectable():
    """Cycle.uncollectable was False for every cycle: graph.c tested the flag with #ifdef, and the
    flag was no macro (nor recorded). A type with a C-level tp_del (_testcapi.with_tp_del makes
    one) sends a garbage cycle through it to gc.garbage; __del__ (tp_finalize) does not."""
    _testcapi = pytest.importorskip("_testcapi", reason="CPython's _testcapi is not installed")

    class Legacy:
        def __tp_del__(self):
            pass

    Legacy = _testcapi.with_tp_del(Legacy)
    gc.collect()
    gc.disable()
    try:
        a, b, c, d = Legacy(), Node(), Finalized(), Node()
        a.peer, b.peer, c.peer, d.peer = b, a, d, c
        legacy, modern = {id(a), id(b)}, {id(c), id(d)}
        del a, b, c, d
        snap = heaptrail.snapshot(gc_first=False)
    finally:
        gc.enable()
        gc.collect()
        stuck = [o for o in gc.garbage if isinstance(o, (Legacy, Node))]
        for o in stuck:  # the collector kept the legacy pair: break it and let it go
            o.peer = None
            gc.garbage.remove(o)
        del stuck
    cycles = snap.cycles(garbage=True)
    (old,) = [c for c in cycles if {snap._index(x) for x in legacy} == set(c.indexes)]
    (new,) = [c for c in cycles if {snap._index(x) for x in modern} == set(c.indexes)]
    assert (old.uncollectable, old.has_finalizers, old.garbage) == (True, True, True)
    assert (new.uncollectable, new.has_finalizers, new.garbage) == (False, True, True)
    assert "UNCOLLECTABLE" in str(old) and "UNCOLLECTABLE" not in str(new)
    assert [c.indexes for c in snap.cycles() if c.uncollectable] == [old.indexes]
