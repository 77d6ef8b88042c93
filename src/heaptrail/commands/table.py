"""heaptrail table FILE [--peak|--leaks|--total] [--by ...] [--sort ...] [--top N] [--json]:
a capture's allocations grouped by line, function, file or whole stack."""
import json

from heaptrail import capture
from heaptrail._format import human_bytes, table
from heaptrail.commands._children import add_children_argument, merged_rows, open_family
from heaptrail.commands._snapshots import count


class TableCommand:
    name = "table"
    help = "table of a capture's allocations at the peak, at exit (leaks) or in total"

    def prepare_parser(self, parser):
        capture.add_file_argument(parser)
        parser.add_argument("--by", choices=capture.GROUPINGS, default="line",
                            help="group by the innermost frame's line (default), function or file, or by whole stack")
        parser.add_argument("--sort", choices=("size", "count"), default="size")
        parser.add_argument("--top", type=count, default=20, help="rows to show (0: all; default 20)")
        parser.add_argument("--json", action="store_true", help="rows as JSON")
        add_children_argument(parser)

    def run(self, args):
        if args.children:   # this capture and its children's, added up by place
            caps = open_family(args.file)
            cap = caps[0]
            rows = merged_rows(caps, args.report, args.by, args.sort, args.top)
            total = sum(c.report_bytes(args.report) for c in caps)
        else:
            cap = capture.load_for_command(args.file)
            rows = cap.rows(args.report, by=args.by, sort=args.sort, top=args.top)
            total = cap.report_bytes(args.report)
        if args.json:
            out = []
            for r in rows:
                d = {"bytes": r.bytes, "count": r.count, "function": r.function, "file": r.file,
                     "line": r.line}
                if args.by == "stack":
                    d["stack"] = [f._asdict() for f in cap.stack(r.node)]
                out.append(d)
            print(json.dumps({"file": cap.path, "report": args.report, "by": args.by,
                              "total_bytes": total, "truncated": cap.truncated, "rows": out}, indent=1))
            return 0
        print(f"{args.report} of {cap.path}: {human_bytes(total)}")
        body = [[human_bytes(r.bytes), f"{100 * r.bytes / (total or 1):.1f}%", r.count,
                 capture.row_location(cap, r, args.by)] for r in rows]
        print(table(["size", "share", "count", "where"], body, align="rrrl"))
        return 0


COMMAND = TableCommand
