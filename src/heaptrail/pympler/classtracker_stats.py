"""pympler.classtracker_stats: what a ClassTracker recorded, as text (ConsoleStats), as one
self-contained HTML page (HtmlStats) and as a file (dump_stats / load_stats).

The file is JSON (pympler writes a pickle, which would run code when loaded): an object with
``"format": "heaptrail-classtracker"``, ``"version": 1``, ``"snapshots"`` (timestamp, desc,
tracked_total, asizeof_total, system_total) and ``"objects"`` (name, id, repr, birth, death,
trace, snapshots of ``[timestamp, size, flat, refs]``). The reader checks every field's type and
raises :class:`heaptrail.HeaptrailError` with one line naming what is wrong.
"""
import html
import io
import json
import os
import sys

from heaptrail._core import Error as HeaptrailError
from heaptrail._format import write_file
from heaptrail.pympler.classtracker import Asized, Snapshot, TrackedObject

__all__ = ["Stats", "ConsoleStats", "HtmlStats"]

FORMAT = "heaptrail-classtracker"
VERSION = 1

_CRITERIA = ("classname", "tsize", "birth", "death", "name", "repr", "size")


def pp(n):
    """pympler's size text: ``'%4d     B'`` below 1 KiB, else ``'%7.2f KB'`` (MB, GB ...)."""
    units = ["B", "KB", "MB", "GB", "TB", "EB"]
    k, pattern = 0, "%4d     %s"
    while n > 1024 and k < len(units) - 1:
        pattern = "%7.2f %s"
        n = n / 1024.0
        k += 1
    return pattern % (n, units[k])


def pp_timestamp(t):
    """Seconds as ``HH:MM:SS.ss``."""
    if t is None:
        return ""
    h, m, s = int(t / 3600), int(t / 60 % 60), t % 60
    return "%02d:%02d:%05.2f" % (h, m, s)


def trunc(obj, width, left=False):
    text = str(obj).replace("\n", "|")
    if len(text) <= width:
        return text
    return "..." + text[len(text) - width + 3:] if left else text[:width - 3] + "..."


class _Loaded(TrackedObject):
    """A TrackedObject read back from a file (no instance behind it)."""

    def __init__(self):  # noqa: super not called: fields come from the file
        self.ref = lambda: None
        self._strong = None


