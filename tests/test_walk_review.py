"""Adversarial review of the heap snapshot walk (heap.c ht_hw_walk, own.c, framevars.c, size.c
and heap.py): it runs none of the program's code, changes nothing, and records unusual objects
as gc.get_referents, sys.getsizeof and id() say, from wherever it is taken. The spies run in
a child interpreter: they leave sys.modules entries and an audit hook (which cannot be removed)
that would outlive the test."""
import array
import asyncio
import collections
import ctypes
import enum
import functools
import gc
import itertools
import json
import os
import signal
import sys
import textwrap
import threading
import types
import weakref

import pytest

import heaptrail
from heaptrail import _core
from heaptrail.heap import FRAME, ROOT, UNREACHABLE

from conftest import run_python

_SPIES = """
    import gc, json, sys, types, weakref
    import heaptrail
    calls = []
    armed = [False]

    def log(*what):
        if armed[0]:
            calls.append(" ".join(map(str, what)))

    class Name(str):
        def __hash__(self):
            log("Name.__hash__", str.__str__(self))
            return str.__hash__(self)

        def __eq__(self, other):
            log("Name.__eq__", str.__str__(self))
            return str.__eq__(self, other)

    class Meta(type):
        def __getattribute__(cls, name):
            log("Meta.__getattribute__", name)
            return type.__getattribute__(cls, name)

        def __eq__(cls, other):
            log("Meta.__eq__")
            return type.__eq__(cls, other)

        __hash__ = type.__hash__

    class Desc:
        def __get__(self, obj, tp=None):
            log("Desc.__get__")
            return 1

    class Spy(metaclass=Meta):
        d = Desc()

        @property
        def p(self):
            log("Spy.p")
            return 2

        def __getattr__(self, name):
            log("Spy.__getattr__", name)
            raise AttributeError(name)

        def __getattribute__(self, name):
            log("Spy.__getattribute__", name)
            return object.__getattribute__(self, name)

        def __eq__(self, other):
            log("Spy.__eq__")
            return False

        def __hash__(self):
            log("Spy.__hash__")
            return 1

        def __repr__(self):
            log("Spy.__repr__")
            return "Spy"

        def __del__(self):
            log("Spy.__del__")

        def use(self):
            return self.x, self.p, self.d, self.missing

    class Sized:
        def __sizeof__(self):
            log("Sized.__sizeof__")
            return 40

    class NotAModule:
        '''An object in sys.modules that is no module (lazy importers put such there).'''

        def __getattribute__(self, name):
            log("NotAModule.__getattribute__", name)
            return object.__getattribute__(self, name)

        @property
        def __class__(self):
            log("NotAModule.__class__")
            return types.ModuleType

    class OddModule(types.ModuleType):
        def __getattribute__(self, name):
            log("OddModule.__getattribute__", name)
            return types.ModuleType.__getattribute__(self, name)

    spy = Spy()
    object.__setattr__(spy, "x", [1])
    keyed = {Name("k1"): Spy(), Name("k2"): [2], Spy(): 3}
    sized = Sized()
    ref = weakref.ref(spy, lambda r: log("weakref callback"))
    sys.modules["walk_review_none"] = None
    sys.modules["walk_review_instance"] = NotAModule()
    sys.modules[Name("walk_review_named")] = types.ModuleType("walk_review_named")
    sys.modules["walk_review_odd"] = OddModule("walk_review_odd")
    gc.callbacks.append(lambda phase, info: log("gc callback", phase))
    sys.addaudithook(lambda event, args: log("audit", event))
    heaptrail.snapshot(gc_first=False)  # heaptrail's lazy imports done
    gc.collect()
    """


def _spied(body):
    """Runs the spies' program, then body (armed), in a child; returns what ran."""
    code = _SPIES + textwrap.indent(textwrap.dedent(body), "    ") + """
    armed[0] = False
    print(json.dumps(calls))
    """
    return json.loads(run_python(code).stdout.splitlines()[-1])


