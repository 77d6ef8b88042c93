"""The live heap walk (heap.c): what a snapshot records, its labels, its summaries, and that the
walk leaves the program as it was."""
import gc
import sys
import types

import pytest

import heaptrail
from heaptrail import HeaptrailError
from heaptrail.heap import DICT, EXTERNAL, FINALIZER, MODULE, ROOT, TYPE, UNREACHABLE, Snapshot


class Session:
    def __init__(self, uid):
        self.uid = uid


class Slotted:
    __slots__ = ("first", "second")


class Finalized:
    def __del__(self):
        pass


def labels_of(snap, obj):
    """{label: description of the target} for obj's outgoing edges."""
    i = snap._index(obj)
    return {lab: snap._describe(d) for d, lab in snap._h.edges(i) if lab is not None}


def targets(snap, obj):
    i = snap._index(obj)
    return [(snap._h.record(d)[0], lab) for d, lab in snap._h.edges(i)]


def test_summary_count_of_a_class_equals_gc_count():
    keep = [Session(k) for k in range(137)]
    snap = heaptrail.snapshot()
    expected = sum(1 for o in gc.get_objects() if type(o) is Session)
    rows = {r.kind: r for r in snap.summary()}
    name = f"{__name__}.Session"
    assert rows[name].count == expected == 137
    # flat sizes come from size.c (ht_size_flat, the value of heaptrail.sizeof)
    assert rows[name].size == 137 * rows[name].max
    assert rows[name].max >= Session.__basicsize__
    assert snap.total_size == sum(r.size for r in snap.summary())
    assert len(keep) == 137


def test_summary_rows_are_ordered_and_cumulative():
    snap = heaptrail.snapshot()
    rows = snap.summary()
    assert [r.size for r in rows] == sorted((r.size for r in rows), reverse=True)
    assert rows[-1].cumulative == snap.total_size
    assert sum(r.count for r in rows) == snap.objects
    text = str(rows)
    assert text.startswith(f"Partition of a set of {snap.objects} objects. Total size = {snap.total_size} bytes.")
    assert "Index" in text.splitlines()[1] and "Cumulative" in text.splitlines()[1]


def test_summary_by_owner_names_instance_dicts():
    keep = [Session(k) for k in range(50)]
    for s in keep:
        s.__dict__  # materializes the instance dicts (3.11+ keeps attributes inline until asked)
    snap = heaptrail.snapshot()
    rows = {r.kind: r for r in snap.summary(by="owner")}
    assert rows["dict of " + f"{__name__}.Session"].count == 50
    assert rows["dict of " + f"{__name__}.Session"].size == sum(sys.getsizeof(s.__dict__) for s in keep)
    assert "dict (no owner)" in rows
    assert "dict of module" in rows
    by_type = {r.kind: r for r in snap.summary(by="type")}
    assert by_type["dict"].count == sum(r.count for k, r in rows.items() if k.startswith("dict ")
                                        and k.split(" ", 1)[0] == "dict")


def test_summary_by_module_groups_by_defining_module():
    keep = [Session(k) for k in range(40)]
    snap = heaptrail.snapshot()
    rows = {r.kind: r for r in snap.summary(by="module")}
    mine = sum(1 for o in gc.get_objects() if type(o).__module__ == __name__)
    assert rows[__name__].count == mine
    assert rows["builtins"].count > 1000
    assert len(keep) == 40


def test_bad_summary_kind():
    snap = heaptrail.snapshot()
    with pytest.raises(HeaptrailError, match="^summary: by must be"):
        snap.summary(by="colour")
    with pytest.raises(HeaptrailError, match="^diff: by must be"):  # it said "summary:"
        snap.diff(snap, by="colour")


def test_values_and_names():
    text = "x" * 100
    num = 12345678901
    flt = 0.1
    raw = b"ab'\x00"
    snap = heaptrail.snapshot()
    assert snap.record(text) == (id(text), "str", sys.getsizeof(text), 100, "x" * 60 + "...")
    # short ASCII values are copied as they are (heap.c ht_hw_str_ascii): at the 60-character
    # limit, one past it, empty; and a non-ASCII one, encoded
    edge = ["y" * 59 + "z", "y" * 60 + "z", "", "caf\u00e9 \u2603"]
    snap = heaptrail.snapshot()
    assert [snap.record(s).value for s in edge] == ["y" * 59 + "z", "y" * 60 + "...", "", "caf\u00e9 \u2603"]
    assert [snap.record(s).len for s in edge] == [60, 61, 0, 6]
    assert snap.record(id(num)).value == "12345678901"
    assert snap.record(id(flt)).value == "0.1"
    assert snap.record(raw).value == "b'ab\\'\\x00'"
    assert snap.record(raw).len == 4
    assert snap.record(sys).value == "sys"
    assert snap.record(Session).value == f"{__name__}.Session"
    assert snap.record(Session.__init__).value == "Session.__init__"
    assert snap.record([1, 2, 3]) if False else True
    lst = [1, 2, 3]
    snap = heaptrail.snapshot()
    assert snap.record(lst).len == 3 and snap.record(lst).value is None
    assert snap._describe(snap._index(sys)) == "module sys"
    assert snap._describe(snap._index(lst)) == f"<list 0x{id(lst):x}>"


def test_labels_dict_key_list_index_attribute_slot():
    key = "user:42"
    sess = Session(42)
    cache = {key: [0, 1, 2, sess], 7: "seven"}
    slotted = Slotted()
    slotted.first = "one"
    sess.__dict__  # materialized: attributes are edges of the instance dict
    snap = heaptrail.snapshot()
    lab = dict((l, a) for a, l in targets(snap, cache))
    assert lab["['user:42']"] == id(cache[key])
    assert lab["[7]"] == id(cache[7])
    assert dict((l, a) for a, l in targets(snap, cache[key]))[3] == id(sess)
    assert labels_of(snap, slotted) == {".first": "'one'", "type": f"class {__name__}.Slotted"}
    inst = dict((l, a) for a, l in targets(snap, sess))
    assert inst["__dict__"] == id(sess.__dict__)
    assert inst["type"] == id(Session)
    assert dict((l, a) for a, l in targets(snap, sess.__dict__))[".uid"] == id(sess.uid)
    mod = sys.modules[__name__]
    assert labels_of(snap, mod)["__dict__"] == f"dict of module {__name__}"
    assert dict((l, a) for a, l in targets(snap, mod.__dict__))[".Session"] == id(Session)