class Stats:
    """The records of a tracker (``tracker=``) or of a file (``filename=``): ``snapshots``
    and ``index`` (class name -> tracked objects); ``sorted`` after :meth:`sort_stats`."""

    def __init__(self, tracker=None, filename=None, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.tracker = tracker
        self.index = {}
        self.snapshots = []
        self.sorted = []
        if tracker is not None:
            self.index = tracker.index
            self.snapshots = tracker.snapshots
        if filename is not None:
            self.load_stats(filename)

    # ---- files ---------------------------------------------------------------------------------
    def dump_stats(self, fdump, close=True):
        """Writes the records to ``fdump`` (a path, or a file opened for writing)."""
        if self.tracker is not None:
            self.tracker.stop_periodic_snapshots()
        data = {
            "format": FORMAT,
            "version": VERSION,
            "snapshots": [[s.timestamp, s.desc, s.tracked_total, s.asizeof_total, s.system_total]
                          for s in self.snapshots],
            "objects": [_dump_object(name, t) for name, objs in self.index.items() for t in objs],
        }
        text = json.dumps(data, separators=(",", ":"))
        if isinstance(fdump, (str, bytes, os.PathLike)):
            write_file(fdump, text)   # a failed write leaves a file already there whole
            return
        if isinstance(fdump, io.TextIOBase):
            fdump.write(text)
        else:
            fdump.write(text.encode("utf-8"))
        if close:
            fdump.close()

    def load_stats(self, fdump):
        """Reads records written by :meth:`dump_stats` (a path or an open file)."""
        name = fdump if isinstance(fdump, (str, bytes, os.PathLike)) else getattr(fdump, "name", "<file>")
        if isinstance(fdump, (str, bytes, os.PathLike)):
            with open(fdump, "rb") as f:
                raw = f.read()
        else:
            raw = fdump.read()
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise HeaptrailError(f"{os.fsdecode(name)}: not a heaptrail ClassTracker file") from None
        snapshots, index = _parse(data, os.fsdecode(name))
        self.snapshots = snapshots
        self.index = index
        self.sorted = []
        self.tracker = None

    # ---- sorting -------------------------------------------------------------------------------
    def _init_sort(self):
        if self.sorted:
            return
        largest = max(self.snapshots, key=lambda s: s.tracked_total, default=None)
        tmax = largest.timestamp if largest is not None else 0.0
        for key, objs in self.index.items():
            for t in objs:
                t.classname = key
                t.size = t.get_max_size()
                t.tsize = t.get_size_at_time(tmax)
            self.sorted.extend(objs)

    def sort_stats(self, *args):
        """Orders the tracked objects by the given keys (sizes largest first, names and times
        ascending): 'classname', 'tsize', 'birth', 'death', 'name', 'repr', 'size'. Returns
        self."""
        bad = [a for a in args if a not in _CRITERIA]
        if bad:
            raise ValueError(f"Invalid sort criteria: {', '.join(map(repr, bad))}; use one of "
                             + ", ".join(_CRITERIA))
        keys = args or _CRITERIA
        self._init_sort()

        def key(t):
            out = []
            for attr in keys:
                v = getattr(t, attr, None)
                if attr in ("size", "tsize"):
                    out.append(-int(v or 0))
                elif attr == "death":
                    out.append(float("inf") if v is None else v)
                else:
                    out.append(v if v is not None else "")
            return tuple(out)

        self.sorted.sort(key=key)
        return self

    def reverse_order(self):
        self._init_sort()
        self.sorted.reverse()
        return self

    # ---- per-class summaries -------------------------------------------------------------------
    def annotate(self):
        for s in self.snapshots:
            self.annotate_snapshot(s)

    def annotate_snapshot(self, snapshot):
        """Per class at that snapshot: ``sum`` (bytes of its instances), ``active`` (instances
        alive then), ``avg`` and ``pct`` (of the snapshot's total)."""
        if snapshot.classes is not None:
            return snapshot.classes
        classes = {}
        for name, objs in self.index.items():
            total = active = 0
            for t in objs:
                total += t.get_size_at_time(snapshot.timestamp)
                if t.birth <= snapshot.timestamp and (t.death is None or t.death > snapshot.timestamp):
                    active += 1
            total_ref = snapshot.total
            classes[name] = dict(sum=total, active=active, avg=total / active if active else 0,
                                 pct=total * 100.0 / total_ref if total_ref else 0)
        snapshot.classes = classes
        return classes

    @property
    def tracked_classes(self):
        return sorted(self.index)


def _dump_object(name, t):
    return {"name": name, "id": t.id, "repr": t.repr, "birth": t.birth, "death": t.death,
            "trace": [list(f) for f in t.trace] if t.trace else None,
            "snapshots": [[ts, s.size, s.flat, [[r.name, r.size] for r in s.refs]]
                          for ts, s in t.snapshots]}


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse(data, name):
    def bad(what):
        return HeaptrailError(f"{name}: bad ClassTracker file: {what}")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HeaptrailError(f"{name}: not a heaptrail ClassTracker file")
    if data.get("version") != VERSION:
        raise bad(f"version {data.get('version')!r} (this heaptrail reads {VERSION})")
    snaps, objs = data.get("snapshots"), data.get("objects")
    if not isinstance(snaps, list) or not isinstance(objs, list):
        raise bad("snapshots and objects must be lists")
    snapshots = []
    for k, row in enumerate(snaps):
        if (not isinstance(row, list) or len(row) != 5 or not _num(row[0])
                or not isinstance(row[1], str) or not all(isinstance(v, int) for v in row[2:])):
            raise bad(f"snapshot {k}")
        s = Snapshot(row[0], row[1])
        s.tracked_total, s.asizeof_total, s.system_total = row[2:]
        snapshots.append(s)
    index = {}
    for k, o in enumerate(objs):
        if not isinstance(o, dict):
            raise bad(f"object {k}")
        t = _Loaded()
        try:
            t.name, t.id, t.repr = o["name"], o["id"], o["repr"]
            t.birth, t.death, t.trace = o["birth"], o["death"], o["trace"]
            sizes = o["snapshots"]
        except KeyError as e:
            raise bad(f"object {k} has no {e.args[0]!r}") from None
        if (not isinstance(t.name, str) or not isinstance(t.id, int) or not isinstance(t.repr, str)
                or not _num(t.birth) or not (t.death is None or _num(t.death))
                or not isinstance(sizes, list)):
            raise bad(f"object {k}")
        if t.trace is not None:
            if not isinstance(t.trace, list) or not all(
                    isinstance(f, list) and len(f) == 3 and isinstance(f[0], str)
                    and isinstance(f[1], int) and isinstance(f[2], str) for f in t.trace):
                raise bad(f"object {k}: trace")
            t.trace = [tuple(f) for f in t.trace]
        t.snapshots = []
        for s in sizes:
            if (not isinstance(s, list) or len(s) != 4 or not _num(s[0])
                    or not isinstance(s[1], int) or not isinstance(s[2], int)
                    or not isinstance(s[3], list)
                    or not all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], str)
                               and isinstance(r[1], int) for r in s[3])):
                raise bad(f"object {k}: sizes")
            refs = [Asized(r[1], r[1], name=r[0]) for r in s[3]]
            t.snapshots.append((s[0], Asized(s[1], s[2], refs)))
        index.setdefault(t.name, []).append(t)
    return snapshots, index


