"""Reading a capture file (`heaptrail run -o FILE`): the Python face of the C
reader. `open(path)` reads and aggregates the file in C (two streaming passes,
memory proportional to live blocks and distinct stacks); the methods here
only hand back small rows and format them.

    cap = heaptrail.capture.open("run.htcap")
    cap.peak_bytes, cap.leaked_bytes, cap.total_bytes
    cap.rows("peak", by="line", top=10)      # [Row(bytes, count, node, function, file, line)]
    cap.stack(row.node)                      # [Frame(function, file, line)], innermost first
    print(heaptrail.capture.summary_text("run.htcap"))
"""
import gzip
import re
from collections import namedtuple

from heaptrail import _core
from heaptrail._format import human_bytes

Row = namedtuple("Row", "bytes count node function file line")
Frame = namedtuple("Frame", "function file line")
TreeNode = namedtuple("TreeNode", "node parent function file line self_bytes self_count bytes count")
Sample = namedtuple("Sample", "time_ns rss traced")
Marker = namedtuple("Marker", "time_ns label")
Thread = namedtuple("Thread", "id name allocations bytes")
Bucket = namedtuple("Bucket", "low high count bytes")

REPORTS = ("peak", "leaks", "total")
GROUPINGS = ("line", "function", "file", "stack")


def is_capture_file(path):
    """True when path starts with the capture file's magic (False when it
    cannot be opened): `heaptrail summary` dispatches on it."""
    return _core.is_capture(path)


class Capture:
    """A capture file, read and aggregated."""

    def __init__(self, path):
        self.path = str(path)
        self._r = _core.capture_read(path)
        self.info = self._r.info()

    def __getattr__(self, name):
        info = self.__dict__.get("info")
        if info is not None and name in info:
            return info[name]
        raise AttributeError(name)

    @property
    def truncated(self):
        """None, or why the capture ends early (the program was killed)."""
        return self.info["truncated"]

    @property
    def command(self):
        return printable(self.info["cmdline"].replace("\0", " ").strip())

    def rows(self, report="peak", by="line", sort="size", top=0):
        return [Row(*r) for r in self._r.rows(report, by, sort, top)]

    def stack(self, node):
        return [Frame(*f) for f in self._r.stack(node)]

    def tree(self, report="peak"):
        return [TreeNode(*t) for t in self._r.tree(report)]

    def histogram(self):
        return [Bucket(*b) for b in self._r.histogram()]

    def largest(self):
        return self._r.largest()

    def threads(self):
        return [Thread(*t) for t in self._r.threads()]

    def samples(self):
        return [Sample(*s) for s in self._r.samples()]

    def markers(self):
        return [Marker(*m) for m in self._r.markers()]

    def timeline(self, points=64):
        """[(time_ns, events, {node: live self bytes})] at `points` evenly
        spaced moments (re-reads the file; fewer points on huge trees)."""
        return self._r.timeline(points)

    def pprof(self, inuse="peak"):
        """gzip-compressed profile.proto (encoded in C)."""
        return gzip.compress(self._r.pprof(inuse), mtime=0)

    def report_bytes(self, report):
        return {"peak": self.peak_bytes, "leaks": self.leaked_bytes, "total": self.total_bytes}[report]


def open(path):  # noqa: A001 - the module's verb, as in tarfile.open
    return Capture(path)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text):
    """text with its control characters written as escapes (\\x1b, \\n): a name read
    from a capture (a file name may hold a newline, a shared capture anything) must
    not break a report's one line per row, drive the terminal, or make an SVG file
    ill-formed XML (which refuses most of them)."""
    if text is None or not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1] if m.group(0) in "\t\n\r" else
                        f"\\x{ord(m.group(0)):02x}", text)


def frame_text(function, file, line):
    function, file = printable(function), printable(file)
    if function is None and file is None:
        return "<no Python frame>"
    if function is None:
        return file
    return f"{function} ({file}:{line})" if line is not None else f"{function} ({file})"


def row_location(cap, row, by):
    """One line naming a row: its frame, or for --by stack its frames joined."""
    if by == "stack":
        frames = cap.stack(row.node)
        if not frames:
            return "<no Python frame>"
        return " <- ".join(frame_text(*f) for f in frames)
    return frame_text(row.function, row.file, row.line)


_SPARKS = " ▁▂▃▄▅▆▇█"