class Registry:
    def __init__(self):
        self.sessions = {}
        self.owner = "admin"

    @property
    def broken(self):  # never evaluated by the walk
        raise AssertionError("a property ran during the walk")


def test_labels_of_keys_that_are_not_str_or_int():
    """None, bool, float and bytes keys read as written ("[<bytes>]" said only the type)."""
    d = {None: ["n"], True: ["t"], 1.5: ["f"], b"k'\x00": ["b"], (1, 2): ["tuple"]}
    snap = heaptrail.snapshot()
    lab = dict((l, a) for a, l in targets(snap, d) if l is not None)
    assert lab == {"[None]": id(d[None]), "[True]": id(d[True]), "[1.5]": id(d[1.5]),
                   "[b'k\\'\\x00']": id(d[b"k'\x00"]), "[<tuple>]": id(d[1, 2])}


def test_values_of_ints_past_64_bits():
    """Past 64 bits an int read "<big int>": up to 256 bits it is in full (a UUID's int), then
    its leading digits, and past a double's range it still says what it is."""
    import uuid

    vals = {"u128": uuid.UUID(int=2 ** 127 + 12345).int, "neg": -(2 ** 64) - 5,
            "big": 3 ** 200, "huge": -(7 ** 400)}
    keyed = {2 ** 70: ["under a big key"]}
    snap = heaptrail.snapshot()
    value = {k: snap.record(id(v)).value for k, v in vals.items()}
    assert value["u128"] == str(2 ** 127 + 12345)
    assert value["neg"] == "-18446744073709551621"
    assert value["big"].startswith("~2.65613988875874") and value["big"].endswith("e+95")
    assert value["huge"] == "<big negative int>"
    assert dict((l, a) for a, l in targets(snap, keyed))[f"[{2 ** 70}]"] == id(keyed[2 ** 70])


def test_lengths_of_deques_and_arrays():
    """A deque's or an array's length (an unbounded deque is a classic leak), subclasses too."""
    import array
    import collections

    class Backlog(collections.deque):
        pass

    objs = [collections.deque(range(7)), array.array("i", range(11)), Backlog([1, 2]),
            array.array("d"), collections.deque(maxlen=3)]
    snap = heaptrail.snapshot()
    assert [snap.record(x).len for x in objs] == [7, 11, 2, 0, 0]
    big = [r.address for r in snap.query("type == 'deque' and len >= 7")]
    assert id(objs[0]) in big and id(objs[2]) not in big


def test_dicts_of_c_types_are_owned():
    """A C type's instance __dict__ (SimpleNamespace, an exception, a function) is its owner's:
    attribute labels and "dict of X" (they read as ['attr'] of an ownerless dict)."""
    import types

    ns = types.SimpleNamespace(attr=["ns attr"])
    err = ValueError("boom")
    err.extra = ["exception attr"]

    def fn():
        pass

    fn.tag = ["function attr"]
    snap = heaptrail.snapshot()
    for owner, name, value in ((ns, "attr", ns.attr), (err, "extra", err.extra), (fn, "tag", fn.tag)):
        d = snap._index(owner.__dict__)
        assert snap._h.record(d)[6] == snap._index(owner)
        assert dict((l, a) for a, l in targets(snap, owner.__dict__))["." + name] == id(value)
        assert dict((l, a) for a, l in targets(snap, owner))["__dict__"] == id(owner.__dict__)
    rows = {r.kind for r in snap.summary(by="owner")}
    assert {"dict of types.SimpleNamespace", "dict of ValueError", "dict of function"} <= rows


def test_static_types_hold_their_dicts():
    """Nothing traverses a static type (str, a C extension's types), so its __dict__ was a gc
    root of its own: a path to a method read "gc root <dict> -> ['join']". The type holds it:
    it is the dict's owner, the edge is "__dict__", and the dict is no gc root."""
    join = id(str.__dict__["join"])  # no local holds it (a frame root would be the shorter path)
    real = id(gc.get_referents(str.__dict__)[0])  # the dict behind the mappingproxy
    snap = heaptrail.snapshot()
    assert str(snap.path_to_root(join)) == f"class str -> .join -> <method_descriptor 0x{join:x}>"
    d = snap._index(real)
    assert snap._h.record(d)[6] == snap._index(str)
    assert snap._h.record(d)[5] & EXTERNAL == 0
    assert [(label, r.type, r.value) for label, r in snap.referrers(real)] == [("__dict__", "type", "str")]


def test_labels_inline_attributes_without_materializing():
    reg = Registry()
    reg.sessions["s1"] = Session(1)
    reg.late = [1]  # set outside the class's methods: no name to learn, so unlabeled
    snap = heaptrail.snapshot()
    lab = dict((l, a) for a, l in targets(snap, reg))
    assert lab[".sessions"] == id(reg.sessions) and lab[".owner"] == id(reg.owner)
    assert lab["type"] == id(Registry)
    assert (id(reg.late), None) in targets(snap, reg)
    assert ".broken" not in lab
    sess = reg.sessions["s1"]
    assert dict((l, a) for a, l in targets(snap, sess))[".uid"] == id(sess.uid)
    # the attributes stayed inline: had the first walk made reg a __dict__, the next would show it
    again = heaptrail.snapshot()
    assert not any(r.kind == f"dict of {__name__}.Registry" for r in again.summary(by="owner"))
    reg.__dict__
    again = heaptrail.snapshot()
    assert {r.kind: r.count for r in again.summary(by="owner")}[f"dict of {__name__}.Registry"] == 1


def test_labels_closure_and_function_parts():
    def outer():
        held = {"k": 1}

        def inner():
            return held

        return inner

    fn = outer()
    snap = heaptrail.snapshot()
    assert dict((l, a) for a, l in targets(snap, fn.__closure__[0]))["held"] == id(fn.__closure__[0].cell_contents)
    parts = dict((l, a) for a, l in targets(snap, fn))
    assert parts["__code__"] == id(fn.__code__)
    assert parts["__closure__"] == id(fn.__closure__)
    assert parts["__globals__"] == id(globals())


