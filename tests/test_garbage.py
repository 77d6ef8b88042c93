"""heaptrail.garbage: DEBUG_SAVEALL collection in a scope, the cycles found (members, sizes,
finalizers), and everything put back and freed afterwards."""
import gc
import shutil
import sys
import pytest

import heaptrail
from heaptrail import garbage


class Holder:
    pass


def holders():
    """Live Holder instances (weakrefs cannot tell: the collector clears them even when
    DEBUG_SAVEALL keeps the objects)."""
    return sum(1 for o in gc.get_objects() if type(o) is Holder)


class WithDel:
    calls = 0

    def __del__(self):
        WithDel.calls += 1


def test_self_referencing_list():
    twin = []
    twin.append(twin)
    with garbage.collect() as g:
        lst = []
        lst.append(lst)
        address = id(lst)
        del lst
    assert g.count == 1
    assert len(g.cycles) == 1
    (cycle,) = g.cycles
    assert [m.address for m in cycle.members] == [address]
    assert cycle.members[0].type == "list"
    assert cycle.total_size == sys.getsizeof(twin)
    assert not cycle.has_finalizers
    twin.clear()


def test_two_object_cycle_holding_10mb():
    before = holders()
    with garbage.collect() as g:
        a, b = Holder(), Holder()
        a.other, b.other = b, a
        a.buffer = bytes(10 * 1024 * 1024)
        ids = {id(a), id(b)}
        del a, b
    cycles = [c for c in g.cycles if {m.address for m in c.members} & ids]
    assert len(cycles) == 1
    (cycle,) = cycles
    assert {m.address for m in cycle.members} == ids
    assert [m.type for m in cycle.members] == ["Holder", "Holder"]
    assert cycle.total_size >= 10 * 1024 * 1024
    assert cycle.total_size < 10 * 1024 * 1024 + 4096
    assert g.cycles[0] is cycle  # biggest first
    assert holders() == before  # freed after the report
    assert "10.0 MiB" in str(g)


def test_finalizer_flagged_and_run_once():
    WithDel.calls = 0
    with garbage.collect() as g:
        d = WithDel()
        d.me = d
        plain = []
        plain.append(plain)
        del d, plain
    by_type = {c.members[0].type: c for c in g.cycles}
    assert by_type["WithDel"].has_finalizers
    assert not by_type["list"].has_finalizers
    gc.collect()
    assert WithDel.calls == 1
    assert "yes" in str(g)


def test_gc_state_restored_and_nothing_leaks():
    sentinel = object()
    gc.garbage.append(sentinel)
    garbage_list = gc.garbage
    flags = gc.get_debug()
    before = holders()
    try:
        with garbage.collect() as g:
            assert gc.get_debug() & gc.DEBUG_SAVEALL
            x = [Holder()]
            x.append(x)
            del x
        assert gc.garbage is garbage_list
        assert gc.garbage == [sentinel]
        assert gc.get_debug() == flags
        assert holders() == before
        assert g.objects is None
        assert g.count == 2  # the list and its Holder
    finally:
        gc.garbage.remove(sentinel)


def test_keep_then_release():
    before = holders()
    with garbage.collect(keep=True) as g:
        a = Holder()
        a.me = a
        address = id(a)
        del a
    assert [id(o) for o in g.objects] == [address]
    assert holders() == before + 1
    g.release()
    assert holders() == before


def test_find_reports_existing_garbage():
    gc.collect()
    a = Holder()
    b = Holder()
    a.b, b.a = b, a
    ids = {id(a), id(b)}
    del a, b
    g = garbage.find()
    assert any({m.address for m in c.members} == ids for c in g.cycles)
    assert garbage.find().cycles == []


def test_no_garbage():
    with garbage.collect() as g:
        x = [1, 2, 3]
        del x
    assert g.count == 0 and g.cycles == [] and g.total_size == 0
    assert str(g).startswith("0 objects collected, 0 cycles")


def test_dot_graph(tmp_path):
    with garbage.collect() as g:
        a, b = Holder(), Holder()
        a.other, b.other = b, a
        del a, b
    dot = g.to_dot()
    assert dot.startswith("digraph garbage {")
    assert "subgraph cluster_0" in dot
    assert "g0 -> g1;" in dot and "g1 -> g0;" in dot
    assert dot.count("[label=") == 2
    path = tmp_path / "g.dot"
    assert g.render(path) == str(path)
    assert path.read_text() == dot


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz's dot is not installed (apt-get install graphviz)")
def test_render_svg(tmp_path):
    with garbage.collect() as g:
        x = []
        x.append(x)
        del x
    path = tmp_path / "g.svg"
    g.render(path)
    assert "<svg" in path.read_text()


def test_reachable_from_package():
    assert heaptrail.garbage is garbage
