"""deepsize: heaptrail.deepsize beside pympler.asizeof and a plain Python walk.

Inputs (built once per child, not timed):
  (a) deepsize-objects: a dict of 1,000,000 small instances, each with a
      __dict__ (id, name, price, tags), keyed by int;
  (b) deepsize-json: a nested JSON-like structure (a list of dicts holding
      str, int, float, bool, None, lists and dicts) of 2,000,000 nodes.

  (c) deepsize-chain: a linked list of 10,000,000 nodes (__slots__ objects),
      to show the walk is iterative: no C recursion, no stack overflow.
      pympler is left out of this case: asizeof stops at its recursion limit
      (limit=100 levels by default), so it would not size the same thing.

Tools:
  heaptrail    heaptrail.deepsize(data)
  plain-walk   sys.getsizeof over gc.get_referents with an id set, following
               heaptrail's rules: shared objects (modules, types, functions,
               builtin functions, code, class descriptors) are not counted
               nor followed; a dict's keys are followed too (a dict's
               tp_traverse leaves str keys out, heaptrail visits them); a
               memoryview is not followed. Its total must equal heaptrail's.
  pympler      pympler.asizeof.asizeof(data)

Why pympler's total differs from the other two (measured on 3.11 at 10,000
instances / 20,000 nodes, then at full size in results/latest.json):
  - asizeof takes sys.getsizeof too, but rounds every size up to a multiple
    of 8 (its default align=8): a 58-byte str counts 64, a 28-byte int 32.
    That is the whole difference on the JSON case (+1.6%).
  - for an instance it reads obj.__dict__, which on 3.11+ creates a dict that
    did not exist (attribute values are kept without a dict until someone
    asks for it): it counts, and leaves behind, one dict per instance (104
    bytes each here) that the gc, the plain walk and heaptrail do not see.
    Run heaptrail.deepsize again after asizeof and it counts those dicts too:
    the gap is then alignment only. On the objects case this is +48%.
  The plain walk agrees with heaptrail to the byte on both cases.
"""
import gc
import sys
import types

from harness import Case, Tool

N_OBJECTS = 1_000_000
N_JSON_NODES = 2_000_000
N_CHAIN = 10_000_000


class Item:
    def __init__(self, i):
        self.id = i
        self.name = f"item-{i}"
        self.price = i * 0.25
        self.tags = None if i % 3 else ["sale"]


def make_objects():
    return {i: Item(i) for i in range(N_OBJECTS)}


class Node:
    __slots__ = ("next", "value")

    def __init__(self, next, value):
        self.next = next
        self.value = value


def make_chain():
    head = None
    for _ in range(N_CHAIN):
        head = Node(head, None)
    return head


def make_json():
    # each record is 11 JSON nodes: the dict, 5 scalars, a list and its 2
    # items, a dict and its 1 value (keys are interned literals shared by
    # every record; the bool and None are shared singletons, so a record is
    # 9 distinct objects)
    out = []
    n = 0
    i = 0
    while n < N_JSON_NODES:
        out.append({
            "id": i * 7919,
            "user": f"user{i}",
            "score": i / 3,
            "active": i % 2 == 0,
            "note": None,
            "tags": [f"t{i % 97}", f"g{i}"],
            "geo": {"city": f"city{i % 1000}"},
        })
        n += 11
        i += 1
    return out


_SHARED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType,
           types.MethodDescriptorType, types.ClassMethodDescriptorType, types.WrapperDescriptorType,
           types.GetSetDescriptorType, types.MemberDescriptorType)


def plain_walk(root):
    """The reference: what a careful pure-Python deep size does."""
    getsizeof, get_referents = sys.getsizeof, gc.get_referents
    seen = {id(root)}
    stack = [root]
    total = 0
    while stack:
        o = stack.pop()
        total += getsizeof(o)
        if isinstance(o, memoryview):
            continue
        refs = get_referents(o)
        if isinstance(o, dict):
            refs.extend(o.keys())
        for r in refs:
            i = id(r)
            if i in seen:
                continue
            seen.add(i)
            if isinstance(r, _SHARED):
                continue
            stack.append(r)
    return total


def heaptrail_deepsize(data):
    import heaptrail
    return heaptrail.deepsize(data)


def pympler_asizeof(data):
    from pympler import asizeof
    return asizeof.asizeof(data)


TOOLS = [
    Tool("heaptrail", heaptrail_deepsize, requires=["heaptrail"]),
    Tool("plain-walk", plain_walk),
    Tool("pympler.asizeof", pympler_asizeof, requires=["pympler"]),
]

CASES = [
    Case("deepsize-objects", "deep size of a dict of 1,000,000 small objects with __dict__",
         make_objects, TOOLS, repeat=3),
    Case("deepsize-json", "deep size of a nested JSON-like structure of 2,000,000 nodes",
         make_json, TOOLS, repeat=3),
    Case("deepsize-chain", "deep size of a linked list of 10,000,000 nodes",
         make_chain, TOOLS[:2], repeat=3),
]