def test_labels_frame_locals():
    """A running frame's tp_traverse visits none of its variables: objects only
    they hold (an untracked str or dict) are found and labeled through them, on
    3.11 too (framevars.c), and a cell variable names its contents."""
    marker_local = ["a local list"]
    untracked_local = "a str only this frame holds" * 3
    untracked_dict = {"only": "this frame"}
    captured = ("a tuple " * 2,)  # a cell variable: the closure below reads it
    assert not gc.is_tracked(untracked_dict)
    snap = heaptrail.snapshot()
    frame = sys._getframe()
    lab = dict((l, a) for a, l in targets(snap, frame))
    assert lab["marker_local"] == id(marker_local)
    assert lab["untracked_local"] == id(untracked_local)
    assert lab["untracked_dict"] == id(untracked_dict)
    assert lab["captured"] == id(captured)
    path = snap.path_to_root(untracked_dict)
    assert path.reachable and [(st.label, st.index) for st in path.steps] == [
        (None, snap._index(frame)), ("untracked_dict", snap._index(untracked_dict))]
    assert snap._h.record(snap._index(frame))[5] & ROOT
    assert (lambda: captured)() is captured


def test_locals_of_a_frame_with_over_64_of_them():
    """Past 64 labels per object the walk labels by a second pass, which dropped the references
    tp_traverse does not visit: every local of a running function with 70 locals was lost (an
    untracked bytes only such a local held was missing from the snapshot)."""
    names = "\n".join(f"    v{k} = [{k}]" for k in range(70))
    src = (f"def big_frame(snapshot):\n{names}\n    blob = b'Q' * 100_000\n"
           "    return snapshot(), id(blob), id(v3), sys._getframe()\n")
    ns = {"sys": sys}
    exec(src, ns)
    snap, blob, v3, frame = ns["big_frame"](heaptrail.snapshot)
    lab = dict((l, a) for a, l in targets(snap, frame))
    assert lab["blob"] == blob and lab["v3"] == v3 and lab["v69"] != lab["v0"]
    assert snap.record(blob).size == 100_000 + sys.getsizeof(b"")


def test_untracked_locals_of_another_threads_frames():
    """A bytes and a str only a blocked worker thread's locals hold: on 3.11 neither was in the
    snapshot (no public way to read a running frame's locals); now both, labelled."""
    import threading

    ready, done, found = threading.Event(), threading.Event(), {}

    def worker():
        payload = b"w" * 200_000
        note = "held-only-by-a-worker-local-" * 10
        found.update(payload=id(payload), note=id(note))
        ready.set()
        done.wait()

    t = threading.Thread(target=worker)
    t.start()
    try:
        ready.wait()
        snap = heaptrail.snapshot()
        assert snap.record(found["payload"]).size == 200_000 + sys.getsizeof(b"")
        assert snap.record(found["note"]).len == 280
        assert [lab for lab, _ in snap.referrers(found["payload"])] == ["payload"]
        assert str(snap.path_to_root(found["note"])).startswith(f"frame worker (thread {t.name}) -> note -> ")
    finally:
        done.set()
        t.join()


def test_roots_and_flags():
    snap = heaptrail.snapshot()
    for name in ("sys", "os", __name__):
        rec = snap._h.record(snap._index(sys.modules[name]))
        assert rec[5] & ROOT and rec[5] & MODULE
    assert snap._h.record(snap._index(Session))[5] & TYPE
    assert snap._h.record(snap._index(sys.modules))[5] & ROOT and snap._h.record(snap._index(sys.modules))[5] & DICT
    assert snap._h.record(snap._index(int))[5] & EXTERNAL  # static types live in C storage
    assert snap.memory_usage()["unreachable"] == 0  # gc_first=True: everything is reachable


def test_garbage_kept_and_flagged_without_gc_first():
    gc.collect()
    gc.disable()
    try:
        a, b, f = Session(1), Session(2), Finalized()
        a.peer, b.peer, f.me = b, a, f
        addrs = [id(a), id(b), id(f)]
        del a, b, f
        snap = heaptrail.snapshot(gc_first=False)
        flags = [snap._h.record(snap._index(x))[5] for x in addrs]
        assert all(fl & UNREACHABLE for fl in flags)
        assert flags[2] & FINALIZER and not flags[0] & FINALIZER
        assert not any(fl & ROOT for fl in flags)
        live = snap._h.record(snap._index(sys.modules[__name__]))[5]
        assert not live & UNREACHABLE
        del snap
        clean = heaptrail.snapshot(gc_first=True)
        for x in addrs:
            i = clean._h.index(x)
            assert i < 0 or not clean._h.record(i)[1].endswith(("Session", "Finalized"))
    finally:
        gc.enable()
        gc.collect()


def test_gc_first_collects_only_when_the_walk_finds_garbage():
    """gc_first walks first and collects (then walks again) only if it found cyclic garbage:
    gc.callbacks see a collection exactly when there was garbage, and the garbage is gone."""
    events = []

    def on_gc(phase, info):
        if phase == "stop":
            events.append(info["collected"])

    gc.collect()
    gc.disable()
    gc.callbacks.append(on_gc)
    try:
        snap = heaptrail.snapshot()
        assert events == []  # a heap without garbage: no collection ran
        assert snap.memory_usage()["unreachable"] == 0
        del snap
        a, b = Session(1), Session(2)
        a.peer, b.peer = b, a
        addrs = [id(a), id(b)]
        del a, b
        snap = heaptrail.snapshot()
        assert len(events) == 1 and events[0] >= 2  # collected once: the pair and their dicts
        assert snap.memory_usage()["unreachable"] == 0
        for x in addrs:
            i = snap._h.index(x)
            assert i < 0 or not snap._h.record(i)[1].endswith("Session")
    finally:
        gc.callbacks.remove(on_gc)
        gc.enable()
        gc.collect()


