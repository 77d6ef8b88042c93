"""`heaptrail summary FILE`: the heapy-style table of a heap snapshot file, or
the at-exit report of a capture file (dispatched on the file's magic)."""
from heaptrail.cli import CommandError
from heaptrail.commands._snapshots import open_snapshot, positive, print_json


class SummaryCommand:
    name = "summary"
    help = "summarize a heap snapshot file by type, owner or module"

    def prepare_parser(self, parser):
        parser.add_argument("file", help="a snapshot file (heaptrail snapshot -o FILE)")
        parser.add_argument("--by", choices=("type", "owner", "module"), default=None,
                            help="group by type (default), by type with instance dicts as "
                                 "'dict of Class' (owner), or by defining module")
        parser.add_argument("--top", type=positive, default=20, metavar="N",
                            help="rows to show (default 20)")
        parser.add_argument("--json", action="store_true", help="print the rows as JSON")
        parser.add_argument("--children", action="store_true",
                            help="capture files: add the child processes' captures (FILE.<pid>)")

    def run(self, args):
        from heaptrail.capture import is_capture_file, refuse_pipe
        refuse_pipe(args.file)   # before its magic is read away
        # an option the file's kind has no use for is an error, not silently ignored
        if is_capture_file(args.file):
            if args.by is not None:
                raise CommandError(f"--by groups a snapshot file's objects; {args.file} is a capture "
                                   "(heaptrail table --by line|function|file|stack)")
            from heaptrail.commands._children import capture_summary
            return capture_summary(args)
        if args.children:
            raise CommandError(f"--children adds a capture's child processes; {args.file} is not a capture")
        snap = open_snapshot(args.file, self.name)
        args.by = args.by or "type"
        rows = snap.summary(by=args.by)
        if args.json:
            print_json({"objects": snap.objects, "total_size": snap.total_size, "by": args.by,
                        "rows": rows.as_dicts()[:args.top]})
        else:
            print(rows.format(top=args.top))
        return 0


COMMAND = SummaryCommand