def test_sys_modules_entries_that_are_no_modules_run_no_code():
    """heap.py asked isinstance(m, types.ModuleType) of every sys.modules value (which reads
    __class__ through the object's own __getattribute__ when the type is not a module's) and
    read m.__dict__ through the module's (a ModuleType subclass's) __getattribute__."""
    ran = _spied("""
    armed[0] = True
    heaptrail.snapshot(gc_first=False)
    """)
    assert [c for c in ran if "NotAModule" in c or "OddModule" in c] == []


def test_str_subclass_names_in_sys_modules_run_no_code():
    """A str subclass as a sys.modules key: heaptrail's lookups of the names it imported
    (sys.modules.get(name), `name in before`) called its __eq__ and __hash__, on every snapshot
    and on each of heaptrail's lazy imports."""
    ran = _spied("""
    armed[0] = True
    heaptrail.snapshot(gc_first=False)
    heaptrail.snapshot(gc_first=True)
    heaptrail.objgraph  # a lazy import of heaptrail's (heaptrail._note_imports)
    """)
    assert [c for c in ran if c.startswith("Name.")] == []


def test_sizing_never_calls_a_metaclass_getattribute():
    """An instance of a class whose metaclass overrides __getattribute__ is sized after the walk:
    size.c looked __sizeof__ up with PyObject_GetAttr on the class, which ran the metaclass's
    __getattribute__; sys.getsizeof looks it up on the type's MRO and calls no such thing."""
    ran = _spied("""
    class Fresh(metaclass=Meta):
        pass

    fresh = Fresh()
    armed[0] = True
    size = sys.getsizeof(fresh)
    log("getsizeof done")
    snap = heaptrail.snapshot(gc_first=False)
    log("sizes", snap.record(fresh).size == size, heaptrail.sizeof(fresh) == size)
    """)
    assert ran[0] == "getsizeof done"
    assert [c for c in ran if c.startswith("Meta.")] == []
    assert "sizes True True" in ran


def test_thread_subclasses_properties_are_not_read():
    """The frames' thread names came from threading.enumerate() and each Thread's `name` and
    `ident` properties: a Thread subclass's own `name` property or __getattribute__ ran. The
    names are read from the threads' fields; a frame still says its thread."""
    ran = _spied("""
    import threading

    class Worker(threading.Thread):
        def __getattribute__(self, attr):
            log("Worker.__getattribute__", attr)
            return threading.Thread.__getattribute__(self, attr)

        @property
        def label(self):
            log("Worker.label")
            return "x"

    stop = threading.Event()
    ready = threading.Event()

    def work():
        ready.set()
        stop.wait(30)

    w = Worker(target=work, name="walk-review-worker")
    w.start()
    ready.wait(10)
    armed[0] = True
    snap = heaptrail.snapshot(gc_first=False)
    armed[0] = False
    frames = [snap._h.record(i) for i in range(snap.objects) if snap._h.record(i)[5] & (1 << 7)]
    named = any(r[4] == "work" and r[7] == "walk-review-worker" for r in frames)
    stop.set()
    w.join()
    armed[0] = True
    log("named", named)
    """)
    assert [c for c in ran if not c.startswith(("audit ", "Sized."))] == ["named True"]


def test_the_walk_runs_none_of_the_programs_code():
    """Spies on every hook the walk could reach: only a Python __sizeof__ runs, once, after the
    walk (documented); no collection ran (no garbage), so no gc callback; the C walk raises no
    audit event (heap.py's own bookkeeping before it does: see the report)."""
    ran = _spied("""
    from heaptrail import _core
    armed[0] = True
    _core.heap_snapshot(False)
    log("walk done")
    _core.heap_snapshot(True)
    """)
    assert ran == ["Sized.__sizeof__", "walk done", "Sized.__sizeof__"]