class _GcEvents:
    """gc.collect() runs seen through gc.callbacks, with automatic collection off."""

    def __enter__(self):
        self.collected = []
        heaptrail.snapshot(gc_first=False)  # a first snapshot's one-time imports leave garbage
        gc.collect()
        gc.disable()
        gc.callbacks.append(self._on_gc)
        return self

    def _on_gc(self, phase, info):
        if phase == "stop":
            self.collected.append(info["collected"])

    def __exit__(self, *exc):
        gc.callbacks.remove(self._on_gc)
        gc.enable()
        gc.collect()


def _kind_at(snap, addr):
    """Type name of the object at addr in snap, or None."""
    i = snap._h.index(addr)
    return None if i < 0 else snap._h.record(i)[1]


def _held_by_c(obj):
    """A reference to obj that only C holds (as an extension's static would): returns the
    function that drops it."""
    import ctypes
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    addr = id(obj)
    return lambda: ctypes.pythonapi.Py_DecRef(ctypes.cast(addr, ctypes.py_object))


def test_gc_first_frees_a_garbage_cycle_through_a_snapshot():
    """Snapshot instances are left out of the walk, but a garbage cycle through one is still
    garbage: gc_first must collect it (review find: the walk took the Snapshot's reference
    for an outside one, so the Session stayed in as a live root and no collection ran)."""
    with _GcEvents() as ev:
        old = heaptrail.snapshot(gc_first=False)
        s = Session(7)
        s.snap, old.owner = old, s
        addr = id(s)
        del s, old
        snap = heaptrail.snapshot()
        assert len(ev.collected) == 1 and ev.collected[0] >= 2  # the Session and the Snapshot
        assert _kind_at(snap, addr) != __name__ + ".Session"
        assert snap.memory_usage()["unreachable"] == 0


def test_gc_first_frees_snapshots_that_only_refer_to_each_other():
    """A garbage cycle made of excluded objects alone (two Snapshots) is garbage too."""
    import weakref
    with _GcEvents() as ev:
        a, b = heaptrail.snapshot(gc_first=False), heaptrail.snapshot(gc_first=False)
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        heaptrail.snapshot()
        assert len(ev.collected) == 1 and gone() is None


def test_gc_first_keeps_what_a_live_snapshot_holds():
    """The other side: what only a live Snapshot refers to is not garbage. A Snapshot that refers
    to gc objects could close a cycle the walk cannot see (it leaves Snapshots out), so gc_first
    then collects first, as it always did: here that collection frees nothing."""
    with _GcEvents() as ev:
        old = heaptrail.snapshot(gc_first=False)
        old.note = [Session(8)]
        refs = sys.getrefcount(old)
        snap = heaptrail.snapshot()
        assert sys.getrefcount(old) == refs  # the walk holds no reference to it
        assert ev.collected == [0]
        assert _kind_at(snap, id(old.note)) == "list"
        assert snap.memory_usage()["unreachable"] == 0


def test_gc_first_ignores_frozen_objects():
    """gc.collect() leaves gc.freeze()'s objects alone and takes their references for outside
    ones: a young object in a cycle with frozen ones is not garbage to it, so gc_first must not
    collect for it (review find: every snapshot collected, in vain)."""
    with _GcEvents() as ev:
        a, b = Session(1), Session(2)
        a.peer, b.peer = b, a
        gc.freeze()
        try:
            young = Session(3)
            a.young, young.a = young, a
            addrs = [id(a), id(b), id(young)]
            del a, b, young
            snap = heaptrail.snapshot()
            assert ev.collected == []
            # still in the snapshot, unreachable from the roots: a leak gc.freeze() made
            assert [_kind_at(snap, x) for x in addrs] == [__name__ + ".Session"] * 3
            assert all(snap._h.record(snap._index(x))[5] & UNREACHABLE for x in addrs)
        finally:
            gc.unfreeze()


def _assert_live_when_held_by_c(ev, box, addrs):
    """box holds the only outside reference to an object (addrs[1]) in a cycle with another
    (addrs[0]): that reference is handed to C, and a gc_first snapshot then collects nothing and
    finds both live, the held one an external root."""
    held = box.pop()
    drop = _held_by_c(held)
    del held
    try:
        snap = heaptrail.snapshot()
        assert ev.collected == []
        flags = [snap._h.record(snap._index(x))[5] for x in addrs]
        assert not any(f & UNREACHABLE for f in flags)
        assert flags[1] & EXTERNAL
    finally:
        drop()


def test_gc_first_no_collection_for_a_materialized_dict_held_from_c():
    """3.13 makes __dict__ a view of the instance's inline values; its entries are no references
    of the dict. Counted as such, a list held by C and by such an instance lost its root: the
    live pair was flagged unreachable and every snapshot collected (review find)."""
    with _GcEvents() as ev:
        s = Session(4)
        held = [s]
        s.back = held
        assert s.__dict__["back"] is held  # the __dict__ is made
        addrs, box = [id(s), id(held)], [held]
        del s, held
        _assert_live_when_held_by_c(ev, box, addrs)


def test_gc_first_no_collection_for_a_suspended_generator_held_from_c():
    """A suspended generator holds its locals (its tp_traverse visits them); its frame object
    does not. Counting them as edges of the frame too, a local held by C lost its root
    (3.12+): the live generator was flagged unreachable and every snapshot collected."""
    def gen():
        box = yield
        yield box

    with _GcEvents() as ev:
        g = gen()
        next(g)
        held = [g]
        g.send(held)
        assert g.gi_frame is not None  # the frame object is made
        addrs, box = [id(g), id(held)], [held]
        del g, held
        _assert_live_when_held_by_c(ev, box, addrs)


def test_external_references_make_gc_roots():
    snap = heaptrail.snapshot()
    rec = snap._h.record(snap._index(sys.modules))
    assert rec[5] & ROOT
    # the list of a running list comprehension's arguments: held by the C stack, so an external root
    assert any(snap._h.record(i)[5] & EXTERNAL for i in range(snap.objects))


