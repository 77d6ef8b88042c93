"""Review of the line profiler (heaptrail.lines) and the leak hunter (heaptrail.leaks) against
ground truth: known sizes on known lines, recursion counted once, wrapped functions, source
as it was at decoration, and leaks with known growth, sites and paths."""
import functools
import importlib.util
import io
import os
import sys
import textwrap

import pytest

import heaptrail
from heaptrail import leaks, lines, tracer
from conftest import run_python

MiB = 2**20


def _table(code):
    for fres in lines.results():
        if fres["filename"] == code.co_filename and fres["first_line"] == code.co_firstlineno:
            return fres
    raise AssertionError("no results for %s" % code.co_name)


def _by_text(fres):
    return {r["contents"].strip(): r for r in fres["rows"]}


def _load(tmp_path, name, source):
    path = tmp_path / (name + ".py")
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, path


# ---- line profiler ------------------------------------------------------------------------

def test_recursion_charges_a_line_once_not_once_per_level(lines_isolated, tmp_path):
    """rec(3) runs 4 levels, each allocating 1 MiB that is freed when it returns: the
    recursive call's line allocated 3 MiB in all (the levels below the top one), not
    3 + 2 + 1 = 6 MiB, counting the same bytes again at every level."""
    mod, _ = _load(tmp_path, "rec_mod", """
        from heaptrail.lines import profile
        MiB = 2**20
        @profile
        def rec(n):
            a = bytearray(MiB)
            if n:
                rec(n - 1)
            return len(a)
    """)
    mod.rec(3)
    rows = _by_text(_table(mod.rec.__wrapped__.__code__))
    alloc = rows["a = bytearray(MiB)"]
    call = rows["rec(n - 1)"]
    assert alloc["occurrences"] == 4 and call["occurrences"] == 3
    assert abs(alloc["allocated"] - 4 * MiB) < 0.01 * MiB
    assert abs(call["allocated"] - 3 * MiB) < 0.01 * MiB
    assert abs(call["increment"]) < 0.01 * MiB      # every level freed its MiB


def test_profile_over_wrapping_decorators(lines_isolated, tmp_path):
    """@profile over lru_cache, over a functools.wraps decorator and over profile itself:
    the table is the decorated function's lines, not the wrapper's (lru_cache was a
    TypeError; profile(profile(f)) made a table of heaptrail's own wrapper, charged by every
    profiled call nested in another)."""
    mod, _ = _load(tmp_path, "wrap_mod", """
        import functools
        from heaptrail.lines import profile
        MiB = 2**20

        def deco(f):
            @functools.wraps(f)
            def w(*a):
                return f(*a)
            return w

        @profile
        @functools.lru_cache(maxsize=4)
        def cached(n):
            return bytearray(n * MiB)

        @profile
        @deco
        def decorated():
            b = bytearray(2 * MiB)
            return len(b)

        @profile
        @profile
        def twice():
            c = bytearray(3 * MiB)
            return inner(c)

        @profile
        def inner(c):
            return len(c)

        @profile
        @deco
        async def coro():
            d = bytearray(MiB)
            return len(d)

        @profile
        @deco
        def gen():
            e = bytearray(MiB)
            yield len(e)

        import contextlib
        @profile
        @contextlib.contextmanager
        def managed():
            yield bytearray(10)
    """)
    import asyncio

    mod.cached(1)
    mod.cached(1)  # from the cache: the function's lines do not run again
    mod.decorated()
    mod.twice()
    assert asyncio.run(mod.coro()) == MiB
    assert list(mod.gen()) == [MiB]
    with mod.managed() as m:   # a wrapper returning neither generator nor coroutine
        assert m == bytearray(10)
    names = sorted(f["function"] for f in lines.results() if f["filename"] == mod.__file__)
    assert names == ["cached", "coro", "decorated", "gen", "inner", "managed", "twice"], names
    rows = _by_text(_table(inspect_unwrap(mod.cached).__code__))
    assert rows["return bytearray(n * MiB)"]["occurrences"] == 1
    assert abs(rows["return bytearray(n * MiB)"]["increment"] - MiB) < 0.01 * MiB
    rows = _by_text(_table(inspect_unwrap(mod.decorated).__code__))
    assert abs(rows["b = bytearray(2 * MiB)"]["allocated"] - 2 * MiB) < 0.01 * MiB
    rows = _by_text(_table(inspect_unwrap(mod.twice).__code__))
    assert rows["c = bytearray(3 * MiB)"]["occurrences"] == 1
    rows = _by_text(_table(inspect_unwrap(mod.coro).__code__))  # the coroutine's body ran
    assert abs(rows["d = bytearray(MiB)"]["allocated"] - MiB) < 0.01 * MiB
    rows = _by_text(_table(inspect_unwrap(mod.gen).__code__))  # the generator's too
    assert abs(rows["e = bytearray(MiB)"]["allocated"] - MiB) < 0.01 * MiB


