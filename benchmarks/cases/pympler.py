"""pympler's muppy and summary: heaptrail.pympler beside pympler, on the same heap.

Input (built once per child, not timed): 200,000 small instances, each holding a str, an int,
a float and a two-item list: about 1,000,000 objects on top of the interpreter's own.

Cases:
  pympler-get-objects  muppy.get_objects(): a full collection, the gc's objects, and the untracked
                       objects they refer to, each once. heaptrail does the referent pass and the
                       duplicate removal in C (pymcompat.c); pympler in Python.
  pympler-summarize    summary.summarize(objects) over a prebuilt list of the 1,000,000 objects:
                       rows per type (count, total sys.getsizeof). heaptrail groups in C.
Results: the number of objects / rows found (the same for both tools, give or take the
few objects each tool itself holds).
"""
from harness import Case, Tool

N = 200_000


class Record:
    def __init__(self, i):
        self.name = f"record-{i}"
        self.value = i * 1000 + 7
        self.score = i * 0.5
        self.pair = [i, -i]


def make_heap():
    return [Record(i) for i in range(N)]


def make_objects():
    heap = make_heap()
    objs = []
    for r in heap:
        objs += [r, r.name, r.value, r.score, r.pair]
    return heap, objs


def ours_get_objects(_inp):
    from heaptrail.pympler import muppy
    return len(muppy.get_objects())


def theirs_get_objects(_inp):
    from pympler import muppy
    return len(muppy.get_objects())


def ours_summarize(inp):
    from heaptrail.pympler import summary
    return len(summary.summarize(inp[1]))


def theirs_summarize(inp):
    from pympler import summary
    return len(summary.summarize(inp[1]))


CASES = [
    Case("pympler-get-objects", "muppy.get_objects() on a heap of about 1,000,000 objects",
         make_heap, [Tool("heaptrail", ours_get_objects),
                     Tool("pympler", theirs_get_objects, requires=("pympler",))], repeat=3),
    Case("pympler-summarize", "summary.summarize() of a list of 1,000,000 objects",
         make_objects, [Tool("heaptrail", ours_summarize),
                        Tool("pympler", theirs_summarize, requires=("pympler",))], repeat=3),
]