def test_walk_changes_no_refcount_and_leaves_itself_out():
    objs = [Session(1), {"a": [1, 2]}, "some text here", (1, 2, "x"), Session, sys.modules]
    before = [sys.getrefcount(o) for o in objs]
    snap = heaptrail.snapshot()
    after = [sys.getrefcount(o) for o in objs]
    assert before == after
    # heaptrail's own objects are not in it: this snapshot, its handle, gc.get_objects()'s list
    snap2 = heaptrail.snapshot()
    assert snap2._h.index(id(snap)) == -1
    assert snap2._h.index(id(snap._h)) == -1
    assert not any(r.kind == "heaptrail.heap.Snapshot" or r.kind == "heaptrail._core.HeapHandle"
                   for r in snap2.summary())
    biggest_list = max((r for r in snap2.query("type == 'list'")), key=lambda r: r.len)
    assert biggest_list.len < snap2.objects / 4  # no list of every object (gc.get_objects)
    after2 = [sys.getrefcount(o) for o in objs]
    assert after2 == before


def test_gc_state_is_restored():
    assert gc.isenabled()
    heaptrail.snapshot()
    assert gc.isenabled()
    gc.disable()
    try:
        heaptrail.snapshot(gc_first=False)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_index_of_unknown_object():
    snap = heaptrail.snapshot()
    late = Session(5)
    with pytest.raises(HeaptrailError, match=r"object 0x[0-9a-f]+ is not in this snapshot"):
        snap._index(late)


@pytest.mark.parametrize("addr", [-1, -(2 ** 70), 2 ** 64, 10 ** 500])
def test_address_out_of_range_is_a_clear_error(addr):
    """An int is taken as an address; one no pointer can have raised OverflowError."""
    snap = heaptrail.snapshot()
    for view in (snap.record, snap.referrers, snap.path_to_root, snap.retained_size):
        with pytest.raises(HeaptrailError, match=r"is not an address \(0 to 2\*\*64-1\)"):
            view(addr)


def test_memory_usage_within_budget():
    snap = heaptrail.snapshot()
    mu = snap.memory_usage()
    assert mu["bytes_per_object"] <= 48.01
    assert mu["bytes_per_edge"] == 8
    assert mu["objects"] == snap.objects and mu["edges"] == snap.edges


def test_snapshot_is_a_graph_views():
    from heaptrail.graph import GraphViews

    assert issubclass(Snapshot, GraphViews)


class Leaky:
    pass


def test_diff_shows_exactly_the_added_objects():
    held = []
    older = heaptrail.snapshot()
    held.extend(Leaky() for _ in range(25))
    newer = heaptrail.snapshot()
    rows = {r.kind: r for r in newer.diff(older)}
    row = rows[f"{__name__}.Leaky"]
    assert (row.count_delta, row.added, row.removed, row.count) == (25, 25, 0, 25)
    assert row.size_delta == 25 * newer.record(held[0]).size
    del held[:10]
    third = heaptrail.snapshot()
    row = {r.kind: r for r in third.diff(newer)}[f"{__name__}.Leaky"]
    assert (row.count_delta, row.added, row.removed, row.count) == (-10, 0, 10, 15)
    assert [r.size_delta for r in third.diff(newer)] == sorted((r.size_delta for r in third.diff(newer)),
                                                               reverse=True)
    assert "Leaky" in str(newer.diff(older))


def test_diff_matches_by_address_and_type():
    # same addresses (graph test heaps number them 0x10000 + 16 i), different types: new objects
    from heaptrail import _core

    a = Snapshot(_core._graph_from_edges(3, [], types=[2, 2, 2], values=[None, None, "Alpha"]))
    b = Snapshot(_core._graph_from_edges(3, [], types=[2, 2, 2], values=[None, None, "Beta"]))
    rows = {r.kind: r for r in b.diff(a)}
    assert rows["Beta"][:5] == ("Beta", 3, 3, 3, 0)
    assert rows["Alpha"][:5] == ("Alpha", -3, -3, 0, 3)
    same = {r.kind: r for r in a.diff(a)}
    assert same == {}
    untyped = Snapshot(_core._graph_from_edges(4, []))
    assert [(r.kind, r.count) for r in untyped.summary(by="owner")] == [("?", 4)]
    assert [(r.kind, r.count_delta, r.added, r.removed) for r in untyped.diff(a)] == [
        ("?", 4, 4, 0), ("Alpha", -3, 0, 3)]


class SlowSizeof:
    """Its __sizeof__ runs bytecode, so the walk can hand the GIL to other threads."""

    def __sizeof__(self):
        total = 0
        for k in range(50):
            total += k
        return 64


def test_walk_with_threads_mutating_the_heap():
    import threading

    shared = {"items": [], "map": {}}
    stop = threading.Event()

    def churn():
        n = 0
        while not stop.is_set():
            shared["items"].append([n])
            shared["map"][n % 500] = str(n)
            if len(shared["items"]) > 2000:
                del shared["items"][:1000]
            n += 1

    keep = [SlowSizeof() for _ in range(300)]
    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(3):
            snap = heaptrail.snapshot()
            rows = {r.kind: r for r in snap.summary()}
            assert rows[f"{__name__}.SlowSizeof"].count == 300
            assert rows[f"{__name__}.SlowSizeof"].size == 300 * sys.getsizeof(SlowSizeof())  # __sizeof__ + pre-headers
            frames = [i for i in range(snap.objects) if snap._h.record(i)[5] & FRAME_FLAG]
            assert any(snap._h.record(i)[4] == "churn" for i in frames)
    finally:
        stop.set()
        t.join()
    assert len(keep) == 300


FRAME_FLAG = 1 << 7


def _heaptrail_closure():
    """Addresses of what heaptrail's modules hold, without entering another module, a module's
    __dict__ or a frame (gc.get_referents): a superset of what snapshots leave out."""
    mods = [m for name, m in sys.modules.items() if name.split(".")[0] == "heaptrail"]
    barrier = {id(m.__dict__) for m in sys.modules.values() if isinstance(m, types.ModuleType)}
    stack = mods + [m.__dict__ for m in mods]
    seen = {id(o) for o in stack}
    while stack:
        for r in gc.get_referents(stack.pop()):
            if id(r) in seen or id(r) in barrier or isinstance(r, (types.ModuleType, types.FrameType)):
                continue
            seen.add(id(r))
            stack.append(r)
    return seen