def inspect_unwrap(f):
    import inspect

    return inspect.unwrap(f)


def test_source_is_the_one_that_ran(lines_isolated, tmp_path):
    """A file edited (or deleted) after its functions were decorated: the table shows the
    lines that ran, not the new file's (linecache.checkcache rereads changed files)."""
    import linecache

    mod, path = _load(tmp_path, "edited_mod", """
        from heaptrail.lines import profile
        @profile
        def f():
            kept = bytearray(2**20)
            return len(kept)
    """)
    mod.f()
    path.write_text("# rewritten\n" * 10)
    linecache.checkcache(str(path))
    fres = _table(mod.f.__wrapped__.__code__)
    assert "kept = bytearray(2**20)" in _by_text(fres)
    assert fres["has_source"]
    os.remove(path)
    linecache.checkcache(str(path))
    assert "kept = bytearray(2**20)" in _by_text(_table(mod.f.__wrapped__.__code__))


def test_no_source_is_said(lines_isolated):
    """Code exec'd from a string: the table is still printed, with a note saying why the
    contents are empty."""
    ns = {}
    exec(compile("def ex():\n    a = bytearray(1048576)\n    return len(a)\n", "<exec-src>", "exec"), ns)
    ex = lines.profile(ns["ex"])
    ex()
    fres = _table(ns["ex"].__code__)
    assert abs(fres["rows"][1]["increment"] - MiB) < 0.01 * MiB  # line 2 of the string
    out = io.StringIO()
    lines.show(stream=out)
    text = out.getvalue()
    assert "Filename: <exec-src>" in text and "no source for ex" in text
    assert fres["has_source"] is False


def test_tables_shown_are_not_printed_again_at_exit(tmp_path):
    """show() then the end of the program: each table printed once (unless it changed)."""
    script = tmp_path / "shown.py"
    script.write_text(textwrap.dedent("""
        from heaptrail import lines
        @lines.profile
        def f():
            return bytearray(1000)
        @lines.profile
        def g():
            return bytearray(1000)
        f(); g()
        lines.show()
        g()   # changed since: printed again at exit
    """))
    proc = run_python("import runpy, sys; runpy.run_path(sys.argv[1])", str(script))
    assert proc.stdout.count("Filename:") == 3, proc.stdout
    assert proc.stdout.count("def f():") == 1 and proc.stdout.count("def g():") == 2


# ---- leak hunter ----------------------------------------------------------------------------

@pytest.fixture
def leak_mod(tmp_path):
    """Loads a module from source (as `name`), removed from sys.modules afterwards."""
    names = []

    def load(name, source):
        names.append(name)
        mod, path = _load(tmp_path, name, source)
        sys.modules[name] = mod
        return mod, str(path)

    yield load
    for n in names:
        sys.modules.pop(n, None)
    assert not tracer.is_tracing()


def _line(path, text):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if text in line:
                return n
    raise AssertionError(text)


def _kind(report, name):
    found = [k for k in report.kinds if k.kind == name]
    assert found, f"{name} not reported; got {[k.kind for k in report.kinds]}"
    return found[0]


