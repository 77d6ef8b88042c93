"""make demo: what heaptrail shows today about a running program.

Runs the example order book service (examples/orderbook.py) in this process,
then looks at its data with heaptrail: the deep size of each book, a per-type
breakdown, and the largest objects with the path that reaches them (which is
how the planted 3 MiB export buffer in a never-evicted cache shows up).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import heaptrail  # noqa: E402
from heaptrail._format import human_bytes, table  # noqa: E402

import orderbook  # noqa: E402


def section(title):
    print()
    print(f"== {title}")
    print()


BOOKS = None


def main():
    print(f"heaptrail {heaptrail.__version__} demo: the example order book (examples/orderbook.py)")
    global BOOKS
    # a module global, as real caches are: the snapshot's path starts from it
    BOOKS = orderbook.build()

    section("process memory (heaptrail.process)")
    mem = heaptrail.process.memory()
    print(table(["RSS", "USS", "PSS", "swap", "peak RSS", "threads"],
                [(human_bytes(mem.rss), human_bytes(mem.uss or 0), human_bytes(mem.pss or 0),
                  human_bytes(mem.swap), human_bytes(mem.peak_rss), mem.threads)]))
    pm = heaptrail.process.pymalloc()
    if pm.in_use:
        print(f"pymalloc: {pm.arenas} arenas, {pm.blocks_used:,} blocks used, "
              f"fragmentation {pm.fragmentation:.1%}")

    section("heap snapshot (heaptrail.snapshot): top types and biggest retainers")
    snap = heaptrail.snapshot()
    print(snap.summary().format(top=8))
    print()
    print(snap.top_retainers(6))
    big = max((entry[3] for book in BOOKS.values() for entry in book.cache.values()), key=len)
    print()
    print(f"who keeps the biggest cached export ({human_bytes(len(big))}) alive:")
    print("  " + str(snap.path_to_root(big)))

    section("deep size of each book (heaptrail.deepsize)")
    rows = []
    for sym, book in BOOKS.items():
        rows.append((sym, f"{len(book.orders):,}", f"{len(book.trades):,}",
                     human_bytes(sys.getsizeof(book)), human_bytes(heaptrail.deepsize(book))))
    rows.append(("all", "", "", human_bytes(sys.getsizeof(BOOKS)), human_bytes(heaptrail.deepsize(BOOKS))))
    print(table(["symbol", "resting", "trades", "sys.getsizeof", "deepsize"], rows, align="lrrrr"))

    section("what the BOOKS are made of (heaptrail.deepsize_detail)")
    t0 = time.perf_counter()
    detail = heaptrail.deepsize_detail(BOOKS, top=8)
    took = time.perf_counter() - t0
    print(detail.format(types=10))
    print()
    print(f"(walked {detail.count:,} objects in {took * 1000:.0f} ms; paths start at obj = the dict of BOOKS)")
    big = detail.largest[0] if detail.largest else None
    if big is not None and big.size > 1024 * 1024:
        print()
        print(f"The largest single object is a {human_bytes(big.size)} {big.type} at {big.path}:")
        print("a report cache that is never evicted keeps an export buffer alive.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
