"""No leak: each iteration allocates and frees; a bounded lru_cache stops growing after the
warm-up; interned strings and small ints come and go."""
import functools
import sys


@functools.lru_cache(maxsize=32)
def square(n):
    return [n] * 4


@functools.lru_cache(maxsize=32)
def label(n):
    return "label-%d" % n


_calls = [0]


def work():
    _calls[0] += 1
    for k in range(16):  # 16 new keys a call: full after the 2 warm-up calls, then it evicts
        label(_calls[0] * 1000 + k)
    tmp = [{"k": i, "v": [i, i + 1]} for i in range(200)]
    total = sum(len(d["v"]) for d in tmp)
    for n in range(64):  # the cache holds 32 of these 64: it evicts, it does not grow
        square(n)
    names = [sys.intern("name_%d" % (i % 5)) for i in range(50)]
    small = [i % 100 for i in range(1000)]
    return total + len(names) + len(small)
