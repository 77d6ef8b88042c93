"""A function with a hot loop of 1,000,000 iterations and some allocating
lines: the line profiler's benchmark (benchmarks/cases/lines.py)."""

SOURCE = '''
def work(n=1_000_000):
    total = 0
    rows = []
    for i in range(n):
        total += i * 2
        if i % 1000 == 0:
            rows.append(bytearray(1000))
    data = [str(i) for i in range(100_000)]
    blob = bytearray(20 * 2**20)
    del data
    return total + len(rows) + len(blob)
'''


def build(decorator=None):
    """work(), compiled from SOURCE, decorated with `decorator` when given."""
    ns = {}
    exec(compile(SOURCE, __file__.replace(".pyc", ".py"), "exec"), ns)
    fn = ns["work"]
    return decorator(fn) if decorator is not None else fn