class _Sample:
    pass


# ---- nothing changes -----------------------------------------------------------------------------

def _closure_maker():
    """A function made from fresh code (no cache of its own yet), with free variables."""
    ns = {}
    exec("def outer():\n"
         "    walk_review_free_a = [1]\n"
         "    walk_review_free_b = (2,)\n"
         "    def inner():\n"
         "        own = 1\n"
         "        return own, walk_review_free_a, walk_review_free_b\n"
         "    return inner\n", ns)
    return ns["outer"]()


def _tuples_of(names):
    return [o for o in gc.get_objects()
            if type(o) is tuple and len(o) == len(names) and all(type(x) is str for x in o) and o == names]


def test_the_walk_creates_no_object_the_program_keeps():
    """Labeling closure cells asked PyCode_GetFreevars for the variables' names: 3.12 and 3.13
    cache the tuple it makes on the code object, so every walk left a new tuple per closure's
    code in the program (gc.get_count() grew after a snapshot of a heap that had not changed)."""
    inner = _closure_maker()
    names = ("walk_review_free_a", "walk_review_free_b")
    assert _tuples_of(names) == []
    snap = heaptrail.snapshot(gc_first=False)
    assert _tuples_of(names) == []
    # and the cells are still named after the variables
    cells = inner.__closure__
    assert [lab for _, lab in snap._h.edges(snap._index(cells[0]))] == ["walk_review_free_a"]
    assert [lab for _, lab in snap._h.edges(snap._index(cells[1]))] == ["walk_review_free_b"]
    # the collector's counts: the frames above are materialized, the walk allocates nothing kept
    sys._current_frames()
    before = gc.get_count()
    h = _core.heap_snapshot(False)
    assert gc.get_count() == before
    del h


def test_refcounts_gc_state_and_freeze_count_unchanged():
    interned = sys.intern("walk_review_interned_name")
    mod = types.ModuleType("walk_review_sample")
    objs = [interned, 10 ** 30, [1], {"k": 2}, mod, mod.__dict__, _Sample, _Sample(), heaptrail]
    if sys.version_info >= (3, 12):  # immortal: their counts never move (3.11 counts every use)
        objs += [None, True, False, 0, 1, 255, "", "a", (), int, sys]
    gc.collect()
    before = [sys.getrefcount(o) for o in objs]
    snap = heaptrail.snapshot()
    snap2 = heaptrail.snapshot(gc_first=False)
    del snap, snap2  # their attributes hold None
    assert [sys.getrefcount(o) for o in objs] == before
    gc.disable()
    try:
        heaptrail.snapshot()
        heaptrail.snapshot(gc_first=False)
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert gc.isenabled()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        _core.heap_snapshot(True)
        _core.heap_snapshot(False)
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


@pytest.mark.noasan  # ASan's allocator: no pymalloc blocks to count
def test_allocated_blocks_come_back_after_the_snapshot():
    heaptrail.snapshot()
    gc.collect()
    grown = []
    for _ in range(3):
        before = sys.getallocatedblocks()
        snap = heaptrail.snapshot()
        del snap
        gc.collect()
        grown.append(sys.getallocatedblocks() - before)
    assert min(grown) <= 0 and max(grown) < 16, grown


def test_dict_order_and_contents_unchanged():
    d = {k: [k] for k in range(50)}
    del d[10], d[20]
    d[10] = "back"
    s = {("t", k) for k in range(30)}
    items, members = list(d.items()), list(s)
    heaptrail.snapshot(gc_first=False)
    assert list(d.items()) == items and list(s) == members


def test_exception_state_inside_except_is_left_intact():
    try:
        raise KeyError("walk-review")
    except KeyError as exc:
        info = sys.exc_info()
        snap = heaptrail.snapshot()
        heaptrail.snapshot(gc_first=False)
        assert sys.exc_info() == info
        assert exc.__context__ is None and exc.__traceback__.tb_next is None
        assert snap._h.index(id(exc)) >= 0


