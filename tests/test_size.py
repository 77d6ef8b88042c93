"""heaptrail.sizeof / deepsize / deepsize_detail on structures whose sizes are
known from sys.getsizeof."""
import array
import collections
import ctypes
import functools
import gc
import sys

import pytest

import heaptrail
from heaptrail import size as hsize

getsizeof = sys.getsizeof


class Plain:
    def __init__(self, a=1, b="x"):
        self.a = a
        self.b = b


class Slotted:
    __slots__ = ("left", "right")

    def __init__(self, left=None, right=None):
        self.left = left
        self.right = right


class Overridden:
    def __sizeof__(self):
        return 1000


class MyList(list):
    pass


class MyDict(dict):
    pass


class MyStr(str):
    pass


def dict_visible(obj):
    """Whether the gc sees obj's __dict__ (3.13 keeps inline attribute
    values in the object even after the dict is made, and shows those).
    Makes the __dict__ if it was not there."""
    d = obj.__dict__
    return any(r is d for r in gc.get_referents(obj))


def fresh_str(text):
    """A str built at run time (no cached UTF-8 from the compiler)."""
    return "".join(list(text))


def with_utf8_cached(text):
    s = fresh_str(text)
    as_utf8 = ctypes.pythonapi.PyUnicode_AsUTF8
    as_utf8.restype = ctypes.c_char_p
    as_utf8.argtypes = [ctypes.py_object]
    as_utf8(s)
    return s


def spare_list():
    out = []
    for i in range(17):
        out.append(i)
    return out


def known_objects():
    inst = Plain()
    inst_with_dict = Plain(2, "y")
    vars(inst_with_dict)
    return [
        0, 1, -1, 255, 2**30 - 1, 2**30, -(2**60), 2**1000, True, False, None, Ellipsis,
        0.0, 1.5, 1j, fresh_str(""), fresh_str("ascii"), fresh_str("latin1 é"),
        fresh_str("ucs2 \u1234"), fresh_str("ucs4 \U0001F600"), with_utf8_cached("é" * 10),
        with_utf8_cached("\u1234\u5678"), "x" * 1000, b"", b"bytes" * 30, bytearray(b"z" * 1000),
        bytearray(), (), (1, 2, 3), [], [1, 2, 3], spare_list(), {}, {"a": 1},
        {i: i for i in range(1000)}, dict.fromkeys(map(str, range(50))), inst, inst_with_dict,
        inst_with_dict.__dict__, Slotted(), set(), {1, 2, 3}, set(range(1000)), frozenset("abc"),
        array.array("d", range(100)), array.array("b"), Overridden(), MyList([1, 2]),
        MyDict(a=1), MyStr("sub"), int, Plain, sys, len, Plain.__init__, memoryview(b"abc"),
        range(10), str.join, object(), ctypes.c_int, ctypes.BigEndianStructure, ctypes.c_int(5), collections.OrderedDict(a=1), collections.deque(range(10)),
        functools.partial(len), (i for i in range(3)), compile("1", "f", "eval"), type,
    ]


def test_sizeof_equals_getsizeof_for_known_objects():
    for obj in known_objects():
        assert heaptrail.sizeof(obj) == getsizeof(obj), repr(obj)[:60]


def test_sizeof_sees_cached_utf8_of_a_str():
    plain = fresh_str("é" * 10)
    cached = with_utf8_cached("é" * 10)
    assert getsizeof(cached) == getsizeof(plain) + len("é".encode() * 10) + 1
    assert heaptrail.sizeof(cached) == getsizeof(cached)
    assert heaptrail.sizeof(plain) == getsizeof(plain)


def test_sizeof_follows_a_changed_sizeof_method():
    class C:
        pass

    assert heaptrail.sizeof(C()) == getsizeof(C())
    C.__sizeof__ = lambda self: 4000
    assert heaptrail.sizeof(C()) == getsizeof(C()) > 4000


@pytest.mark.parametrize("ret, exc", [(-1, ValueError), ("12", TypeError)])
def test_sizeof_bad_override_raises_like_getsizeof(ret, exc):
    class Bad:
        def __sizeof__(self):
            return ret

    with pytest.raises(exc):
        getsizeof(Bad())
    with pytest.raises(exc):
        heaptrail.sizeof(Bad())
    with pytest.raises(exc):
        heaptrail.deepsize([1, [Bad()]])


