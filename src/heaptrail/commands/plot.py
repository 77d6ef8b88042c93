"""heaptrail plot FILE -o out.svg|out.html|out.png: memory over time (RSS and
traced bytes) with the program's markers, as mprof plot draws it. SVG and HTML
are drawn by heaptrail; PNG goes through matplotlib when it is installed."""
import html
import os

from heaptrail import capture
from heaptrail._format import human_bytes, write_file
from heaptrail.cli import CommandError
from heaptrail.commands._snapshots import refuse_overwriting

_SERIES = (("rss", "RSS", "#1f77b4"), ("traced", "traced (heaptrail)", "#d62728"))


class PlotCommand:
    name = "plot"
    help = "plot a capture's memory over time (RSS and traced) with markers"

    def prepare_parser(self, parser):
        capture.add_file_argument(parser, reports=False)
        parser.add_argument("-o", "--output", required=True, help="out.svg, out.html or out.png")
        parser.add_argument("--title", default=None)
        parser.add_argument("--children", action="store_true",
                            help="stack the child processes' memory (FILE.<pid>) on this one's (SVG/HTML)")

    def run(self, args):
        ext = os.path.splitext(args.output)[1].lower()
        if ext not in (".svg", ".html", ".htm", ".png"):
            raise CommandError(f"unknown plot format {ext or '(none)'}: use .svg, .html or .png")
        refuse_overwriting(args.output, args.file)
        if args.children:
            return _plot_children(args, ext)
        cap = capture.open(args.file)
        if not cap.samples():
            raise CommandError(f"{args.file} holds no memory samples to plot")
        capture.warn_truncated(cap)
        title = args.title or f"memory of {cap.command or cap.path}"
        if ext == ".png":
            _png(cap, args.output, title)
        else:
            _write_chart(args.output, ext, title, memory_svg(cap, title=title))
        print(f"wrote {args.output}")
        return 0


def _write_chart(path, ext, title, svg):
    """Writes svg to path as is (.svg) or wrapped in a minimal HTML page (.html)."""
    text = svg if ext == ".svg" else (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(capture.printable(title))}</title>"
        f"</head><body>\n{svg}\n</body></html>\n")
    write_file(path, text)


def _y_grid(out, left, w, y, y_top):
    """Five horizontal grid lines from 0 to y_top, labelled in bytes, appended to out."""
    for i in range(5):
        v = y_top * i / 4
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{human_bytes(v)}</text>')


def _nice_top(v):
    """A round axis maximum >= v (1, 2 or 5 times a power of ten)."""
    if v <= 0:
        return 1
    p = 1
    while p * 10 <= v:
        p *= 10
    for m in (1, 2, 5, 10):
        if m * p >= v:
            return m * p
    return 10 * p


def memory_svg(cap, width=960, height=320, title=""):
    """An SVG chart of the samples (RSS and traced) with marker lines."""
    samples, markers = cap.samples(), cap.markers()
    left, right, top, bottom = 80, 20, 30, 40
    w, h = width - left - right, height - top - bottom
    t_end = max([s.time_ns for s in samples] + [m.time_ns for m in markers] + [1])
    y_top = _nice_top(max(max(s.rss, s.traced) for s in samples))

    def x(t):
        return left + w * t / t_end

    def y(v):
        return top + h - h * v / y_top

    # data-*: the time axis, for the flame graph's range selection
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" '
           f'data-left="{left}" data-plot-width="{w}" data-time-end="{t_end}">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13">{html.escape(capture.printable(title))}</text>']
    _y_grid(out, left, w, y, y_top)
    for i in range(6):
        t = t_end * i / 5
        out.append(f'<text x="{x(t):.1f}" y="{top + h + 16}" text-anchor="middle">{t / 1e9:.2f} s</text>')
    for m in markers:
        out.append(f'<line class="marker" x1="{x(m.time_ns):.1f}" x2="{x(m.time_ns):.1f}" y1="{top}" '
                   f'y2="{top + h}" stroke="#2ca02c" stroke-dasharray="4 3"><title>{html.escape(capture.printable(m.label))}</title></line>')
        out.append(f'<text x="{x(m.time_ns) + 3:.1f}" y="{top + 10}" fill="#2ca02c">{html.escape(capture.printable(m.label))}</text>')
    for key, label, color in _SERIES:
        pts = " ".join(f"{x(s.time_ns):.1f},{y(getattr(s, key)):.1f}" for s in samples)
        out.append(f'<polyline class="{key}" fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
    for i, (key, label, color) in enumerate(_SERIES):
        out.append(f'<rect x="{left + w - 170}" y="{top + 6 + 16 * i}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{left + w - 155}" y="{top + 15 + 16 * i}">{label}</text>')
    out.append(f'<rect id="selection" x="{left}" y="{top}" width="0" height="{h}" fill="#7b2ff7" '
               f'fill-opacity="0.15" visibility="hidden"/>')
    out.append(f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle">time</text></svg>')
    return "\n".join(out)


def _png(cap, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("PNG output needs matplotlib (pip install matplotlib); "
                           "write .svg or .html instead") from None
    samples = cap.samples()
    t = [s.time_ns / 1e9 for s in samples]
    fig, ax = plt.subplots(figsize=(10, 4))
    for key, label, color in _SERIES:
        ax.plot(t, [getattr(s, key) / 2**20 for s in samples], label=label, color=color)
    for m in cap.markers():
        ax.axvline(m.time_ns / 1e9, color="#2ca02c", linestyle="--")
        ax.annotate(m.label, (m.time_ns / 1e9, ax.get_ylim()[1]), color="#2ca02c", fontsize=8, va="top")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("memory (MiB)")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path)
    plt.close(fig)


def _plot_children(args, ext):
    from heaptrail.commands._children import open_family, stacked_svg

    if ext == ".png":
        raise CommandError("--children draws .svg or .html")
    caps = open_family(args.file)
    title = args.title or f"memory of {caps[0].command or caps[0].path} and {len(caps) - 1} children"
    _write_chart(args.output, ext, title, stacked_svg(caps, title=title))
    print(f"wrote {args.output}")
    return 0


COMMAND = PlotCommand
