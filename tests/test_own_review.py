"""Review of the snapshot walk's own-object logic (own.h), the frames' thread names and the
generator labels (framevars.h): what is left out and what is kept, refcounts as they were, no
extra collection, and every generator state read safely (also run under ASan)."""
import asyncio
import gc
import sys
import subprocess
import threading

import pytest

import heaptrail
import heaptrail.heap as hmod
import heaptrail.leaks
from heaptrail import snapshot as imported_snapshot
from heaptrail.heap import EXTERNAL, FRAME, ROOT, UNREACHABLE, Snapshot

from conftest import run_cli, run_python


class ProgramSnapshot(Snapshot):
    """A program's subclass of a heaptrail class: the class and its base are the program's."""


def _frames(snap):
    """[(function, thread)] of the snapshot's frames."""
    recs = (snap._h.record(i) for i in range(snap.objects))
    return [(r[4], r[7]) for r in recs if r[5] & FRAME]


def _flags(snap, obj):
    return snap._h.record(snap._index(obj))[5]


def test_a_heaptrail_class_the_program_holds_is_no_gc_root():
    """`Snapshot(_walk(...))` held the class on heaptrail's frame stack during the walk, a
    reference no object explains: the class the program imported was a gc root."""
    snap = heaptrail.snapshot()
    assert not _flags(snap, Snapshot) & (EXTERNAL | ROOT)
    path = str(snap.path_to_root(Snapshot))  # through this module or another test module
    assert path.startswith("module ") and path.endswith(" -> .Snapshot -> class heaptrail.heap.Snapshot")
    assert str(snap.path_to_root(ProgramSnapshot)) == (
        f"module {__name__} -> .ProgramSnapshot -> class {__name__}.ProgramSnapshot")
    # the function the program imported stays, held by the program's module only
    refs = [(lab, r.type) for lab, r in snap.referrers(imported_snapshot)]
    assert (".imported_snapshot", "dict") in refs and {t for _, t in refs} == {"dict"}
    for addr in (id(hmod), id(hmod.__dict__), id(hmod._take), id(heaptrail.leaks.check)):
        assert snap._h.index(addr) == -1


def test_heaptrail_frames_of_another_thread_are_left_out():
    """A thread of the program takes a snapshot while the main thread runs heaptrail code
    (leaks.check calling the program's function): check's frame and its session are
    heaptrail's, left out as on the caller's own thread; the program's frames stay."""
    out, go, done = {}, threading.Event(), threading.Event()

    def taker():
        go.wait(10)
        try:
            out["snap"] = heaptrail.snapshot()
        finally:
            done.set()

    def measured():
        if not go.is_set():
            go.set()
            done.wait(10)

    t = threading.Thread(target=taker, name="review-taker")
    t.start()
    try:
        heaptrail.leaks.check(measured, runs=1, warmup=0)
    finally:
        go.set()
        t.join()
    snap = out.pop("snap")
    frames = _frames(snap)
    me = sys._getframe().f_code.co_name
    assert ("measured", "MainThread") in frames and (me, "MainThread") in frames
    assert ("taker", "review-taker") in frames
    assert [f for f in frames if f[0] in ("check", "snapshot", "_take", "_walk")] == []
    assert snap.query("type == 'heaptrail.leaks._Session'") == []


def test_a_program_thread_snapshot_under_the_command_leaves_the_command_out(tmp_path):
    """`heaptrail snapshot -- script.py` whose thread calls mark(): the command's frames (cli.main
    and below, on the main thread) are heaptrail's, not the program's."""
    script = tmp_path / "prog.py"
    script.write_text(
        "import threading, heaptrail\n"
        "def marker():\n"
        "    heaptrail.mark('from-thread')\n"
        "t = threading.Thread(target=marker, name='marker-thread')\n"
        "t.start()\n"
        "t.join()\n")
    out = tmp_path / "out.htsnap"
    proc = run_cli("snapshot", "-o", str(out), "--", str(script))
    assert proc.returncode == 0, proc.stderr
    mark = heaptrail.load(f"{out}.1.from-thread")
    funcs = [f for f, _ in _frames(mark)]
    # the main thread may still be in t.start() (waiting for the thread to say it started)
    threading_own = {"run", "_bootstrap_inner", "_bootstrap", "join", "_wait_for_tstate_lock",
                     "start", "wait"}
    assert set(funcs) - threading_own == {"<module>", "marker"}
    # one `run`, the thread's: the command's (commands/snapshot.py) is heaptrail's
    assert funcs.count("run") == 1 and funcs.count("<module>") == 1
    assert not {"main", "_run_as_main", "_run_module_as_main", "_run_code"} & set(funcs)