def test_every_listed_object_recorded_once_with_its_owner():
    """The walk's address index (heap.c, blocks of slots by address) records each object once:
    every gc-tracked object is found at its own address, no address twice; a __dict__'s owner
    is its instance, module or class."""
    sess = Session(7)
    sess.__dict__  # materialized
    tracked = gc.get_objects()
    snap = heaptrail.snapshot()
    addrs = [r.address for r in snap.query("size >= 0")]
    assert len(addrs) == snap.objects == len(set(addrs))
    missing = [o for o in tracked if snap._h.index(id(o)) < 0]
    # only heaptrail's own objects are left out (the list above is ours: it is in the heap)
    own = _heaptrail_closure()
    assert sys.modules["heaptrail"] in missing
    # beyond what gc.get_referents finds: the copy of _core's __dict__ the interpreter keeps
    # (PyModuleDef.m_copy, for another import of the extension)
    from heaptrail import _core

    assert [o for o in missing if id(o) not in own and not
            (type(o) is dict and o.get("HeapHandle") is _core.HeapHandle)] == []
    assert snap._h.index(id(snap)) == -1  # the previous snapshots' handles are left out
    mod = sys.modules[__name__]
    for owner, d in ((sess, sess.__dict__), (mod, mod.__dict__)):
        assert snap._h.record(snap._index(d))[6] == snap._index(owner)
    cls_dict = [d for d, lab in snap._h.edges(snap._index(Session)) if lab == "__dict__"]
    assert len(cls_dict) == 1 and snap._h.record(cls_dict[0])[6] == snap._index(Session)
    assert snap._h.record(snap._index(sys.modules))[6] == -1  # a dict nobody owns
    # an untracked object reached only through an edge is there, once, with its value
    i = snap._h.index(id(sess.uid))
    assert i >= 0 and snap._h.record(i)[4] == "7"
    assert sum(1 for a in addrs if a == id(sess.uid)) == 1


def test_int_values_at_the_edges():
    """ints are written without printf (heap.c ht_text_int): the extremes and the sign."""
    keep = [-(2**63), -5, 0, 12345678901234, 2**63 - 1, 2**64, -(2**70), True]
    snap = heaptrail.snapshot()
    assert [snap._h.record(snap._h.index(id(v)))[4] for v in keep] == [
        "-9223372036854775808", "-5", "0", "12345678901234", "9223372036854775807",
        "18446744073709551616", "-1180591620717411303424", "True"]


class Dropper:
    """A __sizeof__ written in Python that frees objects: the walk must not be inside it."""
    victims = None

    def __sizeof__(self):
        if Dropper.victims is not None:
            Dropper.victims.clear()
        return 72


def test_python_sizeof_that_frees_objects_runs_after_the_walk():
    expected = sys.getsizeof(Dropper())  # 72 + the pre-headers
    texts = {k: f"victim-{k}-" + "x" * 40 for k in range(50)}  # held by this dict only
    addrs = [id(v) for v in texts.values()]
    keep = Dropper()
    Dropper.victims = texts
    try:
        snap = heaptrail.snapshot()
    finally:
        Dropper.victims = None
    assert texts == {}  # __sizeof__ ran, and freed the strings
    assert snap.record(keep).size == expected
    for k, a in enumerate(addrs):  # every string was walked before that, whole
        rec = snap._h.record(snap._h.index(a))
        assert rec[1] == "str" and rec[4] == f"victim-{k}-" + "x" * 40


class CountsSizing:
    calls = 0

    def __sizeof__(self):
        CountsSizing.calls += 1
        return 64


def test_python_sizeof_runs_once_when_garbage_makes_the_walk_repeat():
    """gc_first: a walk that finds cyclic garbage is thrown away (collect, walk again); the
    __sizeof__ it deferred must not run for it: once per object, in the walk that is kept
    (it ran in both, and one that freed objects then hid them from the second walk)."""
    import weakref

    keep = CountsSizing()
    gc.collect()
    gc.disable()  # the cycle stays until the snapshot collects it
    try:
        a, b = Session(1), Session(2)
        a.peer, b.peer = b, a
        dead = weakref.ref(a)
        del a, b
        CountsSizing.calls = 0
        snap = heaptrail.snapshot()
        assert CountsSizing.calls == 1
    finally:
        gc.enable()
    assert dead() is None  # the walk found the garbage: collected, walked again
    assert snap.record(keep).size == sys.getsizeof(keep)


def _init_named(self, name):
    self.name = name


def test_class_with_a_non_str_key_is_walked_guarded():
    """A class dict with a non-str key: a lookup there could call that key's __eq__, so the walk
    takes references before reading its instances' inline attributes and sizes them after the
    walk; labels, sizes and refcounts come out as for any class."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 3.13 warns about the key
        odd = type("Odd", (), {1: "one", "__init__": _init_named})
    w = odd("n-" + "q" * 30)
    objs = [w, w.name, odd]
    before = [sys.getrefcount(o) for o in objs]
    snap = heaptrail.snapshot()
    assert [sys.getrefcount(o) for o in objs] == before
    assert dict((l, a) for a, l in targets(snap, w)) == {".name": id(w.name), "type": id(odd)}
    assert snap.record(w).size == sys.getsizeof(w)


def test_excluded_type_left_out_when_it_is_a_root():
    """An excluded class whose instance sits in sys.modules (found as a root before the
    gc listing) is still left out, like the same class's other instances."""
    import types

    from heaptrail import _core

    class LazyModule(types.ModuleType):
        pass

    class Kept:
        pass

    mod = LazyModule("heaptrail_test_lazy_module")
    kept = Kept()
    sys.modules[mod.__name__] = mod
    try:
        h = _core.heap_snapshot(True, (LazyModule, Kept))
        addrs = {h.record(i)[0] for i in range(h.n)}
    finally:
        del sys.modules[mod.__name__]
    assert id(mod) not in addrs
    assert id(kept) not in addrs
    assert id(sys.modules) in addrs


class _ReuseKey:
    """A non-str key in a class dict whose hash is hash("foo"): the walk's lookup of "foo" on
    that class calls __eq__, Python code run in the middle of the record pass (ht_hw_guard)."""

    def __init__(self, on_eq):
        self.on_eq = on_eq

    def __hash__(self):
        return hash("foo")

    def __eq__(self, other):
        on_eq, self.on_eq = self.on_eq, None
        if on_eq is not None:
            on_eq()
        return False


