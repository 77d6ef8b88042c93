"""Review of the process view and the deep sizes: heaptrail's figures checked
against ground truth computed here by other means (sys.getsizeof, a
gc.get_referents walk written below, /proc read by hand)."""
import collections
import gc
import os
import random
import sys
import threading

import pytest

import heaptrail
from heaptrail import process

getsizeof = sys.getsizeof
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")


# ---- a deep size computed independently -----------------------------------------------------

import types  # noqa: E402

_SHARED_EXACT = (types.FunctionType, types.CodeType, types.MethodDescriptorType,
                 types.ClassMethodDescriptorType, types.WrapperDescriptorType,
                 types.GetSetDescriptorType, types.MemberDescriptorType)


def _shared(o):
    """heaptrail.size's documented shared objects: modules, classes, functions, code, builtin
    functions and methods, and the descriptors that live in classes."""
    return (isinstance(o, (type, types.ModuleType, types.BuiltinFunctionType))
            or type(o) in _SHARED_EXACT)


def brute_deepsize(*roots):
    """(bytes, objects): every distinct object reachable through gc.get_referents (plus a
    dict's str keys), each at sys.getsizeof, shared objects neither counted nor entered
    unless a root, a memoryview not entered."""
    root_ids = {id(r) for r in roots}
    seen, total, stack = set(), 0, list(roots)
    while stack:
        o = stack.pop()
        if id(o) in seen or (_shared(o) and id(o) not in root_ids):
            continue
        seen.add(id(o))
        total += getsizeof(o)
        if type(o) is memoryview:
            continue
        stack.extend(gc.get_referents(o))
        if isinstance(o, dict):
            stack.extend(k for k in o if type(k) is str)
    return total, len(seen)


def fresh(text):
    """A str made at run time, held by nobody else (reference count 1 once stored)."""
    return "".join(list(text))


class Box:
    pass


class Pair:
    __slots__ = ("a", "b")


def random_structure(rng, depth):
    """A random tree of containers over fresh leaves, some of them shared between branches."""
    pool = []

    def leaf():
        c = rng.random()
        if c < 0.35:
            return fresh(rng.choice(["", "a", "abc", "é" * 3, "\u1234x", "\U0001F600"]) * rng.randint(1, 4))
        if c < 0.55:
            return rng.randint(-10 ** 30, 10 ** 30)
        if c < 0.7 and pool:
            return rng.choice(pool)
        if c < 0.85:
            return float(rng.random())
        return bytes(rng.randint(0, 40))

    def node(d):
        if d <= 0 or rng.random() < 0.2:
            return leaf()
        kids = [node(d - 1) for _ in range(rng.randint(0, 5))]
        k = rng.randrange(9)
        if k == 0:
            o = kids
        elif k == 1:
            o = tuple(kids)
        elif k == 2:   # keys of mixed types: the dict's traversal shows its str keys too
            o = {rng.choice([fresh("k%d" % i), i, (fresh("t"), i)]): x for i, x in enumerate(kids)}
        elif k == 3:   # str keys only: the traversal leaves the keys out
            o = {fresh("key%d" % i): x for i, x in enumerate(kids)}
        elif k == 4:
            o = Box()
            for i, x in enumerate(kids):
                setattr(o, "a%d" % i, x)
            if rng.random() < 0.5:
                vars(o)
        elif k == 5:
            o = Pair()
            o.a = kids
        elif k == 6:
            o = collections.deque(kids)
        elif k == 7:
            o = {x for x in kids if isinstance(x, (str, int, float, bytes))}
        else:
            o = collections.OrderedDict((fresh("o%d" % i), x) for i, x in enumerate(kids))
        pool.append(o)
        return o

    return node(depth)


# ---- deep sizes ----------------------------------------------------------------------------

def test_a_str_key_held_only_by_a_dict_with_mixed_keys_is_counted_once():
    d = {fresh("a key of forty characters, built at run"): None, 2: None}
    key = next(iter(d))
    assert sys.getrefcount(key) == 3   # the dict, `key`, getrefcount's argument
    del key
    expect = getsizeof(d) + sum(getsizeof(k) for k in d) + getsizeof(None)
    assert heaptrail.deepsize(d) == expect
    assert heaptrail.deepsize_detail(d).total == expect
    del d[2]   # the table keeps showing its keys with no other key left
    assert heaptrail.deepsize(d) == heaptrail.deepsize_detail(d).total == expect - getsizeof(2)
    class Sub(dict):
        __slots__ = ()
    for d in (Sub({fresh("sub's key"): None, 3: None}), collections.OrderedDict({fresh("od"): None, 3: None}),
              collections.defaultdict(None, {fresh("dd"): None, 3: None}), {fresh("str only"): fresh("v")}):
        expect = brute_deepsize(d)[0]
        assert heaptrail.deepsize(d) == heaptrail.deepsize_detail(d).total == expect, type(d)


