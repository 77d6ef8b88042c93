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


def main():
    print(f"heaptrail {heaptrail.__version__} demo: the example order book (examples/orderbook.py)")
    books = orderbook.build()

    # == process memory ==================================================
    # TODO(lead, after merging branch `proc`): add the process memory section
    # here: heaptrail.process.memory() (RSS/USS/PSS/swap) and the pymalloc
    # summary, printed with table()/human_bytes() like the sections below.
    # ====================================================================

    section("deep size of each book (heaptrail.deepsize)")
    rows = []
    for sym, book in books.items():
        rows.append((sym, f"{len(book.orders):,}", f"{len(book.trades):,}",
                     human_bytes(sys.getsizeof(book)), human_bytes(heaptrail.deepsize(book))))
    rows.append(("all", "", "", human_bytes(sys.getsizeof(books)), human_bytes(heaptrail.deepsize(books))))
    print(table(["symbol", "resting", "trades", "sys.getsizeof", "deepsize"], rows, align="lrrrr"))

    section("what the books are made of (heaptrail.deepsize_detail)")
    t0 = time.perf_counter()
    detail = heaptrail.deepsize_detail(books, top=8)
    took = time.perf_counter() - t0
    print(detail.format(types=10))
    print()
    print(f"(walked {detail.count:,} objects in {took * 1000:.0f} ms; paths start at obj = the dict of books)")
    big = detail.largest[0] if detail.largest else None
    if big is not None and big.size > 1024 * 1024:
        print()
        print(f"The largest single object is a {human_bytes(big.size)} {big.type} at {big.path}:")
        print("a report cache that is never evicted keeps an export buffer alive.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
