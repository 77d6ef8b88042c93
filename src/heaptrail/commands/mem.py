"""heaptrail mem [PID] [--self] [--json] [--top N]: one screen of process memory.

Without PID it shows heaptrail's own process (with a note saying so); --self
is that same process with its pymalloc, glibc malloc and gc summaries, which
can only be read from inside a process.
"""
import heapq
import json
import os
import sys

from heaptrail import HeaptrailError, process
from heaptrail._format import human_bytes, table
from heaptrail.cli import CommandError
from heaptrail.commands._snapshots import count, number

_MEMORY_FIELDS = ("rss", "vms", "shared", "uss", "pss", "swap", "peak_rss", "data", "stack", "threads")
_MAP_FIELDS = ("start", "end", "perms", "offset", "path", "kind", "size", "rss", "pss",
               "shared_clean", "shared_dirty", "private_clean", "private_dirty", "swap")


_pid = number("pid", lo=1)


def _kinds(rows):
    """Mappings grouped by kind: count and summed sizes, largest RSS first."""
    groups = {}
    for r in rows:
        g = groups.get(r.kind)
        if g is None:
            g = groups[r.kind] = {"kind": r.kind, "count": 0, "size": 0, "rss": 0, "pss": 0,
                                  "private": 0, "swap": 0}
        g["count"] += 1
        g["size"] += r.size
        g["rss"] += r.rss
        g["pss"] += r.pss
        g["private"] += r.private_clean + r.private_dirty
        g["swap"] += r.swap
    return sorted(groups.values(), key=lambda g: (-g["rss"], g["kind"]))


def _shown(text):
    """A name or path as the command prints it: the kernel gives bytes, which Python decodes
    with surrogateescape; bytes that do not decode are shown as \\xNN, in the text and the
    JSON alike (a strict UTF-8 stdout cannot print a lone surrogate, nor may strict JSON
    readers accept one)."""
    return os.fsencode(text).decode(sys.getfilesystemencoding(), "backslashreplace")


def _opt_bytes(n):
    return "-" if n is None else human_bytes(n)


class MemCommand:
    name = "mem"
    help = "show a process's memory: RSS, PSS, USS, swap, mappings by kind (and allocators with --self)"

    def prepare_parser(self, parser):
        parser.add_argument("pid", nargs="?", type=_pid, metavar="PID",
                            help="process id (default: heaptrail's own process)")
        parser.add_argument("--self", dest="self_", action="store_true",
                            help="this process, with pymalloc, glibc malloc and gc summaries")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--top", type=count, default=10, metavar="N",
                            help="show the N largest mappings by RSS (0: all; default 10)")

    def run(self, args):
        if args.self_ and args.pid is not None and args.pid != os.getpid():
            raise CommandError("give a PID or --self, not both")
        pid = args.pid if args.pid is not None else os.getpid()
        own = pid == os.getpid()
        mem = process.memory(pid)
        try:
            rows = process.maps(pid)
        except HeaptrailError:
            if mem.pss is not None:
                raise
            rows = None   # the kernel refuses smaps as it refused smaps_rollup
        top = args.top or len(rows or ())   # 0: all, as in every --top that takes a count
        report = {
            "pid": pid,
            "name": _shown(mem.name),
            "self": own,
            "memory": {f: getattr(mem, f) for f in _MEMORY_FIELDS},
            "kinds": _kinds(rows) if rows is not None else None,
            "top_mappings": [
                dict({f: getattr(r, f) for f in _MAP_FIELDS}, path=_shown(r.path))
                for r in heapq.nlargest(top, rows or (), key=lambda r: r.rss)
            ],
        }
        if args.self_:
            report["pymalloc"] = _pymalloc_dict(process.pymalloc())
            report["malloc"] = _malloc_dict()
            report["gc"] = _gc_dict(process.gc())
        if args.json:
            print(json.dumps(report, indent=None, sort_keys=False))
        else:
            print(_render(report, own and not args.self_ and args.pid is None))
        return 0


def _pymalloc_dict(p):
    d = {f: getattr(p, f) for f in p.__match_args__ if f != "classes"}
    d["classes"] = None if p.classes is None else [
        {f: getattr(c, f) for f in c.__match_args__} for c in p.classes
    ]
    return d


def _malloc_dict():
    try:
        m = process.malloc()
    except HeaptrailError as e:  # no glibc >= 2.33: say so in the report, not fail it
        return {"error": str(e)}
    return {f: getattr(m, f) for f in m.__match_args__}