def test_code_run_by_the_walk_cannot_free_what_it_recorded():
    """Code the walk runs (a key's __eq__ during a guarded attribute read) frees a class the walk
    has recorded already and makes a new class of another kind, which malloc puts where the old
    one was. The walk took the new class for the old one by its address (its per-type facts: an
    int subclass's instance recorded with a float subclass's kind, its int value read as a double;
    a list subclass's as a dict). Recorded objects are now held as soon as code may run."""
    found = {}
    made = []  # classes that missed the address: kept, so the next try gets another block

    def on_eq():
        old = id(box[0])
        box.clear()
        gc.collect()
        for _ in range(200):
            class NewT(int):
                pass
            if id(NewT) == old:
                found["reused"] = True
                break
            made.append(NewT)
        later.append(NewT(7))

    class T:
        def m(self):
            return self.foo

    t = T()
    t.foo = 1
    later = []
    gc.collect()  # t, later: oldest generation, walked after the young objects below

    class Victim(float):
        pass

    box = [Victim, Victim(2.5)]
    del Victim
    gc.get_referents(T.__dict__)[0][_ReuseKey(on_eq)] = 1
    T.bar = 1  # type modified: the walk's lookup of "foo" is no cache hit
    snap = heaptrail.snapshot(gc_first=False)
    assert len(later) == 1, "the walk ran no code: the test no longer reaches ht_hw_guard"
    rec = snap._h.record(snap._h.index(id(later[0])))  # an int: _index would take it for an address
    assert rec[1].endswith("NewT") and rec[4] == "7", (found, rec)
    assert rec[2] == sys.getsizeof(later[0])


def test_prefaulted_walk_records_the_same_objects():
    """A walk whose arrays a helper thread faults in ahead (heap.c "prefaulting", prefault.h;
    forced on here from the first objects, with reservations of 4,096 objects that the walk
    outgrows, so that its arrays move under the helper's lock while it runs) records what a walk
    without the helper records: the same objects, sizes, values, lengths and labeled edges."""
    from heaptrail import _core

    keep = [Session(f"user-{k}") for k in range(40000)]
    for s in keep:
        s.tags = [s.uid]
        s.__dict__  # materialized: owned dicts too
    old_from, old_room, _ = _core.heap_prefault_from(0, 4096)
    try:
        started = _core.heap_prefault_from(0)[2]
        with_helper = heaptrail.snapshot(gc_first=False)
        helpers = _core.heap_prefault_from(1 << 62, old_room)[2] - started
        without = heaptrail.snapshot(gc_first=False)
        assert _core.heap_prefault_from(1 << 62)[2] == started + helpers  # none for this one
    finally:
        _core.heap_prefault_from(old_from, old_room)
    if helpers == 0:
        pytest.skip("no helper thread here (one CPU, or arrays that are malloc blocks under ASan)")
    assert helpers == 1
    assert with_helper.objects > 120000  # past the walk's first arrays (room for 65,536)

    def described(snap, obj):
        i = snap._index(obj)
        return snap._h.record(i)[:6], sorted((snap._h.record(d)[0], lab) for d, lab in snap._h.edges(i))

    for s in keep[::97] + [keep[-1]]:
        for obj in (s, s.__dict__, s.uid, s.tags):
            assert described(with_helper, obj) == described(without, obj)
    edges = with_helper._h.edges(with_helper._index(keep))
    assert [lab for _, lab in edges] == list(range(40000))  # list indexes
    assert [with_helper._h.record(d)[0] for d, _ in edges] == [id(s) for s in keep]
    rows = {r.kind: (r.count, r.size) for r in with_helper.summary()}
    assert rows[f"{__name__}.Session"] == ({r.kind: (r.count, r.size) for r in without.summary()}
                                            [f"{__name__}.Session"])
    assert rows[f"{__name__}.Session"][0] == 40000


def test_first_use_of_snapshot_keeps_young_garbage():
    """`heaptrail.snapshot` is imported on first use; that import allocates enough to trigger
    the collector, which freed the program's young cyclic garbage before a
    snapshot(gc_first=False) could see it (found by the audit: 0 of 2 objects kept)."""
    from conftest import run_python
    proc = run_python("""
        import gc, heaptrail
        from heaptrail._core import heap_snapshot  # the engine only, not heaptrail.heap
        class Pair:
            pass
        gc.collect()
        gc.set_threshold(100)  # any real import allocates more than this
        a, b = Pair(), Pair()
        a.peer, b.peer = b, a
        addrs = [id(a), id(b)]
        del a, b
        snap = heaptrail.snapshot(gc_first=False)
        flags = [snap._h.record(snap._h.index(x))[5] if snap._h.index(x) >= 0 else None
                 for x in addrs]
        print(flags)
    """)
    flags = eval(proc.stdout)
    assert None not in flags and all(f & UNREACHABLE for f in flags)


def test_first_snapshot_does_not_collect_everything_for_heaptrails_own_import():
    """The lazy import behind the first `heaptrail.snapshot` runs with the collector off (see
    above): its cyclic garbage was then found by the walk, which collected the whole heap and
    walked again on every process's first snapshot (2.5x its time). The youngest generation,
    where that garbage is, is collected first instead."""
    from conftest import run_python
    proc = run_python("""
        import gc, heaptrail
        gens = []
        gc.callbacks.append(lambda phase, info: phase == "start" and gens.append(info["generation"]))
        snap = heaptrail.snapshot()
        again = heaptrail.snapshot()
        print(gens)
    """)
    assert eval(proc.stdout) == [0]  # once, the youngest generation only


SHARED_WITH_HEAPTRAIL = None