def test_deepsize_of_known_structure_is_the_sum_of_distinct_members():
    text = fresh_str("a" * 100)
    buf = bytearray(1000)
    num = float("3.5")
    inner = [text, buf, num]
    pair = (inner, text)
    root = {"k1": inner, "k2": pair}
    members = [root, "k1", "k2", inner, text, buf, num, pair]
    assert heaptrail.deepsize(root) == sum(map(getsizeof, members))


def test_shared_member_counted_once():
    big = fresh_str("b" * 5000)
    one = [big]
    many = [big] * 100 + [big]
    assert heaptrail.deepsize(one) == getsizeof(one) + getsizeof(big)
    assert heaptrail.deepsize(many) == getsizeof(many) + getsizeof(big)
    assert heaptrail.deepsize(one, many) == getsizeof(one) + getsizeof(many) + getsizeof(big)
    assert heaptrail.deepsize(one, one) == heaptrail.deepsize(one)


def test_equal_but_distinct_objects_counted_each():
    a, b = fresh_str("same" * 10), fresh_str("same" * 10)
    assert a == b and a is not b
    assert heaptrail.deepsize([a, b]) == getsizeof([a, b]) + 2 * getsizeof(a)


def test_cycles_and_multiple_paths():
    a = [1000.5]
    b = [a]
    a.append(b)
    assert heaptrail.deepsize(a) == getsizeof(a) + getsizeof(b) + getsizeof(a[0])


def test_instance_counts_values_and_dict_not_class():
    obj = Plain(float("1.25"), fresh_str("name" * 5))
    values = getsizeof(obj.a) + getsizeof(obj.b)
    # attribute values kept without a dict (3.11+): the gc sees the values
    assert dict not in map(type, gc.get_referents(obj))
    assert heaptrail.deepsize(obj) == getsizeof(obj) + values
    d = obj.__dict__  # now there is a dict: it and its keys are counted...
    expected = getsizeof(obj) + getsizeof(d) + sum(map(getsizeof, d)) + values
    if not dict_visible(obj):  # ...unless the gc does not see it (3.13 inline values)
        expected = getsizeof(obj) + values
    assert heaptrail.deepsize(obj) == expected


def test_slots_instance():
    leaf = Slotted(float("2.5"))
    top = Slotted(leaf, leaf)
    assert heaptrail.deepsize(top) == getsizeof(top) + getsizeof(leaf) + getsizeof(leaf.left) + getsizeof(None)


def func():
    return 1


def test_shared_objects_skipped_unless_asked():
    holder = Slotted(func, sys)
    assert heaptrail.deepsize(holder) == getsizeof(holder)
    assert heaptrail.deepsize([Plain, len, func.__code__, int]) == getsizeof([Plain, len, func.__code__, int])
    with_shared = heaptrail.deepsize(holder, shared=True)
    assert with_shared >= getsizeof(holder) + getsizeof(func) + getsizeof(sys) + getsizeof(Slotted)
    # a root is always counted and walked
    assert heaptrail.deepsize(func) >= getsizeof(func) + getsizeof(func.__defaults__ or ())
    assert heaptrail.deepsize(Plain) >= getsizeof(Plain)


def test_exclude_by_identity():
    text = fresh_str("c" * 300)
    inner = [text, float("9.5")]
    root = [inner, fresh_str("keep")]
    full = heaptrail.deepsize(root)
    assert full == getsizeof(root) + getsizeof(root[1]) + getsizeof(inner) + getsizeof(text) + getsizeof(inner[1])
    assert heaptrail.deepsize(root, exclude=[inner]) == getsizeof(root) + getsizeof(root[1])
    assert heaptrail.deepsize(root, exclude=(text,)) == full - getsizeof(text)
    assert heaptrail.deepsize(root, exclude=[root]) == 0
    # equal but distinct: not excluded
    assert heaptrail.deepsize(root, exclude=[fresh_str("c" * 300)]) == full


def test_memoryview_does_not_count_the_buffer():
    buf = bytearray(100_000)
    view = memoryview(buf)
    assert heaptrail.deepsize(view) == getsizeof(view)
    assert heaptrail.deepsize([view, buf]) == getsizeof([view, buf]) + getsizeof(view) + getsizeof(buf)


def test_owned_buffers_count():
    arr = array.array("q", range(10_000))
    ba = bytearray(50_000)
    assert heaptrail.deepsize([arr, ba]) == getsizeof([arr, ba]) + getsizeof(arr) + getsizeof(ba)
    assert getsizeof(arr) > 80_000 and getsizeof(ba) > 50_000


