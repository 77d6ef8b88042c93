"""Reporting a capture together with its child processes' captures
(`--children`): FILE and every FILE.<pid> that `heaptrail run --follow-fork`
wrote beside it. Each file is read and aggregated by the C reader on its own;
this module only adds up the small results."""
import sys

from heaptrail import capture
from heaptrail._format import human_bytes, table
from heaptrail.cli import CommandError


def add_children_argument(parser):
    parser.add_argument("--children", action="store_true",
                        help="also read the child processes' captures (FILE.<pid>) and report them together")


def open_family(path):
    """[Capture] of path and its children (children in pid order)."""
    from heaptrail.run import children

    caps = [capture.load_for_command(path)]
    for p in children(path):
        try:
            cap = capture.load_for_command(p)
        except Exception as e:  # noqa: BLE001 - one bad child file does not hide the others
            # the reader's messages already start with the file's name: not twice
            msg = str(e) if str(e).startswith(p) else f"{p}: {e}"
            print(f"heaptrail: warning: {msg} (skipped)", file=sys.stderr)
            continue
        if cap.start_ns < caps[0].start_ns:
            # a child of an earlier run to the same FILE (its FILE was overwritten, the child
            # files stay): its numbers are not this run's
            print(f"heaptrail: warning: {p}: started before {path}, by an earlier run (skipped)",
                  file=sys.stderr)
            continue
        caps.append(cap)
    return caps


def summary_text(path, top):
    caps = open_family(path)
    out = [capture.summary_text(caps[0], top=top)]
    if len(caps) == 1:
        out.append("no child process captures beside it")
        return "\n".join(out)
    rows = [[c.pid, human_bytes(c.peak_bytes), human_bytes(c.total_bytes), human_bytes(c.leaked_bytes),
             human_bytes(c.max_rss), c.path] for c in caps]
    out.append("")
    out.append(f"{len(caps)} processes (this one and {len(caps) - 1} children):")
    out.append(table(["pid", "peak", "total", "leaks", "RSS peak", "file"], rows, align="rrrrrl"))
    out.append(f"together: peaks add up to {human_bytes(sum(c.peak_bytes for c in caps))}, "
               f"{human_bytes(sum(c.total_bytes for c in caps))} allocated, "
               f"{human_bytes(sum(c.leaked_bytes for c in caps))} still allocated at exit")
    return "\n".join(out)


def merged_rows(caps, report, by, sort, top):
    """Rows of every capture added up by where they were allocated (by line,
    function or file: the same key in two processes is one row)."""
    if by == "stack":
        raise CommandError("--children merges --by line, function or file, not stack")
    acc = {}
    for c in caps:
        for r in c.rows(report, by=by, sort=sort, top=0):
            key = (r.function, r.file, r.line)
            b, n = acc.get(key, (0, 0))
            acc[key] = (b + r.bytes, n + r.count)
    rows = [capture.Row(b, n, None, *key) for key, (b, n) in acc.items()]
    rows.sort(key=(lambda r: (-r.count, -r.bytes)) if sort == "count" else (lambda r: (-r.bytes, -r.count)))
    return rows[:top] if top else rows


def capture_summary(args):
    """`heaptrail summary CAPTURE [--top N] [--children] [--json]`."""
    if args.json:
        import json
        caps = open_family(args.file) if args.children else [capture.load_for_command(args.file)]
        out = []
        for c in caps:
            d = {k: v for k, v in c.info.items()}
            d["file"] = c.path
            d["top_peak"] = [r._asdict() for r in c.rows("peak", by="line", top=args.top)]
            d["top_leaks"] = [r._asdict() for r in c.rows("leaks", by="line", top=args.top)]
            out.append(d)
        print(json.dumps(out if args.children else out[0], indent=1))
        return 0
    if args.children:
        print(summary_text(args.file, args.top))
    else:
        cap = capture.load_for_command(args.file)
        print(capture.summary_text(cap, top=args.top))
    return 0


_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def stacked_svg(caps, key="rss", width=960, height=360, title=""):
    """mprof plot's view of a process family: each process's memory (RSS by
    default) stacked on the others', on one time axis (wall clock)."""
    import bisect
    import html

    from heaptrail.commands.plot import _nice_top, _y_grid

    series = []
    for c in caps:
        pts = [(c.start_ns + s.time_ns, getattr(s, key)) for s in c.samples()]
        if pts:
            series.append((c, pts))
    if not series:
        raise CommandError("no memory samples in these captures")
    t0 = min(p[0][0] for _, p in series)
    times = sorted({t for _, p in series for t, _ in p})

    def value(pts, t):
        if t < pts[0][0] or t > pts[-1][0]:
            return 0
        i = bisect.bisect_right([q[0] for q in pts], t) - 1
        return pts[i][1]

    layers, base = [], [0] * len(times)
    for c, pts in series:
        top_ = [b + value(pts, t) for b, t in zip(base, times)]
        layers.append((c, list(base), top_))
        base = top_
    left, right, top, bottom = 80, 180, 30, 40
    w, h = width - left - right, height - top - bottom
    t_span = max(times[-1] - t0, 1)
    y_top = _nice_top(max(base) or 1)

    def x(t):
        return left + w * (t - t0) / t_span

    def y(v):
        return top + h - h * v / y_top

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13">{html.escape(title)}</text>']
    _y_grid(out, left, w, y, y_top)
    for i in range(6):
        t = t0 + t_span * i / 5
        out.append(f'<text x="{x(t):.1f}" y="{top + h + 16}" text-anchor="middle">{(t - t0) / 1e9:.2f} s</text>')
    for k, (c, lo, hi) in enumerate(layers):
        color = _COLORS[k % len(_COLORS)]
        upper = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, hi))
        lower = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in reversed(list(zip(times, lo))))
        out.append(f'<polygon class="process" data-pid="{c.pid}" fill="{color}" fill-opacity="0.6" '
                   f'stroke="{color}" points="{upper} {lower}"><title>pid {c.pid}</title></polygon>')
        out.append(f'<rect x="{left + w + 10}" y="{top + 16 * k}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{left + w + 25}" y="{top + 9 + 16 * k}">pid {c.pid}'
                   f'{" (parent)" if k == 0 else ""}</text>')
        for m in c.markers():
            mx = x(c.start_ns + m.time_ns)
            out.append(f'<line class="marker" x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + h}" '
                       f'stroke="{color}" stroke-dasharray="4 3"><title>{html.escape(m.label)}</title></line>')
    out.append(f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle">time ({key}, stacked by process)</text></svg>')
    return "\n".join(out)