class _Interrupting:
    """A __sizeof__ written in Python during which Ctrl-C arrives (as the default SIGINT handler
    raises it in whatever bytecode runs)."""
    armed = False

    def __sizeof__(self):
        if _Interrupting.armed:
            _Interrupting.armed = False
            raise KeyboardInterrupt
        return 48


def test_keyboard_interrupt_during_a_deferred_sizeof_is_not_swallowed():
    """The deferred sizes cleared any error of a __sizeof__ (the object sized as its basic size),
    a KeyboardInterrupt too: Ctrl-C during a snapshot was lost. sys.getsizeof lets it through;
    so does the snapshot now (ordinary errors still fall back to the basic size)."""
    keep = _Interrupting()
    _Interrupting.armed = True
    with pytest.raises(KeyboardInterrupt):
        heaptrail.snapshot(gc_first=False)
    assert not _Interrupting.armed
    snap = heaptrail.snapshot(gc_first=False)
    assert snap.record(keep).size == sys.getsizeof(keep)


def test_a_pending_signal_runs_after_the_snapshot_not_during_it():
    got = []

    def handler(signum, frame):
        got.append(signum)

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        os.kill(os.getpid(), signal.SIGUSR1)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})  # pending now: flagged
        h = _core.heap_snapshot(False)
        # C code between the unblock and here checks no signal: the handler waits for bytecode
        seen = list(got)
        del h
        for _ in range(3):
            pass
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert got == [signal.SIGUSR1]
    assert seen in ([], [signal.SIGUSR1])  # the unblock's own return may run it first


# ---- unusual objects ----------------------------------------------------------------------------

class _Slots:
    __slots__ = ("a", "b", "__weakref__", "__dict__")


class _DictSub(dict):
    pass


class _ListSub(list):
    pass


class _TupleSub(tuple):
    pass


_NT = collections.namedtuple("_NT", "x y")


class _Color(enum.Enum):
    RED = 1

    def describe(self):
        return self.__class__.__name__


class _Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int)]


class _Before:
    pass


class _After:
    pass


def _gen():
    gen_local = [1, 2]
    yield gen_local


async def _coro():
    coro_local = {"c": 1}
    await asyncio.sleep(0)


async def _agen():
    agen_local = (1, 2)
    yield agen_local


def _cell_of(value):
    return (lambda: value).__closure__[0]


def _unusual():
    objs = {}
    s = _Slots()
    s.a, s.b, s.c = [1], "bee", 3
    objs["slots"] = s
    d = _DictSub(a=1)
    d.extra = [5]
    objs["dict subclass"] = d
    lst = _ListSub([1, 2])
    lst.extra = (6,)
    objs["list subclass"] = lst
    t = _TupleSub((1, [2]))
    t.extra = 7
    objs["tuple subclass"] = t
    objs["namedtuple"] = _NT([1], 2)
    objs["enum member"] = _Color.RED
    objs["ctypes struct"] = _Point(1, 2)
    objs["ctypes array"] = (ctypes.c_char * 100)()
    g = _gen()
    next(g)
    objs["generator"] = g
    c = _coro()
    c.send(None)
    objs["coroutine"] = c
    ag = _agen()
    try:
        ag.asend(None).send(None)
    except StopIteration:
        pass
    objs["async generator"] = ag
    target = _Before()
    objs["weakref"] = weakref.ref(target)
    objs["proxy"] = weakref.proxy(target)
    wvd = weakref.WeakValueDictionary()
    wvd["k"] = target
    objs["WeakValueDictionary"] = wvd
    objs["cell"] = _cell_of(target)
    objs["bound method"] = _Color.RED.describe
    objs["partial"] = functools.partial(print, 1, sep="x")
    objs["chain"] = itertools.chain([1], [2])
    objs["count"] = itertools.count(5)
    ba = bytearray(b"x" * 100)
    objs["bytearray"] = ba
    objs["memoryview"] = memoryview(ba)
    objs["array"] = array.array("d", [1.0] * 50)
    objs["deque"] = collections.deque(range(100))
    objs["mappingproxy"] = types.MappingProxyType({"a": [1]})
    r = _Before()
    r.x = [1]
    r.__class__ = _After
    objs["reassigned class"] = r
    objs["OrderedDict"] = collections.OrderedDict(a=1)
    objs["defaultdict"] = collections.defaultdict(list, a=[1])
    objs["set"] = {1, 2, (3,)}
    objs["slice"] = slice(1, [2])
    objs["big int"] = 10 ** 50
    objs["str ucs4"] = "\U0001F600" * 10
    objs["module"] = types.ModuleType("walk_review_mod")
    objs["exception"] = ValueError("x", [1])
    objs["asyncio task"] = None  # filled by the test (needs a loop)
    return objs, target


