"""heaptrail.leaks: three planted leaks with known answers (examples/leaks/), no false alarm,
the CLI, JSON and Graphviz output."""
import importlib.util
import json
import os
import signal
import sys
import textwrap

import pytest

import heaptrail
from conftest import run_cli
from heaptrail import leaks, tracer

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "leaks")


def fresh(name):
    """Imports examples/leaks/<name>.py anew (its counters at zero) as module `name`."""
    sys.modules.pop(name, None)
    path = os.path.join(EXAMPLES, name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod, path


def line_of(path, text):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if text in line:
                return n
    raise AssertionError(f"{text!r} not in {path}")


def kind(report, name):
    found = [k for k in report.kinds if k.kind == name]
    assert found, f"{name} not reported; got {[k.kind for k in report.kinds]}"
    return found[0]


@pytest.fixture(autouse=True)
def _no_tracer_left():
    yield
    assert not tracer.is_tracing()  # check() stops the tracer it started


def test_module_cache_dict():
    mod, path = fresh("leak_cache")
    try:
        report = leaks.check(mod.handle_request, runs=6, warmup=2)
        line = line_of(path, 'CACHE["user:%d" % user] = Session(user)')
        s = kind(report, "leak_cache.Session")
        assert s.type == "leak_cache.Session"
        assert s.new_count == 6 and s.count_per_iteration == 1.0
        assert s.bytes_per_iteration == s.new_bytes / 6 == sys.getsizeof(mod.CACHE["user:1003"])
        site = s.sites[0]
        assert (site["filename"], site["lineno"], site["count"]) == (path, line, 6)
        assert site["line"] == 'CACHE["user:%d" % user] = Session(user)  # the leak: nothing ever removes a session'
        assert site["stack"][-1] == f"{path}:{line}"
        # the first two sessions (users 1001, 1002) were made during the warm-up
        assert s.samples[0]["path"] == "module leak_cache -> .CACHE -> ['user:1003'] -> <Session>"
        assert [p["path"] for p in s.samples[1:]] == [
            "module leak_cache -> .CACHE -> ['user:1004'] -> <Session>",
            "module leak_cache -> .CACHE -> ['user:1005'] -> <Session>"]
        # the holder of the growth is the cache dict, which retains every session, key, list
        assert s.holder_path == "module leak_cache -> .CACHE -> <dict>"
        assert s.retained >= sys.getsizeof(mod.CACHE) + 8 * s.bytes_per_iteration
        # the keys (new str), the users (ints > 256) and each session's list are new too
        assert kind(report, "str").samples[0]["repr"] == "'user:1003'"
        assert kind(report, "int").samples[0]["path"] == \
            "module leak_cache -> .CACHE -> ['user:1003'] -> .user -> 1003"
        assert kind(report, "list").samples[0]["path"] == \
            "module leak_cache -> .CACHE -> ['user:1003'] -> .history -> <list>"
        assert {k.kind for k in report.kinds} == {"leak_cache.Session", "str", "int", "list"}
        # ranked by bytes per iteration
        per = [k.bytes_per_iteration for k in report.kinds]
        assert per == sorted(per, reverse=True)
        text = str(report)
        assert "module leak_cache -> .CACHE -> ['user:1003'] -> <Session>" in text
        assert f"{path}:{line}" in text
    finally:
        sys.modules.pop("leak_cache", None)


def test_class_attribute_list_callback():
    mod, path = fresh("leak_callback")
    try:
        report = leaks.check(mod.fire, runs=5, warmup=2)
        assert [k.kind for k in report.kinds] == ["leak_callback.Event"]
        e = report.kinds[0]
        assert e.new_count == 5
        line = line_of(path, "cls.seen.append(Event(n))")
        assert (e.sites[0]["filename"], e.sites[0]["lineno"]) == (path, line)
        assert e.sites[0]["stack"][-2:] == [f"{path}:{line_of(path, 'hook(_count[0])')}",
                                           f"{path}:{line}"]
        assert e.samples[0]["path"] == "module leak_callback -> .Listener -> .seen -> [2] -> <Event>"
        assert e.holder_path == "module leak_callback -> .Listener -> .seen -> <list>"
        assert e.retained == sys.getsizeof(mod.Listener.seen) + sum(
            sys.getsizeof(x) for x in mod.Listener.seen)
    finally:
        sys.modules.pop("leak_callback", None)


def test_closure_of_a_signal_handler():
    mod, path = fresh("leak_signal")
    old = signal.getsignal(signal.SIGUSR1)
    try:
        job = mod.install()
        report = leaks.check(job, runs=5, warmup=2)
        assert [k.kind for k in report.kinds] == ["bytearray"]
        b = report.kinds[0]
        assert b.new_count == 5 and b.bytes_per_iteration == sys.getsizeof(bytearray(256))
        line = line_of(path, "pending.append(bytearray(256))")
        assert (b.sites[0]["filename"], b.sites[0]["lineno"]) == (path, line)
        # only the signal module's C table holds the handler: the function is the root
        assert b.samples[0]["path"] == \
            "gc root function install.<locals>.handler -> __closure__ -> [0] -> pending -> [2] -> <bytearray>"
        assert b.holder_path == "gc root function install.<locals>.handler -> __closure__ -> [0] -> pending -> <list>"
    finally:
        signal.signal(signal.SIGUSR1, old)
        sys.modules.pop("leak_signal", None)


def test_no_false_alarm():
    """Allocate-and-free per iteration, a bounded lru_cache that evicts, interned strings and
    small ints: nothing is reported."""
    mod, _ = fresh("no_leak")
    try:
        report = leaks.check(mod.work, runs=6, warmup=2)
        assert report.kinds == [], str(report)
        assert not report
        assert "no leak" in str(report)
        assert mod.square.cache_info().currsize == 32  # the cache was used, and is full
        info = mod.label.cache_info()  # filled during the warm-up, then new entries evict old
        assert (info.currsize, info.misses) == (32, 16 * 8)
    finally:
        sys.modules.pop("no_leak", None)


def test_growth_rule_is_nearly_every_step():
    assert leaks._growing([1, 2, 3, 4], [0, 0, 0, 0])           # every step
    assert leaks._growing([1, 2, 2, 3], [0, 0, 0, 0])           # all but one
    assert not leaks._growing([1, 2, 2, 2, 3], [0] * 5)         # two flat steps of four
    assert leaks._growing([5, 5, 5, 5], [10, 20, 30, 40])       # bytes alone
    assert leaks._growing([1, 2], [0, 0])                       # one step: it must grow
    assert not leaks._growing([1, 2, 1], [0, 0, 0])             # two steps: both must grow
    assert not leaks._growing([3, 4, 5, 6, 2], [0] * 5)         # ends lower than it started


HELD = []


def test_watch_block():
    """Untracked containers (a tuple of atomic values) and what they hold are seen too."""
    del HELD[:]
    with leaks.watch(warmup=1) as w:
        for i in range(5):
            HELD.append(("tuple", i, object()))
            w.step()
    r = w.report
    assert [k.kind for k in r.kinds] == ["tuple", "object"]
    t, o = r.kinds
    assert r.steps == 4 and o.new_count == 4
    # 4 tuples appended; under pytest on 3.12 two more tuples, held by C code, are new too
    assert t.new_count >= 4
    assert t.samples[0]["repr"] == "('tuple', 1, <object object>)"
    assert t.samples[0]["path"] == f"module {__name__} -> .HELD -> [1] -> <tuple>"
    assert o.samples[0]["path"] == f"module {__name__} -> .HELD -> [1] -> [2] -> <object>"
    line = test_watch_block.__code__.co_firstlineno + 5
    assert [(s["filename"], s["lineno"], s["count"]) for s in o.sites] == [(__file__, line, 4)]
    assert t.holder_path == f"module {__name__} -> .HELD -> <list>"
    del HELD[:]


def test_check_validates():
    with pytest.raises(heaptrail.HeaptrailError, match="runs must be"):
        leaks.check(lambda: None, runs=0)
    with pytest.raises(heaptrail.HeaptrailError, match="warmup must be"):
        leaks.check(lambda: None, warmup=-1)
    with pytest.raises(TypeError):
        leaks.check(42)
    with pytest.raises(ZeroDivisionError):
        leaks.check(lambda: 1 / 0)


def test_as_dict_and_dot(tmp_path, monkeypatch):
    mod, path = fresh("leak_callback")
    try:
        report = leaks.check(mod.fire, runs=3, warmup=1)
        d = report.as_dict()
        assert d["runs"] == 3 and d["warmup"] == 1 and d["allocation_sites"] is True
        leak = d["leaks"][0]
        assert set(leak) >= {"kind", "count_per_iteration", "bytes_per_iteration", "new_count",
                             "new_bytes", "retained", "holder", "holder_path", "sites", "samples"}
        assert json.loads(report.to_json()) == json.loads(json.dumps(d))
        dot = report.to_dot()
        assert dot.startswith("digraph leaks {")
        assert '[label="module leak_callback"]' in dot
        assert '[label=".Listener"]' in dot or '[label="__dict__"]' in dot
        assert '[label="<Event>", color=red]' in dot
        out = report.render(tmp_path / "paths.dot")
        assert (tmp_path / "paths.dot").read_text() == dot and out == str(tmp_path / "paths.dot")
        monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz on the PATH
        with pytest.raises(heaptrail.HeaptrailError, match="Graphviz's 'dot' program is not installed"):
            report.render(tmp_path / "paths.svg")
    finally:
        sys.modules.pop("leak_callback", None)


STEP_SCRIPT = """
import heaptrail.leaks

HISTORY = []


def main():
    for i in range(12):
        HISTORY.append({"i": i, "payload": [i] * 10})
        scratch = [object() for _ in range(50)]  # a local: replaced, never kept
        heaptrail.leaks.step()


main()
"""


def test_cli_script_with_step(tmp_path):
    """In a process of its own, as the CLI runs: in the test process, other
    tests' leftovers (threads, caches) can grow while the script steps."""
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent(STEP_SCRIPT))
    proc = run_cli("leaks", str(script), "--runs", "4", "--warmup", "2")
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, err
    assert out.startswith("heaptrail leak report: 4 measured iterations after 2 warm-up, 2 kind(s)")
    assert f"{script}:9  HISTORY.append" in out
    assert "path: module __main__ -> .HISTORY -> [2] -> <dict>\n" in out
    assert "path: module __main__ -> .HISTORY -> [2] -> ['payload'] -> <list>\n" in out