def test_deepsize_equals_a_gc_get_referents_walk_on_random_structures():
    rng = random.Random(20261125)
    for _ in range(150):
        root = random_structure(rng, 5)
        total, count = brute_deepsize(root)
        assert heaptrail.deepsize(root) == total
        det = heaptrail.deepsize_detail(root, top=2)
        assert (det.total, det.count) == (total, count)


class Huge:
    __slots__ = ("n",)   # no __dict__ for deepsize_detail's path names to make

    def __init__(self, n):
        self.n = n

    def __sizeof__(self):
        return self.n


def test_sizeof_past_ssize_max_is_what_getsizeof_says():
    # sys.getsizeof adds the gc header to a __sizeof__ of sys.maxsize, past PY_SSIZE_T_MAX
    for n in (sys.maxsize, sys.maxsize - 8, 0):
        h = Huge(n)
        assert heaptrail.sizeof(h) == getsizeof(h) == n + getsizeof(Huge(0))
    h = Huge(sys.maxsize)
    assert heaptrail.deepsize([h]) == getsizeof([h]) + getsizeof(h) + getsizeof(sys.maxsize)
    assert heaptrail.deepsize_detail([h]).total == heaptrail.deepsize([h])
    from heaptrail.pympler import asizeof
    assert asizeof.flatsize(h) == getsizeof(h)


def test_deep_total_past_64_bits_is_an_overflow_error():
    both = [Huge(sys.maxsize), Huge(sys.maxsize)]
    with pytest.raises(OverflowError, match="2\\*\\*64"):
        heaptrail.deepsize(both)
    with pytest.raises(OverflowError, match="2\\*\\*64"):
        heaptrail.deepsize_detail(both)
    for o in (sys.maxsize + 1, 2 ** 64):   # __sizeof__ itself past Py_ssize_t: as getsizeof
        with pytest.raises(OverflowError):
            getsizeof(Huge(o))
        with pytest.raises(OverflowError):
            heaptrail.sizeof(Huge(o))


# ---- the process view: which pid is a process ------------------------------------------------

@linux_only
def test_a_thread_id_is_not_taken_for_a_process(cli):
    # /proc/TID answers for every thread, with the thread's name and its process's memory
    started, stop, tid = threading.Event(), threading.Event(), []

    def worker():
        tid.append(threading.get_native_id())
        started.set()
        stop.wait()

    t = threading.Thread(target=worker)
    t.start()
    try:
        started.wait()
        assert tid[0] != os.getpid() and os.path.exists(f"/proc/{tid[0]}/status")
        message = f"^pid {tid[0]} is a thread of process {os.getpid()}, not a process$"
        with pytest.raises(heaptrail.HeaptrailError, match=message):
            process.memory(tid[0])
        with pytest.raises(heaptrail.HeaptrailError, match=message):
            process.maps(tid[0])
        code, out, err = cli("mem", str(tid[0]))
        assert (code, out) == (1, "")
        assert err == f"heaptrail: error: pid {tid[0]} is a thread of process {os.getpid()}, not a process\n"
    finally:
        stop.set()
        t.join()
    assert process.memory(os.getpid()).threads >= 1   # the main thread's id is the process's


@pytest.mark.parametrize("pid", [2 ** 31, 2 ** 70, 10 ** 20])
def test_a_pid_past_the_int_range_is_named_as_such(pid, cli):
    # it is a positive integer: the message must not say it is not one
    with pytest.raises(heaptrail.HeaptrailError, match=f"^pid must be at most 2147483647, not {pid}$"):
        process.memory(pid)
    with pytest.raises(heaptrail.HeaptrailError, match=f"^pid must be at most 2147483647, not {pid}$"):
        process.maps(pid)
    code, out, err = cli("mem", str(pid))
    assert code == 1 and err == f"heaptrail: error: pid must be at most 2147483647, not {pid}\n"


# ---- heaptrail mem ---------------------------------------------------------------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import textwrap  # noqa: E402

from conftest import run_cli  # noqa: E402