def _format_trace(trace):
    return "".join("  %s:%4d in %s\n" % (f, line, func) for f, line, func in trace)


class ConsoleStats(Stats):
    """The records as text: :meth:`print_summary` (per snapshot, per class: active instances,
    total size, average, share) and :meth:`print_stats` (per instance, its sizes over time)."""

    def _print_refs(self, refs, total, prefix="    ", level=1):
        for r in sorted(refs, key=lambda r: r.size, reverse=True):
            if r.size > 0 and total and r.size * 100.0 / total > 0.1:
                self.stream.write("%-50s %-14s %3d%% [%d]\n" % (
                    trunc(prefix + str(r.name), 50), pp(r.size), int(r.size * 100.0 / total), level))
                self._print_refs(r.refs, total, prefix + "  ", level + 1)

    def print_object(self, tobj):
        """One instance: name, address, repr, creation stack, size per snapshot, death."""
        if tobj.death is not None:
            self.stream.write("%-32s ( free )   %-35s\n" % (trunc(tobj.name, 32, left=True),
                                                            trunc(tobj.repr, 35)))
        else:
            self.stream.write("%-32s 0x%08x %-35s\n" % (trunc(tobj.name, 32, left=True), tobj.id,
                                                        trunc(tobj.repr, 35)))
        if tobj.trace:
            self.stream.write(_format_trace(tobj.trace))
        for ts, size in tobj.snapshots:
            self.stream.write("  %-30s %s\n" % (pp_timestamp(ts), pp(size.size)))
            self._print_refs(size.refs, size.size)
        if tobj.death is not None:
            self.stream.write("  %-30s finalize\n" % pp_timestamp(tobj.death))

    def print_stats(self, clsname=None, limit=1.0):
        """Prints the tracked instances (in :meth:`sort_stats` order): only those whose class
        name contains ``clsname``; a float ``limit`` <= 1.0 keeps that share of them (1.0: all),
        an int that many."""
        if self.tracker is not None:
            self.tracker.stop_periodic_snapshots()
        if not self.sorted:
            self.sort_stats()
        rows = self.sorted
        if clsname:
            rows = [t for t in rows if clsname in t.classname]
        if isinstance(limit, float) and limit <= 1.0:  # a share (pympler prints one object at 1.0)
            limit = max(1, int(len(rows) * limit + 0.5))
        for t in rows[:int(limit)]:
            self.print_object(t)

    def print_summary(self):
        """Per snapshot, a line with its description and heap total, then one line per tracked
        class: active instances, total size, average size, share of the total."""
        w = self.stream.write
        classes = self.tracked_classes
        w("---- SUMMARY " + "-" * 66 + "\n")
        for s in self.snapshots:
            info = self.annotate_snapshot(s)
            w("%-35s %11s %12s %12s %5s\n" % (trunc(s.label, 35), "active", pp(s.asizeof_total),
                                              "average", "pct"))
            for name in classes:
                c = info.get(name)
                if c is None:
                    continue
                w("  %-33s %11d %12s %12s %4d%%\n" % (trunc(name, 33), c["active"], pp(c["sum"]),
                                                      pp(c["avg"]), c["pct"]))
        w("-" * 79 + "\n")


