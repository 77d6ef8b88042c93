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


@pytest.fixture
def lines_isolated():
    was = tracer.is_tracing()
    lines._shown_at_exit = True  # pytest's own exit: no tables on its stdout
    lines.reset()
    yield
    lines.reset()
    if not was:
        tracer.stop()


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
    """)
    import asyncio

    mod.cached(1)
    mod.cached(1)  # from the cache: the function's lines do not run again
    mod.decorated()
    mod.twice()
    assert asyncio.run(mod.coro()) == MiB
    names = sorted(f["function"] for f in lines.results() if f["filename"] == mod.__file__)
    assert names == ["cached", "coro", "decorated", "inner", "twice"], names
    rows = _by_text(_table(inspect_unwrap(mod.cached).__code__))
    assert rows["return bytearray(n * MiB)"]["occurrences"] == 1
    assert abs(rows["return bytearray(n * MiB)"]["increment"] - MiB) < 0.01 * MiB
    rows = _by_text(_table(inspect_unwrap(mod.decorated).__code__))
    assert abs(rows["b = bytearray(2 * MiB)"]["allocated"] - 2 * MiB) < 0.01 * MiB
    rows = _by_text(_table(inspect_unwrap(mod.twice).__code__))
    assert rows["c = bytearray(3 * MiB)"]["occurrences"] == 1
    rows = _by_text(_table(inspect_unwrap(mod.coro).__code__))  # the coroutine's body ran
    assert abs(rows["d = bytearray(MiB)"]["allocated"] - MiB) < 0.01 * MiB


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
