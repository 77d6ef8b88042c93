"""Small formatting helpers shared by every view: byte sizes and tables."""


def human_bytes(n, precision=1):
    """1536 -> '1.5 KiB'; negative sizes keep their sign."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            if unit == "B":
                return f"{sign}{int(n)} B"
            return f"{sign}{n:.{precision}f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def table(headers, rows, align=None):
    """Renders rows as a fixed-width text table. align: string of 'l'/'r' per
    column (default: right for numbers, left for the rest)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    if align is None:
        align = "".join(
            "r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers))
        )

    def fmt(r):
        out = []
        for i, c in enumerate(r):
            out.append(c.rjust(widths[i]) if align[i] == "r" else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(headers)]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def write_file(path, data):
    """Writes data (str, as UTF-8, or bytes) to path. A failed write or close names the file,
    where OSError alone said "[Errno 28] No space left on device"."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), path) from None
        raise