SHARED = None


def test_what_heaptrail_and_program_garbage_hold_is_live_and_the_garbage_unreachable():
    """gc_first=False: an object heaptrail's state holds and program garbage refers to is alive
    (a root, held from outside the graph), the garbage cycle is flagged unreachable."""
    class Node:
        pass

    hmod._review_state = ["held by heaptrail's state"]
    kept = id(hmod._review_state)
    a, b = Node(), Node()
    a.peer, b.peer, a.state = b, a, hmod._review_state
    cycle = [id(a), id(b)]
    del a, b
    try:
        snap = heaptrail.snapshot(gc_first=False)
        flags = snap._h.record(snap._h.index(kept))[5]
        assert flags & ROOT and flags & EXTERNAL and not flags & UNREACHABLE
        for addr in cycle:
            assert snap._h.record(snap._h.index(addr))[5] & UNREACHABLE
    finally:
        del hmod._review_state
        gc.collect()


class _Collections:
    """gc.collect() runs (their generations) during the block, automatic collection off."""

    def __enter__(self):
        heaptrail.snapshot()  # first-use imports and their young garbage
        gc.collect()
        gc.disable()
        self.gens = []
        gc.callbacks.append(self._on)
        return self

    def _on(self, phase, info):
        if phase == "start":
            self.gens.append(info["generation"])

    def __exit__(self, *exc):
        gc.callbacks.remove(self._on)
        gc.enable()


def _gen_snapshot():
    snap = yield
    yield heaptrail.snapshot()


async def _coro_snapshot():
    await asyncio.sleep(0)
    return heaptrail.snapshot()


def test_no_collection_on_a_heap_without_garbage():
    """The own logic leaves nothing for the walk to take for garbage: no snapshot collects,
    whether from a function, inside a generator or a coroutine, or from another thread."""
    with _Collections() as c:
        heaptrail.snapshot()
        g = _gen_snapshot()
        next(g)
        in_gen = g.send(None)
        assert c.gens == []
        asyncio.run(asyncio.sleep(0))  # asyncio's first use, outside the count
        gc.collect()
        del c.gens[:]
        in_coro = asyncio.run(_coro_snapshot())
        assert c.gens == []
        res = []
        t = threading.Thread(target=lambda: res.append(heaptrail.snapshot()))
        t.start()
        t.join()
        heaptrail.snapshot()
        assert c.gens == []
    assert ("_gen_snapshot", "MainThread") in _frames(in_gen)
    assert ("_coro_snapshot", "MainThread") in _frames(in_coro)
    assert [f for f in _frames(in_gen) + _frames(in_coro) if f[0] in ("snapshot", "_take")] == []
    g.close()


def test_refcounts_and_objects_unchanged():
    objs = [ProgramSnapshot, Snapshot, hmod, hmod.__dict__, hmod._walk, imported_snapshot,
            sys.modules[__name__].__dict__, threading.current_thread(), [1, 2], {"k": object()}]
    heaptrail.snapshot()
    gc.collect()
    before = [sys.getrefcount(o) for o in objs]
    ids = {id(o) for o in gc.get_objects()}
    heaptrail.snapshot()
    heaptrail.snapshot(gc_first=False)
    gc.collect()
    new = []
    for o in gc.get_objects():  # no comprehension: its closure over `ids` would be new
        if id(o) not in ids and o is not ids and o is not new:
            new.append(repr(o)[:80])
    assert [sys.getrefcount(o) for o in objs] == before
    assert new == []


def test_gc_freeze_with_heaptrail_imported():
    """Frozen heaptrail objects stay out, frozen program objects stay in, no collection."""
    proc = run_python("""
        import gc, heaptrail
        heaptrail.snapshot()
        class Frozen:
            pass
        keep = [Frozen() for _ in range(7)]
        gc.collect()
        gc.freeze()
        gens = []
        gc.callbacks.append(lambda p, i: p == "start" and gens.append(i["generation"]))
        snap = heaptrail.snapshot()
        import heaptrail.heap as h
        print(gens, len(snap.query("type == '__main__.Frozen'")), snap._h.index(id(h.__dict__)),
              snap._h.index(id(h._take)))
    """)
    assert proc.stdout.split() == ["[]", "7", "-1", "-1"]