def test_heaptrail_own_objects_are_left_out():
    """A snapshot leaves heaptrail out (own.h): its modules, their __dict__s, the frames of its
    code, and what only they hold. What the program holds too stays, and its path to a root goes
    through the program, not "gc root"; a heaptrail function the program holds stays, without
    the edge to heaptrail's globals."""
    global SHARED_WITH_HEAPTRAIL
    import heaptrail.heap as hmod

    hmod._test_only = ["only heaptrail holds this list"]
    only = id(hmod._test_only)
    SHARED_WITH_HEAPTRAIL = hmod._test_shared = ["the program holds this list too"]
    fn = hmod.load
    try:
        snap = heaptrail.snapshot()
    finally:
        del hmod._test_only, hmod._test_shared
    for addr in (only, id(heaptrail), id(hmod), id(hmod.__dict__), id(hmod._take)):
        assert snap._h.index(addr) == -1
    assert str(snap.path_to_root(SHARED_WITH_HEAPTRAIL)) == (
        f"module {__name__} -> .SHARED_WITH_HEAPTRAIL -> <list 0x{id(SHARED_WITH_HEAPTRAIL):x}>")
    refs = {label for label, r in snap.referents(fn)}
    assert "__code__" in refs and "__globals__" not in refs
    assert [r.type for _, r in snap.referrers(fn)] == ["frame"]  # this test's local `fn`
    frames = {snap._h.record(i)[4] for i in range(snap.objects) if snap._h.record(i)[5] & FRAME_FLAG}
    assert sys._getframe().f_code.co_name in frames
    assert not frames & {"snapshot", "_take", "_own_objects"}  # heaptrail's


def test_frame_roots_name_their_thread(tmp_path):
    """A thread's frames carry its name: path_to_root says which thread's local holds an object
    (a pool runs the same function in every thread), in the live snapshot and in its file. A
    frame's `module` in queries is still its type's, its `value` its function's name."""
    import threading

    ready, done = threading.Event(), threading.Event()
    box = []

    def pool_worker():
        payload = ["held by one worker's local"]
        box.append(id(payload))
        ready.set()
        done.wait()

    t = threading.Thread(target=pool_worker, name="heaptrail-test-worker-3")
    t.start()
    try:
        ready.wait(5)
        snap = heaptrail.snapshot()
    finally:
        done.set()
        t.join()
    want = f"frame pool_worker (thread heaptrail-test-worker-3) -> payload -> <list 0x{box[0]:x}>"
    assert str(snap.path_to_root(box[0])) == want
    snap.save(tmp_path / "t.htsnap")
    assert str(heaptrail.load(tmp_path / "t.htsnap").path_to_root(box[0])) == want
    frames = snap.query("type == 'frame' and value == 'pool_worker' and module == 'builtins'")
    assert len(frames) == 1
    me = sys._getframe().f_code.co_name
    assert str(snap.path_to_root(snap.query(f"type == 'frame' and value == '{me}'")[0].address)) == (
        f"frame {me} (thread MainThread) (a root)")


class _Suspend:
    def __await__(self):
        yield


async def _handler(request):
    cache = ["held by a suspended coroutine's local"]
    await _Suspend()
    return cache, request


def _producer():
    buf = ["held by a suspended generator's local"]
    yield buf


def _finished():
    yield 1


def test_generator_and_coroutine_locals_are_labeled():
    """A generator's or coroutine's tp_traverse visits its frame's variables without their
    names: the walk reads the names from the frame inside it (framevars.h), and names the
    object after its function. Not started (only the arguments are bound), suspended and
    finished (no frame left) ones."""
    global GEN, CORO, NEW_CORO, DONE
    GEN = _producer()
    buf = id(next(GEN))  # only the generator's local holds the list
    CORO = _handler("req-1")
    CORO.send(None)  # suspended at the await
    NEW_CORO = _handler(["the argument of a coroutine not started"])
    DONE = _finished()
    list(DONE)
    try:
        snap = heaptrail.snapshot()
        assert str(snap.path_to_root(buf)) == f"module {__name__} -> .GEN -> buf -> <list 0x{buf:x}>"
        gen_i = snap._index(GEN)
        assert {lab for _, lab in snap._h.edges(gen_i)} >= {"buf"}
        assert snap.record(GEN).value == "_producer"
        cache = CORO.cr_frame.f_locals["cache"]
        assert str(snap.path_to_root(cache)) == (
            f"module {__name__} -> .CORO -> cache -> <list 0x{id(cache):x}>")
        assert snap.record(CORO).value == "_handler"
        arg = NEW_CORO.cr_frame.f_locals["request"]
        assert str(snap.path_to_root(arg)) == (
            f"module {__name__} -> .NEW_CORO -> request -> <list 0x{id(arg):x}>")
        assert snap.record(DONE).value == "_finished"
        assert [lab for _, lab in snap._h.edges(snap._index(DONE)) if lab] == []  # no frame
    finally:
        CORO.close()
        NEW_CORO.close()
        del GEN, CORO, NEW_CORO, DONE


def _with_constants():
    return ("a", "constants", "tuple"), 12345.5


def test_code_constants_are_no_gc_roots():
    """A code object is no gc object, but its references are references: its constants tuple
    was taken for a gc root (5,500 of a small program's 6,300 were), and a path to a constant
    started there. Now the path goes through the function."""
    snap = heaptrail.snapshot()
    consts = _with_constants.__code__.co_consts
    rec = snap._h.record(snap._index(consts))
    assert not rec[5] & EXTERNAL
    assert str(snap.path_to_root(consts)) == (
        f"module {__name__} -> ._with_constants -> __code__ -> co_consts -> <tuple 0x{id(consts):x}>")


def _running_probe():
    return heaptrail.snapshot(gc_first=False)


def test_running_functions_are_no_gc_roots():
    """A running frame holds its function and code, which its tp_traverse does not visit: the
    function was a gc root, its path just "function f". The references are counted now (no
    edges: the path goes through the module). One that only the frame holds (a lambda called
    in place) stays a root, never garbage."""
    snap = _running_probe()
    assert not snap._h.record(snap._index(_running_probe))[5] & EXTERNAL
    assert str(snap.path_to_root(_running_probe)) == (
        f"module {__name__} -> ._running_probe -> function _running_probe")
    box = []
    snap = (lambda: box.append(id(sys._getframe().f_code)) or heaptrail.snapshot(gc_first=False))()
    assert not snap._h.record(snap._index(box[0]))[5] & UNREACHABLE