class Sleeper:
    """A Python child that runs `setup`, says 'ready', then waits for its stdin to close."""

    def __init__(self, setup=""):
        code = textwrap.dedent(setup) + "\nimport sys\nprint('ready', flush=True)\nsys.stdin.read()\n"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def sleeper():
    made = []

    def make(setup=""):
        made.append(Sleeper(setup))
        return made[-1]

    yield make
    for s in made:
        s.close()


def maps_paths(pid):
    """The path column of /proc/PID/maps, as bytes."""
    with open(f"/proc/{pid}/maps", "rb") as f:
        return [line.rstrip(b"\n").split(None, 5)[5] if len(line.split(None, 5)) > 5 else b""
                for line in f]


@linux_only
def test_mem_shows_a_name_and_a_path_that_are_not_utf8(sleeper, tmp_path):
    # the kernel gives both as bytes; a strict UTF-8 stdout cannot print the surrogates
    # Python decodes them to, nor do strict JSON readers accept lone surrogates
    path = os.path.join(os.fsencode(tmp_path), b"caf\xe9.bin")
    c = sleeper(f"""
        import ctypes, mmap, os
        ctypes.CDLL(None).prctl(15, b"caf\\xe9 \\xff", 0, 0, 0)   # PR_SET_NAME
        with open({path!r}, "wb") as f:
            f.write(b"x" * 8192)
        keep = mmap.mmap(os.open({path!r}, os.O_RDWR), 8192)
        keep[0] = 1
    """)
    with open(f"/proc/{c.pid}/comm", "rb") as f:
        assert f.read() == b"caf\xe9 \xff\n"
    assert path in maps_paths(c.pid)
    # the Python API keeps the bytes (surrogateescape): os.fsencode gives them back
    assert os.fsencode(process.memory(c.pid).name) == b"caf\xe9 \xff"
    assert path in [os.fsencode(r.path) for r in process.maps(c.pid)]
    shown = os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    env = {"PYTHONIOENCODING": "utf-8"}   # strict, as on a UTF-8 terminal
    text = run_cli("mem", str(c.pid), "--top", "0", env=env)
    assert (text.returncode, text.stderr) == (0, "")
    assert f"process {c.pid} (caf\\xe9 \\xff)" in text.stdout and shown in text.stdout
    js = run_cli("mem", str(c.pid), "--top", "0", "--json", env=env)
    assert (js.returncode, js.stderr) == (0, "")
    assert "\\ud" not in js.stdout   # no lone surrogate escapes
    rep = json.loads(js.stdout)
    assert rep["name"] == "caf\\xe9 \\xff"
    assert shown in [r["path"] for r in rep["top_mappings"]]


@linux_only
def test_mem_top_zero_lists_every_mapping_as_other_top_options(sleeper, cli):
    c = sleeper()
    code, out, err = cli("mem", str(c.pid), "--json", "--top", "0")
    assert code == 0 and err == ""
    rep = json.loads(out)
    assert len(rep["top_mappings"]) == len(maps_paths(c.pid)) == sum(k["count"] for k in rep["kinds"])
    rss = [r["rss"] for r in rep["top_mappings"]]
    assert rss == sorted(rss, reverse=True)
    code, out, err = cli("mem", str(c.pid), "--top", "0")
    assert code == 0 and f"top {len(rep['top_mappings'])} mappings by RSS" in out
    code, out, err = cli("mem", "--help")
    assert "0: all" in out


# ---- already right: checked here so that it stays so ------------------------------------------

class Touchy:
    """Refuses to be compared or hashed: sizing must do neither."""

    def __eq__(self, other):
        raise AssertionError("__eq__ called")

    def __hash__(self):
        raise AssertionError("__hash__ called")

    def __repr__(self):
        raise AssertionError("__repr__ called")


def test_sizing_never_compares_hashes_nor_changes_reference_counts():
    from heaptrail.pympler import asizeof
    a, b = Touchy(), Touchy()
    frozen = frozenset([1.5])   # a Touchy cannot be a set member or key without its __hash__
    root = {"a": a, 7: [a, b, (b,)], "f": frozen, "s": {fresh("x"), fresh("y")}}
    members = [root, a, b, frozen, root[7]]
    before = [sys.getrefcount(o) for o in members]
    for _ in range(3):
        heaptrail.deepsize(root, exclude=[b])
        heaptrail.deepsize(root, a, b, shared=True)
        heaptrail.deepsize_detail(root, top=10, exclude=(frozen,))
        asizeof.asizeof(root)
        asizeof.asizesof(root, a, b, a)
        asizeof.refs(root)
        heaptrail.sizeof(a)
    assert [sys.getrefcount(o) for o in members] == before
    assert heaptrail.deepsize(root, exclude=[a, b]) == brute_deepsize(root)[0] - 2 * getsizeof(a)