def _cells(seed):
    box = [seed]

    def get():
        return box
    yield get


def _inner():
    inner_local = ["inner generator's local"]
    yield inner_local


def _outer():
    outer_local = ["outer generator's local"]
    yield from _inner()
    yield outer_local


async def _agen():
    agen_local = ["async generator's local"]
    yield agen_local


class _Pending:
    def __await__(self):
        yield


async def _awaiting():
    awaited_local = ["awaiting coroutine's local"]
    await _Pending()
    return awaited_local


def _blocked(started, release):
    blocked_local = ["local of a generator running on another thread"]
    started.set()
    release.wait(10)  # blocked in C, the GIL released, its frame executing
    yield blocked_local


def _label_of(snap, owner, target):
    """The labels of owner's edges to target in snap."""
    t = snap._index(target)
    return sorted(lab for d, lab in snap._h.edges(snap._index(owner)) if d == t)


def test_generators_in_every_state():
    """framevars.h reads the frame inside generators, coroutines and async generators: created,
    suspended (with cells, in a yield from), executing on another thread blocked in C, finished
    and closed; each one's locals labeled, and the frame never read once it is done."""
    created = _cells(["argument of a generator not started"])
    seed = created.gi_frame.f_locals["seed"]
    with_cell = _cells(["in a cell"])
    getter = next(with_cell)
    outer = _outer()
    inner_local = next(outer)
    agen = _agen()
    agen_it = agen.asend(None)  # suspended at its yield, driven without an event loop
    with pytest.raises(StopIteration) as stop:
        agen_it.send(None)
    agen_local = stop.value.value
    coro = _awaiting()
    coro.send(None)
    finished = _cells(0)
    list(finished)
    closed = _cells(1)
    next(closed)
    closed.close()
    started, release, running = threading.Event(), threading.Event(), []

    def drive():
        gen = _blocked(started, release)
        running.append(gen)
        running.append(next(gen))

    t = threading.Thread(target=drive, name="review-gen-driver")
    t.start()
    try:
        assert started.wait(10)
        blocked_gen = running[0]
        snap = heaptrail.snapshot()
        blocked_local = blocked_gen.gi_frame.f_locals["blocked_local"]
    finally:
        release.set()
        t.join()
    assert _label_of(snap, created, seed) == ["seed"]
    cell = getter.__closure__[0]
    assert _label_of(snap, with_cell, cell) == ["box"]  # the cell itself, as tp_traverse visits it
    assert _label_of(snap, with_cell, getter) == ["get"]
    inner = outer.gi_yieldfrom
    assert _label_of(snap, inner, inner_local) == ["inner_local"]
    assert snap.record(inner).value == "_inner" and snap.record(outer).value == "_outer"
    assert _label_of(snap, agen, agen_local) == ["agen_local"]
    assert snap.record(agen).value == "_agen"
    awaited = coro.cr_frame.f_locals["awaited_local"]
    assert _label_of(snap, coro, awaited) == ["awaited_local"]
    assert _label_of(snap, blocked_gen, blocked_local) == ["blocked_local"]
    for done in (finished, closed):
        assert [lab for _, lab in snap._h.edges(snap._index(done)) if lab] == []
        assert snap.record(done).value == "_cells"
    coro.close()
    agen_it.close()
    asyncio.run(agen.aclose())
    outer.close()
    with_cell.close()