def test_cli_json_shape(tmp_path):
    """In a process of its own, as the CLI runs."""
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent(STEP_SCRIPT))
    proc = run_cli("leaks", str(script), "--runs", "3", "--json")
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, err
    d = json.loads(out)
    assert (d["runs"], d["warmup"], d["steps"]) == (3, 2, 3)
    assert [k["kind"] for k in d["leaks"]] == ["dict", "list"]
    dct = d["leaks"][0]
    assert dct["new_count"] == 3 and dct["count_per_iteration"] == 1.0
    assert dct["sites"][0]["lineno"] == 9 and dct["sites"][0]["filename"] == str(script)
    # the script's globals dict is held by the running exec() as well: the path
    # starts at its module (the text form folds the module's __dict__ step)
    assert dct["samples"][0]["path_steps"] == [[None, "module __main__"],
                                               ["__dict__", "dict of module __main__"],
                                               [".HISTORY", "<list>"], ["[2]", "<dict>"]]


def test_cli_call_function(tmp_path, cli):
    code, out, err = cli("leaks", os.path.join(EXAMPLES, "leak_callback.py"), "--call",
                         "fire", "--runs", "3", "--dot", str(tmp_path / "g.dot"))
    sys.modules.pop("leak_callback", None)
    assert code == 0, err
    assert "#1 leak_callback.Event: +1 objects" in out
    assert "module leak_callback -> .Listener -> .seen -> [2] -> <Event>" in out
    assert (tmp_path / "g.dot").read_text().startswith("digraph leaks {")