@linux_only
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root, to drop to another user in a forked child")
def test_another_users_process_seen_from_an_unprivileged_fork(sleeper):
    # test_process.py's check of a process we may not read skips under root (root may read
    # every smaps): here a fork of this process drops to nobody and looks at a root child
    c = sleeper()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: no pytest, no exception may leave it
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            m = process.memory(c.pid)
            try:
                process.maps(c.pid)
                maps = "read"
            except heaptrail.HeaptrailError as e:
                maps = str(e)
            out = json.dumps({"rss": m.rss, "pss": m.pss, "uss": m.uss, "threads": m.threads,
                              "maps": maps})
        except BaseException as e:   # noqa: BLE001 - reported to the parent
            out = json.dumps({"error": repr(e)})
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        got = json.loads(f.read())
    os.waitpid(pid, 0)
    assert "error" not in got, got
    with open(f"/proc/{c.pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert (got["pss"], got["uss"], got["threads"]) == (None, None, 1)
    assert abs(got["rss"] - rss) <= 4 * os.sysconf("SC_PAGE_SIZE")
    assert got["maps"] == f"permission denied reading /proc/{c.pid}/smaps (a process of another user?)"


def _debugmallocstats_text():
    import tempfile
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return f.read().decode()


@linux_only
def test_pymalloc_classes_and_arena_figures_as_debugmallocstats_prints_them():
    p = process.pymalloc()
    if not p.in_use:
        pytest.skip(f"pymalloc is not the object allocator here ({p.allocator})")
    text = _debugmallocstats_text()
    import re
    rows = {int(m[1]): int(m[2]) for m in re.finditer(r"^\s+(\d+)\s+(\d+)\s+\d+\s+\d+\s+\d+\s*$", text, re.M)}
    sizes = {c.index: c.block_size for c in p.classes}
    assert rows and all(sizes[i] == size for i, size in rows.items())
    arena = re.search(r"^(\d+) arenas \* (\d+) bytes/arena", text, re.M)
    pools = re.search(r"^\d+ unused pools \* (\d+) bytes", text, re.M)
    assert (p.arena_size, p.pool_size) == (int(arena[2]), int(pools[1]))
    assert p.arenas_highwater >= p.arenas >= 1 and p.arenas_total >= p.arenas
    assert p.bytes_used == sum(c.blocks_used * c.block_size for c in p.classes)
    assert p.bytes_free == sum(c.blocks_free * c.block_size for c in p.classes)


@linux_only
def test_a_process_that_exits_while_being_read_gives_figures_or_no_process():
    # each read either finds the process (alive, or a zombie with no address space) or says
    # it is gone: never another error, never a half-parsed record
    seen = collections.Counter()
    for _ in range(2):
        p = subprocess.Popen([sys.executable, "-c", "import mmap, time\n"
                              "keep = [mmap.mmap(-1, 4096) for _ in range(3000)]\ntime.sleep(0.05)\n"])
        try:
            for i in range(100_000):
                done = p.poll() is not None   # reaps it: the next reads must say it is gone
                for read in (process.memory, process.maps):
                    try:
                        got = read(p.pid)
                    except heaptrail.HeaptrailError as e:
                        assert str(e) == f"no process with pid {p.pid}"
                        seen["gone"] += 1
                        continue
                    if read is process.memory:
                        assert got.pid == p.pid and got.threads >= 1 and got.rss >= 0
                        assert (got.pss is None) == (got.uss is None)
                    else:
                        assert all(r.end > r.start and r.rss <= r.size for r in got)
                    seen["read"] += 1
                if done:
                    break
        finally:
            p.kill()
            p.wait()
    assert seen["read"] > 0 and seen["gone"] > 0


def _flat_cases():
    """Objects whose flat size test_size.py's known_objects leaves out: containers after they
    grew and shrank, split dicts, non-compact str (a subclass), frames, generators ..."""
    def gen():
        yield 1

    async def coro():
        pass

    grown = set(range(1000))
    for i in range(990):
        grown.discard(i)
    deleted = {i: i for i in range(1000)}
    for i in range(990):
        del deleted[i]
    popped = list(range(1000))
    del popped[10:]
    shrunk = bytearray(10_000)
    del shrunk[100:]
    a, b = Box(), Box()
    a.x = b.x = 1
    b.y = 2   # b's dict no longer shares a's keys
    g = gen()
    next(g)
    c = coro()
    c.close()
    try:
        raise ValueError("x")
    except ValueError as e:
        exc = e
    cases = {
        "set after growth and discards": grown, "dict after deletions": deleted,
        "list after del": popped, "bytearray after del": shrunk,
        "split dict": vars(a), "split dict grown": vars(b), "ordered dict": collections.OrderedDict.fromkeys(range(100)),
        "defaultdict": collections.defaultdict(list, {1: [2]}), "counter": collections.Counter("abcab"),
        "deque of 1000": collections.deque(range(1000)), "frozenset": frozenset(range(100)),
        "range past ssize": range(10 ** 30), "slice": slice(1, [2], "3"), "huge int": 10 ** 10000,
        "negative huge int": -(10 ** 300), "int subclass": type("I", (int,), {})(10 ** 100),
        "str subclass ucs2": type("S", (str,), {})("\u1234" * 10), "latin1": fresh("é" * 100),
        "ucs2": fresh("\u1234" * 100), "ucs4": fresh("\U0001F600" * 100), "frame": sys._getframe(),
        "generator": g, "closed coroutine": c, "exception": exc, "traceback": exc.__traceback__,
        "cell": types.CellType([1]), "bound method": Box().__init__, "mappingproxy": Box.__dict__,
        "memoryview of bytearray": memoryview(bytearray(100)), "module": types, "code": gen.__code__,
        "slots instance": Pair(), "namespace": types.SimpleNamespace(a=1), "method-wrapper": (1).__add__,
        "structseq": sys.version_info, "union type": int | str, "generic alias": list[int],
    }
    return list(cases.items())


@pytest.mark.parametrize("name, obj", _flat_cases(), ids=[n for n, _ in _flat_cases()])
def test_sizeof_equals_getsizeof(name, obj):
    assert heaptrail.sizeof(obj) == getsizeof(obj)


@linux_only
@pytest.mark.noasan   # RSS figures
def test_rss_read_in_a_forked_child_is_the_childs():
    # the line profiler keeps /proc/self/statm open (ht_proc_self_rss's cache); a descriptor
    # inherited across fork reads the parent's statm, /proc/self having been resolved at open
    from conftest import run_python
    proc = run_python("""
        import json, os
        from heaptrail import lines
        keep = []

        @lines.profile(rss=True)
        def grow(n):
            b = bytearray(n)
            b[::4096] = b"\\x01" * len(range(0, n, 4096))
            keep.append(b)

        grow(4096)   # the parent opens its descriptor
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            lines.reset()
            grow(64 << 20)
            usage = max(x["mem_usage"] for x in lines.results()[0]["rows"] if x["mem_usage"])
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            os.write(w, json.dumps([usage, rss]).encode())
            os._exit(0)
        os.close(w)
        print(os.read(r, 1000).decode())
        os.waitpid(pid, 0)
        lines.reset()
    """)
    usage, rss = json.loads(proc.stdout.splitlines()[0])
    assert rss - 8 * (1 << 20) <= usage <= rss, (usage, rss)   # the child's 64 MiB are in it


class Payload:
    def __init__(self, v):
        self.payload = v           # 7-character names: 56-byte str, a multiple of 8
        self.another = [v, 1.5]


def test_asizeof_agrees_with_pympler_on_dicts_shared_members_and_cycles():
    pym = pytest.importorskip("pympler.asizeof", reason="pympler is not installed")
    from heaptrail.pympler import asizeof
    s1, s2 = fresh("abcdefg"), fresh("hijklmn")   # 56 bytes: pympler's 8-byte alignment adds 0
    p = Payload(s1)
    vars(p)   # a dict object, as pympler counts one
    cyc = [s1]
    cyc.append(cyc)
    cases = [{s1: 1.5, s2: [2.5]}, {s1: {s2: (1.5, 2.5)}}, frozenset([(s1, 1.5), (s2, 2.5)]),
             [[s1], [s1], (s1, s1)], cyc, [b"x" * 7, b"y" * 15], [p, p.__dict__]]
    for obj in cases:
        assert all(getsizeof(o) % 8 == 0 for o in [obj] + gc.get_referents(obj) if not _shared(o))
        assert asizeof.asizeof(obj) == pym.asizeof(obj), obj
    a, b = [s1, 1.5], [s1, s2]
    assert asizeof.asizesof(a, b) == pym.asizesof(a, b)
    assert asizeof.asizesof(b, a, b) == pym.asizesof(b, a, b)