def test_python_sizeof_override_inside_structure():
    items = [Overridden() for _ in range(3)]
    assert heaptrail.deepsize(items) == getsizeof(items) + 3 * getsizeof(items[0])


def test_dict_with_str_keys_counts_keys():
    keys = [fresh_str(f"key-{i}") for i in range(10)]
    d = {k: None for k in keys}
    assert heaptrail.deepsize(d) == getsizeof(d) + sum(map(getsizeof, keys)) + getsizeof(None)


def linked_list(n, tail=None):
    head = tail
    for _ in range(n):
        head = Slotted(head)
    return head


def test_long_linked_list_100k():
    head = linked_list(100_000)
    assert heaptrail.deepsize(head) == 100_000 * getsizeof(head) + getsizeof(None)


@pytest.mark.noasan
def test_linked_list_of_a_million_nodes():
    head = linked_list(1_000_000)
    assert heaptrail.deepsize(head) == 1_000_000 * getsizeof(head) + getsizeof(None)
    chain = None
    for i in range(1_000_000):
        chain = [chain]
    assert heaptrail.deepsize(chain) == 1_000_000 * getsizeof([None]) + getsizeof(None)


# ------------------------------------------------------------ deepsize_detail

def detail_structure():
    big = bytearray(20_000)
    text = fresh_str("t" * 3000)
    holder = Plain(fresh_str("n" * 10), float("0.5"))
    holder.cache = {"k": [float("1.5"), float("2.5"), float("3.5"), big]}
    vars(holder)  # naming a path would make it; make it first, for exact totals
    root = {"data": (fresh_str("d" * 5000), frozenset([text])), "obj": holder, "leaf": Slotted(None, [1, 2])}
    return root, big, text, holder


def test_deepsize_detail_paths():
    root, big, text, holder = detail_structure()
    det = heaptrail.deepsize_detail(root, top=3)
    assert det.total == heaptrail.deepsize(root)
    paths = [(m.path, m.type, m.size) for m in det.largest]
    assert paths == [
        ("obj['obj'].cache['k'][3]", "bytearray", getsizeof(big)),
        ("obj['data'][0]", "str", getsizeof(root["data"][0])),
        ("obj['data'][1]{...}", "str", getsizeof(text)),
    ]
    small = {m.path for m in heaptrail.deepsize_detail(root, top=100).largest}
    if dict_visible(holder):
        assert "obj['obj'].__dict__" in small
    assert {"obj['leaf'].right", "obj['obj'].cache", "obj['obj'].cache['k']", "obj['obj'].a",
            "obj['data']", "obj['leaf']"} <= small


def test_deepsize_detail_type_table():
    root, big, text, holder = detail_structure()
    det = heaptrail.deepsize_detail(root)
    # the distinct members, found by hand
    members = {}

    def add(o):
        members[id(o)] = o

    for o in (root, "data", "obj", "leaf", root["data"], root["data"][0], root["data"][1], text,
              holder, holder.__dict__, holder.a, holder.b, holder.cache, "k", holder.cache["k"], big,
              root["leaf"], root["leaf"].right, 1, 2, None):
        add(o)
    for k in holder.__dict__:
        add(k)
    if not dict_visible(holder):  # 3.13: only the inline values are seen
        for o in [holder.__dict__, *holder.__dict__]:
            del members[id(o)]
    for f in holder.cache["k"][:3]:
        add(f)
    expected = collections.defaultdict(lambda: [0, 0])
    for o in members.values():
        line = expected[hsize._type_name(type(o))]
        line[0] += 1
        line[1] += getsizeof(o)
    got = {t.name: [t.count, t.bytes] for t in det.types}
    assert got == dict(expected)
    assert det.count == len(members)
    assert det.total == sum(b for _, b in expected.values())
    assert [t.bytes for t in det.types] == sorted((t.bytes for t in det.types), reverse=True)
    assert det.types[0].name == "bytearray"
    assert "test_size.Plain" in got


def test_deepsize_detail_list_and_tuple_indexes():
    items = [fresh_str("s" * n) for n in (10, 500, 20)]
    det = heaptrail.deepsize_detail((0, items), top=1)
    assert det.largest[0].path == "obj[1][1]"
    assert det.largest[0].size == getsizeof(items[1])


def test_deepsize_detail_formats_a_report():
    root, *_ = detail_structure()
    text = str(heaptrail.deepsize_detail(root, top=3))
    assert "bytearray" in text and "obj['obj'].cache['k'][3]" in text
    assert text.splitlines()[0].startswith("deep size: ")