def test_cli_errors(tmp_path, cli):
    plain = tmp_path / "plain.py"
    plain.write_text("x = 1\n")
    code, out, err = cli("leaks", str(plain))
    assert code == 1 and err.strip().endswith("or use --call FUNCTION")
    assert "never called heaptrail.leaks.step()" in err and "Traceback" not in err
    code, out, err = cli("leaks", str(plain), "--call", "nope")
    assert code == 1 and "has no function 'nope'" in err
    code, out, err = cli("leaks", str(tmp_path / "missing.py"))
    assert code == 1 and "missing.py" in err
    code, out, err = cli("leaks", str(plain), "--runs", "0")
    assert code == 1 and "--runs must be at least 1" in err
    code, out, err = cli("leaks", "--call", "no_such_module_xyz:f")
    assert code == 1 and "cannot import no_such_module_xyz" in err
    assert not tracer.is_tracing()


def test_counter_counts_untracked_objects_through_containers():
    # floats are never gc-tracked: the counter finds them only through the list
    # (and a dict's str keys through PyDict_Next), with their flat bytes, in the
    # samples that walk the untracked objects; gc-tracked objects count in every sample
    from heaptrail import _core
    counter = _core._leaks_counter()
    counter.sample()
    held = [float(i) + 0.5 for i in range(1000)]
    names = {f"key-{i}-{'x' * 20}": None for i in range(300)}  # untracked: str keys, None
    held.append(names)  # reached through the list, then into the untracked dict
    lists = [[i] for i in range(50)]  # gc-tracked
    counter.sample()
    counter.sample(False, False)  # no walk: tracked objects only
    rows = {name: row for name, *row in counter.rows()}
    counts, size, ucounts, usize = rows["float"]
    assert ucounts[1] - ucounts[0] == 1000 and ucounts[2] is None
    assert usize[1] - usize[0] == 1000 * sys.getsizeof(0.5) and usize[2] is None
    assert counts == (0, 0, 0)  # never tracked
    counts, size, ucounts, usize = rows["dict"]
    assert ucounts[1] - ucounts[0] == 1 and usize[1] - usize[0] == sys.getsizeof(names)
    counts, size, ucounts, usize = rows["str"]
    assert ucounts[1] - ucounts[0] >= 300
    assert usize[1] - usize[0] >= sum(sys.getsizeof(k) for k in names)
    counts, size, ucounts, usize = rows["list"]
    assert counts[1] - counts[0] == counts[2] - counts[0] == 52  # held, lists, its 50 lists
    assert size[2] - size[0] == size[1] - size[0] >= 50 * sys.getsizeof([0])
    assert counter.samples == 3
    counter.sample(False, True, True)  # the last moment again, walked: replaces the column
    rows = {name: row for name, *row in counter.rows()}
    assert counter.samples == 3 and rows["float"][2][2] == rows["float"][2][1]
    with pytest.raises(heaptrail.HeaptrailError, match="walks the untracked"):
        counter.sample(True, False)
    del held, names, lists