def test_unusual_objects_sizes_and_edges_match_brute_force():
    """Every object: flat size = sys.getsizeof, and its edges cover gc.get_referents (the walk
    adds labeled ones: a class instance's type, a code object's parts)."""
    objs, target = _unusual()
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(_coro())
        loop.run_until_complete(asyncio.sleep(0))  # the task suspended in its await
        objs["asyncio task"] = task
        snap = heaptrail.snapshot(gc_first=False)
        wrong = {}
        for name, o in objs.items():
            i = snap._h.index(id(o))
            assert i >= 0, name
            rec = snap._h.record(i)
            got = {snap._h.record(d)[0] for d, _ in snap._h.edges(i)}
            missing = {id(r) for r in gc.get_referents(o)} - got
            if rec[2] != sys.getsizeof(o) or missing:
                wrong[name] = (rec[2], sys.getsizeof(o), missing)
        assert wrong == {}
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        loop.close()


def _labels(snap, obj):
    return sorted((lab, snap._h.record(d)[0]) for d, lab in snap._h.edges(snap._index(obj))
                  if isinstance(lab, str))


def test_labels_of_unusual_objects():
    objs, target = _unusual()
    snap = heaptrail.snapshot(gc_first=False)
    s = objs["slots"]
    assert (".a", id(s.a)) in _labels(snap, s) and (".b", id(s.b)) in _labels(snap, s)
    lst, t = objs["list subclass"], objs["tuple subclass"]
    assert [(lab, a) for lab, a in ((lab, snap._h.record(d)[0]) for d, lab in
            snap._h.edges(snap._index(lst))) if isinstance(lab, int)] == [(1, id(lst[1])), (0, id(lst[0]))]
    assert {lab for _, lab in snap._h.edges(snap._index(t)) if isinstance(lab, int)} == {0, 1}
    assert ("cell_contents", id(target)) in _labels(snap, objs["cell"])
    m = objs["bound method"]
    assert _labels(snap, m) == sorted([("__func__", id(m.__func__)), ("__self__", id(m.__self__))])
    p = objs["partial"]
    assert {(".func", id(p.func)), (".args", id(p.args)), (".keywords", id(p.keywords))} <= set(
        _labels(snap, p))
    for name, local in (("generator", "gen_local"), ("coroutine", "coro_local"),
                        ("async generator", "agen_local")):
        assert local in {lab for lab, _ in _labels(snap, objs[name])}, name
    assert snap._h.record(snap._index(objs["deque"]))[3] == 100
    assert snap._h.record(snap._index(objs["array"]))[3] == 50
    assert snap.record(objs["reassigned class"]).type.endswith("._After")
    assert snap.record(objs["str ucs4"]).value == "\U0001F600" * 10


