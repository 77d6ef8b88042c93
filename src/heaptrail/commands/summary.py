"""`heaptrail summary FILE`: the heapy-style table of a heap snapshot file, or
the at-exit report of a capture file (dispatched on the file's magic)."""
from heaptrail.commands._snapshots import open_snapshot, positive, print_json


class SummaryCommand:
    name = "summary"
    help = "summarize a heap snapshot file by type, owner or module"

    def prepare_parser(self, parser):
        parser.add_argument("file", help="a snapshot file (heaptrail snapshot -o FILE)")
        parser.add_argument("--by", choices=("type", "owner", "module"), default="type",
                            help="group by type (default), by type with instance dicts as "
                                 "'dict of Class' (owner), or by defining module")
        parser.add_argument("--top", type=positive, default=20, metavar="N",
                            help="rows to show (default 20)")
        parser.add_argument("--json", action="store_true", help="print the rows as JSON")
        parser.add_argument("--children", action="store_true",
                            help="capture files: add the child processes' captures (FILE.<pid>)")

    def run(self, args):
        from heaptrail.capture import is_capture_file
        if is_capture_file(args.file):
            from heaptrail.commands._children import capture_summary
            return capture_summary(args)
        snap = open_snapshot(args.file, self.name)
        rows = snap.summary(by=args.by)
        if args.json:
            print_json({"objects": snap.objects, "total_size": snap.total_size, "by": args.by,
                        "rows": rows.as_dicts()[:args.top]})
        else:
            print(rows.format(top=args.top))
        return 0


COMMAND = SummaryCommand