def test_growth_rule_for_untracked_objects_uses_the_walked_samples():
    # tracked counts flat, untracked references growing at each walked sample
    assert leaks._growing([5, 5, 5, 5, 5], [0] * 5, [10, None, 12, None, 14],
                          [100, None, 120, None, 140])
    # grew between the first two walked samples only: a one-off batch, no leak
    assert not leaks._growing([5, 5, 5, 5, 5], [0] * 5, [10, None, 30, None, 30],
                              [100, None, 300, None, 300])


def test_drain_empties_the_free_lists():
    """After drain(), a new dict, list, tuple and float get blocks allocated while tracing (not
    blocks from a free list, allocated before): the check can name their allocation site."""
    from heaptrail import _core
    tracer.start(4)
    counter = _core._leaks_counter()
    try:
        counter.drain()
        made = [dict(), list(), tuple(range(3)), float(len(sys.argv)) + 0.5]
        assert [tracer.get_object_traceback(o) is not None for o in made] == [True] * 4
        counter.drain()  # a second drain holds nothing more
        counter.release()
        counter.release()  # nothing left to give back
    finally:
        counter.release()
        tracer.stop()


class _Marker:
    pass


def test_new_objects_leave_out_the_snapshot_calls_own_arguments():
    """The snapshot call's argument tuple is new since the sample and refers to its exclusion
    tuple: the check once dropped it by hand (_leaks_new's referrer_of); the walk now leaves the
    call's arguments out (own.h), and a held new tuple is still found."""
    from heaptrail import _core
    from heaptrail.heap import Snapshot
    anchor = object()
    counter = _core._leaks_counter()
    counter.sample(True)
    exclude = (_Marker,)  # the program's (tracked: it holds a class): in the snapshot
    HELD.append(tuple([anchor, "x" * 3]))  # a new tuple, held: gc-tracked (it holds an object)
    try:
        snap = Snapshot(_core.heap_snapshot(False, exclude))
        rows = _core._leaks_new(snap._h, counter, 50)
        tuples = {snap._h.record(i)[0] for kind, n, _, idx in rows if kind == "tuple" for i in idx}
        assert id(HELD[0]) in tuples
        # the arguments (False, exclude) are no referrer: only this test's frame (a local)
        assert [r.type for _, r in snap.referrers(exclude)] == ["frame"]
    finally:
        del HELD[:]


class _SizeofReadsReferrers:
    """A __sizeof__ in Python that reads every big list referring to it: the counting pass
    sizes it while letting go of gc.get_objects()' list, which it must not find."""

    def __sizeof__(self):
        import gc

        for r in gc.get_referrers(self):
            if type(r) is list and len(r) > 1000:
                sum(1 for o in r)  # a NULL item here would crash
        return 48


def test_check_with_a_python_sizeof_that_reads_its_referrers():
    holder = _SizeofReadsReferrers()
    report = leaks.check(lambda: None, runs=2, warmup=0)
    assert report.kinds == []
    assert holder.__sizeof__() == 48