def test_sites_of_a_closure_leak_name_its_lines_not_the_caller(leak_mod):
    """A closure kept per call: its list, its 2-tuples and its cells were shown as allocated
    at the line that called check() (blocks heaptrail's step() freed, reused from the free
    lists; a cell made as the function starts, before its frame is visible)."""
    mod, path = leak_mod("rv_closure", """
        HOOKS = []
        def work():
            big = [bytearray(100) for _ in range(2)]
            pair = (object(), len(HOOKS))
            def cb():
                return big, pair
            HOOKS.append(cb)
    """)
    report = leaks.check(mod.work, runs=6, warmup=2)
    here = f"{path}:{_line(path, 'big = [bytearray')}"
    lst = _kind(report, "list")
    assert lst.new_count == 6 and lst.count_per_iteration == 1
    assert [s["innermost"].split("  ")[0] for s in lst.sites] == [here], lst.sites
    pair = _kind(report, "tuple")
    assert sum(s["count"] for s in pair.sites) >= 6
    for s in pair.sites:   # a free list block from the program's own lines, never the caller's
        assert s["filename"] in (path, None), pair.sites
    cell = _kind(report, "cell")
    assert cell.new_count == 12   # big and pair, each call
    assert [s["innermost"] for s in cell.sites] == [
        f"{path}:{_line(path, 'def work')} (as the function starts)  def work():"]
    assert lst.samples[0]["path"].startswith("module rv_closure -> .HOOKS -> [")
    assert "-> __closure__ -> [0] -> big -> <list>" in lst.samples[0]["path"]


def test_a_leak_every_kth_iteration_is_reported(leak_mod):
    """One object kept every third call: a real leak (4 objects in 12 calls), that the
    nearly-every-step rule missed; a cache that fills then stops is still no leak."""
    mod, path = leak_mod("rv_kth", """
        class Item:
            pass
        KEEP, CACHE, n = [], {}, [0]
        def work():
            n[0] += 1
            if n[0] % 3 == 0:
                KEEP.append(Item())
        def fill():
            n[0] += 1
            if len(CACHE) < 4:
                CACHE[n[0]] = Item()
    """)
    report = leaks.check(mod.work, runs=12, warmup=2)
    k = _kind(report, "rv_kth.Item")
    assert k.new_count == 4 and k.count_per_iteration == pytest.approx(4 / 12)
    assert k.growth == [1, 0, 0] * 4          # the documented per-step growth (was missing)
    assert k.as_dict()["growth"] == k.growth
    assert [s["innermost"].split("  ")[0] for s in k.sites] == [f"{path}:{_line(path, 'KEEP.append')}"]
    assert k.samples[0]["path"] == "module rv_kth -> .KEEP -> [0] -> <Item>"
    mod.n[0] = 0
    assert leaks.check(mod.fill, runs=12, warmup=0).kinds == []


def test_periodic_rule():
    assert leaks._periodic([0, 1, 1, 1, 2, 2, 2, 3, 3]) == 3
    assert leaks._periodic([0, 1, 1, 2, 2, 1, 2, 3, 3]) == 0    # went down
    assert leaks._periodic([0, 1, 2, 3, 4, 4, 4, 4, 4]) == 0    # stopped: a cache filled
    assert leaks._periodic([0, 0, 0, 0, 0, 1, 2, 3, 3]) == 0    # started late: second half only
    assert leaks._periodic([0, 1, 1, 1, 1, 1, 1, 1, 2]) == 0    # two rises


def test_watch_runs_and_nesting_are_refused(leak_mod):
    for bad in (0, -3, 2.0, True):
        with pytest.raises(heaptrail.HeaptrailError, match="runs must be None or an int >= 1"):
            leaks.watch(runs=bad)
    mod, _ = leak_mod("rv_nest", """
        KEEP = []
        def work():
            KEEP.append(object())
    """)
    with pytest.raises(heaptrail.HeaptrailError, match="already running"):
        with leaks.watch(warmup=0) as w:
            mod.work()
            w.step()
            leaks.check(mod.work, runs=2, warmup=0)
    # the refused check left nothing behind: a check runs afterwards, and finds the leak
    report = leaks.check(mod.work, runs=3, warmup=1)
    assert _kind(report, "object").new_count == 3


def test_a_closed_stream_at_exit_skips_only_its_own_tables(tmp_path):
    """profile(stream=f) with f closed before the program ends: the other functions' tables
    are still printed at exit (the first write error stopped them all)."""
    script = tmp_path / "closed.py"
    script.write_text(textwrap.dedent("""
        import io
        from heaptrail import lines
        log = io.StringIO()
        @lines.profile(stream=log)
        def first():
            return bytearray(1000)
        @lines.profile
        def second():
            return bytearray(2000)
        first(); second()
        log.close()
    """))
    proc = run_python("import runpy, sys; runpy.run_path(sys.argv[1])", str(script))
    assert proc.stdout.count("Filename:") == 1 and "def second():" in proc.stdout, proc.stdout
    assert "def first():" not in proc.stdout