def test_inline_attribute_labels_never_name_a_data_descriptor():
    """Inline attributes are learned from the names a class's methods use: `self.__class__` made
    "__class__" one, read through object's __class__ descriptor (no attribute of the instance),
    and its value (the class) then labeled another attribute that holds the class: 3.13's enum
    members hold theirs in __objclass__, read ".__class__". Names resolving to a data descriptor
    are never inline values; they are not learned."""

    class Kind:
        def name(self):
            return self.__class__.__name__

    k = Kind()
    k.owner_class = Kind  # held by an attribute no method names
    snap = heaptrail.snapshot(gc_first=False)
    assert ".__class__" not in {lab for lab, _ in _labels(snap, k)}
    assert ".__class__" not in {lab for lab, _ in _labels(snap, _Color.RED)}
    assert ("type", id(Kind)) in _labels(snap, k)


def test_sys_modules_entries_that_are_no_modules_and_cleared_modules():
    class Lazy:
        pass

    lazy = Lazy()
    cleared = types.ModuleType("walk_review_cleared")
    cleared.x = [1]
    cleared.__dict__.clear()
    sys.modules.update(walk_review_lazy=lazy, walk_review_none=None, walk_review_cleared=cleared)
    try:
        snap = heaptrail.snapshot()
        assert snap.record(lazy).type.endswith(".Lazy")
        assert ("['walk_review_lazy']", id(lazy)) in _labels(snap, sys.modules)
        assert ("['walk_review_none']", id(None)) in _labels(snap, sys.modules)
        i = snap._index(cleared)
        assert snap._h.record(i)[5] & ROOT and snap.record(cleared).size == sys.getsizeof(cleared)
    finally:
        for name in ("walk_review_lazy", "walk_review_none", "walk_review_cleared"):
            del sys.modules[name]


def test_class_dict_with_non_str_keys_and_mappingproxy():
    class C:
        pass

    C.__dict__  # a mappingproxy: no reference to the dict kept
    gc.get_referents(C.__dict__)[0][("tuple", "key")] = [1]
    snap = heaptrail.snapshot(gc_first=False)
    d = gc.get_referents(C.__dict__)[0]
    assert ("[<tuple>]", id(d[("tuple", "key")])) in _labels(snap, d)
    assert snap._h.record(snap._index(d))[6] == snap._index(C)


@pytest.mark.noasan  # a million objects: slow under ASan
def test_a_million_item_list_has_every_edge_and_index_label():
    big = list(range(1_000_000))
    snap = heaptrail.snapshot(gc_first=False)
    edges = snap._h.edges(snap._index(big))
    assert len(edges) == 1_000_000
    assert all(lab == k for k, (_, lab) in enumerate(edges))
    assert [snap._h.record(d)[0] for d, _ in edges[-3:]] == [id(x) for x in big[-3:]]
    assert snap.record(big).size == sys.getsizeof(big)


def test_deeply_nested_lists_do_not_overflow_the_c_stack():
    deep = []
    cur = deep
    for _ in range(100_000):
        nxt = []
        cur.append(nxt)
        cur = nxt
    snap = heaptrail.snapshot(gc_first=False)
    assert snap._h.index(id(cur)) >= 0
    # deep and the 99,999 lists below it, each of one item; cur is held by this frame too
    assert snap.retained_size(deep) == 100_000 * sys.getsizeof(deep)
    assert str(snap.path_to_root(cur)).endswith(f"-> <list 0x{id(cur):x}>")
    del deep, cur


def test_uncollectable_and_resurrected_objects():
    saved = []

    class Phoenix:
        def __del__(self):
            saved.append(self)

    gc.disable()
    try:
        a, b = Phoenix(), Phoenix()
        a.peer, b.peer = b, a
        del a, b
        snap = heaptrail.snapshot()  # finds the cycle, collects: __del__ resurrects both
    finally:
        gc.enable()
    assert len(saved) == 2
    for o in saved:
        assert not snap._h.record(snap._index(o))[5] & UNREACHABLE
    saved[0].peer = saved[1].peer = None