def test_cells_of_a_running_heaptrail_closure_are_no_gc_roots():
    """A heaptrail closure runs below the snapshot (lines.profile's wrapper around the program's
    function): its frame holds its free variables' cells, which the wrapper's __closure__ shares.
    own.c took the cells' contents for the frame's references (PyFrame_GetVar's view; on 3.12+
    free variables not at all): the cells were gc roots."""
    import io

    out = {}

    def measured():
        out["snap"] = heaptrail.snapshot()

    from heaptrail import lines, tracer

    was = tracer.is_tracing()
    lines._shown_at_exit = True  # pytest's own exit: no tables on its stdout (as test_lines)
    wrapped = lines.profile(measured, stream=io.StringIO())
    try:
        wrapped()
    finally:
        lines.reset()
        if not was:
            tracer.stop()  # profile() started it
    snap = out.pop("snap")
    assert len(wrapped.__closure__) == 3  # func, enter, leave
    for k, cell in enumerate(wrapped.__closure__):
        assert not _flags(snap, cell) & (EXTERNAL | ROOT)
        assert str(snap.path_to_root(cell)).endswith(f" -> __closure__ -> [{k}] -> <cell 0x{id(cell):x}>")


def test_constants_of_heaptrail_code_are_left_out():
    """A code object is no gc object (3.11-3.13): the traversal from heaptrail's functions
    stopped at it, and the constants tuples the collector still tracks (young ones; on 3.13 some
    for good) were kept as gc roots. own.c follows a code object to its constants."""
    proc = run_python("""
        import gc
        gc.disable()  # a collection untracks tuples of atoms: keep the import's tracked
        import types, sys
        import heaptrail, heaptrail.heap, heaptrail.leaks, heaptrail.graph

        def codes(co):
            yield co
            for c in co.co_consts:
                if isinstance(c, types.CodeType):
                    yield from codes(c)

        # heaptrail's own code: a function contextlib.contextmanager made (_format.replacing) is
        # named heaptrail's by functools.wraps, but its code and constants are contextlib's
        home = heaptrail.__path__[0]
        tracked = set()
        for name, mod in list(sys.modules.items()):
            if name.startswith("heaptrail"):
                for v in list(vars(mod).values()):
                    if isinstance(v, types.FunctionType) and v.__code__.co_filename.startswith(home):
                        for c in codes(v.__code__):
                            tracked.update(id(k) for k in (c.co_consts,) + c.co_consts
                                           if gc.is_tracked(k))
        del name, mod, v, c
        snap = heaptrail.snapshot(gc_first=False)
        print(len(tracked), sum(snap._h.index(a) >= 0 for a in tracked))
    """)
    tracked, kept = map(int, proc.stdout.split())
    assert tracked > 10 and kept == 0


def test_a_snapshot_heaptrail_also_holds_stays_excluded():
    """Snapshots leave every Snapshot out. One that heaptrail holds too (here check()'s
    arguments) was met first in the collector's lists as heaptrail's, and the walk left it
    there before the excluded types' check: the program's reference then recorded it."""
    keep = heaptrail.snapshot()
    out = []

    def measured(snap):
        if not out:
            out.append(heaptrail.snapshot())

    heaptrail.leaks.check(measured, runs=1, warmup=0, args=(keep,))
    taken = out.pop()
    assert taken._h.index(id(keep)) == -1
    assert taken.query(f"type == 'heaptrail.heap.Snapshot'") == []
    # the program's frame refers to it: no edge is left dangling to it
    me = taken._index(sys._getframe())
    assert "keep" not in {lab for _, lab in taken._h.edges(me)}
    hmod._review_keep = keep  # heaptrail's state holds it, the program's local too
    try:
        assert heaptrail.snapshot()._h.index(id(keep)) == -1
    finally:
        del hmod._review_keep


def test_the_running_heaptrail_function_the_program_imported_is_no_gc_root():
    """`from heaptrail import snapshot; snapshot()`: the function runs in a frame of heaptrail's,
    which holds it (and its code): a reference own.c did not count, so the program's function
    was a gc root."""
    snap = imported_snapshot()
    assert not _flags(snap, imported_snapshot) & (EXTERNAL | ROOT)
    path = str(snap.path_to_root(imported_snapshot))
    assert path.startswith("module ") and path.endswith("snapshot -> function snapshot")
    code = imported_snapshot.__code__
    assert not _flags(snap, code) & (EXTERNAL | ROOT)
    via = path.rsplit(" -> ", 1)[0]  # the function's own description ends only its path
    assert str(snap.path_to_root(code)) == via + " -> __code__ -> " + snap._describe(snap._index(code))


def _module_names(snap):
    return {r.value for r in snap.query("type == 'module'")}