def sparkline(values, width=48):
    """A one-line chart of values (max-pooled down to width characters)."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [max(values[int(i * step):max(int((i + 1) * step), int(i * step) + 1)])
                  for i in range(width)]
    top = max(values) or 1
    return "".join(_SPARKS[min(8, (v * 8 + top - 1) // top)] for v in values)


def summary_text(path, top=10):
    """The at-exit report of a capture: peak and top stacks at the peak, total
    allocated, leaks by top stacks, RSS peak, a sparkline of memory."""
    cap = path if isinstance(path, Capture) else Capture(path)
    out = [f"capture {cap.path}" + (f" (pid {cap.pid}: {cap.command})" if cap.command else "")]
    if cap.truncated:
        out.append(f"  truncated: {cap.truncated}; showing the events up to the last complete block")
    out.append(f"peak traced memory: {human_bytes(cap.peak_bytes)} in {cap.peak_count:,} blocks")
    out += _top_lines(cap, "peak", top)
    out.append(f"total allocated: {human_bytes(cap.total_bytes)} in {cap.allocations:,} allocations")
    out.append(f"still allocated at exit (leaks): {human_bytes(cap.leaked_bytes)} "
               f"in {cap.leaked_count:,} blocks")
    out += _top_lines(cap, "leaks", top)
    samples = cap.samples()
    if cap.max_rss:
        out.append(f"RSS peak: {human_bytes(cap.max_rss)}")
    if samples:
        traced = any(s.traced for s in samples)
        line = sparkline([s.traced if traced else s.rss for s in samples])
        out.append(f"{'traced' if traced else 'RSS'} over time: |{line}| {cap.duration_ns / 1e9:.2f} s")
    out.append(f"more: heaptrail table {cap.path} --peak | tree | flamegraph | stats")
    return "\n".join(out)


def _top_lines(cap, report, top):
    total = cap.report_bytes(report) or 1
    lines = []
    for r in cap.rows(report, by="stack", top=top):
        frames = cap.stack(r.node)
        where = frame_text(*frames[0]) if frames else "<no Python frame>"
        via = f"  <- {frame_text(*frames[1])}" if len(frames) > 1 else ""
        lines.append(f"  {human_bytes(r.bytes):>10} {100 * r.bytes / total:5.1f}%  {r.count:>8,}  {where}{via}")
    return lines


def refuse_pipe(path):
    """HeaptrailError for a pipe (`heaptrail table <(zcat c.htcap.gz)`): the readers need a
    file they can read twice or map, and a pipe's bytes once read are gone, so the file's
    magic, checked first, was missing from what followed and a real capture or snapshot was
    reported as "not a heaptrail capture/snapshot file"."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return   # the reader says what is wrong with it
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise _core.Error(f"{path}: is a pipe, not a file: save it to a file first")


def load_for_command(path):
    """A Capture for a CLI reporter: a truncated capture is reported with one
    warning line on stderr (its data up to the last complete block is good)."""
    refuse_pipe(path)
    cap = Capture(path)
    warn_truncated(cap)
    return cap


def warn_truncated(cap):
    import sys

    if cap.truncated:
        print(f"heaptrail: warning: {cap.path} is truncated ({cap.truncated}): "
              "showing the events up to its last complete block", file=sys.stderr)


def add_file_argument(parser, reports=True):
    parser.add_argument("file", help="capture file written by heaptrail run")
    if reports:
        g = parser.add_mutually_exclusive_group()
        for name in REPORTS:
            g.add_argument(f"--{name}", dest="report", action="store_const", const=name,
                           help=f"the {name} report" + (" (default)" if name == "peak" else ""))
        parser.set_defaults(report="peak")


def speedscope(cap, report="peak"):
    """The speedscope file format (a dict to dump as JSON): one sampled
    profile, a sample per stack weighted by bytes."""
    frames, index, samples, weights = [], {}, [], []
    for t in cap.tree(report):
        if t.self_bytes == 0:
            continue
        stack = []
        for f in reversed(cap.stack(t.node)):   # speedscope wants outermost first
            key = (f.function, f.file, f.line)
            if key not in index:
                index[key] = len(frames)
                frames.append({"name": f.function, "file": f.file, "line": f.line})
            stack.append(index[key])
        if not stack:
            key = ("<no Python frame>", "", 0)
            if key not in index:
                index[key] = len(frames)
                frames.append({"name": key[0]})
            stack.append(index[key])
        samples.append(stack)
        weights.append(t.self_bytes)
    total = sum(weights)
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [{"type": "sampled", "name": f"{cap.path} ({report})", "unit": "bytes",
                      "startValue": 0, "endValue": total, "samples": samples, "weights": weights}],
        "name": cap.path,
        "exporter": "heaptrail",
    }
