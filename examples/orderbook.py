"""A small in-memory order book service: the example program heaptrail's demo
looks into.

It keeps, per symbol, the resting orders by price level, an index of orders by
id, the recent trades and a response cache. One thing is wrong with it, as in
real programs: the cache keeps every rendered report forever, and one of them
holds a large export buffer. `make demo` finds it.

    python examples/orderbook.py      # runs the book and prints a summary
"""
import random

SYMBOLS = ("ACME", "GLOBEX", "INITECH", "UMBRELLA")


class Order:
    def __init__(self, oid, side, price, qty, owner):
        self.oid = oid
        self.side = side
        self.price = price
        self.qty = qty
        self.owner = owner


class Trade:
    __slots__ = ("buy", "sell", "price", "qty")

    def __init__(self, buy, sell, price, qty):
        self.buy = buy
        self.sell = sell
        self.price = price
        self.qty = qty


class OrderBook:
    def __init__(self, symbol):
        self.symbol = symbol
        self.bids = {}      # price -> [Order], best price first when matched
        self.asks = {}
        self.orders = {}    # oid -> Order
        self.trades = []
        self.cache = {}     # request key -> rendered response (never evicted)

    def submit(self, order):
        book, other = (self.bids, self.asks) if order.side == "buy" else (self.asks, self.bids)
        while order.qty and other:
            best = (min if order.side == "buy" else max)(other)
            if (order.side == "buy" and best > order.price) or (order.side == "sell" and best < order.price):
                break
            resting = other[best][0]
            qty = min(order.qty, resting.qty)
            self.trades.append(Trade(order if order.side == "buy" else resting,
                                     resting if order.side == "buy" else order, best, qty))
            order.qty -= qty
            resting.qty -= qty
            if not resting.qty:
                other[best].pop(0)
                del self.orders[resting.oid]
                if not other[best]:
                    del other[best]
        if order.qty:
            book.setdefault(order.price, []).append(order)
            self.orders[order.oid] = order

    def report(self, day):
        key = f"report:{self.symbol}:{day}"
        if key not in self.cache:
            rows = [(t.price, t.qty) for t in self.trades[-50:]]
            volume = sum(q for _, q in rows)
            # the export buffer is built for one client and kept with the rows
            export = bytearray(3 * 1024 * 1024) if day == "2026-11-24" and self.symbol == "INITECH" else b""
            self.cache[key] = [day, volume, rows, export]
        return self.cache[key]


def build(n_orders=40_000, seed=7):
    """Runs a day of random orders through one book per symbol; returns
    {symbol: OrderBook}."""
    rng = random.Random(seed)
    books = {s: OrderBook(s) for s in SYMBOLS}
    owners = [f"trader-{i:03d}" for i in range(200)]
    for oid in range(n_orders):
        book = books[rng.choice(SYMBOLS)]
        side = rng.choice(("buy", "sell"))
        price = round(100 + rng.gauss(0, 2), 2)
        book.submit(Order(oid, side, price, rng.randint(1, 50) * 10, rng.choice(owners)))
    for book in books.values():
        for day in ("2026-11-22", "2026-11-23", "2026-11-24"):
            book.report(day)
    return books


if __name__ == "__main__":
    for sym, book in build().items():
        print(f"{sym:9} resting {len(book.orders):6}  trades {len(book.trades):6}  cached {len(book.cache)}")
