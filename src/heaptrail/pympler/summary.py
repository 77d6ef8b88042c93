"""pympler.summary: objects grouped by type, as rows ``[type name, count, total size]``.

``summarize(objects)`` groups in C (``_core/pymcompat.c``: one pass, sizes by
``sys.getsizeof``'s rules). Row names are pympler's: the type's name as ``str(type)`` shows it
without ``<class '...'>`` (``'str'``, ``'__main__.Foo'``); functions, modules and frames go by
name as pympler shows them (``'function (f)'``, ``'module(os)'``,
``'frame (codename: main)'``). ``get_diff`` and ``print_``/``format_`` give pympler's results and
table (``types | # objects | total size``).
"""
import re

from heaptrail import _core

__all__ = ["summarize", "get_diff", "format_", "print_"]

_TYPE_REPR = re.compile(r"^<(?:type|class) '(\S+)'>$")
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _type_label(t):
    return _TYPE_REPR.sub(r"\1", _ADDRESS.sub("", str(t)))


def _label(t, name):
    if name is None:
        return _type_label(t)
    if t.__name__ == "function":
        return f"function ({name})"
    if t.__name__ == "frame":
        return f"frame (codename: {name})"
    return f"module({name})"


def summarize(objects):
    """Rows ``[type name, number of objects, total size in bytes]``, one per kind, in order of
    first appearance (pympler gives no order)."""
    return [[_label(t, name), count, size] for t, name, count, size in _core.pym_summarize(objects)]


def get_diff(left, right):
    """right minus left, per row name: rows in both give the differences (0, 0 included),
    rows only in right are as they are, rows only in left are negated."""
    lk = {r[0]: r for r in left}
    rk = {r[0]: r for r in right}
    out = []
    for key in {**lk, **rk}:
        lrow, rrow = lk.get(key), rk.get(key)
        if lrow is not None and rrow is not None:
            out.append([key, rrow[1] - lrow[1], rrow[2] - lrow[2]])
        elif rrow is not None:
            out.append(rrow)
        else:
            out.append([key, -lrow[1], -lrow[2]])
    return out


def _pp(n):
    """pympler's size column: ``'%4d     B'`` below 1 KiB, else ``'%7.2f KB'`` (MB, GB ...)."""
    units = ["B", "KB", "MB", "GB", "TB", "EB"]
    k = 0
    pattern = "%4d     %s"
    while n > 1024 and k < len(units) - 1:
        pattern = "%7.2f %s"
        n = n / 1024.0
        k += 1
    return pattern % (n, units[k])


def format_(rows, limit=15, sort="size", order="descending"):
    """The lines of :func:`print_`'s table (a generator, as pympler's)."""
    keys = ["type", "#", "size"]
    if sort not in keys:
        raise ValueError("invalid sort, should be one of" + str(keys))
    if order not in ("ascending", "descending"):
        raise ValueError("invalid order, should be one of" + str(["ascending", "descending"]))
    col = keys.index(sort)
    local = sorted((list(r) for r in rows), key=lambda r: r[col], reverse=order == "descending")
    local = local[:limit]
    table = [["types", "# objects", "total size"]]
    table += [[str(r[0]), str(r[1]), _pp(r[2])] for r in local]
    widths = [max(len(row[c]) for row in table) + 2 for c in range(3)]
    for k, row in enumerate(table):
        yield " | ".join(cell.rjust(w) for cell, w in zip(row, widths))
        if k == 0:
            yield " | ".join("=" * w for w in widths)


def print_(rows, limit=15, sort="size", order="descending"):
    """Prints the rows as pympler's table, ``limit`` rows sorted by 'size', 'type' or '#'."""
    for line in format_(rows, limit=limit, sort=sort, order=order):
        print(line)