def test_frozen_objects_are_recorded():
    kept = [[k] for k in range(20)]
    gc.freeze()
    try:
        snap = heaptrail.snapshot(gc_first=False)
    finally:
        gc.unfreeze()
    assert all(snap._h.index(id(o)) >= 0 for o in kept)
    assert not snap._h.record(snap._index(kept[3]))[5] & UNREACHABLE


# ---- threads and odd places -----------------------------------------------------------------------

def test_another_threads_frame_blocked_in_a_call_is_recorded_with_its_locals():
    ready, stop = threading.Event(), threading.Event()

    def worker():
        worker_buffer = bytearray(12345)
        ready.set()
        stop.wait(30)  # blocked in a C call, the GIL released
        return worker_buffer

    t = threading.Thread(target=worker, name="walk-review-blocked")
    t.start()
    ready.wait(10)
    try:
        snap = heaptrail.snapshot()
        frame = sys._current_frames()[t.ident]
        while frame.f_code.co_name != "worker":
            frame = frame.f_back
        i = snap._index(frame)
        rec = snap._h.record(i)
        assert rec[5] & FRAME and rec[4] == "worker" and rec[7] == "walk-review-blocked"
        buf = frame.f_locals["worker_buffer"]
        assert ("worker_buffer", id(buf)) in _labels(snap, frame)
        assert snap.record(buf).size == sys.getsizeof(buf)
        del frame, buf
    finally:
        stop.set()
        t.join()


def test_snapshots_while_another_thread_allocates():
    stop = threading.Event()

    def churn():
        items = []
        while not stop.is_set():
            items.append([0] * 10)
            if len(items) > 1000:
                items.clear()

    t = threading.Thread(target=churn, name="walk-review-churn")
    t.start()
    try:
        for _ in range(3):
            snap = heaptrail.snapshot()
            frames = [snap._h.record(i) for i in range(snap.objects) if snap._h.record(i)[5] & FRAME]
            assert any(r[4] == "churn" and r[7] == "walk-review-churn" for r in frames)
    finally:
        stop.set()
        t.join()


def _snapshot_of_marker(out, key, marker):
    snap = heaptrail.snapshot()
    out[key] = snap._h.index(id(marker)) >= 0


def test_snapshots_from_odd_places():
    """From another thread, a signal handler, a __del__ (also one the gc_first collection runs),
    a gc callback, a trace function, and under heaptrail's tracer: each one complete."""
    marker = ["walk-review-marker"]
    out = {}
    t = threading.Thread(target=_snapshot_of_marker, args=(out, "thread", marker))
    t.start()
    t.join()

    old = signal.signal(signal.SIGUSR1, lambda s, f: _snapshot_of_marker(out, "signal", marker))
    try:
        signal.raise_signal(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, old)

    class Dies:
        def __del__(self):
            _snapshot_of_marker(out, "del", marker)

    Dies()

    class DiesInCycle:
        def __del__(self):
            _snapshot_of_marker(out, "del in collection", marker)

    gc.disable()
    try:
        c = DiesInCycle()
        c.me = c
        del c
        heaptrail.snapshot()
    finally:
        gc.enable()

    def callback(phase, info):
        if phase == "stop" and "gc callback" not in out:
            _snapshot_of_marker(out, "gc callback", marker)

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "traced" and "trace" not in out:
            _snapshot_of_marker(out, "trace", marker)

    def traced():
        return 1

    sys.settrace(tracer)
    try:
        traced()
    finally:
        sys.settrace(None)

    from heaptrail import tracer as ht_tracer

    ht_tracer.start()
    try:
        _snapshot_of_marker(out, "heaptrail tracer", marker)
    finally:
        ht_tracer.stop()
    assert out == dict.fromkeys(["thread", "signal", "del", "del in collection", "gc callback",
                                 "trace", "heaptrail tracer"], True)