def _gc_dict(g):
    return {
        "enabled": g.enabled,
        "thresholds": list(g.thresholds),
        "counts": list(g.counts),
        "generations": [vars(gen) for gen in g.generations],
    }


def _render(rep, note_self):
    m = rep["memory"]
    lines = [f"process {rep['pid']} ({rep['name']})"]
    if note_self:
        lines.append("note: no PID given, so this is heaptrail's own process; "
                     "give a PID, or --self for its allocators too")
    lines.append("  ".join(f"{label} {_opt_bytes(m[key])}" for label, key in (
        ("RSS", "rss"), ("VIRT", "vms"), ("SHR", "shared"), ("USS", "uss"), ("PSS", "pss"),
        ("swap", "swap"), ("peak", "peak_rss"))))
    lines.append(f"data {_opt_bytes(m['data'])}  stack {_opt_bytes(m['stack'])}  "
                 f"threads {m['threads'] if m['threads'] is not None else '-'}")
    if m["pss"] is None:
        lines.append("(no PSS/USS or mappings: the kernel gives no smaps for this process; "
                     "another user's, a zombie or a kernel thread)")
    if rep["kinds"]:
        lines += ["", "mappings by kind"]
        lines.append(table(
            ["kind", "count", "size", "rss", "pss", "private", "swap"],
            [[k["kind"], k["count"], human_bytes(k["size"]), human_bytes(k["rss"]),
              human_bytes(k["pss"]), human_bytes(k["private"]), human_bytes(k["swap"])]
             for k in rep["kinds"]], align="lrrrrrr"))
    if rep["top_mappings"]:
        lines += ["", f"top {len(rep['top_mappings'])} mappings by RSS"]
        lines.append(table(
            ["rss", "pss", "private", "perms", "kind", "path"],
            [[human_bytes(r["rss"]), human_bytes(r["pss"]),
              human_bytes(r["private_clean"] + r["private_dirty"]), r["perms"], r["kind"],
              r["path"] or f"[{r['start']:x}-{r['end']:x}]"]
             for r in rep["top_mappings"]], align="rrrlll"))
    if "pymalloc" in rep:
        lines += ["", _render_pymalloc(rep["pymalloc"])]
        lines += [_render_malloc(rep["malloc"]), _render_gc(rep["gc"])]
    return "\n".join(lines)


def _render_pymalloc(p):
    if not p["in_use"]:
        return f"pymalloc: not in use (allocator: {p['allocator']})"
    out = [
        f"pymalloc: {p['arenas']} arenas ({human_bytes(p['arenas'] * p['arena_size'])}), "
        f"highwater {p['arenas_highwater']}; pools {p['pools_used']} used, {p['pools_unused']} empty",
        f"  blocks {p['blocks_used']} used ({human_bytes(p['bytes_used'])}), "
        f"{p['blocks_free']} free in used pools ({human_bytes(p['bytes_free'])}); "
        f"fragmentation {p['fragmentation'] * 100:.1f}%",
    ]
    busiest = sorted((c for c in p["classes"] if c["pools"]),
                     key=lambda c: -c["blocks_used"] * c["block_size"])[:5]
    if busiest:
        out.append("  largest size classes: " + ", ".join(
            f"{c['block_size']} B x {c['blocks_used']}" for c in busiest))
    return "\n".join(out)


def _render_malloc(m):
    if "error" in m:
        return f"malloc: {m['error']}"
    return (f"malloc (glibc): arena {human_bytes(m['arena'])}, in use {human_bytes(m['in_use'])}, "
            f"free {human_bytes(m['free'])}, mmapped {human_bytes(m['mmapped'])} "
            f"in {m['mmapped_chunks']} chunks, releasable {human_bytes(m['releasable'])}")


def _render_gc(g):
    gens = ", ".join(f"gen{x['generation']} {x['collections']} ({x['collected']} freed)"
                     for x in g["generations"])
    text = (f"gc: {'enabled' if g['enabled'] else 'disabled'}, thresholds "
            f"{tuple(g['thresholds'])}, counts {tuple(g['counts'])}; collections {gens}")
    pauses = sum(x["pauses"] for x in g["generations"])
    if pauses:   # only once heaptrail.process.track_gc_pauses() has run
        total = sum(x["pause_total"] for x in g["generations"])
        longest = max(x["pause_max"] for x in g["generations"])
        text += f"\n  gc pauses: {pauses}, total {total * 1e3:.2f} ms, longest {longest * 1e3:.2f} ms"
    return text


COMMAND = MemCommand