def _command_snapshot(tmp_path, source):
    """The snapshot `heaptrail snapshot -- prog.py` takes of a program with this source."""
    script = tmp_path / "prog.py"
    script.write_text(source)
    out = tmp_path / "out.htsnap"
    proc = run_cli("snapshot", "-o", str(out), "--", str(script))
    assert proc.returncode == 0, proc.stderr
    return heaptrail.load(out)


def test_modules_the_command_line_imported_are_left_out(tmp_path):
    """`heaptrail snapshot -- prog.py`: argparse, gettext, locale ... are in sys.modules because
    the command line imported them; a program that imports none of them has the modules a plain
    `python -m` run of it has, no more, no fewer."""
    probe = tmp_path / "probe_modules.py"
    # every live module, by name (sys.modules has aliases; 3.12's sys.monitoring is in none);
    # then those `import re, copyreg, typing` adds (see below)
    probe.write_text("import sys\n"
                     "had_gc = 'gc' in sys.modules\n"
                     "import gc\n"
                     "def names():\n"
                     "    return {m.__name__ for m in gc.get_objects() if isinstance(m, type(sys))}\n"
                     "plain = names() - ({'gc'} if not had_gc else set())\n"
                     "import re, copyreg, typing\n"
                     "with open(sys.argv[1], 'w') as f:\n"
                     "    f.write(' '.join(plain) + '\\n' + ' '.join(names() - plain - {'gc'}))\n")
    subprocess.run([sys.executable, "-m", "probe_modules", str(tmp_path / "plain.txt")],
                   cwd=tmp_path, check=True, timeout=60)
    plain, registered = ((tmp_path / "plain.txt").read_text() + " ").split("\n")
    plain, registered = set(plain.split()), set(registered.split())
    snap = _command_snapshot(tmp_path, "import sys\n"
                             f"open({str(tmp_path / 'seen.txt')!r}, 'w').write(str('argparse' in sys.modules))\n")
    assert (tmp_path / "seen.txt").read_text() == "True"  # the program could see argparse
    names = _module_names(snap)
    assert not names & {"argparse", "gettext", "locale"}
    if sys.version_info < (3, 13):
        assert names == plain
    else:
        # 3.13 starts with fewer modules, and objects only C holds reach some of those the
        # command line imported: re registers with copyreg, typing's lru caches: they stay
        assert plain <= names <= plain | registered


def test_a_module_the_program_shares_with_the_command_line_is_the_programs(tmp_path):
    """The program imports argparse, which the command line imported first: argparse is the
    program's (a root, as every module, and no gc root), and so is gettext, whose functions
    argparse's globals hold (as in a run without heaptrail)."""
    snap = _command_snapshot(tmp_path, "import argparse\nPARSER = argparse.ArgumentParser(prog='demo')\n"
                             f"open({str(tmp_path / 'id.txt')!r}, 'w').write(str(id(PARSER)))\n")
    parser = int((tmp_path / "id.txt").read_text())
    assert str(snap.path_to_root(parser)) == f"module __main__ -> .PARSER -> <ArgumentParser 0x{parser:x}>"
    for name in ("argparse", "gettext"):
        (mod,) = snap.query(f"type == 'module' and name == '{name}'")
        assert str(snap.path_to_root(mod.address)) == f"module {name} (a root)"
        assert _flags(snap, mod.address) & (ROOT | EXTERNAL) == ROOT
    # every module's __dict__ is known as its (gettext's was reached first, through argparse)
    (row,) = [r for r in snap.summary(by="owner") if r.kind == "dict of module"]
    assert row.count == len(snap.query("type == 'module'"))


def test_modules_heaptrail_imports_for_itself_are_left_out():
    """In the program: heaptrail.snapshot() imports heaptrail.heap and what it needs (__future__,
    for heaptrail.graph): such a module is heaptrail's until the program imports it."""
    proc = run_python("""
        import sys
        import heaptrail
        before = set(sys.modules)
        snap = heaptrail.snapshot()
        names = {r.value for r in snap.query("type == 'module'")}
        print("__future__" not in before, "__future__" in sys.modules, "__future__" in names)
        import __future__
        snap = heaptrail.snapshot()
        (mod,) = snap.query("type == 'module' and name == '__future__'")
        print(mod.address == id(__future__), snap.path_to_root(__future__))
    """)
    assert proc.stdout.splitlines() == ["True True False", "True module __future__ (a root)"]
