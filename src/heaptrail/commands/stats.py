"""heaptrail stats FILE: allocation size histogram, allocations per second,
largest blocks, top allocating sites by count and by bytes, threads."""
import json

from heaptrail import capture
from heaptrail._format import human_bytes, table
from heaptrail.commands._snapshots import positive


class StatsCommand:
    name = "stats"
    help = "statistics of a capture: size histogram, rates, largest blocks, top sites, threads"

    def prepare_parser(self, parser):
        capture.add_file_argument(parser, reports=False)
        parser.add_argument("--top", type=positive, default=5, help="sites shown per list (default 5)")
        parser.add_argument("--json", action="store_true")

    def run(self, args):
        cap = capture.load_for_command(args.file)
        seconds = cap.duration_ns / 1e9
        rate = cap.allocations / seconds if seconds > 0 else 0.0
        if args.json:
            print(json.dumps(stats_dict(cap, args.top, rate), indent=1))
            return 0
        print(f"capture {cap.path}: pid {cap.pid}, {seconds:.3f} s, {cap.command}")
        print(f"allocations: {cap.allocations:,} ({human_bytes(cap.total_bytes)}), frees: {cap.frees:,}, "
              f"{rate:,.0f} allocations/s")
        print(f"peak: {human_bytes(cap.peak_bytes)} in {cap.peak_count:,} blocks; at exit: "
              f"{human_bytes(cap.leaked_bytes)} in {cap.leaked_count:,} blocks; RSS peak "
              f"{human_bytes(cap.max_rss)}")
        print("\nsize histogram:")
        hist = cap.histogram()
        most = max((b.count for b in hist), default=1)
        print(table(["sizes", "count", "bytes", ""],
                    [[f"{b.low}-{b.high}", b.count, human_bytes(b.bytes), "#" * max(1, 40 * b.count // most)]
                     for b in hist], align="rrrl"))
        print("\nlargest blocks:")
        print(table(["size", "where"], [[human_bytes(size), _where(cap, node)] for size, node in cap.largest()[:args.top]],
                    align="rl"))
        for sort in ("count", "size"):
            print(f"\ntop allocating lines by {'bytes' if sort == 'size' else 'count'}:")
            rows = cap.rows("total", by="line", sort=sort, top=args.top)
            print(table(["count", "bytes", "where"],
                        [[r.count, human_bytes(r.bytes), capture.frame_text(r.function, r.file, r.line)] for r in rows],
                        align="rrl"))
        print("\nthreads:")
        print(table(["thread", "name", "allocations", "bytes"],
                    [[t.id, capture.printable(t.name or ""), t.allocations, human_bytes(t.bytes)] for t in cap.threads()],
                    align="rlrr"))
        return 0


def _where(cap, node):
    frames = cap.stack(node)
    return capture.frame_text(*frames[0]) if frames else "<no Python frame>"


def stats_dict(cap, top, rate):
    return {
        "file": cap.path, "pid": cap.pid, "duration_s": cap.duration_ns / 1e9,
        "allocations": cap.allocations, "frees": cap.frees, "total_bytes": cap.total_bytes,
        "allocations_per_second": rate, "peak_bytes": cap.peak_bytes, "leaked_bytes": cap.leaked_bytes,
        "max_rss": cap.max_rss, "truncated": cap.truncated,
        "histogram": [b._asdict() for b in cap.histogram()],
        "largest": [{"size": s, "where": _where(cap, n)} for s, n in cap.largest()[:top]],
        "top_by_count": [r._asdict() for r in cap.rows("total", "line", "count", top)],
        "top_by_size": [r._asdict() for r in cap.rows("total", "line", "size", top)],
        "threads": [t._asdict() for t in cap.threads()],
    }


COMMAND = StatsCommand