def test_deepsize_detail_top_zero_and_leaf_root():
    assert heaptrail.deepsize_detail([1], top=0).largest == []
    det = heaptrail.deepsize_detail(12345)
    assert det.total == getsizeof(12345) and det.count == 1 and det.largest == []


def test_deepsize_detail_deep_path_is_shortened():
    head = linked_list(1000, tail=bytearray(1000))
    det = heaptrail.deepsize_detail(head, top=1)
    # 1000 steps: the first 900 are elided
    assert det.largest[0].path == "obj<900 steps>" + ".left" * 100
    assert det.largest[0].type == "bytearray"


def test_deepsize_detail_names_attributes_without_a_dict():
    obj = Plain(fresh_str("v" * 100), Slotted(None, bytearray(500)))
    det = heaptrail.deepsize_detail([obj], top=2)
    assert [m.path for m in det.largest] == ["obj[0].b.right", "obj[0].a"]


# ------------------------------------------------------------ bad arguments

@pytest.mark.parametrize("top, exc", [(-1, ValueError), ("3", TypeError), (1.5, TypeError)])
def test_deepsize_detail_bad_top(top, exc):
    with pytest.raises(exc, match="top"):
        heaptrail.deepsize_detail([1], top=top)


@pytest.mark.parametrize("exclude", [5, "abc", object()])
def test_bad_exclude(exclude):
    with pytest.raises(TypeError, match="exclude"):
        heaptrail.deepsize([1], exclude=exclude)
    with pytest.raises(TypeError, match="exclude"):
        heaptrail.deepsize_detail([1], exclude=exclude)


def test_sizeof_takes_one_argument():
    with pytest.raises(TypeError):
        heaptrail.sizeof()
    assert heaptrail.deepsize() == 0


def test_walks_leave_reference_counts_as_they_were():
    class Bad:
        def __sizeof__(self):
            raise RuntimeError("no size")

    root, big, text, holder = detail_structure()
    members = [root, big, text, holder, holder.cache, holder.cache["k"], root["data"], Plain, Slotted]
    before = [sys.getrefcount(o) for o in members]
    for _ in range(20):
        heaptrail.deepsize(root)
        heaptrail.deepsize(root, shared=True)
        heaptrail.deepsize_detail(root, top=5)
        root["bad"] = [Bad()]
        with pytest.raises(RuntimeError, match="no size"):
            heaptrail.deepsize_detail(root)
        with pytest.raises(RuntimeError, match="no size"):
            heaptrail.deepsize(root)
        del root["bad"]
    assert [sys.getrefcount(o) for o in members] == before


def with_big_default(x=bytearray(100_000)):
    return x


def test_deepsize_detail_names_function_fields_when_walking_shared():
    holder = Slotted(with_big_default)
    cut = [globals(), with_big_default.__code__, Slotted.__init__]
    plain = heaptrail.deepsize_detail(holder, top=5)
    assert plain.total == getsizeof(holder) + getsizeof(None)  # the function is shared
    det = heaptrail.deepsize_detail(holder, top=1, shared=True, exclude=cut)
    assert det.largest[0].path == "obj.left.__defaults__[0]"
    assert det.largest[0].size == getsizeof(with_big_default.__defaults__[0])


def test_sizeof_override_that_mutates_the_structure_does_not_crash():
    victim = [[fresh_str(f"v{i}")] for i in range(1000)]

    class Evil:
        def __sizeof__(self):
            victim.clear()
            gc.collect()
            return 64

    root = [Evil(), victim, [Evil(), victim]]
    total = heaptrail.deepsize(root)
    assert total >= getsizeof(root) + getsizeof(victim)
    victim.extend([[fresh_str(f"w{i}")] for i in range(1000)])
    det = heaptrail.deepsize_detail(root, top=3)
    assert det.total >= getsizeof(root) and len(det.largest) == 3


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.noasan
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_repeated_walks_do_not_leak_engine_memory():
    data = [{"k": fresh_str(f"s{i}"), "v": [float(i)]} for i in range(5_000)]
    for _ in range(20):  # warm up: allocator pools, rule cache
        heaptrail.deepsize(data)
        heaptrail.deepsize_detail(data, top=5)
    before = rss_bytes()
    for _ in range(100):
        heaptrail.deepsize(data)
        heaptrail.deepsize_detail(data, top=5)
    # one detail walk allocates ~1 MB of tables; a leak of any of them
    # would grow RSS by about 100 MB over 100 walks
    assert rss_bytes() - before < 8 * 1024 * 1024