_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.bar { fill: #4a7ab5; } .axis { stroke: #888; } svg text { font-size: 11px; fill: #444; }
"""


class HtmlStats(Stats):
    """The records as one self-contained HTML page (styles and charts inline, nothing fetched
    from the network): a chart of each class's total size over the snapshots, a table per
    snapshot, and each class's instances with their sizes over time."""

    def create_html(self, fname, title="ClassTracker Statistics"):
        """Writes the page to ``fname``; returns the path."""
        if self.tracker is not None:
            self.tracker.stop_periodic_snapshots()
        write_file(fname, self.render(title))   # made first: a failure leaves the old page
        return fname

    def render(self, title="ClassTracker Statistics"):
        """The page as a string."""
        e = html.escape
        classes = self.tracked_classes
        out = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">",
               f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
               f"<h1>{e(title)}</h1>", "<h2>Memory of the tracked classes over time</h2>",
               self._chart(classes)]
        out.append("<h2>Snapshots</h2>")
        for s in self.snapshots:
            info = self.annotate_snapshot(s)
            out.append(f"<h3>{e(s.label)} at {e(pp_timestamp(s.timestamp))}</h3>")
            out.append(f"<p>tracked: {e(pp(s.tracked_total))}; heap total: "
                       f"{e(pp(s.asizeof_total)) if s.asizeof_total else 'not measured'}; "
                       f"process resident: {e(pp(s.system_total))}</p>")
            out.append("<table><tr><th>class</th><th>active</th><th>size</th><th>average</th>"
                       "<th>pct</th></tr>")
            for name in classes:
                c = info.get(name)
                if c is not None:
                    out.append(f"<tr><td>{e(name)}</td><td>{c['active']}</td><td>{e(pp(c['sum']))}"
                               f"</td><td>{e(pp(c['avg']))}</td><td>{c['pct']:.1f}%</td></tr>")
            out.append("</table>")
        out.append("<h2>Instances</h2>")
        for name in classes:
            out.append(f"<h3 id=\"{e(name)}\">{e(name)}</h3>")
            out.append("<table><tr><th>instance</th><th>lifetime</th><th>sizes</th></tr>")
            for t in self.index[name]:
                life = f"{pp_timestamp(t.birth)} - {pp_timestamp(t.death) if t.death is not None else 'alive'}"
                sizes = ", ".join(f"{pp_timestamp(ts)}: {pp(s.size).strip()}" for ts, s in t.snapshots)
                out.append(f"<tr><td>0x{t.id:x} {e(trunc(t.repr, 60))}</td><td>{e(life)}</td>"
                           f"<td>{e(sizes) or '-'}</td></tr>")
            out.append("</table>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def _chart(self, classes):
        """An inline SVG: per snapshot, a stacked bar of the classes' total sizes."""
        if not self.snapshots:
            return "<p>No snapshots.</p>"
        e = html.escape
        self.annotate()
        totals = [sum(s.classes[c]["sum"] for c in classes if c in s.classes) for s in self.snapshots]
        peak = max(totals) or 1
        width, height, bar = 60 + 50 * len(self.snapshots), 220, 30
        # inline SVG in HTML needs no namespace declaration (so the page names no URL at all)
        parts = [f"<svg width=\"{width}\" height=\"{height + 40}\">",
            f"<line class=\"axis\" x1=\"50\" y1=\"{height}\" x2=\"{width}\" y2=\"{height}\"/>",
            f"<text x=\"0\" y=\"12\">{e(pp(peak).strip())}</text>"]
        shades = ["#4a7ab5", "#c0504d", "#9bbb59", "#8064a2", "#4bacc6", "#f79646"]
        for k, s in enumerate(self.snapshots):
            x, y = 60 + 50 * k, height
            for j, c in enumerate(classes):
                v = s.classes.get(c, {}).get("sum", 0)
                h = v * (height - 20) / peak
                if h > 0:
                    y -= h
                    parts.append(f"<rect x=\"{x}\" y=\"{y:.1f}\" width=\"{bar}\" height=\"{h:.1f}\" "
                                 f"fill=\"{shades[j % len(shades)]}\"><title>{e(c)}: {e(pp(v).strip())}"
                                 f"</title></rect>")
            parts.append(f"<text x=\"{x}\" y=\"{height + 15}\">{e(trunc(s.label, 8))}</text>")
        parts.append("</svg>")
        legend = " ".join(f"<span style=\"color:{shades[j % len(shades)]}\">&#9632;</span> {e(c)}"
                          for j, c in enumerate(classes))
        return "\n".join(parts) + f"\n<p>{legend}</p>"
